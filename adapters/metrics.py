"""Prometheus series for upstream calls, shared by every adapter."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

UPSTREAM_CALLS = Counter("sx_upstream_calls_total", "Upstream calls by outcome", ["upstream", "outcome"])
UPSTREAM_LATENCY = Histogram(
    "sx_upstream_latency_seconds",
    "Upstream call latency (one attempt)",
    ["upstream"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0),
)
UPSTREAM_RETRIES = Counter("sx_upstream_retries_total", "Retries sent", ["upstream"])
BREAKER_STATE = Gauge(
    "sx_upstream_breaker_state", "Breaker state: 0 closed, 1 half-open, 2 open", ["upstream"]
)
BREAKER_REJECTIONS = Counter(
    "sx_upstream_breaker_rejections_total", "Calls refused by an open breaker", ["upstream"]
)
