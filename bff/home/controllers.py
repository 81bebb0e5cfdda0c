"""Routes of home (我的待办) and its badges."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get
from litestar.datastructures import CacheControlHeader
from litestar.di import NamedDependency

from auth.guards import BOOKING_LEVEL, residents_only
from auth.principal import Principal
from bff.home.schemas import Badges, Home
from bff.home.service import HomeService
from bff.platform.responses import conditional
from bff.platform.uimode import UiModeHeader, is_elder


class HomeController(Controller):
    tags = ["home"]
    # Like the other personal reads (licences, renewals) an ID-verified account (L2); the sections of
    # domains that need more (cases and what hangs on them: L3) say `step_up_required` instead.
    guards = [residents_only, BOOKING_LEVEL]
    # Personal data: never kept by a cache on the way (a 304 still saves the body).
    cache_control = CacheControlHeader(no_store=True)

    @get(
        "/home",
        summary="我的待办: 补正, fees owed, appointments, parcels, renewals, ratings due and unread "
        "messages, most urgent first; each section `ok`, `stale` or `unavailable` with its `asOf`",
    )
    async def home(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        home: NamedDependency[HomeService],
        ui_mode: UiModeHeader = None,
    ) -> Response[Home]:
        body, etag = await home.home(principal, elder=is_elder(ui_mode))
        return conditional(
            request.headers.get("if-none-match"), etag, home.encode(body), Home, cache_control="no-store"
        )

    @get("/home/badges", summary="The tab bar's counts: to-dos and unread messages")
    async def badges(
        self, principal: NamedDependency[Principal], home: NamedDependency[HomeService]
    ) -> Badges:
        return await home.badges(principal)
