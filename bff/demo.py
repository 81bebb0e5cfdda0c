"""What `sanxiang dev` does to show a person how to log in: a real app login of a demo resident.

It goes over HTTP like the app would (the identity provider's authorize redirect with PKCE, then
our `/api/v1/auth/app/login`), so the printed token proves the whole path works.

A refusal says why (`DemoLoginFailed`: the HTTP status and the problem `code` of the body). What
the server marks as retryable is retried within a time budget: 429 with `Retry-After` (a rate
limit that will lift) and 503 (an upstream or the server busy). Each attempt starts from a fresh
authorization code: a code may have been spent by the attempt that failed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

DEMO_RESIDENT = "demo-resident-l3"  # 张三, real-name level 3, seeded by the sandbox identity provider
REDIRECT_URI = "https://app.sanxiang.gov.cn/oauth/callback"
LOGIN_PATH = "/api/v1/auth/app/login"
# Long enough for a per-minute limit's Retry-After to matter, short enough for a banner.
DEFAULT_BUDGET = 20.0
_BACKOFF = (0.5, 1.0, 2.0, 4.0)


class DemoLoginFailed(Exception):
    """The demo login did not yield a token; `str()` is the reason a person can act on."""

    def __init__(self, reason: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.code = code


class _Retryable(DemoLoginFailed):
    def __init__(self, reason: str, *, status: int, code: str | None, wait: float | None) -> None:
        super().__init__(reason, status=status, code=code)
        self.wait = wait


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def demo_login(
    api_url: str,
    idp_url: str,
    client_id: str,
    *,
    budget: float = DEFAULT_BUDGET,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Log the demo resident in through the app channel; returns the token response.

    Raises DemoLoginFailed with the reason once a refusal is final or the budget is spent.
    """
    deadline = clock() + budget
    attempts = 0
    while True:
        attempts += 1
        try:
            return _login_once(api_url, idp_url, client_id)
        except _Retryable as exc:
            wait = exc.wait if exc.wait is not None else _BACKOFF[min(attempts - 1, len(_BACKOFF) - 1)]
            left = deadline - clock()
            if wait > left:
                raise DemoLoginFailed(
                    f"{exc} (gave up after {attempts} attempt{'s' if attempts > 1 else ''}: "
                    f"waiting {wait:g} s would pass the {budget:g} s budget)",
                    status=exc.status,
                    code=exc.code,
                ) from None
            sleep(wait)


def _login_once(api_url: str, idp_url: str, client_id: str) -> dict[str, Any]:
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
        raise DemoLoginFailed("the identity provider did not redirect")
    except urllib.error.HTTPError as redirect:
        if redirect.code != 302:
            raise _refusal("the identity provider's /authorize", redirect) from None
        location = redirect.headers.get("Location", "")
    except OSError as exc:
        raise DemoLoginFailed(f"cannot reach the identity provider at {idp_url}: {_why(exc)}") from None
    codes = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query).get("code")
    if not codes:
        raise DemoLoginFailed("the identity provider redirected without a code")
    body = json.dumps({"code": codes[0], "codeVerifier": verifier, "redirectUri": REDIRECT_URI}).encode()
    request = urllib.request.Request(  # noqa: S310 - our own API
        api_url + LOGIN_PATH, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            result = json.load(response)
    except urllib.error.HTTPError as exc:
        raise _refusal(f"POST {LOGIN_PATH}", exc) from None
    except OSError as exc:
        raise DemoLoginFailed(f"cannot reach the API at {api_url}: {_why(exc)}") from None
    except ValueError:
        raise DemoLoginFailed(f"POST {LOGIN_PATH} answered something that is not JSON") from None
    if not isinstance(result, dict) or "accessToken" not in result:
        raise DemoLoginFailed(f"POST {LOGIN_PATH} answered without an accessToken")
    return result


def _refusal(what: str, error: urllib.error.HTTPError) -> DemoLoginFailed:
    """The refusal as a reason: status and problem code; retryable when the server says so."""
    code: str | None = None
    try:
        document = json.loads(error.read() or b"null")
    except (OSError, ValueError):
        document = None
    if isinstance(document, dict):
        # Our problem documents carry `code`; OAuth errors (the identity provider) carry `error`.
        found = document.get("code") or document.get("error")
        code = str(found) if found is not None else None
    reason = f"{what} answered {error.code}" + (f" {code}" if code else "")
    retry_after = _retry_after(error.headers.get("Retry-After") if error.headers else None)
    if error.code == 429 and retry_after is not None:
        return _Retryable(f"{reason}, Retry-After {retry_after:g} s", status=429, code=code, wait=retry_after)
    if error.code == 503:
        return _Retryable(reason, status=503, code=code, wait=retry_after)
    return DemoLoginFailed(reason, status=error.code, code=code)


def _retry_after(value: str | None) -> float | None:
    # Only the delta-seconds form: our API never sends an HTTP date.
    if value is None or not value.strip().isdigit():
        return None
    return float(value.strip())


def _why(exc: OSError) -> str:
    reason = getattr(exc, "reason", None) or exc
    return f"{type(reason).__name__}: {reason}" if str(reason) else type(reason).__name__
