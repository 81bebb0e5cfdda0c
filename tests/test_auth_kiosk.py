"""Kiosk trust: signed requests only; unsigned, replayed, stale, tampered, foreign-key and revoked
are all refused; a bare ID number never logs in; kiosk sessions are short and stay on their kiosk."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import httpx

from tests.auth_helpers import (
    Kiosk,
    bearer,
    kiosk_payload,
    kiosk_post,
    login_resident,
    new_resident,
    register_kiosk,
    staff_headers,
)

LOGIN = "/api/v1/auth/kiosk/login"


async def test_unsigned_login_is_refused(client: httpx.AsyncClient, sandbox: httpx.AsyncClient) -> None:
    resident = await new_resident(sandbox)
    response = await client.post(LOGIN, json=kiosk_payload(resident))
    assert response.status_code == 401
    assert response.json()["code"] == "kiosk_signature_required"


async def test_replayed_request_is_refused(client: httpx.AsyncClient, sandbox: httpx.AsyncClient) -> None:
    kiosk = await register_kiosk(client)
    resident = await new_resident(sandbox)
    body = httpx.Request("POST", "http://x", json=kiosk_payload(resident)).content
    headers = {**kiosk.headers("POST", LOGIN, body), "Content-Type": "application/json"}
    first = await client.post(LOGIN, content=body, headers=headers)
    assert first.status_code == 200, first.text
    again = await client.post(LOGIN, content=body, headers=headers)
    assert again.status_code == 401
    assert again.json()["code"] == "kiosk_replay"


async def test_stale_and_future_requests_are_refused(
    client: httpx.AsyncClient, sandbox: httpx.AsyncClient
) -> None:
    kiosk = await register_kiosk(client)
    resident = await new_resident(sandbox)
    body = httpx.Request("POST", "http://x", json=kiosk_payload(resident)).content
    for offset in (-301, 301):
        headers = {
            **kiosk.headers("POST", LOGIN, body, timestamp=int(time.time()) + offset),
            "Content-Type": "application/json",
        }
        response = await client.post(LOGIN, content=body, headers=headers)
        assert response.status_code == 401
        assert response.json()["code"] == "kiosk_request_stale"
    # Inside the window it is fine.
    headers = {
        **kiosk.headers("POST", LOGIN, body, timestamp=int(time.time()) - 250),
        "Content-Type": "application/json",
    }
    assert (await client.post(LOGIN, content=body, headers=headers)).status_code == 200


async def test_tampered_body_and_foreign_key_are_refused(
    client: httpx.AsyncClient, sandbox: httpx.AsyncClient
) -> None:
    kiosk = await register_kiosk(client)
    resident = await new_resident(sandbox)
    body = httpx.Request("POST", "http://x", json=kiosk_payload(resident)).content
    headers = {**kiosk.headers("POST", LOGIN, body), "Content-Type": "application/json"}
    tampered = body.replace(b"0.97", b"0.99")
    response = await client.post(LOGIN, content=tampered, headers=headers)
    assert response.status_code == 401 and response.json()["code"] == "kiosk_signature_invalid"
    impostor = Kiosk(kiosk.id)  # same id, a key the BFF never saw
    response = await kiosk_post(client, impostor, LOGIN, kiosk_payload(resident))
    assert response.status_code == 401 and response.json()["code"] == "kiosk_signature_invalid"
    unknown = Kiosk()
    response = await kiosk_post(client, unknown, LOGIN, kiosk_payload(resident))
    assert response.status_code == 401 and response.json()["code"] == "kiosk_unknown"


async def test_revoked_kiosk_is_refused_and_its_sessions_end(
    client: httpx.AsyncClient, sandbox: httpx.AsyncClient
) -> None:
    who = await login_resident(client, sandbox, channel="kiosk")
    kiosk: Kiosk = who["kiosk"]
    assert (
        await client.get("/api/v1/me", headers={**bearer(who), **kiosk.headers("GET", "/api/v1/me")})
    ).status_code == 200
    revoked = await client.post(f"/api/v1/staff/kiosks/{kiosk.id}/revoke", headers=staff_headers(client))
    assert revoked.status_code == 200 and revoked.json()["endedSessions"] == 1
    me = await client.get("/api/v1/me", headers={**bearer(who), **kiosk.headers("GET", "/api/v1/me")})
    assert me.status_code == 401
    login = await kiosk_post(client, kiosk, LOGIN, kiosk_payload(who["resident"]))
    assert login.status_code == 403 and login.json()["code"] == "kiosk_revoked"
    listed = (await client.get("/api/v1/staff/kiosks", headers=staff_headers(client))).json()
    assert {"kioskId": kiosk.id, "status": "revoked"}.items() <= next(
        k for k in listed if k["kioskId"] == kiosk.id
    ).items()


async def test_bare_id_number_never_logs_in(client: httpx.AsyncClient, sandbox: httpx.AsyncClient) -> None:
    kiosk = await register_kiosk(client)
    resident = await new_resident(sandbox)
    for payload in (
        {"idNumber": resident["id_card_number"]},
        {"idCard": kiosk_payload(resident)["idCard"]},  # no face match
        {
            "idCard": {"idNumber": resident["id_card_number"], "name": resident["name"]},
            "faceMatch": kiosk_payload(resident)["faceMatch"],
        },
    ):
        response = await kiosk_post(client, kiosk, LOGIN, payload)
        assert response.status_code == 400, (payload.keys(), response.text)
        assert response.json()["code"] == "validation_failed"
    low = await kiosk_post(client, kiosk, LOGIN, kiosk_payload(resident, score=0.5))
    assert low.status_code == 401 and low.json()["code"] == "face_match_failed"
    spoof = await kiosk_post(client, kiosk, LOGIN, kiosk_payload(resident, liveness=False))
    assert spoof.status_code == 401 and spoof.json()["code"] == "face_match_failed"
    bad_digit = resident["id_card_number"][:17] + ("0" if resident["id_card_number"][17] != "0" else "1")
    wrong = await kiosk_post(client, kiosk, LOGIN, kiosk_payload(resident, idNumber=bad_digit))
    assert wrong.status_code == 422
    expired = await kiosk_post(client, kiosk, LOGIN, kiosk_payload(resident, validTo="20200102"))
    assert expired.status_code == 422 and expired.json()["code"] == "id_card_expired"


async def test_kiosk_session_is_short_and_bound_to_its_kiosk(
    client: httpx.AsyncClient, sandbox: httpx.AsyncClient
) -> None:
    who = await login_resident(client, sandbox, channel="kiosk")
    kiosk: Kiosk = who["kiosk"]
    sessions = await client.get(
        "/api/v1/me/sessions", headers={**bearer(who), **kiosk.headers("GET", "/api/v1/me/sessions")}
    )
    assert sessions.status_code == 200
    mine = next(s for s in sessions.json()["items"] if s["current"])
    idle = datetime.fromisoformat(mine["expiresAt"]) - datetime.fromisoformat(mine["createdAt"])
    assert idle.total_seconds() <= 180
    # The token alone is not enough: unsigned, or signed by another kiosk, is refused.
    unsigned = await client.get("/api/v1/me", headers=bearer(who))
    assert unsigned.status_code == 401 and unsigned.json()["code"] == "kiosk_signature_required"
    other = await register_kiosk(client)
    elsewhere = await client.get("/api/v1/me", headers={**bearer(who), **other.headers("GET", "/api/v1/me")})
    assert elsewhere.status_code == 401 and elsewhere.json()["code"] == "kiosk_mismatch"
    # Refresh too: only from its own kiosk, signed.
    stolen = await client.post("/api/v1/auth/refresh", json={"refreshToken": who["refresh_token"]})
    assert stolen.status_code == 401 and stolen.json()["code"] == "kiosk_mismatch"
    own = await kiosk_post(client, kiosk, "/api/v1/auth/refresh", {"refreshToken": who["refresh_token"]})
    assert own.status_code == 200, own.text
    assert own.json()["expiresIn"] <= 180


async def test_kiosk_sessions_expire_absolutely(make_client: Any, sandbox: httpx.AsyncClient) -> None:
    client = await make_client(auth_kiosk_idle_s=1, auth_kiosk_absolute_s=2)
    who = await login_resident(client, sandbox, channel="kiosk")
    time.sleep(2.1)
    late = await kiosk_post(
        client, who["kiosk"], "/api/v1/auth/refresh", {"refreshToken": who["refresh_token"]}
    )
    assert late.status_code == 401 and late.json()["code"] == "session_expired"


async def test_registering_kiosks_is_staff_only(
    client: httpx.AsyncClient, sandbox: httpx.AsyncClient
) -> None:
    resident = await login_resident(client, sandbox, channel="app", level=3)
    kiosk = Kiosk()
    body = {"kioskId": kiosk.id, "name": "x", "hallId": "h", "publicKey": kiosk.public_key_b64}
    refused = await client.post("/api/v1/staff/kiosks", headers=bearer(resident), json=body)
    assert refused.status_code == 403 and refused.json()["code"] == "staff_only"
    assert (
        await client.post(f"/api/v1/staff/kiosks/{kiosk.id}/revoke", headers=bearer(resident))
    ).status_code == 403
    created = await client.post("/api/v1/staff/kiosks", headers=staff_headers(client), json=body)
    assert created.status_code == 201
    duplicate = await client.post("/api/v1/staff/kiosks", headers=staff_headers(client), json=body)
    assert duplicate.status_code == 409
    bad_key = await client.post(
        "/api/v1/staff/kiosks",
        headers=staff_headers(client),
        json={**body, "kioskId": "k-bad-key", "publicKey": "AAAA"},
    )
    assert bad_key.status_code == 422
    missing = await client.post("/api/v1/staff/kiosks/k-nope/revoke", headers=staff_headers(client))
    assert missing.status_code == 404
