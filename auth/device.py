"""Guards for requests a kiosk signs without a session yet (the kiosk login, a kiosk's refresh).

Guards run before the body is parsed, so an unsigned request learns nothing from body validation;
the verified kiosk id is kept in the ASGI scope for the handler (`signed_kiosk`).
"""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection, Request
from litestar.handlers.base import BaseRouteHandler

from auth import kiosk
from auth.guards import runtime

_KIOSK_KEY = "sx_kiosk"


async def _verify_kiosk(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    rt = runtime(connection)
    body = await connection.body() if isinstance(connection, Request) else b""
    path = connection.url.path + (f"?{connection.url.query}" if connection.url.query else "")
    kiosk_id = await kiosk.verify_request(
        rt.redis,
        rt.pool,
        method=str(connection.scope.get("method", "GET")),
        path=path,
        body=body,
        headers=connection.headers,
        skew_s=rt.config.kiosk_skew_s,
    )
    connection.scope[_KIOSK_KEY] = kiosk_id  # type: ignore[literal-required]
    return kiosk_id


async def kiosk_signed(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """The request is signed by a registered kiosk. Guards run before the body is parsed, so an
    unsigned request learns nothing from body validation."""
    await _verify_kiosk(connection)


async def kiosk_signed_if_sent(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """A request that names a kiosk must be signed by it (a kiosk session refreshes only there)."""
    if connection.headers.get(kiosk.HEADER_ID):
        await _verify_kiosk(connection)


def signed_kiosk(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    """The kiosk whose signature a guard verified on this request, if any."""
    value = connection.scope.get(_KIOSK_KEY)  # type: ignore[typeddict-item]
    return value if isinstance(value, str) else None
