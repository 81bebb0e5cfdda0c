"""Each login path end to end over real HTTP against the sandbox: app, mini-program (binding and
face step-up) and kiosk; plus the failure paths the upstreams really produce."""

from __future__ import annotations

import httpx

from tests.auth_helpers import (
    bearer,
    face_step_up,
    login_resident,
    new_resident,
    phone_code,
    wechat_code,
)


async def test_app_login_with_pkce(client: httpx.AsyncClient, sandbox: httpx.AsyncClient) -> None:
    who = await login_resident(client, sandbox, channel="app", level=2)
    assert who["channel"] == "app" and who["level"] == 2
    me = await client.get("/api/v1/me", headers=bearer(who))
    assert me.status_code == 200, me.text
    body = me.json()
    assert body["personId"] == who["person_id"]
    resident = who["resident"]
    assert body["idNumber"] == resident["id_card_number"][:3] + "*" * 11 + resident["id_card_number"][-4:]
    assert body["phone"] == resident["phone_number"][:3] + "****" + resident["phone_number"][-4:]


async def test_miniprogram_binding_then_direct_login(
    client: httpx.AsyncClient, sandbox: httpx.AsyncClient
) -> None:
    who = await login_resident(client, sandbox, channel="miniprogram", level=2)
    assert who["channel"] == "miniprogram" and who["level"] == 2
    # The same WeChat user logs in again: now bound, tokens at once.
    again = await wechat_code(sandbox, who["openid"])
    response = await client.post("/api/v1/auth/wechat/login", json={"code": again["code"]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["bindingRequired"] is False
    assert body["personId"] == who["person_id"]
    assert "sessionKey" not in response.text and "session_key" not in response.text


async def test_miniprogram_face_step_up_reaches_l3(
    client: httpx.AsyncClient, sandbox: httpx.AsyncClient
) -> None:
    resident = await new_resident(sandbox, level=3)
    who = await login_resident(client, sandbox, channel="miniprogram", resident=resident)
    # Even an L3 resident starts a WeChat session at L2: face verification in this session lifts it.
    assert who["level"] == 2
    stepped = await face_step_up(client, sandbox, who)
    assert stepped["level"] == 3
    me = (await client.get("/api/v1/me", headers=bearer(stepped))).json()
    assert me["session"]["level"] == 3
    refreshed = await client.post("/api/v1/auth/refresh", json={"refreshToken": who["refresh_token"]})
    assert refreshed.status_code == 200 and refreshed.json()["level"] == 3


async def test_kiosk_login(client: httpx.AsyncClient, sandbox: httpx.AsyncClient) -> None:
    who = await login_resident(client, sandbox, channel="kiosk")
    assert who["channel"] == "kiosk" and who["level"] == 3
    kiosk = who["kiosk"]
    me = await client.get("/api/v1/me", headers={**bearer(who), **kiosk.headers("GET", "/api/v1/me")})
    assert me.status_code == 200, me.text


async def test_reused_wechat_code_is_401(client: httpx.AsyncClient, sandbox: httpx.AsyncClient) -> None:
    minted = await wechat_code(sandbox)
    assert (await client.post("/api/v1/auth/wechat/login", json={"code": minted["code"]})).status_code == 200
    again = await client.post("/api/v1/auth/wechat/login", json={"code": minted["code"]})
    assert again.status_code == 401
    assert again.json()["code"] == "wechat_code_invalid"


async def test_high_risk_wechat_user_is_403(client: httpx.AsyncClient, sandbox: httpx.AsyncClient) -> None:
    minted = await wechat_code(sandbox)
    await sandbox.put(f"/_control/wechat/users/{minted['openid']}", json={"risky": True})
    response = await client.post("/api/v1/auth/wechat/login", json={"code": minted["code"]})
    assert response.status_code == 403
    assert response.json()["code"] == "wechat_high_risk"


async def test_phone_unknown_to_idp_is_404(client: httpx.AsyncClient, sandbox: httpx.AsyncClient) -> None:
    minted = await wechat_code(sandbox)
    first = (await client.post("/api/v1/auth/wechat/login", json={"code": minted["code"]})).json()
    code = await phone_code(sandbox, "13900000000")
    response = await client.post(
        "/api/v1/auth/wechat/phone", json={"code": code, "bindingToken": first["bindingToken"]}
    )
    assert response.status_code == 404
    assert response.json()["code"] == "identity_not_found"
