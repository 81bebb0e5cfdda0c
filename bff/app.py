"""`create_app(settings)`: the Litestar app on top of the composition root, and the route list."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar, Router
from litestar.config.cors import CORSConfig
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin

from auth.guards import require_principal_if_declared
from bff import deps
from bff.addresses.controllers import AddressController
from bff.appointments.controllers import AppointmentController, SlotController
from bff.cases.controllers import CaseController, CaseWebhookController
from bff.catalogue.controllers import CatalogueController, ItemController, StaffSearchController
from bff.delivery.controllers import DeliveryController, DeliveryWebhookController
from bff.home.controllers import HomeController
from bff.hotline.controllers import HotlineAnswerController, HotlineController, HotlineWebhookController
from bff.identity.controllers import AuthController, MeController, StaffKioskController, jwks
from bff.kiosk import kiosk_router
from bff.licences.controllers import LicenceController, StaffLicenceCheckController
from bff.lifeapps.controllers import LifeApplicationController, LifeFormController
from bff.mandates.controllers import MandateController, MandateProofController
from bff.messages.controllers import MessageController, PushReceiptController
from bff.ops.controllers import healthz, metrics, readyz
from bff.payments.controllers import PaymentController, PaymentNotifyController
from bff.platform.edge import Edge
from bff.platform.handlers import trim_per_request_work
from bff.platform.lifecycle import settle_heap
from bff.platform.logs import configure_logging, get_logger
from bff.platform.openapi import COMPONENTS, RawBodyOperation, declare_contract
from bff.platform.problems import EXCEPTION_HANDLERS
from bff.platform.settings import Settings
from bff.ratings.controllers import RatingController
from bff.uploads.controllers import UploadController
from bff.wiring import open_root

log = get_logger("bff.app")

# Every /api/v1 controller, by domain. A new domain adds its controllers here (and its block in
# bff/wiring.py); nothing else registers routes.
API_ROUTES = [
    AuthController,
    MeController,
    StaffKioskController,
    ItemController,
    CatalogueController,
    StaffSearchController,
    SlotController,
    AppointmentController,
    CaseController,
    RatingController,
    UploadController,
    CaseWebhookController,
    PaymentController,
    PaymentNotifyController,
    AddressController,
    DeliveryController,
    DeliveryWebhookController,
    MessageController,
    PushReceiptController,
    LicenceController,
    HomeController,
    StaffLicenceCheckController,
    HotlineAnswerController,
    HotlineController,
    HotlineWebhookController,
    MandateController,
    MandateProofController,
    LifeFormController,
    LifeApplicationController,
]


def create_app(settings: Settings, *, configure_logs: bool = True) -> Litestar:
    if configure_logs:
        configure_logging(settings.log_level, settings.log_json)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with open_root(settings) as root:
            app.state.root = root
            # auth/ may not import bff: its guards find their runtime under this one name.
            app.state.auth = root.auth
            await root.catalogue_mirror.start()
            await root.search_misses.start()
            if settings.gc_freeze:
                settle_heap()
                root.catalogue_mirror.after_model.append(settle_heap)
            root.drain.install()
            edge.drain = root.drain
            try:
                log.info("started", env=settings.env)
                yield
            finally:
                root.drain.uninstall()
                await root.search_misses.stop()
                await root.catalogue_mirror.stop()

    app = Litestar(
        route_handlers=[
            Router(path="/api/v1", route_handlers=API_ROUTES),
            healthz,
            readyz,
            metrics,
            jwks,
            # The hall kiosk's web app (static; not in the OpenAPI document).
            kiosk_router(settings.kiosk_bridge_url),
        ],
        lifespan=[lifespan],
        # Handlers that take `principal` authenticate before their body is parsed.
        guards=[require_principal_if_declared],
        dependencies=deps.dependencies(),
        exception_handlers=EXCEPTION_HANDLERS,
        cors_config=CORSConfig(allow_origins=settings.cors_origins) if settings.cors_origins else None,
        openapi_config=OpenAPIConfig(
            title="Sanxiang BFF",
            version="1.0.0",
            path="/schema",
            render_plugins=[JsonRenderPlugin()],
            components=COMPONENTS,
        ),
        request_max_body_size=settings.max_body_bytes,
        logging_config=None,
        debug=False,
    )
    declare_contract(app)
    trim_per_request_work(app)
    # Routes that take raw bytes (uploads) are not JSON-inspected by the edge; they bound their own.
    raw_body_paths = frozenset(
        route.path
        for route in app.routes
        for handler in getattr(route, "route_handlers", ())
        if getattr(handler, "operation_class", None) is RawBodyOperation
    )
    edge = Edge(
        app.asgi_handler,
        max_in_flight=settings.max_in_flight,
        budget_seconds=settings.request_budget_ms / 1000,
        max_body_bytes=settings.max_body_bytes,
        max_url_bytes=settings.max_url_bytes,
        raw_body_paths=raw_body_paths,
        hsts_max_age_s=settings.hsts_max_age_s,
        route_caps={
            path: ("home", settings.home_max_in_flight) for path in ("/api/v1/home", "/api/v1/home/badges")
        }
        if settings.home_max_in_flight
        else None,
    )
    app.asgi_handler = edge
    return app
