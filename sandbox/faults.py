"""Fault injection per upstream: latency (fixed + jitter), an error rate and the error's kind.

Set through the control API (`/_control/faults/{upstream}`) and applied by a middleware to every
request whose path starts with `/{upstream}/`.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any, Literal

import msgspec

Kind = Literal["500", "503", "timeout", "reset", "malformed"]


class FaultSpec(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    latency_ms: int = 0
    jitter_ms: int = 0
    error_rate: float = 0.0
    error_kind: Kind = "500"

    def __post_init__(self) -> None:
        if not 0.0 <= self.error_rate <= 1.0:
            raise msgspec.ValidationError("errorRate must be within [0, 1]")
        if self.latency_ms < 0 or self.jitter_ms < 0:
            raise msgspec.ValidationError("latencyMs and jitterMs must not be negative")


class FaultTable:
    def __init__(self) -> None:
        self.specs: dict[str, FaultSpec] = {}
        self.requests: dict[str, int] = {}

    def reset(self, upstream: str | None = None) -> None:
        if upstream is None:
            self.specs.clear()
            self.requests.clear()
        else:
            self.specs.pop(upstream, None)
            self.requests.pop(upstream, None)


class FaultMiddleware:
    """Pure ASGI so that it can hang, break a body half way or lie about JSON."""

    def __init__(self, app: Any, table: FaultTable) -> None:
        self.app = app
        self.table = table

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        upstream = scope["path"].strip("/").split("/", 1)[0]
        if upstream.startswith("_"):
            await self.app(scope, receive, send)
            return
        self.table.requests[upstream] = self.table.requests.get(upstream, 0) + 1
        spec = self.table.specs.get(upstream)
        if spec is None:
            await self.app(scope, receive, send)
            return
        delay = spec.latency_ms + (random.uniform(0, spec.jitter_ms) if spec.jitter_ms else 0)
        if delay:
            await asyncio.sleep(delay / 1000)
        if spec.error_rate and random.random() < spec.error_rate:
            await _fail(spec.error_kind, send)
            return
        await self.app(scope, receive, send)


async def _fail(kind: Kind, send: Any) -> None:
    if kind == "timeout":
        # A blackhole: accept the request and never answer (the client gives up).
        await asyncio.sleep(3600)
        return
    if kind == "reset":
        # Promise a body and break the connection part way through it.
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1000")]})
        await send({"type": "http.response.body", "body": b'{"trunc', "more_body": True})
        # Returning with the body unfinished makes the server drop the connection.
        return
    if kind == "malformed":
        body = b'{"catalog_code": 42, "oops": ['
        status = 200
    else:
        status = int(kind)
        body = b'{"error": "injected"}'
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
