"""Routes of delivery: mail a case's result, follow the parcel, and the courier's signed callback."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import CacheControlHeader
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Body, FromPath

from adapters.courier.callback import SIGNED_HEADERS as COURIER_SIGNED
from auth.guards import APPLYING_LEVEL, residents_only
from auth.principal import Principal
from bff.delivery.schemas import CourierNotifyOutcome, DeliveryIn, DeliveryOut
from bff.delivery.service import DeliveryService
from bff.idempotency import IdempotencyKey, IdempotencyStore
from bff.platform.openapi import signed_callback
from bff.platform.problems import PROBLEM_MEDIA_TYPE, Problem

# Mailing reads the case and the address through their domains' ports: their 404s are this route's.
_NOT_FOUND = ResponseSpec(
    data_container=Problem,
    media_type=PROBLEM_MEDIA_TYPE,
    description=(
        "Not found (another resident's object is answered the same way). "
        "Codes: `not_found`, `case_not_found`, `address_not_found`"
    ),
    generate_examples=False,
)


class DeliveryController(Controller):
    tags = ["delivery"]
    # A case's mailed result: the level of reading the case.
    guards = [residents_only, APPLYING_LEVEL]
    cache_control = CacheControlHeader(no_store=True)

    @post(
        "/cases/{case_id:str}/delivery",
        summary="Mail the case's result to one of my addresses (items that allow mailing)",
        status_code=201,
        responses={404: _NOT_FOUND},
    )
    async def request_delivery(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        idempotency: NamedDependency[IdempotencyStore],
        delivery: NamedDependency[DeliveryService],
        idempotency_key: IdempotencyKey,
        case_id: FromPath[str],
        data: Annotated[DeliveryIn, Body()],
    ) -> Response[DeliveryOut]:
        return await idempotency.run(
            request, principal.person_id, lambda ctx: delivery.request(ctx, principal, case_id, data)
        )

    @get("/deliveries/{delivery_id:str}", summary="A mailed result: status and every tracking event in order")
    async def get_delivery(
        self,
        principal: NamedDependency[Principal],
        delivery: NamedDependency[DeliveryService],
        delivery_id: FromPath[str],
    ) -> DeliveryOut:
        return await delivery.view(principal, delivery_id)


class DeliveryWebhookController(Controller):
    """The courier's signed callbacks. Not keyed by Idempotency-Key: the courier's event id is the key."""

    path = "/deliveries/courier/notify"
    tags = ["delivery"]

    @post(
        "",
        summary="Courier status callback (HMAC-SHA256 over timestamp.body)",
        operation_class=signed_callback("the courier", COURIER_SIGNED),
        status_code=200,
        exclude_from_auth=True,
    )
    async def receive(
        self,
        request: Request[Any, Any, Any],
        delivery: NamedDependency[DeliveryService],
        data: Annotated[dict[str, Any], Body(description="one tracking event, signed by the courier")],
    ) -> CourierNotifyOutcome:
        # The signature covers the exact bytes: verify those, not a re-encoding of `data`.
        outcome = await delivery.receive_callback(request.headers, await request.body())
        return CourierNotifyOutcome(outcome=outcome)  # type: ignore[arg-type]
