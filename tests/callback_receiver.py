"""A tiny HTTP receiver for the sandbox providers' callbacks: records every attempt and answers as
told (a status, a delay, a body), so tests can prove receipts are signed, retried and survive a slow
receiver."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.conftest import free_port

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def listen(handle: Handler) -> tuple[web.AppRunner, int]:
    """A loopback server answering every POST with `handle`: (its runner, to clean up; its port)."""
    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


@dataclass
class Seen:
    headers: dict[str, str]
    body: bytes
    at: float
    query: dict[str, str] = field(default_factory=dict)


@dataclass
class Receiver:
    url: str = ""
    seen: list[Seen] = field(default_factory=list)
    # What to do with the next requests: (status, delay seconds, JSON body or None for `ok_body`);
    # afterwards 200 with `ok_body` at once.
    plan: deque[tuple[int, float, Any]] = field(default_factory=deque)
    ok_body: Any = None
    _runner: web.AppRunner | None = None

    async def start(self) -> Receiver:
        self._runner, port = await listen(self._handle)
        self.url = f"http://127.0.0.1:{port}/hook"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        self.seen.append(
            Seen(dict(request.headers), await request.read(), time.monotonic(), dict(request.query))
        )
        status, delay, body = self.plan.popleft() if self.plan else (200, 0.0, None)
        if delay:
            await asyncio.sleep(delay)
        body = self.ok_body if body is None and status == 200 else body
        if body is not None:
            return web.json_response(body, status=status)
        return web.Response(status=status, text="")

    async def wait_for(self, count: int, seconds: float = 10) -> list[Seen]:
        deadline = time.monotonic() + seconds
        while len(self.seen) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return self.seen
