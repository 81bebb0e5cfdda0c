"""Prometheus series of push: stream depth, event-to-send lag, outcomes, fallbacks, refusals."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

STREAM_LENGTH = Gauge("sx_push_stream_length", "Entries in the push stream (XLEN)")
STREAM_PENDING = Gauge("sx_push_stream_pending", "Entries read but not yet acknowledged")
OUTBOX_BACKLOG = Gauge("sx_push_outbox_unpublished", "Outbox rows not yet on the stream")
LAG = Histogram(
    "sx_push_lag_seconds",
    "From the event's outbox row to the first send accepted by a channel",
    ["channel"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 15.0, 60.0, 300.0),
)
OUTCOMES = Counter("sx_push_outcomes_total", "Channel attempts by their result", ["channel", "status"])
FALLBACKS = Counter("sx_push_fallbacks_total", "Moves to the next channel", ["from_channel", "reason"])
CONSENT_REFUSALS = Counter(
    "sx_push_consent_refusals_total", "Sends refused for want of consent (43101, reject/ban)", ["channel"]
)
REPUBLISHED = Counter("sx_push_republished_total", "Outbox rows published again (not finished in time)")
