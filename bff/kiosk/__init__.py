"""The hall kiosk's web app: static files under `/kiosk/`, served by the BFF (no build step).

The page keeps a short kiosk session in memory only and asks the kiosk's local device bridge (see the
README, "The kiosk web app") to read the ID card, match the face and sign every API call; it never
holds the device key. Static routes are left out of the OpenAPI document.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from litestar import Response, Router
from litestar.static_files import create_static_files_router

STATIC = Path(__file__).parent / "static"


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def kiosk_router(bridge_url: str) -> Router:
    """`/kiosk/`: the app's files, with a policy that lets the page reach the BFF and the bridge only."""
    policy = "; ".join(
        [
            "default-src 'self'",
            f"connect-src 'self' {_origin(bridge_url)}",
            "img-src 'self' data:",
            "style-src 'self'",
            "script-src 'self'",
            "font-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
            "form-action 'none'",
        ]
    )

    async def headers(response: Response[object]) -> Response[object]:
        response.headers["Content-Security-Policy"] = policy
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "no-cache"
        return response

    return create_static_files_router(
        path="/kiosk",
        directories=[STATIC],
        html_mode=True,
        name="kiosk",
        include_in_schema=False,
        after_request=headers,
    )
