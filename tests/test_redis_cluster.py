"""Every Redis use works on a Redis Cluster of 3 masters: logins with their rate-limit and lockout
scripts, the deny-list MGET after logout, the guide cache, the catalogue's published version, the
shared WeChat access token, and push's stream, consumer group and live channel; limits hold across two
app instances on the cluster."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from redis.asyncio.cluster import RedisCluster

from adapters.tasks import cancel
from adapters.wechat.token import AccessTokenCache
from auth import ratelimit
from bff.platform.redis import create_redis, learn_topology
from tests.auth_helpers import login_resident
from tests.conftest import make_settings
from tests.redis_cluster_helper import redis_cluster
from tests.test_journey_helpers import advance, apply, bookable_item, deliver, upstream_urls
from tests.test_push import overrides as push_overrides
from tests.test_push import pipeline, read_sse, served


@pytest.fixture(scope="module")
def cluster_url() -> Iterator[str]:
    with redis_cluster() as url:
        yield url


def on_cluster(cluster_url: str, sandbox_url: str) -> dict[str, Any]:
    # Generous socket timeouts: on a loaded 2-core machine a slow connect must not look like a fault.
    return {
        **upstream_urls(sandbox_url),
        "redis_url": cluster_url,
        "redis_cluster": True,
        "redis_connect_timeout_s": 10.0,
        "redis_socket_timeout_s": 10.0,
    }


async def test_logins_logout_and_the_deny_list_work_on_the_cluster(
    make_client, sandbox, sandbox_url, cluster_url
) -> None:
    client = await make_client(**on_cluster(cluster_url, sandbox_url))
    assert isinstance(client.app.state.root.redis, RedisCluster)  # type: ignore[attr-defined]
    who = await login_resident(client, sandbox, channel="app")
    bearer = {"Authorization": f"Bearer {who['access_token']}"}
    assert (await client.get("/api/v1/me", headers=bearer)).status_code == 200
    out = await client.post("/api/v1/auth/logout", json={"everywhere": True}, headers=bearer)
    assert out.status_code == 200, out.text
    refused = await client.get("/api/v1/me", headers=bearer)
    assert refused.status_code == 401 and refused.json()["code"] == "token_revoked"
    # A guide the mirror does not hold goes through the Redis guide cache on the cluster.
    missing = await client.get("/api/v1/items/ZZ-NOT-AN-ITEM")
    assert missing.status_code in (404, 503)


async def test_limits_and_lockouts_hold_across_two_instances_on_the_cluster(
    services, sandbox_url, cluster_url
) -> None:
    settings = make_settings(services, sandbox_url, **on_cluster(cluster_url, sandbox_url))
    first, second = create_redis(settings), create_redis(settings)
    try:
        # The two instances take turns (one shared window in the cluster decides for both).
        results = [await ratelimit.hit(r, "cluster-test-ip", 5, 60) for r in [first, second] * 6]
        assert [allowed for allowed, _ in results] == [True] * 5 + [False] * 7
        locked = [
            await ratelimit.record_failure(r, "cluster-test-person", threshold=3, window_s=60, lock_s=30)
            for r in (first, second, first)
        ]
        assert locked == [False, False, True]
        assert await ratelimit.locked_for(second, "cluster-test-person") > 0
        # The keys really are spread over the cluster's nodes.
        nodes = {first.get_node_from_key(f"sx:rl:{{k{i}}}").name for i in range(64)}  # type: ignore[attr-defined]
        assert len(nodes) == 3
    finally:
        await first.aclose()
        await second.aclose()


async def test_the_wechat_token_is_fetched_once_for_everyone_on_the_cluster(
    services, sandbox_url, cluster_url
) -> None:
    settings = make_settings(services, sandbox_url, **on_cluster(cluster_url, sandbox_url))
    redis = create_redis(settings)
    fetched = 0

    async def fetch(force: bool) -> tuple[str, int]:
        nonlocal fetched
        fetched += 1
        await asyncio.sleep(0.2)
        return "token-1", 7200

    try:
        await learn_topology(redis)  # as the composition root does before it serves
        caches = [AccessTokenCache(redis, "wx-cluster-test", fetch) for _ in range(10)]
        tokens = await asyncio.gather(*(cache.get() for cache in caches))
        assert set(tokens) == {"token-1"} and fetched == 1
    finally:
        await redis.aclose()


async def test_the_live_stream_hears_a_case_event_on_the_cluster(
    make_client, sandbox, sandbox_url, services, db, cluster_url
) -> None:
    """Streams, consumer groups and the live channel's pub/sub on the cluster: a 补正 request reaches
    an SSE stream held on another replica."""
    settings = {**push_overrides(sandbox_url), **on_cluster(cluster_url, sandbox_url)}
    home = await make_client(**settings)
    who = await login_resident(home, sandbox, level=3)
    case = await apply(home, who, await bookable_item(db))
    project_no = case["case"]["projectNo"]
    assert (await deliver(home, await advance(sandbox, project_no, "accept"))).status_code == 200
    seen: list[dict[str, Any]] = []
    ready = asyncio.Event()
    async with served(settings, services, sandbox_url) as other, pipeline(home):
        reader = asyncio.create_task(read_sse(other, who, seen, ready))
        try:
            await asyncio.wait_for(ready.wait(), 10)
            request = await advance(
                sandbox, project_no, "request_supplement", items=["申请表签字页"], opinion="缺签字"
            )
            assert (await deliver(home, request)).status_code == 200
            for _ in range(200):
                if any(m["category"] == "action_needed" for m in seen):
                    break
                await asyncio.sleep(0.05)
            assert [m["category"] for m in seen].count("action_needed") == 1, seen
        finally:
            assert not await cancel([reader])
