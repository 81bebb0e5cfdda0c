"""Routes of life-event applications (一件事一次办): the merged form (public: it depends only on the
bundle, the region and the answers), the one submission, a member's retry, the bundle's view."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import Body, FromPath, QueryParameter

from auth.guards import APPLYING_LEVEL, residents_only
from auth.principal import Principal
from bff.idempotency import IdempotencyKey, IdempotencyStore
from bff.lifeapps.schemas import LifeApplicationIn, LifeApplicationOut, LifeFormOut
from bff.lifeapps.service import LifeApplicationService
from bff.payments.schemas import DepartmentPaymentIn, DepartmentPaymentOut
from bff.platform.problems import english


class LifeFormController(Controller):
    path = "/life-events"
    tags = ["life-events"]

    @get(
        "/{event_id:str}/form",
        summary="The bundle's questions, and for the answers given its applicable items and their materials, each once",
    )
    async def form(
        self,
        request: Request[Any, Any, Any],
        lifeapps: NamedDependency[LifeApplicationService],
        event_id: FromPath[str],
        region: Annotated[str, QueryParameter(pattern=r"^\d{6}$", description="the resident's region")],
        answers: Annotated[
            str | None,
            QueryParameter(
                max_length=400,
                description="answers so far, `question=yes|no` separated by commas (e.g. `registerHousehold=yes`)",
            ),
        ] = None,
    ) -> LifeFormOut:
        return await lifeapps.form(
            event_id, region, answers, english=english(request.headers.get("accept-language", ""))
        )


class LifeApplicationController(Controller):
    path = "/life-events"
    tags = ["life-events"]
    guards = [residents_only, APPLYING_LEVEL]

    @post(
        "/{event_id:str}/applications",
        summary="Apply once for a life event: one case per applicable item, submitted in parallel",
        status_code=201,
    )
    async def apply(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        idempotency: NamedDependency[IdempotencyStore],
        lifeapps: NamedDependency[LifeApplicationService],
        idempotency_key: IdempotencyKey,
        event_id: FromPath[str],
        data: Annotated[LifeApplicationIn, Body()],
    ) -> Response[LifeApplicationOut]:
        return await idempotency.run(
            request, principal.person_id, lambda ctx: lifeapps.apply(ctx, principal, event_id, data)
        )

    @get("/applications/{application_id:str}", summary="One life-event application: every member case")
    async def view(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        lifeapps: NamedDependency[LifeApplicationService],
        application_id: FromPath[str],
    ) -> LifeApplicationOut:
        return await lifeapps.view(
            principal, application_id, english=english(request.headers.get("accept-language", ""))
        )

    @post(
        "/applications/{application_id:str}/members/{item_code:str}/retry",
        summary="Submit a failed member of a life-event application again",
        status_code=201,
    )
    async def retry(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        idempotency: NamedDependency[IdempotencyStore],
        lifeapps: NamedDependency[LifeApplicationService],
        idempotency_key: IdempotencyKey,
        application_id: FromPath[str],
        item_code: FromPath[str],
    ) -> Response[LifeApplicationOut]:
        await lifeapps.own(principal, application_id)  # another's: 404 before the key is claimed
        return await idempotency.run(
            request,
            principal.person_id,
            lambda ctx: lifeapps.retry(ctx, principal, application_id, item_code),
        )

    @post(
        "/applications/{application_id:str}/payments",
        summary="Pay every fee one department issued across the bundle at once (WeChat Pay 合单支付)",
        status_code=201,
    )
    async def pay_department(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        idempotency: NamedDependency[IdempotencyStore],
        lifeapps: NamedDependency[LifeApplicationService],
        idempotency_key: IdempotencyKey,
        application_id: FromPath[str],
        data: Annotated[DepartmentPaymentIn, Body()],
    ) -> Response[DepartmentPaymentOut]:
        await lifeapps.own(principal, application_id)  # another's: 404 before the key is claimed
        response = await idempotency.run(
            request,
            principal.person_id,
            lambda ctx: lifeapps.pay_department(ctx, principal, application_id, data.department),
        )
        response.headers.update({"Cache-Control": "no-store"})
        return response
