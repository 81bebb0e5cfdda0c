"""The sandbox ASGI app: one router per upstream, its own schema, a control API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, get
from litestar.datastructures import State
from litestar.di import Provide

from sandbox.booking.routes import router as booking_router
from sandbox.booking.seed import seed_booking
from sandbox.cases.routes import router as cases_router
from sandbox.catalogue.control import router as catalogue_control_router
from sandbox.catalogue.routes import router as catalogue_router
from sandbox.catalogue.seed import seed_catalogue
from sandbox.control import router as control_router
from sandbox.courier.routes import control_router as courier_control_router
from sandbox.courier.routes import router as courier_router
from sandbox.db import create_pool, ensure_schema
from sandbox.elicence.control import router as elicence_control_router
from sandbox.elicence.routes import router as elicence_router
from sandbox.elicence.seed import seed_elicence
from sandbox.faults import FaultMiddleware, FaultTable
from sandbox.hotline.routes import control_router as hotline_control_router
from sandbox.hotline.routes import router as hotline_router
from sandbox.hotline.seed import seed_hotline
from sandbox.idp.control import router as idp_control_router
from sandbox.idp.routes import router as idp_router
from sandbox.idp.seed import seed_idp
from sandbox.pushgw.control import router as pushgw_control_router
from sandbox.pushgw.routes import router as pushgw_router
from sandbox.ratings.routes import router as ratings_router
from sandbox.sms.control import router as sms_control_router
from sandbox.sms.routes import router as sms_router
from sandbox.wechat.control import router as wechat_control_router
from sandbox.wechat.routes import router as wechat_router
from sandbox.wechatpay.combine import control_router as wechatpay_combine_control_router
from sandbox.wechatpay.combine import router as wechatpay_combine_router
from sandbox.wechatpay.control import router as wechatpay_control_router
from sandbox.wechatpay.notify import lifespan as wechatpay_lifespan
from sandbox.wechatpay.routes import router as wechatpay_router


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
                await seed_idp(pool)
                await seed_booking(pool)
                await seed_elicence(pool)  # after the idp: the licences are its residents'
                await seed_hotline(pool)
            app.state.db = pool
            yield
        finally:
            await pool.close()

    def provide_db(state: State) -> Any:
        return state.db

    app = Litestar(
        route_handlers=[
            catalogue_router,
            catalogue_control_router,
            booking_router,
            cases_router,
            ratings_router,
            control_router,
            health,
            wechat_router,
            wechat_control_router,
            idp_router,
            idp_control_router,
            wechatpay_router,
            wechatpay_control_router,
            wechatpay_combine_router,
            wechatpay_combine_control_router,
            courier_router,
            courier_control_router,
            pushgw_router,
            pushgw_control_router,
            sms_router,
            sms_control_router,
            elicence_router,
            elicence_control_router,
            hotline_router,
            hotline_control_router,
        ],
        # After the pool's lifespan: WeChat Pay's notification dispatcher needs the pool.
        lifespan=[lifespan, wechatpay_lifespan],
        dependencies={
            "db": Provide(provide_db, sync_to_thread=False),
            "faults": Provide(lambda: faults, sync_to_thread=False),
        },
        openapi_config=None,
        logging_config=None,
    )
    app.asgi_handler = FaultMiddleware(app.asgi_handler, faults)
    return app
