"""Circuit breaker with failure-rate-over-window semantics.

Closed: calls pass; outcomes are counted in a sliding window of `_BUCKETS` time buckets of
`window_seconds / _BUCKETS` each. The window is the current bucket and the `_BUCKETS - 1` before it:
an outcome counts until its bucket is `_BUCKETS` buckets old, so it stays in the window for at
least 0.9 × `window_seconds` and at most `window_seconds`.

The decision is made only when a failure is recorded (or a success is reclassified as one): when
at least `minimum_calls` outcomes are in the window and the failure share reaches `failure_rate`,
it opens. A success never opens it: failures already in the window stay under the threshold or
they would have opened it when they happened, and a window whose successes aged out first says
nothing new about an upstream that has just answered well.

Open: calls are refused without touching the upstream until `open_seconds` have passed.
Half-open: at most `half_open_probes` calls are let through; if all succeed it closes with an
empty window, any failure opens it again. A call that was allowed but never sent (`cancel`)
gives its probe back: it says nothing about the upstream.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable

from adapters.metrics import BREAKER_REJECTIONS, BREAKER_STATE

_BUCKETS = 10
# The epoch of a bucket that was never used: older than any window, whatever the clock says.
_NEVER = -(1 << 62)


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
        self._bucket_epoch = [_NEVER] * _BUCKETS
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

    def cancel(self) -> None:
        """A call `allow()` let through was never sent (e.g. our own deadline was spent first)."""
        if self._state is State.HALF_OPEN and self._probes_started > self._probes_succeeded:
            self._probes_started -= 1

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
        epoch = self._epoch()
        index = self._slot(epoch)
        self._calls[index] += 1
        if not success:
            self._failures[index] += 1
            self._trip_if_over_rate(epoch)

    def reclassify_as_failure(self) -> None:
        """A call already recorded as a success turned out bad (e.g. its body did not decode).

        The newest success still in the window becomes a failure; no call is added, so a reply
        that straddles a bucket boundary is not counted twice. When no success is left in the
        window the call has aged out and only the decision is taken again.
        """
        state = self._state
        if state is State.HALF_OPEN:
            self._trip()
            return
        if state is State.OPEN:
            return
        epoch = self._epoch()
        for age in range(_BUCKETS):
            index = (epoch - age) % _BUCKETS
            if self._bucket_epoch[index] != epoch - age:
                continue
            if self._calls[index] > self._failures[index]:
                self._failures[index] += 1
                break
        self._trip_if_over_rate(epoch)

    def retry_after(self) -> int:
        """Whole seconds until an open breaker lets a probe through (at least 1)."""
        left = self.open_seconds - (self._clock() - self._opened_at)
        return max(1, int(left + 0.999)) if self._state is State.OPEN else 1

    def snapshot(self) -> dict[str, object]:
        calls, failures = self._window(self._epoch())
        return {"state": self.state.value, "calls": calls, "failures": failures}

    def _epoch(self) -> int:
        return int(self._clock() // self._bucket_width)

    def _slot(self, epoch: int) -> int:
        """The bucket for `epoch`, emptied first if it last held an older epoch."""
        index = epoch % _BUCKETS
        if self._bucket_epoch[index] != epoch:
            self._bucket_epoch[index] = epoch
            self._calls[index] = self._failures[index] = 0
        return index

    def _window(self, epoch: int) -> tuple[int, int]:
        """Calls and failures of the buckets inside the window ending at `epoch`.

        Buckets are filtered by their own epoch at every decision, so one that aged out is never
        counted, however long ago the last call was that could have emptied it.
        """
        calls = failures = 0
        for i in range(_BUCKETS):
            if 0 <= epoch - self._bucket_epoch[i] < _BUCKETS:
                calls += self._calls[i]
                failures += self._failures[i]
        return calls, failures

    def _trip_if_over_rate(self, epoch: int) -> None:
        calls, failures = self._window(epoch)
        if calls >= self.minimum_calls and failures / calls >= self.failure_rate:
            self._trip()

    def _trip(self) -> None:
        self._opened_at = self._clock()
        self._set(State.OPEN)

    def _reset_window(self) -> None:
        self._calls = [0] * _BUCKETS
        self._failures = [0] * _BUCKETS
        self._bucket_epoch = [_NEVER] * _BUCKETS

    def _set(self, state: State) -> None:
        self._state = state
        self._probes_started = 0
        self._probes_succeeded = 0
        BREAKER_STATE.labels(self.name).set(_GAUGE[state])
