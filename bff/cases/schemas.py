"""Case (办件) requests and responses."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

import msgspec

from bff.platform.problems import define
from bff.platform.schema import Camel, CamelIn

define(
    __name__,
    {
        "item_not_online": (422, "该事项不支持网上申请", "This item cannot be applied for online"),
        "materials_invalid": (422, "申请材料不符合办事指南要求", "The materials do not match the guide"),
        "form_invalid": (422, "申请表填写有误", "The application form is not valid"),
        "case_refused": (422, "办件系统拒绝了申请", "The case system refused the application"),
        "webhook_rejected": (401, "回调校验失败", "The webhook delivery was rejected"),
        "no_open_supplement": (409, "当前没有待补正事项", "There is no open correction request"),
        "supplement_attempt_voided": (
            409,
            "该次补正提交已作废，请重新提交",
            "That answer to the correction request was given up; submit it again",
        ),
    },
)

Phone = Annotated[str, msgspec.Meta(pattern=r"^1[3-9]\d{9}$")]


class ELicenceRef(CamelIn):
    type: Annotated[str, msgspec.Meta(pattern=r"^\d{20}$")]
    number: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class MaterialIn(CamelIn):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    elicence: ELicenceRef | None = None
    upload_id: str | None = None


class FormIn(CamelIn):
    # Left out: the resident's own name and phone from their verified profile (what a renewal to-do's
    # started form, which may only show them masked, relies on).
    contact_name: Annotated[str, msgspec.Meta(min_length=1, max_length=50)] | None = None
    contact_phone: Phone | None = None
    delivery_wanted: bool = False
    delivery_address: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    remarks: Annotated[str, msgspec.Meta(max_length=500)] | None = None


class CaseIn(CamelIn):
    item_code: Annotated[str, msgspec.Meta(pattern=r"^[0-9A-Za-z_-]{1,64}$")]
    region_code: Annotated[str, msgspec.Meta(pattern=r"^\d{6}$")]
    form: FormIn
    materials: Annotated[list[MaterialIn], msgspec.Meta(max_length=30)]


class SupplementIn(CamelIn):
    supplement_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    answer: Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]
    materials: Annotated[list[MaterialIn], msgspec.Meta(max_length=30)] = []


class TimelineEntry(Camel, omit_defaults=True):
    seq: int
    at: str
    kind: str
    title: str
    officer: str | None = None
    opinion: str | None = None
    details: dict[str, Any] | None = None


class CountdownOut(Camel):
    promised_working_days: int
    used_working_days: int
    remaining_working_days: int
    suspended_working_days: int
    paused: bool
    overdue: bool
    promise_date: str | None


CaseStatus = Literal[
    "submitting",
    "submitted",
    "pre_accepted",
    "accepted",
    "not_accepted",
    "in_progress",
    "awaiting_supplement",
    "special_procedure",
    "concluded",
    "delivering",
    "delivered",
    "rated",
]


class CaseSummary(Camel):
    id: str
    project_no: str | None
    item_code: str
    item_name: str
    region_code: str
    status: CaseStatus
    result: str | None
    upstream_status_code: str | None
    submitted_at: str
    # A concluded, unrated case: a todo for the resident, never a block.
    rating_due: bool
    open_supplement_id: str | None
    # Labels of the codes above in the request's language (`issued` -> 出证办结).
    status_label: str | None = None
    result_label: str | None = None
    # The list shows the clock without opening the case (null before acceptance).
    promise_date: str | None = None
    remaining_working_days: int | None = None
    paused: bool = False


class CaseFeeLine(Camel):
    name: str
    amount_fen: int


class FeeNotice(msgspec.Struct, frozen=True, kw_only=True):
    """The case's newest 缴费通知 as the case system issued it (the payments domain's read port)."""

    case_id: uuid.UUID
    project_no: str
    item_name: str
    person_id: str
    fee_id: str
    total_fen: int
    lines: list[CaseFeeLine]
    payable_by: str
    payment_code: str
    issuing_department: str
    paid_upstream: bool


class CaseFeeOut(Camel):
    """What is owed and how to pay it: online through `payOnline` (POST, WeChat Pay), or at a bank
    with `paymentCode` (非税缴款码). Money in integer fen."""

    fee_id: str
    total_fen: int
    lines: list[CaseFeeLine]
    payable_by: str
    payment_code: str
    issuing_department: str
    owed_fen: int
    payment_id: str | None
    payment_status: str | None
    pay_online: str | None


class MaterialUsed(Camel):
    """A material as it was given: an upload, or the e-licence that stood in for it (which one, with
    its number masked like an ID number), so the resident sees what the department was shown."""

    name: str
    kind: Literal["elicence", "upload"]
    elicence_type: str | None = None
    licence_number: str | None = None  # masked
    upload_id: str | None = None


class CaseDetail(Camel):
    case: CaseSummary
    timeline: list[TimelineEntry]
    countdown: CountdownOut | None
    deemed_accepted_on: str | None
    rating_id: str | None
    fee: CaseFeeOut | None = None
    materials: list[MaterialUsed] = []


class CasePage(Camel):
    items: list[CaseSummary]
    next_cursor: str | None


class UploadOut(Camel):
    id: str
    file_name: str
    media_type: str
    size_bytes: int
    sha256: str
    created_at: str


class WebhookOutcome(Camel):
    outcome: Literal["applied", "duplicate", "unknown_case"]
