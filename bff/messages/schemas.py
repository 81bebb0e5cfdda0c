"""Messages (the inbox), live updates, devices, subscribe-message consent and preferences."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from bff.platform.problems import define
from bff.platform.schema import Camel, CamelIn

define(
    __name__,
    {
        "message_not_found": (404, "未找到该消息", "No such message"),
        "push_callback_rejected": (401, "推送回执校验失败", "The push or SMS gateway callback was rejected"),
        "wechat_not_bound": (
            409,
            "请在小程序中登录后再订阅消息",
            "Subscribe messages need a mini-program session",
        ),
        "unknown_template": (422, "未知的订阅消息模板", "Unknown subscribe-message template"),
        "preference_locked": (
            422,
            "需要办理的事项提醒必须保留在消息中心",
            "Action-needed messages always reach the inbox",
        ),
    },
)

ChannelName = Literal["inbox", "wechat", "app", "sms"]
Category = Literal[
    "action_needed", "case_progress", "appointments", "payments", "delivery", "hotline", "other"
]
DeliveryStatus = Literal[
    "created", "sending", "delivered", "permanent-failure", "temporary-failure", "technical-failure"
]
Clock = Annotated[str, msgspec.Meta(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")]


class MessageOut(Camel):
    id: str
    category: Category
    title: str
    body: str
    link: str
    urgent: bool
    status: DeliveryStatus
    read: bool
    created_at: str


class MessagePage(Camel):
    items: list[MessageOut]
    next_cursor: str | None
    unread_count: int


class AttemptOut(Camel):
    channel: ChannelName
    status: DeliveryStatus
    tries: int
    reason: str | None
    started_at: str
    finished_at: str | None


class MessageDetail(MessageOut):
    template: str
    template_version: int
    lang: Literal["zh", "en"]
    channels: list[AttemptOut]


class ReadOut(Camel):
    id: str
    read: bool
    unread_count: int


class DeviceIn(CamelIn):
    token: Annotated[str, msgspec.Meta(min_length=16, max_length=256, pattern=r"^[A-Za-z0-9_:\-]+$")]
    platform: Literal["ios", "android", "harmony"]
    app_version: Annotated[str, msgspec.Meta(max_length=32)] | None = None


class DeviceOut(Camel):
    platform: Literal["ios", "android", "harmony"]
    token_suffix: str  # the last 6 characters, to tell devices apart
    registered: bool


class SubscriptionsIn(CamelIn):
    """The success result of `wx.requestSubscribeMessage`: template id -> what the resident chose."""

    results: Annotated[
        dict[str, Literal["accept", "reject", "ban", "filter"]], msgspec.Meta(min_length=1, max_length=3)
    ]


class ConsentOut(Camel):
    template_id: str
    last_result: Literal["accept", "reject", "ban", "filter"]
    long_term: bool
    remaining: int
    updated_at: str


class SubscriptionsOut(Camel):
    consents: list[ConsentOut]


class PreferencesIn(CamelIn):
    lang: Literal["zh", "en"] = "zh"
    quiet_start: Clock | None = None
    quiet_end: Clock | None = None
    channels: dict[Category, dict[ChannelName, bool]] = {}


class PreferencesOut(Camel):
    lang: Literal["zh", "en"]
    quiet_start: str | None
    quiet_end: str | None
    channels: dict[str, dict[str, bool]]
    locked: list[str]  # "category/channel" switches that cannot be turned off


class ReceiptOut(Camel):
    outcome: Literal["applied", "duplicate"]


class SmsAck(msgspec.Struct):
    """What the SMS gateway wants back: `{"code": 0}` means received (Aliyun's contract)."""

    code: int
    msg: str
