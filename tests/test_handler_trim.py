"""Litestar's per-request work we remove once the app is built (`bff.platform.handlers`): guards
get the handler itself, and providers that cannot overlap are resolved without a task group."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from litestar import Litestar, get
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency, Provide
from litestar.handlers.base import BaseRouteHandler
from litestar.routes import HTTPRoute
from litestar.testing import AsyncTestClient

from bff.platform.handlers import trim_per_request_work
from tests.conftest import AppFactory


def _batches(app: Litestar, path: str, method: str = "GET") -> list[list[str]]:
    for route in app.routes:
        if isinstance(route, HTTPRoute) and route.path == path:
            _, model = route.route_handler_map[method]
            return [sorted(d.key for d in batch) for batch in model.dependency_batches]
    raise AssertionError(path)


async def test_the_apps_reads_resolve_one_provider_at_a_time(make_client: AppFactory) -> None:
    client = await make_client()
    app = client.app  # type: ignore[attr-defined]
    assert _batches(app, "/api/v1/appointments") == [["appointments"], ["principal"]]
    assert _batches(app, "/api/v1/me") == [["auth"], ["principal"]]
    # Refusals still come from the guards and the principal: no token, 401.
    assert (await client.get("/api/v1/appointments")).status_code == 401


async def test_guards_see_the_handler_and_providers_that_wait_still_overlap() -> None:
    seen: list[Any] = []
    tasks: set[asyncio.Task[Any] | None] = set()

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
        seen.append(handler)

    def plain() -> int:
        return 1

    async def waits_a() -> int:
        tasks.add(asyncio.current_task())
        await asyncio.sleep(0.01)
        return 2

    async def waits_b() -> int:
        tasks.add(asyncio.current_task())
        await asyncio.sleep(0.01)
        return 3

    @get("/one", guards=[guard, guard])
    async def one(a: NamedDependency[int], w: NamedDependency[int]) -> int:
        tasks.add(asyncio.current_task())
        return a + w

    @get("/two")
    async def two(w: NamedDependency[int], v: NamedDependency[int]) -> int:
        tasks.add(asyncio.current_task())
        return w + v

    app = Litestar(
        [one, two],
        dependencies={
            "a": Provide(plain, sync_to_thread=False),
            "w": Provide(waits_a),
            "v": Provide(waits_b),
        },
    )
    trim_per_request_work(app)
    assert _batches(app, "/one") == [["a"], ["w"]]
    assert _batches(app, "/two") == [["v", "w"]]  # two that wait: Litestar's task group, as before
    async with AsyncTestClient(app) as client:
        first = await client.get("/one")
        assert first.json() == 3
        registered = next(
            r.route_handler_map["GET"][0] for r in app.routes if isinstance(r, HTTPRoute) and r.path == "/one"
        )
        assert len(seen) == 2 and all(h is registered for h in seen)  # not a copy per guard
        assert len(tasks) == 1  # the providers ran in the request's own task
        tasks.clear()
        assert (await client.get("/two")).json() == 5
        assert len(tasks) == 3
    assert isinstance(first, httpx.Response)
