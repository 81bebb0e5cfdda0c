"""The one place where the application is wired: `create_app(settings)`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Router
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin

from adapters.catalogue.client import CatalogueClient
from adapters.http import Policy, Upstream
from auth.guards import provide_principal, require_principal_if_declared
from bff.cases import wiring as journey
from bff.catalogue.controllers import CatalogueController, ItemController
from bff.catalogue.guide_cache import GuideCache
from bff.catalogue.mirror import CatalogueMirror
from bff.identity.controllers import AuthController, MeController, StaffKioskController, jwks
from bff.identity.wiring import build_runtime
from bff.identity.wiring import upstreams as identity_upstreams
from bff.ops.controllers import healthz, metrics, readyz
from bff.platform.db import create_pool
from bff.platform.edge import Edge
from bff.platform.logs import configure_logging, get_logger
from bff.platform.problems import EXCEPTION_HANDLERS
from bff.platform.redis import create_redis
from bff.platform.settings import Settings

log = get_logger("bff.app")


def upstream_policy(settings: Settings) -> Policy:
    return Policy(
        connect_timeout=settings.upstream_connect_timeout_s,
        call_timeout=settings.upstream_call_timeout_s,
        max_in_flight=settings.upstream_max_in_flight,
        max_retries=settings.upstream_max_retries,
        retry_budget_ratio=settings.upstream_retry_budget_ratio,
        failure_rate=settings.breaker_failure_rate,
        minimum_calls=settings.breaker_minimum_calls,
        window_seconds=settings.breaker_window_s,
        open_seconds=settings.breaker_open_s,
        half_open_probes=settings.breaker_half_open_probes,
    )


def _from_state(name: str) -> Provide:
    def provide(state: State) -> Any:
        return state[name]

    return Provide(provide, sync_to_thread=False)


def create_app(settings: Settings, *, configure_logs: bool = True) -> Litestar:
    if configure_logs:
        configure_logging(settings.log_level, settings.log_json)
    policy = upstream_policy(settings)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        state = app.state
        upstreams = {
            "catalogue": Upstream("catalogue", settings.catalogue_url, policy),
            **journey.upstreams(settings, policy),
            **identity_upstreams(settings, policy),
        }
        pool = await create_pool(settings)
        redis = create_redis(settings)
        try:
            for upstream in upstreams.values():
                await upstream.start()
            state.db_pool = pool
            state.redis = redis
            state.upstreams = upstreams
            state.auth = build_runtime(settings, pool, redis, upstreams["wechat"], upstreams["idp"])
            state.guide_cache = GuideCache(
                redis,
                CatalogueClient(upstreams["catalogue"]),
                fresh_seconds=settings.item_cache_ttl_s,
                stale_seconds=settings.item_stale_ttl_s,
                budget_seconds=settings.item_budget_ms / 1000,
            )
            state.catalogue_mirror = CatalogueMirror(
                pool,
                redis,
                poll_seconds=settings.catalogue_index_poll_s,
                stale_after_seconds=settings.catalogue_stale_after_s,
            )
            await state.catalogue_mirror.start()
            journey.install(state, settings)
            log.info("started", env=settings.env)
            yield
        finally:
            mirror = getattr(state, "catalogue_mirror", None)
            if mirror is not None:
                await mirror.stop()
            for upstream in upstreams.values():
                await upstream.close()
            await redis.aclose()
            await pool.close()

    api = Router(
        path="/api/v1",
        route_handlers=[
            AuthController,
            MeController,
            StaffKioskController,
            ItemController,
            CatalogueController,
            *journey.ROUTES,
        ],
    )
    app = Litestar(
        route_handlers=[api, healthz, readyz, metrics, jwks],
        lifespan=[lifespan],
        # Handlers that take `principal` authenticate before their body is parsed.
        guards=[require_principal_if_declared],
        dependencies={
            "settings": Provide(lambda: settings, sync_to_thread=False, use_cache=True),
            "db_pool": _from_state("db_pool"),
            "redis": _from_state("redis"),
            "upstreams": _from_state("upstreams"),
            "guide_cache": _from_state("guide_cache"),
            "catalogue_mirror": _from_state("catalogue_mirror"),
            "principal": Provide(provide_principal),
            **{name: _from_state(name) for name in journey.DEPENDENCIES},
        },
        exception_handlers=EXCEPTION_HANDLERS,
        cors_config=CORSConfig(allow_origins=settings.cors_origins) if settings.cors_origins else None,
        openapi_config=OpenAPIConfig(
            title="Sanxiang BFF",
            version="1.0.0",
            path="/schema",
            render_plugins=[JsonRenderPlugin()],
        ),
        request_max_body_size=settings.max_body_bytes,
        logging_config=None,
        debug=False,
    )
    app.asgi_handler = Edge(
        app.asgi_handler,
        max_in_flight=settings.max_in_flight,
        budget_seconds=settings.request_budget_ms / 1000,
    )
    return app
