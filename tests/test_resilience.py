"""The resilience layer: breaker, retry budget, deadlines, bulkhead — against the sandbox over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import time

import httpx
import pytest

from adapters import context
from adapters.breaker import CircuitBreaker, State
from adapters.errors import BadUpstreamAnswer, UpstreamUnavailable
from adapters.http import Policy, Upstream
from adapters.retry_budget import RetryBudget


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_breaker(clock: FakeClock) -> CircuitBreaker:
    return CircuitBreaker(
        "unit",
        failure_rate=0.5,
        minimum_calls=10,
        window_seconds=10,
        open_seconds=5,
        half_open_probes=2,
        clock=clock,
    )


def test_breaker_needs_minimum_calls_then_opens_at_the_rate() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock)
    for _ in range(9):
        breaker.record(False)
    assert breaker.state is State.CLOSED  # 9 calls < minimum of 10
    breaker.record(True)
    assert breaker.state is State.CLOSED  # a success never opens it (tests/test_breaker_window.py)
    breaker.record(False)
    assert breaker.state is State.OPEN  # 10/11 failures >= 50 %


def test_breaker_stays_closed_below_the_rate() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock)
    for i in range(100):
        breaker.record(i % 3 != 0)  # a third fail
    assert breaker.state is State.CLOSED


def test_old_failures_leave_the_window() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock)
    for _ in range(6):
        breaker.record(False)
    clock.now += 11  # past the 10 s window
    for _ in range(6):
        breaker.record(True)
    for _ in range(4):
        breaker.record(False)
    assert breaker.state is State.CLOSED  # 4/10 in the window


def test_half_open_admits_limited_probes_and_closes_after_they_succeed() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock)
    for _ in range(10):
        breaker.record(False)
    assert not breaker.allow()
    clock.now += 5
    assert breaker.state is State.HALF_OPEN
    assert breaker.allow() and breaker.allow()
    assert not breaker.allow()  # only two probes
    breaker.record(True)
    assert breaker.state is State.HALF_OPEN
    breaker.record(True)
    assert breaker.state is State.CLOSED
    assert breaker.allow()


def test_a_failed_probe_opens_again() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock)
    for _ in range(10):
        breaker.record(False)
    clock.now += 5
    assert breaker.allow()
    breaker.record(False)
    assert breaker.state is State.OPEN
    assert not breaker.allow()


def test_retry_budget_allows_at_most_the_ratio() -> None:
    budget = RetryBudget(0.1)
    retries = 0
    for _ in range(1000):
        budget.deposit()
        while budget.try_spend():
            retries += 1
    assert 99 <= retries <= 100


POLICY = Policy(
    connect_timeout=0.5,
    call_timeout=0.5,
    max_in_flight=4,
    max_retries=2,
    retry_budget_ratio=0.1,
    failure_rate=0.5,
    minimum_calls=10,
    window_seconds=30,
    open_seconds=1.0,
    half_open_probes=3,
)


@pytest.fixture
async def upstream(sandbox_url: str):
    up = Upstream("catalogue", f"{sandbox_url}/catalogue", POLICY)
    await up.start()
    try:
        yield up
    finally:
        await up.close()


async def reached(sandbox: httpx.AsyncClient) -> int:
    return int((await sandbox.get("/_control/requests/catalogue")).json()["count"])


async def test_breaker_opens_fails_fast_and_closes_after_probes(
    upstream: Upstream, sandbox: httpx.AsyncClient
) -> None:
    await sandbox.put("/_control/faults/catalogue", json={"errorRate": 1.0, "errorKind": "500"})
    for _ in range(10):
        with pytest.raises(BadUpstreamAnswer):
            await upstream.call("GET", "/items/x", idempotent=False)
    assert upstream.breaker.state is State.OPEN

    before = await reached(sandbox)
    started = time.monotonic()
    for _ in range(50):
        with pytest.raises(UpstreamUnavailable, match="circuit open"):
            await upstream.call("GET", "/items/x")
    assert time.monotonic() - started < 0.5  # failing fast
    assert await reached(sandbox) == before  # not one call went out while open

    await sandbox.delete("/_control/faults/catalogue")
    await asyncio.sleep(1.05)  # open wait
    assert upstream.breaker.state is State.HALF_OPEN
    before = await reached(sandbox)
    replies = await asyncio.gather(
        *(upstream.call("GET", "/items/x") for _ in range(3)), return_exceptions=True
    )
    assert all(not isinstance(r, BaseException) and r.status == 404 for r in replies)
    assert upstream.breaker.state is State.CLOSED
    assert await reached(sandbox) - before == 3  # exactly the probes


async def test_failure_rate_below_threshold_keeps_it_closed(
    upstream: Upstream, sandbox: httpx.AsyncClient
) -> None:
    await sandbox.put("/_control/faults/catalogue", json={"errorRate": 0.2, "errorKind": "503"})
    failed: list[bool] = []
    for _ in range(60):
        try:
            await upstream.call("GET", "/items/x", idempotent=False)
            failed.append(False)
        except UpstreamUnavailable:
            failed.append(True)
            if upstream.breaker.state is State.OPEN:
                break
    # The faults are random: in about 3 runs in 100 (simulated) the early calls fail half the time by
    # chance, and then the breaker is right to open, at exactly that call (all 60 fit its window).
    crossed = next(
        (n for n in range(10, len(failed) + 1) if sum(failed[:n]) * 2 >= n and failed[n - 1]), None
    )
    if crossed is None:
        assert len(failed) == 60 and upstream.breaker.state is State.CLOSED, failed
    else:
        assert len(failed) == crossed and upstream.breaker.state is State.OPEN, failed


async def test_retries_stay_within_budget(upstream: Upstream, sandbox: httpx.AsyncClient) -> None:
    await sandbox.put("/_control/faults/catalogue", json={"errorRate": 0.3, "errorKind": "503"})
    before = await reached(sandbox)
    for _ in range(100):
        with contextlib.suppress(UpstreamUnavailable, BadUpstreamAnswer):
            await upstream.call("GET", "/items/x")
    sent = await reached(sandbox) - before
    if upstream.breaker.state is State.CLOSED:
        assert 100 <= sent <= 110, sent  # at most 10 % extra calls


async def test_non_idempotent_calls_are_never_retried(upstream: Upstream, sandbox: httpx.AsyncClient) -> None:
    for _ in range(30):  # fill the retry budget
        await upstream.call("GET", "/items/x")
    await sandbox.put("/_control/faults/catalogue", json={"errorRate": 1.0, "errorKind": "503"})
    before = await reached(sandbox)
    with pytest.raises(UpstreamUnavailable):
        await upstream.call("POST", "/items/x", json={"a": 1})
    assert await reached(sandbox) - before == 1


async def test_timeout_comes_from_the_remaining_deadline(
    upstream: Upstream, sandbox: httpx.AsyncClient
) -> None:
    await sandbox.put("/_control/faults/catalogue", json={"errorRate": 1.0, "errorKind": "timeout"})
    started = time.monotonic()
    with context.budget(0.2), pytest.raises(UpstreamUnavailable):
        await upstream.call("GET", "/items/x")
    assert time.monotonic() - started < 0.4


async def test_bulkhead_bounds_concurrent_calls(sandbox_url: str, sandbox: httpx.AsyncClient) -> None:
    up = Upstream(
        "catalogue", f"{sandbox_url}/catalogue", Policy(max_in_flight=2, call_timeout=5, minimum_calls=1000)
    )
    await up.start()
    try:
        await sandbox.put("/_control/faults/catalogue", json={"latencyMs": 200})
        started = time.monotonic()
        await asyncio.gather(*(up.call("GET", "/items/x") for _ in range(6)))
        # 6 calls of 200 ms through 2 lanes take at least 3 rounds.
        assert time.monotonic() - started >= 0.6
    finally:
        await up.close()


async def test_malformed_body_is_a_502_and_counts_as_failure(
    upstream: Upstream, sandbox: httpx.AsyncClient
) -> None:
    await sandbox.put("/_control/faults/catalogue", json={"errorRate": 1.0, "errorKind": "malformed"})
    reply = await upstream.call("GET", "/items/x")
    with pytest.raises(BadUpstreamAnswer):
        upstream.decode(reply, dict[str, int])
    snapshot = upstream.breaker.snapshot()
    assert (snapshot["calls"], snapshot["failures"]) == (1, 1)
