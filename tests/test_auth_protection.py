"""Brute-force protection shared by every replica: two app instances on one Redis see one limit,
also under concurrent load; lockout after N failures, with Retry-After; the Lua limiter itself."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import asyncpg
import httpx
from redis.asyncio import Redis

from auth import ratelimit
from tests.auth_helpers import kiosk_payload, kiosk_post, new_resident, register_kiosk, wechat_code


def from_address(app_client: httpx.AsyncClient, ip: str) -> httpx.AsyncClient:
    """Another client on the same app instance, arriving from `ip` (per-IP limits need their own)."""
    app = app_client.app  # type: ignore[attr-defined]
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=(ip, 40000)), base_url="http://bff.test"
    )


def fresh_ip() -> str:
    return f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250) + 1}"


async def test_ip_limit_is_shared_by_two_instances(make_client: Any) -> None:
    one = await make_client(auth_rate_per_ip=6)
    two = await make_client(auth_rate_per_ip=6)
    assert one.app is not two.app  # type: ignore[attr-defined]
    ip = fresh_ip()
    async with from_address(one, ip) as a, from_address(two, ip) as b:
        codes = []
        for i in range(6):
            response = await (a if i % 2 else b).post(
                "/api/v1/auth/refresh", json={"refreshToken": "sxr_nope"}
            )
            codes.append(response.status_code)
        assert codes == [401] * 6
        for c in (a, b):
            limited = await c.post("/api/v1/auth/refresh", json={"refreshToken": "sxr_nope"})
            assert limited.status_code == 429
            assert limited.json()["code"] == "rate_limited"
            assert 1 <= int(limited.headers["retry-after"]) <= 60
        # Another address is unaffected.
        async with from_address(one, fresh_ip()) as other:
            assert (
                await other.post("/api/v1/auth/refresh", json={"refreshToken": "sxr_nope"})
            ).status_code == 401


async def test_ip_limit_holds_under_concurrency_across_instances(make_client: Any) -> None:
    one = await make_client(auth_rate_per_ip=5)
    two = await make_client(auth_rate_per_ip=5)
    ip = fresh_ip()
    async with from_address(one, ip) as a, from_address(two, ip) as b:
        responses = await asyncio.gather(
            *[
                (a if i % 2 else b).post("/api/v1/auth/refresh", json={"refreshToken": "sxr_x"})
                for i in range(24)
            ]
        )
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(401) == 5 and statuses.count(429) == 19, statuses


async def test_openid_limit_across_instances(make_client: Any, sandbox: httpx.AsyncClient) -> None:
    one = await make_client(auth_rate_per_subject=3)
    two = await make_client(auth_rate_per_subject=3)
    first = await wechat_code(sandbox)
    openid = first["openid"]
    statuses = []
    for i in range(4):
        code = first["code"] if i == 0 else (await wechat_code(sandbox, openid))["code"]
        response = await (one if i % 2 else two).post("/api/v1/auth/wechat/login", json={"code": code})
        statuses.append(response.status_code)
    assert statuses == [200, 200, 200, 429], statuses


async def test_lockout_after_failures_with_audit(
    make_client: Any, sandbox: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    one = await make_client(auth_lockout_failures=3, auth_lockout_s=120)
    two = await make_client(auth_lockout_failures=3, auth_lockout_s=120)
    kiosk = await register_kiosk(one)
    resident = await new_resident(sandbox)
    for i in range(3):
        bad = await kiosk_post(
            one if i % 2 else two, kiosk, "/api/v1/auth/kiosk/login", kiosk_payload(resident, score=0.1)
        )
        assert bad.status_code == 401, bad.text
    # Now even a good face match is refused, on either instance, until the lock lapses.
    for c in (one, two):
        locked = await kiosk_post(c, kiosk, "/api/v1/auth/kiosk/login", kiosk_payload(resident))
        assert locked.status_code == 429, locked.text
        assert locked.json()["code"] == "locked_out"
        assert 100 <= int(locked.headers["retry-after"]) <= 120
    rows = await db.fetch("SELECT * FROM bff.audit_log WHERE action = 'lockout' ORDER BY seq DESC LIMIT 5")
    assert rows and rows[0]["result"] == "locked_120s"


async def test_sliding_window_script(redis: Redis) -> None:
    key = f"test:{secrets.token_hex(6)}"
    results = await asyncio.gather(*[ratelimit.hit(redis, key, 4, 2) for _ in range(10)])
    assert sum(1 for allowed, _ in results if allowed) == 4
    assert all(1 <= retry <= 2 for allowed, retry in results if not allowed)
    await asyncio.sleep(2.1)
    assert (await ratelimit.hit(redis, key, 4, 2))[0] is True
