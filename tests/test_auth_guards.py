"""Guards: minimum real-name level (403 step_up_required saying how), channels, staff-only, and an
audit record for each refusal. A small app mounts the real guards on probe routes and shares the
main app's identity runtime, so tokens, Redis and PostgreSQL are the real ones."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
from litestar import Litestar, get
from litestar.di import NamedDependency, Provide

from auth.guards import (
    channels,
    min_level,
    provide_principal,
    require_principal_if_declared,
    residents_only,
    staff_only,
)
from auth.principal import Principal
from bff.platform.problems import EXCEPTION_HANDLERS
from tests.auth_helpers import bearer, login_resident, staff_headers


@get("/l3", guards=[min_level(3)])
async def needs_l3(principal: NamedDependency[Principal]) -> dict[str, Any]:
    return {"level": principal.level}


@get("/app-only", guards=[channels("app")])
async def app_only() -> dict[str, str]:
    return {"ok": "yes"}


@get("/staff", guards=[staff_only])
async def staff() -> dict[str, str]:
    return {"ok": "yes"}


@get("/residents", guards=[residents_only])
async def residents() -> dict[str, str]:
    return {"ok": "yes"}


def probe(main_app: Any) -> httpx.AsyncClient:
    app = Litestar(
        route_handlers=[needs_l3, app_only, staff, residents],
        guards=[require_principal_if_declared],
        dependencies={"principal": Provide(provide_principal)},
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=None,
    )
    app.state.auth = main_app.state.auth
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://probe")


async def test_min_level_refuses_with_step_up_instructions(
    client: httpx.AsyncClient, sandbox: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    who = await login_resident(client, sandbox, channel="miniprogram", level=2)
    async with probe(client.app) as p:  # type: ignore[attr-defined]
        refused = await p.get("/l3", headers=bearer(who))
        assert refused.status_code == 403
        body = refused.json()
        assert body["code"] == "step_up_required"
        assert body["requiredLevel"] == 3 and body["currentLevel"] == 2
        assert body["stepUp"]["start"] == "/api/v1/auth/wechat/face/start"
        row = await db.fetchrow(
            "SELECT * FROM bff.audit_log WHERE subject = $1 AND action = 'access_refused' ORDER BY seq DESC LIMIT 1",
            who["person_id"],
        )
        assert row is not None and row["result"] == "step_up_required" and row["channel"] == "miniprogram"
        assert row["request_id"] == refused.headers.get("x-request-id", row["request_id"])
        l3 = await login_resident(client, sandbox, channel="miniprogram", level=3)
        ok = await p.get("/l3", headers=bearer(l3))
        assert ok.status_code == 200 and ok.json() == {"level": 3}


async def test_channel_and_staff_guards(client: httpx.AsyncClient, sandbox: httpx.AsyncClient) -> None:
    mini = await login_resident(client, sandbox, channel="miniprogram")
    app_user = await login_resident(client, sandbox, channel="app")
    async with probe(client.app) as p:  # type: ignore[attr-defined]
        assert (await p.get("/app-only", headers=bearer(app_user))).status_code == 200
        refused = await p.get("/app-only", headers=bearer(mini))
        assert refused.status_code == 403 and refused.json()["code"] == "channel_not_allowed"
        assert (await p.get("/staff", headers=bearer(app_user))).json()["code"] == "staff_only"
        assert (await p.get("/staff", headers=staff_headers(client))).status_code == 200
        # A staff token with the channel but without a staff role is not staff.
        assert (await p.get("/staff", headers=staff_headers(client, roles=("viewer",)))).status_code == 403
        assert (await p.get("/residents", headers=staff_headers(client))).status_code == 403
        assert (await p.get("/residents", headers=bearer(app_user))).status_code == 200
        assert (await p.get("/l3")).status_code == 401
    # On the real app: face verification is a mini-program affair; /me is for residents.
    face = await client.post("/api/v1/auth/wechat/face/start", headers=bearer(app_user))
    assert face.status_code == 403 and face.json()["code"] == "channel_not_allowed"
    assert (await client.get("/api/v1/me", headers=staff_headers(client))).status_code == 403


async def test_failed_face_verification_keeps_the_level(
    client: httpx.AsyncClient, sandbox: httpx.AsyncClient
) -> None:
    who = await login_resident(client, sandbox, channel="miniprogram", level=3)
    assert who["level"] == 3
    fresh = await login_resident(client, sandbox, channel="miniprogram", level=2)
    started = await client.post("/api/v1/auth/wechat/face/start", headers=bearer(fresh))
    verify_id = started.json()["verifyId"]
    await sandbox.post(f"/_control/wechat/face/{verify_id}", json={"verifyRet": 10003})
    failed = await client.post(
        "/api/v1/auth/wechat/face/finish", headers=bearer(fresh), json={"verifyId": verify_id}
    )
    assert failed.status_code == 422 and failed.json()["code"] == "face_verification_failed"
    me = (await client.get("/api/v1/me", headers=bearer(fresh))).json()
    assert me["session"]["level"] == 2
    # Someone else's verify id cannot be used either.
    other = await client.post(
        "/api/v1/auth/wechat/face/finish", headers=bearer(who), json={"verifyId": verify_id}
    )
    assert other.status_code == 404
