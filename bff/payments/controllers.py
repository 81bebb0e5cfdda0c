"""Routes of payments: create (or return) a case fee's order, read an order, WeChat Pay's
notifications. Real-name level 2 to pay (a phone-verified mini-program account or better)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import Body, FromPath

from adapters.wechatpay.callback import SIGNED_HEADERS as WECHATPAY_SIGNED
from auth.acting import acts_as
from auth.guards import APPLYING_LEVEL, residents_only
from auth.principal import Principal
from bff.idempotency import IdempotencyKey, IdempotencyStore
from bff.payments.schemas import PaymentOut
from bff.payments.service import PaymentService
from bff.platform.openapi import signed_callback

_NO_STORE = {"Cache-Control": "no-store"}


class PaymentController(Controller):
    tags = ["payments"]
    # Paying a case's fee acts on the case: the applying level (README 'Real-name levels').
    guards = [residents_only, APPLYING_LEVEL]

    @post(
        "/cases/{case_id:str}/payments",
        summary="Create, or return, the WeChat Pay order for the case's fee (JSAPI / App / Native by channel)",
        status_code=201,
        opt=acts_as("pay"),
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        idempotency: NamedDependency[IdempotencyStore],
        payments: NamedDependency[PaymentService],
        idempotency_key: IdempotencyKey,
        case_id: FromPath[str],
    ) -> Response[PaymentOut]:
        response = await idempotency.run(
            request, principal.person_id, lambda ctx: payments.create(ctx, principal, case_id)
        )
        response.headers.update(_NO_STORE)
        return response

    @get(
        "/payments/{payment_id:str}",
        summary="One payment order; asks WeChat Pay while it is not final",
        opt=acts_as("pay"),
    )
    async def get_payment(
        self,
        principal: NamedDependency[Principal],
        payments: NamedDependency[PaymentService],
        payment_id: FromPath[str],
    ) -> Response[PaymentOut]:
        return Response(await payments.view(principal, payment_id), headers=_NO_STORE)


class PaymentNotifyController(Controller):
    """WeChat Pay's notifications. No Idempotency-Key: the order's transaction id de-duplicates.
    204 only once the change is recorded; a 4xx problem (which WeChat retries) for anything else."""

    path = "/payments/wechat/notify"
    tags = ["payments"]

    @post(
        "",
        summary="WeChat Pay notification (signature, timestamp, nonce, AEAD; checked against our order)",
        operation_class=signed_callback("WeChat Pay", WECHATPAY_SIGNED),
        status_code=204,
        exclude_from_auth=True,
    )
    async def notify(
        self,
        request: Request[Any, Any, Any],
        payments: NamedDependency[PaymentService],
        data: Annotated[
            dict[str, Any], Body(description="WeChat Pay's notification, signed by the platform")
        ],
    ) -> None:
        # The signature covers the exact bytes: verify those.
        await payments.receive_notification(request.headers, await request.body())
