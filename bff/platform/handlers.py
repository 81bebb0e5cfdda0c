"""Two pieces of Litestar's per-request work that buy this app nothing, removed once the app is built.

- Guards: Litestar 2 hands each guard a copy of the route handler (`copy(self)`, ~7 µs per guard
  on this machine, and a route here has two or three). Our guards only read the handler, and
  Litestar's own main branch has since dropped the copy: each guard is given the handler itself.
- Dependencies: providers at the same depth are resolved in an anyio task group (a task per
  provider). When at most one of them can wait (the others are plain functions, as every service
  provider here is: `sync_to_thread=False`), there is nothing to overlap, so they are resolved one
  after the other in the request's own task: same values, same errors, no tasks.
"""

from __future__ import annotations

from types import MethodType
from typing import Any

from litestar import Litestar
from litestar.connection import ASGIConnection
from litestar.routes import HTTPRoute


async def _authorize_connection(self: Any, connection: ASGIConnection[Any, Any, Any, Any]) -> None:
    for guard in self.resolve_guards():
        await guard(connection, self)


def _may_wait(container: Any) -> bool:
    provide = container.provide
    return not provide.has_sync_callable or provide.has_async_generator_dependency


def _sequential(batches: list[set[Any]]) -> list[set[Any]]:
    out: list[set[Any]] = []
    for batch in batches:
        if len(batch) > 1 and sum(_may_wait(d) for d in batch) <= 1:
            out += [{d} for d in sorted(batch, key=_may_wait)]
        else:
            out.append(batch)
    return out


def trim_per_request_work(app: Litestar) -> None:
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler, kwargs_model in route.route_handler_map.values():
            if hasattr(handler, "__dict__"):  # the decorators' handlers (`@get`...); not Litestar's own
                handler.authorize_connection = MethodType(_authorize_connection, handler)  # type: ignore[method-assign]
            kwargs_model.dependency_batches = _sequential(kwargs_model.dependency_batches)
