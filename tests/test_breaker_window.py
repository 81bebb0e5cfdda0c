"""The breaker's sliding window: what counts, when it ages out, and when the decision is taken.

The regression: a burst of failures that stayed under the threshold, then the successes that
kept it under ageing out first, and ~25 s later a *success* opened the breaker. The property tests
compare every decision with a brute-force model (a list of timestamped outcomes, filtered at each
decision) over random call sequences and clock advances.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters import context
from adapters.breaker import _BUCKETS, CircuitBreaker, State
from adapters.errors import BadUpstreamAnswer, UpstreamUnavailable
from adapters.http import Policy, Upstream

WINDOW = 30.0
RATE = 0.5
MINIMUM = 10
OPEN = 15.0
PROBES = 3


class Clock:
    def __init__(self, now: float = 5000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def breaker(clock: Clock, *, minimum: int = MINIMUM, rate: float = RATE) -> CircuitBreaker:
    return CircuitBreaker(
        "window-test",
        failure_rate=rate,
        minimum_calls=minimum,
        window_seconds=WINDOW,
        open_seconds=OPEN,
        half_open_probes=PROBES,
        clock=clock,
    )


# --- the regression, step by step ------------------------------------------------------------


def test_a_success_after_the_earlier_successes_aged_out_does_not_open() -> None:
    clock = Clock(6000.0)  # a bucket boundary: 6000 / 3 s
    b = breaker(clock)
    for _ in range(10):
        b.record(True)  # steady traffic
    clock.now += 5
    for _ in range(9):
        b.record(False)  # a burst: 9 of 19, under 50 %
    assert b.state is State.CLOSED
    clock.now += 25  # the successes have left the window, the burst has not
    assert b.snapshot()["calls"] == 9
    b.record(True)  # the upstream is healthy
    assert b.state is State.CLOSED
    assert b.snapshot() == {"state": "closed", "calls": 10, "failures": 9}


def test_a_new_failure_on_top_of_the_same_window_opens() -> None:
    clock = Clock(6000.0)
    b = breaker(clock)
    for _ in range(10):
        b.record(True)
    clock.now += 5
    for _ in range(9):
        b.record(False)
    clock.now += 25
    b.record(False)  # new evidence: 10 of 10 in the window
    assert b.state is State.OPEN


def test_failures_below_the_minimum_then_a_success_stay_closed() -> None:
    b = breaker(Clock())
    for _ in range(MINIMUM - 1):
        b.record(False)
    b.record(True)
    assert b.state is State.CLOSED
    b.record(False)  # the decision is taken on this failure: 10/11 >= 50 %
    assert b.state is State.OPEN


def test_an_outcome_counts_for_at_least_nine_tenths_of_the_window_and_never_longer() -> None:
    width = WINDOW / _BUCKETS
    for offset in (0.0, width / 2, width - 1e-6):
        clock = Clock(6000.0 + offset)
        b = breaker(clock)
        b.record(False)
        clock.now = 6000.0 + offset + WINDOW * 0.9 - 1e-6
        assert b.snapshot()["failures"] == 1, offset
        clock.now = 6000.0 + offset + WINDOW
        assert b.snapshot()["failures"] == 0, offset


def test_buckets_left_alone_for_longer_than_the_window_are_not_counted() -> None:
    clock = Clock(6000.0)
    b = breaker(clock)
    for _ in range(8):
        b.record(False)
    # Exactly a whole number of windows later the same bucket slot comes round again.
    clock.now += 3 * WINDOW
    b.record(False)
    assert b.snapshot() == {"state": "closed", "calls": 1, "failures": 1}
    clock.now += WINDOW / 2
    for _ in range(MINIMUM - 2):
        b.record(True)
    b.record(False)
    assert b.state is State.CLOSED  # 2 of 10, the 8 old failures are long gone


def test_reclassify_in_an_empty_bucket_does_not_invent_a_call() -> None:
    clock = Clock(6000.0 + WINDOW / _BUCKETS - 0.001)  # the last millisecond of a bucket
    b = breaker(clock)
    b.record(True)
    clock.now += 0.002  # the decode fails in the next bucket
    b.reclassify_as_failure()
    assert b.snapshot() == {"state": "closed", "calls": 1, "failures": 1}


def test_reclassify_after_the_success_aged_out_changes_nothing() -> None:
    clock = Clock()
    b = breaker(clock)
    b.record(True)
    clock.now += WINDOW
    b.reclassify_as_failure()
    assert b.snapshot() == {"state": "closed", "calls": 0, "failures": 0}


def test_reclassify_never_counts_more_failures_than_calls() -> None:
    b = breaker(Clock(), minimum=1000)
    b.record(True)
    b.record(False)
    for _ in range(5):
        b.reclassify_as_failure()
    assert b.snapshot() == {"state": "closed", "calls": 2, "failures": 2}


def test_a_cancelled_half_open_probe_is_given_back() -> None:
    clock = Clock()
    b = breaker(clock)
    for _ in range(MINIMUM):
        b.record(False)
    clock.now += OPEN
    assert b.state is State.HALF_OPEN
    assert all(b.allow() for _ in range(PROBES))
    assert not b.allow()
    b.cancel()  # never sent: it proved nothing
    assert b.allow()
    for _ in range(PROBES - 1):
        b.record(True)
    assert b.state is State.HALF_OPEN  # closes only on PROBES real successes
    b.record(True)
    assert b.state is State.CLOSED


# --- property tests against a reference model ------------------------------------------------


@dataclass
class Reference:
    """The failure share of the outcomes recorded in the window, recomputed from scratch.

    The window is the breaker's documented one: an outcome recorded at `t` counts while
    `now // width - t // width < _BUCKETS` (at least 0.9 × window_seconds, at most all of it).
    """

    minimum: int
    rate: float
    outcomes: list[tuple[float, bool]] = field(default_factory=list)  # (time, failed)
    opened: bool = False

    def _in_window(self, now: float) -> list[tuple[float, bool]]:
        width = WINDOW / _BUCKETS
        return [o for o in self.outcomes if 0 <= int(now // width) - int(o[0] // width) < _BUCKETS]

    def _decide(self, now: float) -> None:
        window = self._in_window(now)
        failures = sum(failed for _, failed in window)
        if len(window) >= self.minimum and failures / len(window) >= self.rate:
            self.opened = True

    def record(self, now: float, success: bool) -> None:
        self.outcomes.append((now, not success))
        if not success:
            self._decide(now)

    def reclassify(self, now: float) -> None:
        window = self._in_window(now)
        for i in range(len(self.outcomes) - 1, -1, -1):
            t, failed = self.outcomes[i]
            if not failed and (t, failed) in window:
                self.outcomes[i] = (t, True)
                break
        self._decide(now)

    def counts(self, now: float) -> tuple[int, int]:
        window = self._in_window(now)
        return len(window), sum(failed for _, failed in window)


# An operation: a clock advance (seconds), or an outcome.
Op = tuple[str, float]
ops = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), st.floats(min_value=0, max_value=WINDOW * 1.5)),
        st.tuples(st.just("advance"), st.sampled_from([0.001, WINDOW / _BUCKETS, WINDOW * 0.9, WINDOW])),
        st.tuples(st.sampled_from(["success", "failure", "reclassify"]), st.just(0.0)),
    ),
    max_size=120,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=ops,
    start=st.floats(min_value=0, max_value=1e6),
    minimum=st.integers(min_value=1, max_value=12),
    rate=st.sampled_from([0.2, 0.5, 0.8, 1.0]),
)
def test_decisions_match_the_reference_model(ops: list[Op], start: float, minimum: int, rate: float) -> None:
    clock = Clock(start)
    b = breaker(clock, minimum=minimum, rate=rate)
    ref = Reference(minimum=minimum, rate=rate)
    for kind, amount in ops:
        if kind == "advance":
            clock.now += amount
        elif kind == "reclassify":
            b.reclassify_as_failure()
            ref.reclassify(clock.now)
        else:
            b.record(kind == "success")
            ref.record(clock.now, kind == "success")
        assert (b.state is State.OPEN) == ref.opened, (kind, amount)
        if ref.opened:
            return  # what follows an opening is the open/half-open machine, tested elsewhere
        snap = b.snapshot()
        assert (snap["calls"], snap["failures"]) == ref.counts(clock.now)


@settings(max_examples=300, deadline=None)
@given(
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("advance"), st.floats(min_value=0, max_value=OPEN * 1.5)),
            st.tuples(st.sampled_from(["allow", "success", "failure", "reclassify", "cancel"]), st.just(0.0)),
        ),
        max_size=150,
    ),
    minimum=st.integers(min_value=1, max_value=12),
)
def test_a_success_never_opens_the_breaker(ops: list[Op], minimum: int) -> None:
    clock = Clock()
    b = breaker(clock, minimum=minimum)
    for kind, amount in ops:
        if kind == "advance":
            clock.now += amount
        elif kind == "allow":
            b.allow()
        elif kind == "cancel":
            b.cancel()
        elif kind == "reclassify":
            b.reclassify_as_failure()
        else:
            before = b.state
            b.record(kind == "success")
            if kind == "success":
                assert b.state is before or (before is State.HALF_OPEN and b.state is State.CLOSED)


# --- the same rule through the HTTP layer, against the sandbox ---------------------------------

POLICY = Policy(
    connect_timeout=0.5,
    call_timeout=0.5,
    max_retries=0,
    failure_rate=0.5,
    minimum_calls=10,
    window_seconds=30,
    open_seconds=1.0,
    half_open_probes=1,
)


@pytest.fixture
async def upstream(sandbox_url: str):
    up = Upstream("catalogue", f"{sandbox_url}/catalogue", POLICY)
    await up.start()
    try:
        yield up
    finally:
        await up.close()


async def test_caller_refusals_do_not_count_and_server_errors_do(
    upstream: Upstream, sandbox: httpx.AsyncClient
) -> None:
    for _ in range(20):
        reply = await upstream.call("GET", "/items/no-such-item")
        assert reply.status == 404  # the caller asked for something that does not exist
    assert upstream.breaker.snapshot() == {"state": "closed", "calls": 20, "failures": 0}
    await sandbox.put("/_control/faults/catalogue", json={"errorRate": 1.0, "errorKind": "500"})
    with pytest.raises(BadUpstreamAnswer):
        await upstream.call("GET", "/items/no-such-item")
    assert upstream.breaker.snapshot() == {"state": "closed", "calls": 21, "failures": 1}


async def test_a_call_our_deadline_never_sent_is_not_an_outcome(
    upstream: Upstream, sandbox: httpx.AsyncClient
) -> None:
    await sandbox.put("/_control/faults/catalogue", json={"errorRate": 1.0, "errorKind": "503"})
    for _ in range(10):
        with pytest.raises(UpstreamUnavailable):
            await upstream.call("GET", "/items/x")
    assert upstream.breaker.state is State.OPEN
    await sandbox.delete("/_control/faults/catalogue")
    await asyncio.sleep(POLICY.open_seconds + 0.05)  # the open wait
    assert upstream.breaker.state is State.HALF_OPEN
    with context.budget(0.0), contextlib.suppress(UpstreamUnavailable):
        await upstream.call("GET", "/items/x")
    # The probe was not spent on a call that never went out, nor counted as a success.
    assert upstream.breaker.state is State.HALF_OPEN
    reply = await upstream.call("GET", "/items/x")
    assert reply.status == 404
    assert upstream.breaker.state is State.CLOSED
