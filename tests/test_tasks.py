"""Stopping background tasks: a swallowed cancellation must not leave a loop running.

A worker or a test that cancelled a stream consumer once and moved on left it reading the shared
stream with its root's pool closed (`InterfaceError` on every entry it then took from the others).
"""

from __future__ import annotations

import asyncio
import uuid

from adapters.tasks import cancel
from tests.conftest import Services, redis_client


async def _deaf(swallow: int, ended: list[str]) -> None:
    """A loop that, like a redis-py read, swallows its first `swallow` cancellations."""
    while True:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            if swallow == 0:
                ended.append("cancelled")
                raise
            swallow -= 1


async def test_a_task_that_swallows_its_cancellations_is_cancelled_again_until_it_ends() -> None:
    ended: list[str] = []
    tasks = [asyncio.create_task(_deaf(n, ended)) for n in (0, 1, 3)]
    await asyncio.sleep(0)
    assert await cancel(tasks, within=2.0) == set()
    assert ended == ["cancelled"] * 3 and all(t.cancelled() for t in tasks)


async def test_a_task_that_never_ends_is_returned_after_the_bound_and_the_stop_goes_on() -> None:
    ended: list[str] = []
    release = asyncio.Event()

    async def stubborn_loop() -> None:
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                if release.is_set():
                    raise

    stubborn = asyncio.create_task(stubborn_loop())
    polite = asyncio.create_task(_deaf(0, ended))
    await asyncio.sleep(0)
    started = asyncio.get_running_loop().time()
    assert await cancel([stubborn, polite], within=0.5) == {stubborn}
    assert 0.5 <= asyncio.get_running_loop().time() - started < 2.0
    assert polite.cancelled() and ended == ["cancelled"] and not stubborn.done()
    release.set()
    assert await cancel([stubborn], within=1.0) == set()


async def test_a_stop_cancelled_while_it_waits_still_ends_its_children_first() -> None:
    ended: list[str] = []
    child = asyncio.create_task(_deaf(2, ended))

    async def parent() -> None:
        try:
            await asyncio.sleep(10)
        finally:
            await cancel([child], within=2.0)

    task = asyncio.create_task(parent())
    await asyncio.sleep(0)
    assert await cancel([task], within=2.0) == set()
    assert child.cancelled() and ended == ["cancelled"]


async def test_stream_readers_against_the_real_redis_always_stop(services: Services) -> None:
    """The consumer's shape (a blocking group read, a claim loop beside it on the same client),
    stopped 100 times at varied moments: every stop ends both loops."""
    redis = await redis_client(services)
    stream, group = f"test-tasks-{uuid.uuid4().hex[:8]}", "g"
    await redis.xgroup_create(stream, group, id="0", mkstream=True)

    async def claims() -> None:
        while True:
            await asyncio.sleep(0.01)
            await redis.xautoclaim(stream, group, "c2", min_idle_time=1000, start_id="0-0", count=10)

    async def reader() -> None:
        beside = asyncio.create_task(claims())
        try:
            while True:
                await redis.xreadgroup(group, "c1", {stream: ">"}, count=10, block=50)
        finally:
            await cancel([beside], within=2.0)
            assert beside.done()

    try:
        for i in range(100):
            task = asyncio.create_task(reader())
            await asyncio.sleep(0.005 + (i % 17) * 0.003)
            assert await cancel([task], within=3.0) == set(), f"stop {i} left the reader running"
            # Cancelled, not failed: its claim loop had ended too.
            assert task.cancelled(), task.exception()
    finally:
        await redis.delete(stream)
        await redis.aclose()
