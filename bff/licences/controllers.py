"""Routes of the e-licence wallet, 亮证 and its counter-side check, and "who used my data"."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import CacheControlHeader
from litestar.di import NamedDependency
from litestar.params import Body, FromPath, QueryParameter

from auth.guards import APPLYING_LEVEL, BOOKING_LEVEL, residents_only, staff_only
from auth.principal import Principal
from bff.idempotency import IdempotencyKey, IdempotencyStore
from bff.licences.schemas import (
    DataAccessPage,
    LicenceCheckIn,
    LicenceCheckOut,
    LicenceDetail,
    LicenceList,
    RenewalList,
    ShowOut,
)
from bff.licences.service import LicenceService
from bff.platform.problems import english

Limit = Annotated[int, QueryParameter(ge=1, le=50)]


class LicenceController(Controller):
    tags = ["licences"]
    # Reading my own licences needs an ID-verified account (L2); showing one to a counter, where it
    # stands in for the card itself, needs the holder's face in this session (L3).
    guards = [residents_only, BOOKING_LEVEL]
    # Personal data (masked, still personal): never kept by a cache on the way.
    cache_control = CacheControlHeader(no_store=True)

    @get("/licences", summary="My e-licences (numbers and names masked; trust grade, validity)")
    async def wallet(
        self, principal: NamedDependency[Principal], licences: NamedDependency[LicenceService]
    ) -> LicenceList:
        return await licences.wallet(principal)

    @get("/licences/{licence_id:str}", summary="One of my e-licences, with its watermark text")
    async def detail(
        self,
        principal: NamedDependency[Principal],
        licences: NamedDependency[LicenceService],
        licence_id: FromPath[str],
    ) -> LicenceDetail:
        return await licences.detail(principal, licence_id)

    @post(
        "/licences/{licence_id:str}/show",
        summary="亮证: a short-lived, single-use, signed QR payload a counter checks",
        status_code=201,
        guards=[APPLYING_LEVEL],
    )
    async def show(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        idempotency: NamedDependency[IdempotencyStore],
        licences: NamedDependency[LicenceService],
        idempotency_key: IdempotencyKey,
        licence_id: FromPath[str],
    ) -> Response[ShowOut]:
        return await idempotency.run(
            request, principal.person_id, lambda ctx: licences.show(ctx, principal, licence_id)
        )

    @get(
        "/me/licence-renewals",
        summary="Licences ending within 90 days, each with its renewal item, a started form, "
        "the nearest hall and its first free slot",
    )
    async def renewals(
        self,
        principal: NamedDependency[Principal],
        licences: NamedDependency[LicenceService],
        near: Annotated[
            str | None,
            QueryParameter(
                pattern=r"^-?\d{1,2}(\.\d{1,8})?,-?\d{1,3}(\.\d{1,8})?$",
                description="lat,lng: the nearest hall first",
            ),
        ] = None,
    ) -> RenewalList:
        where = None
        if near is not None:
            lat, lng = (float(part) for part in near.split(","))
            where = (lat, lng)
        return await licences.renewals(principal, where)

    @get("/me/data-access", summary="Who used my data: when, which department or channel, what, why")
    async def data_access(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        licences: NamedDependency[LicenceService],
        limit: Limit = 20,
        cursor: Annotated[str | None, QueryParameter()] = None,
    ) -> DataAccessPage:
        lang: Literal["zh", "en"] = "en" if english(request.headers.get("accept-language", "")) else "zh"
        return await licences.data_access(principal, limit, cursor, lang)


class StaffLicenceCheckController(Controller):
    """A counter (or a hall kiosk operated by staff) checks a shown licence. Staff sessions only,
    like every `staff/` route; keyed by Idempotency-Key so that a counter retrying after a lost
    answer gets the same verification instead of "already used"."""

    path = "/staff/licence-checks"
    tags = ["staff", "licences"]
    guards = [staff_only]
    cache_control = CacheControlHeader(no_store=True)

    @post("", summary="Check a shown licence (亮证码核验): once, before it expires", status_code=200)
    async def check(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        idempotency: NamedDependency[IdempotencyStore],
        licences: NamedDependency[LicenceService],
        idempotency_key: IdempotencyKey,
        data: Annotated[LicenceCheckIn, Body()],
    ) -> Response[LicenceCheckOut]:
        return await idempotency.run(
            request, principal.person_id, lambda ctx: licences.check(ctx, principal, data)
        )
