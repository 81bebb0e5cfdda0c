"""Push throughput: outbox -> relay -> Redis stream -> consumer -> channel -> sandbox push gateway,
against the floor of a bare XADD / XREADGROUP / XACK loop measured in the same run.

Makes its own database and Redis stream keys, starts the sandbox over real HTTP, runs the relay
and `WORKERS` consumers in this process (what `sanxiang worker` runs). See bench/README.md.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from typing import Any

import httpx
from redis.asyncio import Redis

from adapters.tasks import cancel
from bench.scratch import scratch
from bff.platform.settings import Settings
from bff.wiring import open_root
from push import outbox
from push.consumer import Consumer
from push.stream import STREAM
from push.topics import CaseChanged

EVENTS = int(os.environ.get("BENCH_EVENTS", "3000"))
PEOPLE = 200
WORKERS = int(os.environ.get("BENCH_CONSUMERS", "2"))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def floor(redis: Redis, n: int) -> tuple[float, float, float]:
    """A bare stream loop: XADD in pipelines of 100, XREADGROUP 64 at a time, XACK each batch."""
    key, group = f"sx:{{bench}}:{uuid.uuid4().hex[:6]}", "g"
    await redis.xgroup_create(key, group, id="0", mkstream=True)
    latencies: list[float] = []

    async def produce() -> None:
        for _batch in range(0, n, 100):
            pipe = redis.pipeline(transaction=False)
            for _ in range(100):
                pipe.xadd(key, {"t": repr(time.perf_counter())})
            await pipe.execute()
            await asyncio.sleep(0)

    async def consume() -> None:
        while len(latencies) < n:
            reply: Any = await redis.xreadgroup(group, "c", {key: ">"}, count=64, block=500)
            for _, items in reply or []:
                ids = [eid for eid, _ in items]
                await redis.xack(key, group, *ids)
                now = time.perf_counter()
                latencies.extend(now - float(f[b"t"]) for _, f in items)

    started = time.perf_counter()
    await asyncio.gather(produce(), consume())
    elapsed = time.perf_counter() - started
    await redis.delete(key)
    return n / elapsed, statistics.median(latencies), pct(latencies, 0.99)


async def run(admin_url: str, redis_url: str) -> None:
    async with scratch(admin_url) as (database_url, sandbox_url):
        settings = Settings(
            env="test",
            database_url=database_url,
            redis_url=redis_url,
            pushgw_url=f"{sandbox_url}/pushgw",
            sms_url=f"{sandbox_url}/sms",
            wechat_url=f"{sandbox_url}/wechat",
            push_relay_poll_s=0.2,
            db_pool_max=20,
            upstream_max_in_flight=128,
            log_level="WARNING",
        )
        async with open_root(settings) as root, httpx.AsyncClient(base_url=sandbox_url, timeout=30) as sbx:
            await root.redis.delete(STREAM)
            floor_rate, floor_p50, floor_p99 = await floor(root.redis, EVENTS)
            people = [str(uuid.uuid4()) for _ in range(PEOPLE)]
            devices = (
                await sbx.post(
                    "/_control/pushgw/devices",
                    json={"devices": [{"platform": "android", "personRef": p} for p in people]},
                )
            ).json()["devices"]
            await root.pool.executemany(
                "INSERT INTO bff.push_devices (token, person_id, platform) VALUES ($1, $2, 'android')",
                [(d["token"], p) for d, p in zip(devices, people, strict=True)],
            )
            # The provider's own ceiling: the sandbox gateway driven by our adapter alone, 32 at a time.
            client = root.notifier.channels["app"].client  # type: ignore[attr-defined]
            slots = asyncio.Semaphore(32)

            async def one(i: int) -> None:
                async with slots:
                    await client.send(
                        request_id=str(uuid.uuid4()),
                        token=devices[i % PEOPLE]["token"],
                        platform="android",
                        title="t",
                        body="b",
                        data={},
                    )

            t0 = time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(1000)))
            gateway_rate = 1000 / (time.perf_counter() - t0)
            consumers = [Consumer(root.redis, root.notifier, concurrency=32) for _ in range(WORKERS)]
            tasks = [
                asyncio.create_task(root.relay.run()),
                *(asyncio.create_task(c.run()) for c in consumers),
            ]
            await asyncio.sleep(0.5)
            started = time.perf_counter()
            for start in range(0, EVENTS, 100):
                async with root.pool.acquire() as conn, conn.transaction():
                    for i in range(start, start + 100):
                        await outbox.enqueue(
                            conn,
                            "case.changed",
                            people[i % PEOPLE],
                            f"bench:{uuid.uuid4()}",
                            CaseChanged(
                                case_id=str(uuid.uuid4()),
                                project_no=f"SXBENCH{i:06d}",
                                item_name="城乡居民基本养老保险参保登记",
                                event="step",
                                status="in_progress",
                                result=None,
                                occurred_at="2026-12-01T10:00:00+08:00",
                            ),
                        )
            while True:
                sent = await root.pool.fetchval(
                    "SELECT count(*) FROM bff.notification_attempts WHERE channel = 'app' AND sent_at IS NOT NULL"
                )
                if sent >= EVENTS:
                    break
                await asyncio.sleep(0.05)
            elapsed = time.perf_counter() - started
            lags = [
                float(r["lag"])
                for r in await root.pool.fetch(
                    """
                    SELECT extract(epoch FROM a.sent_at - o.created_at) AS lag
                    FROM bff.notification_attempts a JOIN bff.notifications n ON n.id = a.notification_id
                    JOIN bff.outbox o ON o.id = n.outbox_id WHERE a.channel = 'app'
                    """
                )
            ]
            await cancel(tasks)
        rate = EVENTS / elapsed
        print(f"events: {EVENTS}, consumers: {WORKERS} (in one process), residents: {PEOPLE}")
        print("| measure | pipeline | bare stream floor | ratio |")
        print("| --- | --- | --- | --- |")
        print(f"| notifications/s | {rate:,.0f} | {floor_rate:,.0f} entries/s | {rate / floor_rate:.3f}x |")
        print(
            f"| notifications/s vs the provider | {rate:,.0f} | sandbox gateway alone "
            f"{gateway_rate:,.0f} sends/s | {rate / gateway_rate:.3f}x |"
        )
        print(
            f"| event -> send p50 | {statistics.median(lags) * 1000:,.0f} ms | {floor_p50 * 1000:.1f} ms | – |"
        )
        print(f"| event -> send p99 | {pct(lags, 0.99) * 1000:,.0f} ms | {floor_p99 * 1000:.1f} ms | – |")


if __name__ == "__main__":
    asyncio.run(
        run(
            os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
            os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/13"),
        )
    )
