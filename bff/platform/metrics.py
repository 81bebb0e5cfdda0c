"""Prometheus series of the API itself (the upstream ones live in adapters.metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUEST_LATENCY = Histogram(
    "sx_http_request_duration_seconds",
    "API request latency by route template",
    ["method", "route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
RESPONSES = Counter(
    "sx_http_responses_total", "API responses by route and status", ["method", "route", "status"]
)
IN_FLIGHT = Gauge("sx_http_in_flight", "Requests being served now")
SHED = Counter("sx_http_shed_total", "Requests refused with 503 because too many were in flight")
