"""Abuse that costs others nothing (issue 9 section 2)."""

from __future__ import annotations

import httpx
import pytest

from tests.auth_helpers import REDIRECT_URI, login_resident, pkce
from tests.test_journey_helpers import upstream_urls


@pytest.fixture
async def client(make_client, sandbox_url) -> httpx.AsyncClient:
    return await make_client(**upstream_urls(sandbox_url))


def _malformed(n: int) -> list[str]:
    """Codes no identity provider ever issued: control characters, non-ASCII, spaces, too short,
    quotes and markup, bidi overrides: what made the upstream answer 5xx before."""
    shapes = [
        "abc\x00defghijk",
        "\x00" * 12,
        "代码代码代码代码代码",
        "abc defghijk",
        "x'\"; DROP TABLE--",
        "\u202eabcdefghij",
        "short",
        "<script>\talert(1)</script>",
        "line\r\nbreak-here",
        "\x7f\x7f\x7f\x7f\x7f\x7f\x7f\x7f",
    ]
    return [shapes[i % len(shapes)] + ("" if i < len(shapes) else f"\x00{i}") for i in range(n)]


async def test_100_malformed_anonymous_logins_then_a_real_login_succeeds(client, sandbox) -> None:
    verifier, _ = pkce()
    answers = []
    for i, code in enumerate(_malformed(100)):
        if i % 2:
            body = {"code": code, "codeVerifier": verifier, "redirectUri": REDIRECT_URI}
            answers.append(await client.post("/api/v1/auth/app/login", json=body))
        else:
            answers.append(await client.post("/api/v1/auth/wechat/login", json={"code": code}))
    statuses = {r.status_code for r in answers}
    assert statuses == {400}, [(r.status_code, r.text) for r in answers if r.status_code != 400][:3]
    assert {r.json()["code"] for r in answers} == {"validation_failed"}
    assert all(r.json()["detail"].startswith("code:") for r in answers)
    # Refused before any upstream heard of them: both breakers are closed and real residents log in,
    # on both channels (and the malformed ones did not use up this address's login limit either).
    ready = (await client.get("/readyz")).json()
    assert "open" not in str(ready.get("upstreams", ready)), ready
    app = await login_resident(client, sandbox, channel="app")
    mini = await login_resident(client, sandbox, channel="miniprogram")
    assert app["access_token"] and mini["access_token"]


async def test_a_malformed_phone_code_or_redirect_uri_is_refused_before_the_upstream(client, sandbox) -> None:
    verifier, _ = pkce()
    bad_uri = await client.post(
        "/api/v1/auth/app/login",
        json={"code": "A" * 32, "codeVerifier": verifier, "redirectUri": "https://x.example/\x00cb"},
    )
    assert bad_uri.status_code == 400 and bad_uri.json()["detail"].startswith("redirectUri:"), bad_uri.text
    bad_phone = await client.post(
        "/api/v1/auth/wechat/phone", json={"code": "\x00" * 20, "bindingToken": "t" * 40}
    )
    assert bad_phone.status_code == 400 and bad_phone.json()["detail"].startswith("code:"), bad_phone.text
