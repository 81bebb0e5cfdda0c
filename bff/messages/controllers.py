"""Routes of messages and push: the inbox, live updates, devices, subscribe-message consent,
preferences, and the push gateway's and SMS gateway's signed receipts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post, put
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Body, FromPath, HeaderParameter, QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from adapters.pushgw.callback import SIGNED_HEADERS as PUSHGW_SIGNED
from adapters.sms.callback import SIGNED_HEADERS as SMS_SIGNED
from auth.guards import channels, residents_only
from auth.principal import Principal
from bff.idempotency import IdempotencyKey, IdempotencyStore
from bff.messages.schemas import (
    DeviceIn,
    DeviceOut,
    MessageDetail,
    MessageOut,
    MessagePage,
    PreferencesIn,
    PreferencesOut,
    ReadOut,
    ReceiptOut,
    SmsAck,
    SubscriptionsIn,
    SubscriptionsOut,
)
from bff.messages.service import MessageService
from bff.platform.openapi import signed_callback

NO_STORE = {"Cache-Control": "no-store"}
Limit = Annotated[int, QueryParameter(ge=1, le=50)]


class MessageController(Controller):
    tags = ["messages"]
    guards = [residents_only]

    @get("/messages", summary="My inbox, newest first, with the unread count")
    async def list_messages(
        self,
        principal: NamedDependency[Principal],
        messages: NamedDependency[MessageService],
        limit: Limit = 20,
        cursor: Annotated[str | None, QueryParameter()] = None,
    ) -> Response[MessagePage]:
        return Response(await messages.page(principal, limit, cursor), headers=NO_STORE)

    @get(
        "/messages/stream",
        summary="Live updates (SSE): new messages as they arrive, heartbeats, Last-Event-ID resume",
        media_type="text/event-stream",
        responses={
            200: ResponseSpec(
                data_container=MessageOut,
                media_type="text/event-stream",
                description="`event: message` with a message as data (`id:` its sequence, for "
                "Last-Event-ID), and `: heartbeat` comments",
            )
        },
    )
    async def stream(
        self,
        principal: NamedDependency[Principal],
        messages: NamedDependency[MessageService],
        last_event_id: Annotated[str | None, HeaderParameter(name="Last-Event-ID", required=False)] = None,
    ) -> ServerSentEvent:
        async def events() -> AsyncIterator[ServerSentEventMessage]:
            async for event_id, name, data in messages.live(principal, last_event_id):
                if name == "heartbeat":
                    # data=None: Litestar's default (an empty `data:` line) would make every
                    # EventSource fire an empty "message" event with each heartbeat.
                    yield ServerSentEventMessage(comment="heartbeat", data=None)
                else:
                    yield ServerSentEventMessage(data=data, event=name, id=event_id)

        return ServerSentEvent(events(), headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @get("/messages/{message_id:str}", summary="One message and how each channel tried ended")
    async def get_message(
        self,
        principal: NamedDependency[Principal],
        messages: NamedDependency[MessageService],
        message_id: FromPath[str],
    ) -> Response[MessageDetail]:
        return Response(await messages.get(principal, message_id), headers=NO_STORE)

    @post("/messages/{message_id:str}/read", summary="Mark a message read", status_code=200)
    async def read(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        idempotency: NamedDependency[IdempotencyStore],
        messages: NamedDependency[MessageService],
        idempotency_key: IdempotencyKey,
        message_id: FromPath[str],
    ) -> Response[ReadOut]:
        return await idempotency.run(
            request, principal.person_id, lambda ctx: messages.mark_read(ctx, principal, message_id)
        )

    @post("/push/devices", summary="Register this installation's push token", status_code=201)
    async def register_device(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        idempotency: NamedDependency[IdempotencyStore],
        messages: NamedDependency[MessageService],
        idempotency_key: IdempotencyKey,
        data: Annotated[DeviceIn, Body()],
    ) -> Response[DeviceOut]:
        return await idempotency.run(
            request, principal.person_id, lambda ctx: messages.register_device(ctx, principal, data)
        )

    @post(
        "/push/wechat/subscriptions",
        summary="Record the result of wx.requestSubscribeMessage (accept/reject/ban/filter per template)",
        status_code=200,
        guards=[channels("miniprogram")],
    )
    async def subscriptions(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        idempotency: NamedDependency[IdempotencyStore],
        messages: NamedDependency[MessageService],
        idempotency_key: IdempotencyKey,
        data: Annotated[SubscriptionsIn, Body()],
    ) -> Response[SubscriptionsOut]:
        return await idempotency.run(
            request, principal.person_id, lambda ctx: messages.record_subscriptions(ctx, principal, data)
        )

    @get("/me/notification-preferences", summary="What I am told about, on which channel, and when not")
    async def get_preferences(
        self, principal: NamedDependency[Principal], messages: NamedDependency[MessageService]
    ) -> Response[PreferencesOut]:
        return Response(await messages.preferences(principal), headers=NO_STORE)

    @put("/me/notification-preferences", summary="Change my notification preferences (each change recorded)")
    async def put_preferences(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        idempotency: NamedDependency[IdempotencyStore],
        messages: NamedDependency[MessageService],
        idempotency_key: IdempotencyKey,
        data: Annotated[PreferencesIn, Body()],
    ) -> Response[PreferencesOut]:
        return await idempotency.run(
            request, principal.person_id, lambda ctx: messages.set_preferences(ctx, principal, data)
        )


class PushReceiptController(Controller):
    """The providers' signed receipts. No Idempotency-Key: a receipt names its message, and a
    repeated one changes nothing."""

    tags = ["messages"]

    @post(
        "/push/pushgw/notify",
        summary="Push gateway receipt callback (HMAC-SHA256 over timestamp.body)",
        operation_class=signed_callback("the push gateway", PUSHGW_SIGNED),
        status_code=200,
        exclude_from_auth=True,
    )
    async def push_receipt(
        self,
        request: Request[Any, Any, Any],
        messages: NamedDependency[MessageService],
        data: Annotated[dict[str, Any], Body(description="one receipt, signed by the push gateway")],
    ) -> ReceiptOut:
        return await messages.push_receipt(request.headers, await request.body())

    @post(
        "/push/sms/notify",
        summary="SMS delivery report callback (SmsReport array, signed); answered {code: 0}",
        operation_class=signed_callback("the SMS gateway", SMS_SIGNED),
        status_code=200,
        exclude_from_auth=True,
    )
    async def sms_reports(
        self,
        request: Request[Any, Any, Any],
        messages: NamedDependency[MessageService],
        data: Annotated[list[dict[str, Any]], Body(description="SmsReport array, signed by the SMS gateway")],
    ) -> SmsAck:
        await messages.sms_reports(request.headers, await request.body())
        return SmsAck(0, "成功")  # Aliyun: code 0 = received
