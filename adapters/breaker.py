"""Circuit breaker with failure-rate-over-window semantics.

Closed: calls pass; outcomes are counted in a sliding window of time buckets. When at least
`minimum_calls` landed in the window and the failure share reaches `failure_rate`, it opens.
Open: calls are refused without touching the upstream until `open_seconds` have passed.
Half-open: at most `half_open_probes` calls are let through; if all succeed it closes, any
failure opens it again.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable

from adapters.metrics import BREAKER_REJECTIONS, BREAKER_STATE

_BUCKETS = 10


class State(enum.Enum):
    CLOSED = "closed"
    HALF_OPEN = "half_open"
    OPEN = "open"


_GAUGE = {State.CLOSED: 0, State.HALF_OPEN: 1, State.OPEN: 2}


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        failure_rate: float,
        minimum_calls: int,
        window_seconds: float,
        open_seconds: float,
        half_open_probes: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.failure_rate = failure_rate
        self.minimum_calls = minimum_calls
        self.open_seconds = open_seconds
        self.half_open_probes = half_open_probes
        self._clock = clock
        self._bucket_width = window_seconds / _BUCKETS
        self._calls = [0] * _BUCKETS
        self._failures = [0] * _BUCKETS
        self._bucket_epoch = [0] * _BUCKETS
        self._state = State.CLOSED
        self._opened_at = 0.0
        self._probes_started = 0
        self._probes_succeeded = 0
        BREAKER_STATE.labels(name).set(0)

    @property
    def state(self) -> State:
        if self._state is State.OPEN and self._clock() - self._opened_at >= self.open_seconds:
            self._set(State.HALF_OPEN)
        return self._state

    def allow(self) -> bool:
        """Whether a call may go out now; a half-open probe is reserved by this call."""
        state = self.state
        if state is State.CLOSED:
            return True
        if state is State.HALF_OPEN and self._probes_started < self.half_open_probes:
            self._probes_started += 1
            return True
        BREAKER_REJECTIONS.labels(self.name).inc()
        return False

    def record(self, success: bool) -> None:
        state = self._state
        if state is State.HALF_OPEN:
            if not success:
                self._trip()
                return
            self._probes_succeeded += 1
            if self._probes_succeeded >= self.half_open_probes:
                self._reset_window()
                self._set(State.CLOSED)
            return
        if state is State.OPEN:
            return  # a call that started before the breaker opened
        index = self._bucket()
        self._calls[index] += 1
        if not success:
            self._failures[index] += 1
        self._trip_if_over_rate()

    def reclassify_as_failure(self) -> None:
        """A call already recorded as a success turned out bad (e.g. its body did not decode)."""
        state = self._state
        if state is State.HALF_OPEN:
            self._trip()
            return
        if state is State.OPEN:
            return
        index = self._bucket()
        if self._calls[index] == 0:
            self._calls[index] = 1
        self._failures[index] = min(self._calls[index], self._failures[index] + 1)
        self._trip_if_over_rate()

    def snapshot(self) -> dict[str, object]:
        self._bucket()
        return {
            "state": self.state.value,
            "calls": sum(self._calls),
            "failures": sum(self._failures),
        }

    def _bucket(self) -> int:
        epoch = int(self._clock() // self._bucket_width)
        index = epoch % _BUCKETS
        if self._bucket_epoch[index] != epoch:
            # Expire every bucket older than the window, not just this one.
            for i in range(_BUCKETS):
                if epoch - self._bucket_epoch[i] >= _BUCKETS:
                    self._calls[i] = self._failures[i] = 0
            self._bucket_epoch[index] = epoch
            self._calls[index] = self._failures[index] = 0
        return index

    def _trip_if_over_rate(self) -> None:
        calls = sum(self._calls)
        if calls >= self.minimum_calls and sum(self._failures) / calls >= self.failure_rate:
            self._trip()

    def _trip(self) -> None:
        self._opened_at = self._clock()
        self._set(State.OPEN)

    def _reset_window(self) -> None:
        self._calls = [0] * _BUCKETS
        self._failures = [0] * _BUCKETS

    def _set(self, state: State) -> None:
        self._state = state
        self._probes_started = 0
        self._probes_succeeded = 0
        BREAKER_STATE.labels(self.name).set(_GAUGE[state])
