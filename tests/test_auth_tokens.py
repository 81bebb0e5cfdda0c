"""Access tokens: a corpus of forged tokens refused on every protected route (enumerated from the
app, so new routes are covered automatically), logout taking effect at once, and the JWKS."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
import uuid
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from auth import guards
from tests.auth_helpers import bearer, login_resident

_PARAM = re.compile(r"\{(\w+)(?::(\w+))?\}")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _raw(header: dict[str, Any], claims: dict[str, Any], sign: Any = None) -> str:
    head = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
    signature = sign(head.encode()) if sign else b""
    return head + "." + _b64(signature)


def forged_corpus(app: Any, subject: str, session_id: str) -> dict[str, str]:
    ring = app.state.auth.tokens.ring
    real = ring.active
    now = int(time.time())
    good = {
        "iss": app.state.auth.tokens.issuer,
        "aud": app.state.auth.tokens.audience,
        "sub": subject,
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
        "sid": session_id,
        "chn": "app",
        "lvl": 3,
    }

    def signed(claims: dict[str, Any], **headers: Any) -> str:
        return jwt.encode(claims, real.private, algorithm="ES256", headers={"kid": real.kid, **headers})

    attacker = ec.generate_private_key(ec.SECP256R1())
    attacker_jwk = ECAlgorithm.to_jwk(attacker.public_key(), as_dict=True)
    public_pem = real.public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    valid = signed(good)
    head, payload, sig = valid.split(".")
    tampered_claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    tampered_claims["sub"] = str(uuid.uuid4())
    return {
        "alg_none": _raw({"alg": "none", "typ": "JWT", "kid": real.kid}, good),
        "alg_none_signed_tail": _raw({"alg": "none", "kid": real.kid}, good, lambda m: b"x"),
        "hs256_with_public_key": _raw(
            {"alg": "HS256", "typ": "JWT", "kid": real.kid},
            good,
            lambda m: hmac.new(public_pem, m, hashlib.sha256).digest(),
        ),
        "expired": signed({**good, "iat": now - 7200, "nbf": now - 7200, "exp": now - 3600}),
        "nbf_in_future": signed({**good, "nbf": now + 3600, "exp": now + 4000}),
        "wrong_aud": signed({**good, "aud": "someone-else"}),
        "wrong_iss": signed({**good, "iss": "https://evil.example"}),
        "tampered_payload": f"{head}.{_b64(json.dumps(tampered_claims).encode())}.{sig}",
        "unknown_kid": jwt.encode(good, attacker, algorithm="ES256", headers={"kid": "attacker-1"}),
        "known_kid_wrong_key": jwt.encode(good, attacker, algorithm="ES256", headers={"kid": real.kid}),
        "jku_header": signed(good, jku="https://evil.example/jwks.json"),
        "jwk_header": jwt.encode(
            good, attacker, algorithm="ES256", headers={"kid": real.kid, "jwk": attacker_jwk}
        ),
        "x5u_header": signed(good, x5u="https://evil.example/cert.pem"),
        "missing_jti": signed({k: v for k, v in good.items() if k != "jti"}),
        "garbage": "not.a.jwt",
        "empty_signature": f"{head}.{payload}.",
    }


def protected_routes(app: Any) -> list[tuple[str, str]]:
    """(method, concrete path) of every route that authenticates: it takes `principal` or has one of
    the auth guards."""
    auth_guards = {guards.authenticated, guards.staff_only, guards.residents_only}
    found = []
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            own = [g for g in handler.resolve_guards() if g is not guards.require_principal_if_declared]
            uses_auth = "principal" in handler.parsed_fn_signature.parameters or any(
                g in auth_guards or getattr(g, "__module__", "") == "auth.guards" for g in own
            )
            if not uses_auth:
                continue

            def fill(match: re.Match[str]) -> str:
                kind = match.group(2) or "str"
                return {"uuid": str(uuid.uuid4()), "int": "1"}.get(kind, "x1")

            path = _PARAM.sub(fill, route.path)
            for method in sorted(handler.http_methods):
                if method not in ("HEAD", "OPTIONS"):
                    found.append((method, path))
    return sorted(set(found))


async def test_forged_tokens_are_refused_on_every_protected_route(
    client: httpx.AsyncClient, sandbox: httpx.AsyncClient
) -> None:
    who = await login_resident(client, sandbox, channel="app", level=2)
    routes = protected_routes(client.app)  # type: ignore[attr-defined]
    assert ("GET", "/api/v1/me") in routes and ("POST", "/api/v1/staff/kiosks") in routes
    corpus = forged_corpus(client.app, who["person_id"], who["session_id"])  # type: ignore[attr-defined]
    # The control: the real token works, so a 401 below is the forgery's doing.
    assert (await client.get("/api/v1/me", headers=bearer(who))).status_code == 200
    failures = []
    for method, path in routes:
        for name, token in corpus.items():
            response = await client.request(
                method, path, headers={"Authorization": f"Bearer {token}"}, json={}
            )
            if response.status_code != 401 or not response.headers["content-type"].startswith(
                "application/problem"
            ):
                failures.append((name, method, path, response.status_code))
    assert not failures, failures[:10]
    # Missing and malformed headers too.
    for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": "Basic dXNlcjpwYXNz"}):
        for method, path in routes:
            response = await client.request(method, path, headers=headers, json={})
            assert response.status_code == 401, (headers, method, path, response.status_code)


async def test_expired_token_says_token_expired(
    client: httpx.AsyncClient, sandbox: httpx.AsyncClient
) -> None:
    who = await login_resident(client, sandbox, channel="app")
    token = forged_corpus(client.app, who["person_id"], who["session_id"])["expired"]  # type: ignore[attr-defined]
    response = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.json()["code"] == "token_expired"
    assert "Bearer" in response.headers["www-authenticate"]


async def test_access_token_shape(client: httpx.AsyncClient, sandbox: httpx.AsyncClient) -> None:
    who = await login_resident(client, sandbox, channel="miniprogram")
    header = jwt.get_unverified_header(who["access_token"])
    claims = jwt.decode(who["access_token"], options={"verify_signature": False})
    assert header["alg"] in ("ES256", "EdDSA") and header["kid"]
    assert claims["exp"] - claims["iat"] <= 600
    assert claims["sub"] == who["person_id"] and claims["sub"] != who["resident"]["id_card_number"]
    assert {"iss", "aud", "sub", "jti", "sid", "chn", "lvl", "nbf"} <= set(claims)
    assert claims["chn"] == "miniprogram" and claims["lvl"] == 2
    # Refresh tokens are opaque 256-bit values, stored only as hashes.
    raw = who["refresh_token"].removeprefix("sxr_")
    assert len(base64.urlsafe_b64decode(raw + "=")) == 32


async def test_jwks_publishes_every_key_including_the_next(client: httpx.AsyncClient) -> None:
    response = await client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    keys = {k["kid"]: k for k in response.json()["keys"]}
    active = client.app.state.auth.tokens.ring.active.kid  # type: ignore[attr-defined]
    assert active in keys and len(keys) >= 2  # the next key is published before it signs
    assert all("d" not in k for k in keys.values())  # public halves only
    jwk_set = jwt.PyJWKSet.from_dict(response.json())
    who_token = client.app.state.auth.tokens.issue(subject="x", session_id="s", channel="app", level=1)  # type: ignore[attr-defined]
    verified = jwt.decode(
        who_token.token, jwk_set[active].key, algorithms=["ES256"], audience="sanxiang-mobile"
    )
    assert verified["sub"] == "x"


async def test_rotation_signing_with_the_published_next_key(
    make_client: Any, sandbox: httpx.AsyncClient
) -> None:
    """Switching AUTH_ACTIVE_KID to the published next key: old tokens keep working until they expire."""
    from auth.keys import export_entry

    k1, k2 = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    keys = [export_entry("k1", k1), export_entry("k2", k2)]
    before = await make_client(auth_signing_keys=keys, auth_active_kid="k1")
    who = await login_resident(before, sandbox, channel="app")
    assert jwt.get_unverified_header(who["access_token"])["kid"] == "k1"
    after = await make_client(auth_signing_keys=keys, auth_active_kid="k2")
    assert (await after.get("/api/v1/me", headers=bearer(who))).status_code == 200
    refreshed = await after.post("/api/v1/auth/refresh", json={"refreshToken": who["refresh_token"]})
    assert jwt.get_unverified_header(refreshed.json()["accessToken"])["kid"] == "k2"
    assert (
        await before.get("/api/v1/me", headers={"Authorization": f"Bearer {refreshed.json()['accessToken']}"})
    ).status_code == 200


async def test_logout_takes_effect_at_once(client: httpx.AsyncClient, sandbox: httpx.AsyncClient) -> None:
    who = await login_resident(client, sandbox, channel="app")
    assert (await client.get("/api/v1/me", headers=bearer(who))).status_code == 200
    out = await client.post("/api/v1/auth/logout", headers=bearer(who), json={})
    assert out.status_code == 200 and out.json()["endedSessions"] == 1
    after = await client.get("/api/v1/me", headers=bearer(who))
    assert after.status_code == 401 and after.json()["code"] == "token_revoked"
    refresh = await client.post("/api/v1/auth/refresh", json={"refreshToken": who["refresh_token"]})
    assert refresh.status_code == 401 and refresh.json()["code"] == "session_revoked"


async def test_logout_everywhere_ends_every_channel(
    client: httpx.AsyncClient, sandbox: httpx.AsyncClient
) -> None:
    app_login = await login_resident(client, sandbox, channel="app")
    mini = await login_resident(client, sandbox, channel="miniprogram", resident=app_login["resident"])
    assert app_login["person_id"] == mini["person_id"]  # one person, whichever channel
    listed = (await client.get("/api/v1/me/sessions", headers=bearer(mini))).json()["items"]
    assert {s["channel"] for s in listed} >= {"app", "miniprogram"}
    out = await client.post("/api/v1/auth/logout", headers=bearer(mini), json={"everywhere": True})
    assert out.status_code == 200 and out.json()["endedSessions"] >= 2
    for login in (app_login, mini):
        assert (await client.get("/api/v1/me", headers=bearer(login))).status_code == 401
        refresh = await client.post("/api/v1/auth/refresh", json={"refreshToken": login["refresh_token"]})
        assert refresh.status_code == 401


async def test_end_one_session_of_mine(client: httpx.AsyncClient, sandbox: httpx.AsyncClient) -> None:
    phone = await login_resident(client, sandbox, channel="app")
    other = await login_resident(client, sandbox, channel="app", resident=phone["resident"])
    stranger = await login_resident(client, sandbox, channel="app")
    # Someone else's session: 404, and it keeps working.
    denied = await client.delete(f"/api/v1/me/sessions/{phone['session_id']}", headers=bearer(stranger))
    assert denied.status_code == 404
    assert (await client.get("/api/v1/me", headers=bearer(phone))).status_code == 200
    ended = await client.delete(f"/api/v1/me/sessions/{phone['session_id']}", headers=bearer(other))
    assert ended.status_code == 204
    assert (await client.get("/api/v1/me", headers=bearer(phone))).status_code == 401
    assert (await client.get("/api/v1/me", headers=bearer(other))).status_code == 200


async def test_refresh_rotates_and_reuse_revokes_over_http(
    make_client: Any, sandbox: httpx.AsyncClient
) -> None:
    client = await make_client(auth_refresh_grace_s=0)
    who = await login_resident(client, sandbox, channel="app")
    first = await client.post("/api/v1/auth/refresh", json={"refreshToken": who["refresh_token"]})
    assert first.status_code == 200
    new = first.json()
    assert new["refreshToken"] != who["refresh_token"]
    time.sleep(1.1)  # past the (zero) grace window
    replay = await client.post("/api/v1/auth/refresh", json={"refreshToken": who["refresh_token"]})
    assert replay.status_code == 401 and replay.json()["code"] == "refresh_token_reused"
    # The whole family is gone: the newest refresh token and its access token too.
    assert (
        await client.post("/api/v1/auth/refresh", json={"refreshToken": new["refreshToken"]})
    ).status_code == 401
    assert (
        await client.get("/api/v1/me", headers={"Authorization": f"Bearer {new['accessToken']}"})
    ).status_code == 401


async def test_lost_response_within_grace_gets_a_new_token(
    client: httpx.AsyncClient, sandbox: httpx.AsyncClient
) -> None:
    who = await login_resident(client, sandbox, channel="app")
    lost = await client.post("/api/v1/auth/refresh", json={"refreshToken": who["refresh_token"]})
    assert lost.status_code == 200
    retry = await client.post("/api/v1/auth/refresh", json={"refreshToken": who["refresh_token"]})
    assert retry.status_code == 200
    # The answer the client never saw is out of the chain; the retry's token carries on.
    assert (
        await client.post("/api/v1/auth/refresh", json={"refreshToken": retry.json()["refreshToken"]})
    ).status_code == 200
