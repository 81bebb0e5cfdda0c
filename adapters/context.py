"""Per-request context that every upstream call reads: the deadline and the request id.

The API middleware sets both; background workers set their own deadline per job.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_deadline: ContextVar[float | None] = ContextVar("sx_deadline", default=None)
request_id: ContextVar[str | None] = ContextVar("sx_request_id", default=None)
# Set while an agent acts for a principal under a 代办 mandate ("agent=<person id>;mandate=<id>"):
# every audit record of the request carries it (auth.audit.record). The edge clears it per request.
acting: ContextVar[str | None] = ContextVar("sx_acting", default=None)


def remaining() -> float | None:
    """Seconds left in the current budget, or None when no budget is set."""
    deadline = _deadline.get()
    if deadline is None:
        return None
    return deadline - time.monotonic()


@contextmanager
def budget(seconds: float) -> Iterator[None]:
    """Narrow the current deadline to at most `seconds` from now (never widen it)."""
    proposed = time.monotonic() + seconds
    current = _deadline.get()
    token = _deadline.set(proposed if current is None else min(current, proposed))
    try:
        yield
    finally:
        _deadline.reset(token)
