"""Identity benchmarks: the per-request cost of access-token verification, and login throughput.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/0 \
        .venv/bin/python -m bench.bench_auth

Makes its own database, starts the sandbox over real HTTP, runs the BFF in process. Every figure
is reported with a baseline measured in the same run, so ratios survive a different machine.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from typing import Any

import aiohttp
import httpx
from litestar import Litestar, get
from litestar.di import NamedDependency, Provide

from auth.guards import provide_principal, require_principal_if_declared
from auth.principal import Principal
from bench.scratch import scratch
from bff.app import create_app
from bff.platform.problems import EXCEPTION_HANDLERS
from bff.platform.settings import Settings
from tests.auth_helpers import login_resident, new_resident, wechat_code


def _per_op_us(fn: Any, n: int) -> float:
    samples = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(n):
            fn()
        samples.append((time.perf_counter() - started) / n * 1e6)
    return statistics.median(samples)


async def _per_op_async_us(fn: Any, n: int) -> float:
    samples = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(n):
            await fn()
        samples.append((time.perf_counter() - started) / n * 1e6)
    return statistics.median(samples)


@get("/open")
async def open_route() -> dict[str, str]:
    return {"ok": "yes"}


@get("/guarded")
async def guarded_route(principal: NamedDependency[Principal]) -> dict[str, str]:
    return {"ok": principal.person_id}


async def run(admin_url: str, redis_url: str) -> None:
    async with scratch(admin_url) as (database_url, sandbox_url):
        settings = Settings(
            env="test",
            database_url=database_url,
            redis_url=redis_url,
            catalogue_url=f"{sandbox_url}/catalogue",
            wechat_url=f"{sandbox_url}/wechat",
            idp_url=f"{sandbox_url}/idp",
            auth_rate_per_ip=10**9,
            auth_rate_per_subject=10**9,
            log_level="WARNING",
        )
        app = create_app(settings)
        async with app.lifespan():
            client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bff")
            sbx = httpx.AsyncClient(base_url=sandbox_url, timeout=30)
            rt = app.state.auth
            who = await login_resident(client, sbx, channel="app")
            token = who["access_token"]

            print("## Access-token verification (per request)")
            verify_us = _per_op_us(lambda: rt.tokens._verify(token), 2000)
            cached_us = _per_op_us(lambda: rt.tokens.verify(token), 2000)
            from auth import denylist

            claims = rt.tokens.verify(token)
            ping_us = await _per_op_async_us(rt.redis.ping, 2000)
            deny_us = await _per_op_async_us(
                lambda: denylist.is_denied(rt.redis, claims.jti, claims.sid), 2000
            )
            print(f"ES256 signature + claims, first use:    {verify_us:8.1f} µs")
            print(f"same token again (per-process cache):   {cached_us:8.1f} µs")
            print(
                f"deny-list check (one Redis MGET):       {deny_us:8.1f} µs   baseline Redis PING {ping_us:.1f} µs -> {deny_us / ping_us:.2f}x"
            )

            probe = Litestar(
                route_handlers=[open_route, guarded_route],
                guards=[require_principal_if_declared],
                dependencies={"principal": Provide(provide_principal)},
                exception_handlers=EXCEPTION_HANDLERS,
                openapi_config=None,
            )
            probe.state.auth = rt
            p = httpx.AsyncClient(transport=httpx.ASGITransport(app=probe), base_url="http://probe")
            headers = {"Authorization": f"Bearer {token}"}
            assert (await p.get("/guarded", headers=headers)).status_code == 200
            open_us = await _per_op_async_us(lambda: p.get("/open"), 500)
            guarded_us = await _per_op_async_us(lambda: p.get("/guarded", headers=headers), 500)
            print(f"trivial route, no auth (baseline):      {open_us:8.1f} µs/request")
            print(
                f"trivial route, authenticated:           {guarded_us:8.1f} µs/request   -> +{guarded_us - open_us:.1f} µs, {guarded_us / open_us:.2f}x"
            )

            print(
                "\n## Login throughput (mini-program, bound user: code -> jscode2session -> session -> tokens)"
            )
            resident = await new_resident(sbx)
            first = await login_resident(client, sbx, channel="miniprogram", resident=resident)
            openid = first["openid"]
            await sbx.put("/_control/wechat/config", json={"loginPerMinute": 10**6})
            total, concurrency = 300, 16
            codes = [(await wechat_code(sbx, openid))["code"] for _ in range(total * 2)]
            # The baseline uses aiohttp, the same client the BFF's adapters use (httpx is far slower).
            raw = aiohttp.ClientSession(base_url=sandbox_url)

            async def drive(work: Any, items: list[str]) -> float:
                queue = list(items)

                async def worker() -> None:
                    while queue:
                        await work(queue.pop())

                started = time.perf_counter()
                await asyncio.gather(*[worker() for _ in range(concurrency)])
                return len(items) / (time.perf_counter() - started)

            async def upstream_only(code: str) -> None:
                async with raw.get(
                    "/wechat/sns/jscode2session",
                    params={
                        "appid": settings.wechat_appid,
                        "secret": settings.wechat_secret,
                        "js_code": code,
                        "grant_type": "authorization_code",
                    },
                ) as r:
                    assert "openid" in await r.json()

            async def bff_login(code: str) -> None:
                r = await client.post("/api/v1/auth/wechat/login", json={"code": code})
                assert r.status_code == 200 and "accessToken" in r.json(), r.text

            base_rate = await drive(upstream_only, codes[:total])
            login_rate = await drive(bff_login, codes[total:])
            print(f"sandbox jscode2session alone (baseline): {base_rate:7.1f} /s")
            print(
                f"BFF mini-program login end to end:       {login_rate:7.1f} /s   -> {login_rate / base_rate:.2f}x of the upstream alone"
            )
            print(f"(concurrency {concurrency}, {total} logins each, {os.cpu_count()} cores shared)")
            for c in (client, sbx, p):
                await c.aclose()
            await raw.close()


def main() -> None:
    import logging

    logging.disable(logging.INFO)  # the access log line per request would drown the figures
    admin_url = os.environ.get("DATABASE_URL")
    redis_url = os.environ.get("REDIS_URL")
    if not admin_url or not redis_url:
        sys.exit("set DATABASE_URL (an admin URL: a database is created) and REDIS_URL")
    asyncio.run(run(admin_url, redis_url))


if __name__ == "__main__":
    main()
