"""12345 tickets: filing, the suggestions before a consultation, the ticket with its timeline,
answering a request for information, rating the handling, and 12345's step webhook."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from bff.platform.problems import define
from bff.platform.schema import Camel, CamelIn

MAX_TEXT = 2000
MIN_TEXT = 5
MAX_ATTACHMENTS = 9

define(
    __name__,
    {
        "hotline_ticket_not_found": (404, "未找到该工单", "No such 12345 ticket"),
        "hotline_text_too_long": (
            422,
            f"诉求内容不能超过{MAX_TEXT}字",
            f"The text may be at most {MAX_TEXT} characters",
        ),
        "hotline_text_too_short": (
            422,
            f"诉求内容至少{MIN_TEXT}个字",
            f"The text needs at least {MIN_TEXT} characters",
        ),
        "hotline_anonymity_not_allowed": (
            422,
            "咨询和表扬不能对承办部门保密",
            "Consultations and praise cannot be kept from the department",
        ),
        "hotline_attachment_invalid": (422, "附件无效", "An attachment is not one of your uploads"),
        "hotline_location_invalid": (422, "地点无效", "The location is not a region of Hunan"),
        "hotline_phone_required": (
            422,
            "12345 需要回访电话，请先绑定手机号",
            "12345 needs a phone number to call back: bind one first",
        ),
        "hotline_refused": (422, "12345 热线拒绝了该工单", "12345 refused the ticket"),
        "hotline_no_open_info_request": (
            409,
            "该工单没有待补充的信息",
            "This ticket is not waiting for more information",
        ),
        "hotline_not_ratable": (409, "该工单尚不能评价", "This ticket cannot be rated now"),
        "hotline_already_rated": (409, "该工单已评价", "The handling of this ticket was already rated"),
        "hotline_callback_rejected": (401, "12345 回调校验失败", "The 12345 callback was rejected"),
    },
)

Kind = Literal["consultation", "complaint", "report", "suggestion", "praise"]
TicketStatus = Literal[
    "filing",
    "accepted",
    "dispatched",
    "in_progress",
    "awaiting_info",
    "supervised",
    "feedback_given",
    "closed",
]
Satisfaction = Literal["satisfied", "basically_satisfied", "dissatisfied"]
Freshness = Literal["ok", "unavailable"]

_TEXT = msgspec.Meta(
    min_length=1,
    description=(
        f"{MIN_TEXT} to {MAX_TEXT} characters (422 `hotline_text_too_short` / `hotline_text_too_long`)"
    ),
)
_UPLOAD = Annotated[str, msgspec.Meta(min_length=1, max_length=64, description="one of my uploads")]


class HotlineLocationIn(CamelIn):
    region_code: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{6}$")]
    address: Annotated[str, msgspec.Meta(max_length=120)] = ""
    lng: Annotated[float, msgspec.Meta(ge=-180, le=180)] | None = None
    lat: Annotated[float, msgspec.Meta(ge=-90, le=90)] | None = None


class TicketIn(CamelIn):
    kind: Kind
    text: Annotated[str, _TEXT]
    title: Annotated[str, msgspec.Meta(min_length=1, max_length=60)] | None = None
    item_code: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    case_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    location: HotlineLocationIn | None = None
    attachments: Annotated[list[_UPLOAD], msgspec.Meta(max_length=MAX_ATTACHMENTS)] = []
    # 保密: the department does not learn who filed it (complaints, reports and suggestions only).
    anonymous: bool = False


class HotlineReplyIn(CamelIn):
    info_request_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    text: Annotated[str, _TEXT]
    attachments: Annotated[list[_UPLOAD], msgspec.Meta(max_length=MAX_ATTACHMENTS)] = []


class HotlineRatingIn(CamelIn):
    satisfaction: Satisfaction
    resolved: bool
    comment: Annotated[str, msgspec.Meta(max_length=500)] = ""


class HotlineItemRef(Camel):
    code: str
    name: str | None


class HotlineLocationOut(Camel):
    """The street address masked: the full one went to 12345 only."""

    region_code: str
    address: str


class HotlineAttachmentOut(Camel):
    upload_id: str
    file_name: str


class HotlineInfoRequestOut(Camel):
    id: str
    questions: list[str]


class HotlineRatingOut(Camel):
    satisfaction: Satisfaction
    resolved: bool
    comment: str


class HotlineTimelineStep(Camel, omit_defaults=True):
    seq: int
    at: str
    kind: str
    title: str
    status: str
    details: dict[str, Any] | None = None


class TicketSummary(Camel):
    id: str
    ticket_no: str | None
    kind: Kind
    kind_label: str
    title: str
    status: TicketStatus
    status_label: str
    department_name: str | None
    deadline_at: str | None
    overdue: bool
    # 回访: the department has answered and the resident may rate the handling.
    awaiting_rating: bool
    awaiting_info: bool
    created_at: str
    updated_at: str


class TicketDetail(TicketSummary):
    text: str
    anonymous: bool
    item: HotlineItemRef | None
    case_id: str | None
    project_no: str | None
    location: HotlineLocationOut | None
    attachments: list[HotlineAttachmentOut]
    category: str | None
    urgency: str | None
    open_info_request: HotlineInfoRequestOut | None
    rating: HotlineRatingOut | None
    timeline: list[HotlineTimelineStep]


class TicketPage(Camel):
    items: list[TicketSummary]
    next_cursor: str | None


class KbAnswerOut(Camel):
    kb_id: str
    category: str
    question: str
    answer: str
    department: str
    score: float | None


class HotlineItemSuggestion(Camel):
    code: str
    name: str
    department: str
    online: bool


class HotlineSectionStatus(Camel):
    status: Freshness


class Suggestions(Camel):
    """What to read before filing a consultation: 12345's knowledge-base answers and our items."""

    query: str
    answers: list[KbAnswerOut]
    answers_status: HotlineSectionStatus
    items: list[HotlineItemSuggestion]
    items_status: HotlineSectionStatus


class HotlineNotifyOutcome(Camel):
    outcome: Literal["applied", "duplicate", "unknown_ticket"]
