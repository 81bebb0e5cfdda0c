"""The deny-list's per-process memory (auth/denylist.py `DenyCache`) across replicas: two app
instances share Redis and PostgreSQL as two API processes do. A token one of them remembers as
not revoked is refused by it on the very next request after a logout on the other; a replica that
stops hearing Redis stops trusting its memory before the revoker returns."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from adapters.tasks import cancel
from auth import denylist
from tests.auth_helpers import bearer, login_resident
from tests.conftest import ON_CLUSTER, AppFactory

# On a cluster there is no such memory (the asyncio cluster client has no pub/sub): every check is
# the MGET, which tests/test_redis_cluster.py and the cluster pass of the auth suites cover.
pytestmark = pytest.mark.skipif(ON_CLUSTER, reason="no per-process deny-list memory on a Redis Cluster")


def deny_cache(client: httpx.AsyncClient) -> denylist.DenyCache:
    cache = client.app.state.auth.deny  # type: ignore[attr-defined]
    assert isinstance(cache, denylist.DenyCache)
    return cache


async def until_trusted(*clients: httpx.AsyncClient) -> None:
    for _ in range(100):
        if all(deny_cache(c).trusted() for c in clients):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the listeners did not subscribe")


async def test_a_logout_on_one_replica_is_refused_on_the_next_request_on_the_other(
    make_client: AppFactory, sandbox: httpx.AsyncClient
) -> None:
    one, two = await make_client(), await make_client()
    await until_trusted(one, two)
    for _ in range(5):
        who = await login_resident(one, sandbox, channel="app")
        for replica in (one, two):
            assert (await replica.get("/api/v1/me", headers=bearer(who))).status_code == 200
        # Both now answer from memory, without asking Redis.
        assert who["session_id"] in deny_cache(two).clean
        out = await one.post("/api/v1/auth/logout", headers=bearer(who), json={})
        assert out.status_code == 200
        for replica in (two, one):
            after = await replica.get("/api/v1/me", headers=bearer(who))
            assert after.status_code == 401 and after.json()["code"] == "token_revoked"


async def test_concurrent_reads_on_the_other_replica_never_pass_after_the_logout_returned(
    make_client: AppFactory, sandbox: httpx.AsyncClient
) -> None:
    one, two = await make_client(), await make_client()
    await until_trusted(one, two)
    who = await login_resident(one, sandbox, channel="app")
    logged_out_at: list[float] = []
    passed_after: list[float] = []

    async def reader() -> None:
        while not logged_out_at or time.monotonic() - logged_out_at[0] < 0.5:
            started = time.monotonic()
            status = (await two.get("/api/v1/me", headers=bearer(who))).status_code
            if status == 200 and logged_out_at and started > logged_out_at[0]:
                passed_after.append(started)

    async def logout() -> None:
        await asyncio.sleep(0.3)
        assert (await one.post("/api/v1/auth/logout", headers=bearer(who), json={})).status_code == 200
        logged_out_at.append(time.monotonic())

    await asyncio.gather(logout(), *(reader() for _ in range(8)))
    assert passed_after == []


async def test_a_replica_that_stops_hearing_redis_is_not_trusted_once_the_revoker_returns(
    make_client: AppFactory, sandbox: httpx.AsyncClient
) -> None:
    one, two = await make_client(), await make_client()
    await until_trusted(one, two)
    who = await login_resident(one, sandbox, channel="app")
    assert (await two.get("/api/v1/me", headers=bearer(who))).status_code == 200
    cache = deny_cache(two)
    # A partitioned replica: its listener hears nothing more, yet it still holds its memory and
    # its registration (what a silently dead connection looks like from inside the process).
    remembered: dict[str, Any] = {k: set(v) for k, v in cache.clean.items()}
    fresh = cache.fresh_as_of
    assert cache.task is not None
    assert not await cancel([cache.task])
    cache.task = None
    cache.clean.update(remembered)
    cache.fresh_as_of = fresh
    started = time.monotonic()
    assert (await one.post("/api/v1/auth/logout", headers=bearer(who), json={})).status_code == 200
    # The revoker waited for the missing acknowledgement, until the silent replica's trust ran out.
    assert time.monotonic() - started >= denylist.STALE_AFTER_S - 0.3
    assert not cache.trusted()
    after = await two.get("/api/v1/me", headers=bearer(who))
    assert after.status_code == 401 and after.json()["code"] == "token_revoked"
