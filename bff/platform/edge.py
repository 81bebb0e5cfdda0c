"""The outermost ASGI layer: request id, deadline, in-flight cap, metrics and the access log line.

It wraps Litestar's own handler (routing and exception handling included), so 404s and 405s get a
request id and a metric too.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from adapters import context
from bff.platform.logs import get_logger
from bff.platform.metrics import IN_FLIGHT, REQUEST_LATENCY, RESPONSES, SHED
from bff.platform.problems import PROBLEM_MEDIA_TYPE, render

log = get_logger("bff.access")
_VALID_RID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")
_CLOSE = (b"connection", b"close")
_QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class Edge:
    def __init__(self, app: Any, *, max_in_flight: int, budget_seconds: float) -> None:
        self.app = app
        self.max_in_flight = max_in_flight
        self.budget_seconds = budget_seconds
        self.in_flight = 0
        # Set by the app's lifespan: while the process drains, answers close their connection.
        self.drain: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = None
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                candidate = value.decode("latin-1")
                rid = candidate if _VALID_RID.match(candidate) else None
                break
        rid = rid or uuid.uuid4().hex
        rid_header = (b"x-request-id", rid.encode())
        token = context.request_id.set(rid)
        try:
            if self.in_flight >= self.max_in_flight:
                SHED.inc()
                await _overloaded(send, scope, rid_header)
                return
            status = 500
            started = time.perf_counter()

            async def send_wrapper(message: Any) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    extra = (
                        [rid_header, _CLOSE]
                        if self.drain is not None and self.drain.draining
                        else [rid_header]
                    )
                    message["headers"] = [*message.get("headers", ()), *extra]
                await send(message)

            self.in_flight += 1
            IN_FLIGHT.inc()
            try:
                with context.budget(self.budget_seconds):
                    await self.app(scope, receive, send_wrapper)
            finally:
                self.in_flight -= 1
                IN_FLIGHT.dec()
                elapsed = time.perf_counter() - started
                route = scope.get("path_template") or "unmatched"
                method = scope.get("method", "")
                REQUEST_LATENCY.labels(method, route).observe(elapsed)
                RESPONSES.labels(method, route, str(status)).inc()
                path = scope.get("path", "")
                if path not in _QUIET_PATHS:
                    log.info(
                        "request",
                        method=method,
                        route=route,
                        status=status,
                        duration_ms=round(elapsed * 1000, 2),
                    )
        finally:
            context.request_id.reset(token)


async def _overloaded(send: Any, scope: Any, rid_header: tuple[bytes, bytes]) -> None:
    accept_language = ""
    for name, value in scope.get("headers", ()):
        if name == b"accept-language":
            accept_language = value.decode("latin-1")
            break
    body = render(503, "overloaded", accept_language=accept_language, instance=scope.get("path", ""))
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", b"1"),
                rid_header,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
