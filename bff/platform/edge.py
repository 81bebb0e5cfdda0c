"""The outermost ASGI layer: request id, deadline, in-flight caps (the process's, and a route
group's of its own), what a client may send, the security headers of every response, metrics and
the access log line.

It wraps Litestar's own handler (routing and exception handling included), so 404s and 405s get a
request id, the headers and a metric too. What it refuses itself (an overlong URL, a body that is
not JSON, too deep, too large, or carries control characters — `bff.platform.inputs`) is a problem
document from the one renderer, like every other error.
"""

from __future__ import annotations

import os
import random
import re
import time
from typing import Any

from adapters import context
from auth.guards import PRINCIPAL_SCOPE_KEY
from bff.platform.inputs import InputRefused, check_content_type, check_json, check_url
from bff.platform.logs import AccessLog
from bff.platform.metrics import IN_FLIGHT, REQUEST_LATENCY, RESPONSES, SHED
from bff.platform.problems import PROBLEM_MEDIA_TYPE, localized, render

log = AccessLog("bff.access")
_VALID_RID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")
_CLOSE = (b"connection", b"close")
_QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Request ids we make: 32 hex digits as uuid4().hex gave, from a generator seeded from the OS once
# per process (and again in a forked child) rather than a getrandom syscall per request. They need
# to be unique, not secret: a client may send any id it likes (`_VALID_RID`).
_ids = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _ids.seed(os.urandom(32)))
# On every response: nothing is sniffed, framed, or told where the resident came from.
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
    (b"referrer-policy", b"no-referrer"),
)


class Edge:
    def __init__(
        self,
        app: Any,
        *,
        max_in_flight: int,
        budget_seconds: float,
        max_body_bytes: int = 1_048_576,
        max_url_bytes: int = 8192,
        raw_body_paths: frozenset[str] = frozenset(),
        hsts_max_age_s: int = 0,
        route_caps: dict[str, tuple[str, int]] | None = None,
    ) -> None:
        self.app = app
        self.max_in_flight = max_in_flight
        # path -> (group, cap): a route far costlier than the rest (home's fan-out) is refused at
        # what it can answer within its budgets, before the process-wide cap would let its queue
        # outgrow them (every answer then late and degraded).
        self.route_caps = route_caps or {}
        self.group_in_flight = {group: 0 for group, _ in self.route_caps.values()}
        self.budget_seconds = budget_seconds
        self.max_body_bytes = max_body_bytes
        self.max_url_bytes = max_url_bytes
        self.raw_body_paths = raw_body_paths
        self.in_flight = 0
        # Set by the app's lifespan: while the process drains, answers close their connection.
        self.drain: Any = None
        self.headers = list(SECURITY_HEADERS)
        if hsts_max_age_s > 0:
            self.headers.append(
                (b"strict-transport-security", f"max-age={hsts_max_age_s}; includeSubDomains".encode())
            )

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
        rid = rid or f"{_ids.getrandbits(128):032x}"
        rid_header = (b"x-request-id", rid.encode())
        extra_headers = [*self.headers, rid_header]
        token = context.request_id.set(rid)
        acting_token = context.acting.set(None)
        try:
            capped = self.route_caps.get(scope.get("path", ""))
            if self.in_flight >= self.max_in_flight or (
                capped is not None and self.group_in_flight[capped[0]] >= capped[1]
            ):
                SHED.inc()
                await _refuse(send, scope, extra_headers, 503, "overloaded", retry_after=True)
                return
            status = 500
            started = time.perf_counter()

            async def send_wrapper(message: Any) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    # While the process drains, answers close their connection (clients move on).
                    drain_close = [_CLOSE] if self.drain is not None and self.drain.draining else []
                    headers = [*message.get("headers", ()), *extra_headers, *drain_close]
                    if _personal(scope):
                        # Whatever the route said: a response for one person is never stored.
                        headers = [h for h in headers if h[0].lower() != b"cache-control"]
                        headers.append((b"cache-control", b"no-store"))
                    message["headers"] = headers
                await send(message)

            try:
                receive = await self._inspect(scope, receive)
            except InputRefused as refused:
                status = refused.status
                await _refuse(
                    send,
                    scope,
                    extra_headers,
                    refused.status,
                    refused.code,
                    refused.detail,
                    refused.field,
                    detail_zh=refused.detail_zh,
                )
                self._account(scope, status, 0.0)
                return

            self.in_flight += 1
            if capped is not None:
                self.group_in_flight[capped[0]] += 1
            IN_FLIGHT.inc()
            try:
                with context.budget(self.budget_seconds):
                    await self.app(scope, receive, send_wrapper)
            finally:
                self.in_flight -= 1
                if capped is not None:
                    self.group_in_flight[capped[0]] -= 1
                IN_FLIGHT.dec()
                self._account(scope, status, time.perf_counter() - started)
        finally:
            context.acting.reset(acting_token)
            context.request_id.reset(token)

    def _account(self, scope: Any, status: int, elapsed: float) -> None:
        route = scope.get("path_template") or "unmatched"
        method = scope.get("method", "")
        REQUEST_LATENCY.labels(method, route).observe(elapsed)
        RESPONSES.labels(method, route, str(status)).inc()
        if scope.get("path", "") not in _QUIET_PATHS:
            log.info(
                "request", method=method, route=route, status=status, duration_ms=round(elapsed * 1000, 2)
            )

    async def _inspect(self, scope: Any, receive: Any) -> Any:
        """Check the URL and, for JSON routes, read and check the whole body; the `receive` the app
        is given replays the bytes that were read."""
        check_url(
            scope.get("raw_path") or scope.get("path", "").encode(),
            scope.get("query_string", b""),
            self.max_url_bytes,
        )
        if scope.get("method", "") not in _BODY_METHODS or scope.get("path", "") in self.raw_body_paths:
            return receive
        content_type = ""
        declared: int | None = None
        for name, value in scope.get("headers", ()):
            if name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"content-length":
                text = value.decode("latin-1").strip()
                declared = int(text) if text.isdigit() else None
        if declared is not None and declared > self.max_body_bytes:
            raise InputRefused(
                413,
                "payload_too_large",
                f"the body is over {self.max_body_bytes} bytes",
                zh="size",
                limit=self.max_body_bytes,
            )
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise InputRefused(
                    413,
                    "payload_too_large",
                    f"the body is over {self.max_body_bytes} bytes",
                    zh="size",
                    limit=self.max_body_bytes,
                )
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body.strip():
            check_content_type(content_type)
            check_json(body)
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay


def _personal(scope: Any) -> bool:
    """Answered to a signed-in caller: the route took a principal, or credentials were sent."""
    if scope.get(PRINCIPAL_SCOPE_KEY) is not None:
        return True
    return any(name == b"authorization" for name, _ in scope.get("headers", ()))


async def _refuse(
    send: Any,
    scope: Any,
    extra_headers: list[tuple[bytes, bytes]],
    status: int,
    code: str,
    detail: str | None = None,
    field: str | None = None,
    *,
    retry_after: bool = False,
    detail_zh: str | None = None,
) -> None:
    accept_language = ""
    for name, value in scope.get("headers", ()):
        if name == b"accept-language":
            accept_language = value.decode("latin-1")
            break
    body = render(
        status,
        code,
        localized(detail, detail_zh, accept_language),
        accept_language=accept_language,
        instance=scope.get("path", "")[:200],
        field=field,
    )
    headers = [
        (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        *extra_headers,
    ]
    if retry_after:
        headers.append((b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
