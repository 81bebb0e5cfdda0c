"""Graceful shutdown of an API process: readiness fails first, the process keeps serving through the
load balancer's grace period, then stops taking connections and finishes what is in flight.

uvicorn on SIGTERM stops listening at once and waits for in-flight requests. Behind a load balancer
that still sends new connections until its health check notices, that drops requests. So on the
first SIGTERM `Drain` only marks the process draining (`/readyz` answers 503 `draining`, responses
carry `Connection: close` so keep-alive clients move on), and hands the signal to uvicorn
`grace_s` seconds later. A second SIGTERM (or SIGINT) is passed on at once.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from bff.platform.logs import get_logger

log = get_logger("bff.lifecycle")


class Drain:
    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self.draining_since: float | None = None
        self._previous: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def draining(self) -> bool:
        return self.draining_since is not None

    def install(self) -> None:
        """Take SIGTERM over from the server (call from the app's startup, after uvicorn installed its
        handlers); without a grace period nothing changes."""
        if self.grace_s <= 0:
            return
        self._loop = asyncio.get_running_loop()
        self._previous = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, self._on_term)

    def uninstall(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def _on_term(self, sig: int, frame: FrameType | None) -> None:
        previous = self._previous
        if self.draining or not callable(previous) or self._loop is None:
            if callable(previous):
                previous(sig, frame)
            return
        self.draining_since = time.monotonic()
        self._loop.call_soon_threadsafe(self._later, previous, sig, frame)

    def _later(
        self, previous: Callable[[int, FrameType | None], Any], sig: int, frame: FrameType | None
    ) -> None:
        log.info("draining", grace_s=self.grace_s)
        assert self._loop is not None
        self._loop.call_later(self.grace_s, previous, sig, frame)


def settle_heap() -> None:
    """Collect once, then move every object alive now into the permanent generation: a full
    collection later no longer walks the modules, routes, catalogue snapshot and search model, so
    its pause (which every request in flight waits out) is bounded by what was made since. What is
    frozen is still freed by reference counting; only cycles among frozen objects stay until exit,
    so this runs at start-up and once the search model is in, not on every rebuild."""
    gc.collect()
    gc.freeze()
