"""The sandbox ASGI app: one router per upstream, its own schema, a control API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, get
from litestar.datastructures import State
from litestar.di import Provide

from sandbox.catalogue.routes import router as catalogue_router
from sandbox.catalogue.seed import seed_catalogue
from sandbox.control import router as control_router
from sandbox.db import create_pool, ensure_schema
from sandbox.faults import FaultMiddleware, FaultTable


@get("/_control/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


def create_sandbox_app(database_url: str, *, seed: bool = True) -> Any:
    faults = FaultTable()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        pool = await create_pool(database_url)
        try:
            await ensure_schema(pool)
            if seed:
                await seed_catalogue(pool)
            app.state.db = pool
            yield
        finally:
            await pool.close()

    def provide_db(state: State) -> Any:
        return state.db

    app = Litestar(
        route_handlers=[catalogue_router, control_router, health],
        lifespan=[lifespan],
        dependencies={
            "db": Provide(provide_db, sync_to_thread=False),
            "faults": Provide(lambda: faults, sync_to_thread=False),
        },
        openapi_config=None,
        logging_config=None,
    )
    app.asgi_handler = FaultMiddleware(app.asgi_handler, faults)
    return app
