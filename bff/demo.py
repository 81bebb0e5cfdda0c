"""What `sanxiang dev` does to show a person how to log in: a real app login of a demo resident.

It goes over HTTP like the app would (the identity provider's authorize redirect with PKCE, then
our `/api/v1/auth/app/login`), so the printed token proves the whole path works.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

DEMO_RESIDENT = "demo-resident-l3"  # 张三, real-name level 3, seeded by the sandbox identity provider
REDIRECT_URI = "https://app.sanxiang.gov.cn/oauth/callback"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def demo_login(api_url: str, idp_url: str, client_id: str) -> dict[str, Any]:
    """Log the demo resident in through the app channel; returns the token response."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    query = urllib.parse.urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": REDIRECT_URI,
            "scope": "openid profile phone idcard",
            "state": secrets.token_hex(8),
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "login_hint": DEMO_RESIDENT,
        }
    )
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        opener.open(f"{idp_url}/authorize?{query}", timeout=5)
        raise RuntimeError("the identity provider did not redirect")
    except urllib.error.HTTPError as redirect:
        if redirect.code != 302:
            raise
        location = redirect.headers["Location"]
    code = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)["code"][0]
    body = json.dumps({"code": code, "codeVerifier": verifier, "redirectUri": REDIRECT_URI}).encode()
    request = urllib.request.Request(  # noqa: S310 - our own API
        f"{api_url}/api/v1/auth/app/login",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        result: dict[str, Any] = json.load(response)
    return result
