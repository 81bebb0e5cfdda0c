"""Life-event applications (一件事一次办): the questionnaire and merged form, the one submission, the
bundle's view."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from bff.cases.schemas import CaseSummary, FormIn, MaterialIn
from bff.platform.problems import define
from bff.platform.schema import Camel, CamelIn

define(
    __name__,
    {
        "answers_invalid": (422, "问卷回答有误", "The questionnaire answers are not valid"),
        "nothing_to_apply": (
            422,
            "按您的回答，没有可在网上申请的事项",
            "With these answers no item of the bundle can be applied for online",
        ),
        "member_not_failed": (409, "该事项没有失败，无需重试", "That member did not fail; nothing to retry"),
        "life_application_not_found": (404, "未找到该一件事申请", "No such life-event application"),
        "member_not_found": (404, "该申请中没有此事项", "No such member in this application"),
    },
)

QuestionId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z][A-Za-z0-9]{0,39}$")]

# The bundle's overall state, worst first (the first that holds is the state):
# some_failed (a member's submission failed: retry it), some_need_supplement (a member awaits a
# 补正 answer), submitting (a member's submission has no answer yet), some_not_accepted (a member
# was refused by its department: 不予受理), all_concluded (every member concluded), all_accepted
# (every member accepted or beyond), submitted (otherwise: the departments have not all accepted).
BundleState = Literal[
    "some_failed",
    "some_need_supplement",
    "submitting",
    "some_not_accepted",
    "all_concluded",
    "all_accepted",
    "submitted",
]
MemberState = Literal["submitting", "submitted", "failed"]
NextKind = Literal["retry_member", "answer_supplement", "pay_fee", "wait", "done"]


class QuestionOut(Camel):
    id: str
    text: str
    answer: bool | None


class FormStepOut(Camel):
    order: int
    code: str | None
    name: str
    note: str
    # The question whose yes makes this step apply (None: always).
    condition: str | None
    # None while `condition` is unanswered.
    applies: bool | None
    # How the step is done in this region: online (one case of the submission) or in the hall.
    online: bool | None
    mailable: bool | None


class FormMaterialOut(Camel):
    name: str
    # Required by at least one applicable online item.
    required: bool
    # The applicable online items whose guide asks for it (each gets it from the one given).
    needed_by: list[str]
    # An e-licence of this type stands in for it (every item needing it accepts the same type).
    elicence_type: str | None


class LifeFormOut(Camel):
    event_id: str
    name: str
    region_code: str
    questions: list[QuestionOut]
    unanswered: list[str]
    steps: list[FormStepOut]
    materials: list[FormMaterialOut]


class LifeApplicationIn(CamelIn):
    # Every question of the bundle answered yes (true) or no (false).
    answers: Annotated[dict[QuestionId, bool], msgspec.Meta(max_length=20)]
    region_code: Annotated[str, msgspec.Meta(pattern=r"^\d{6}$")]
    form: FormIn
    # Each material once; it serves every member whose guide asks for it.
    materials: Annotated[list[MaterialIn], msgspec.Meta(max_length=30)]


class MemberFailure(Camel):
    code: str
    detail: str


class MemberFee(Camel):
    fee_id: str
    total_fen: int
    owed_fen: int
    issuing_department: str
    pay_online: str | None


class MemberOut(Camel):
    item_code: str
    item_name: str
    state: MemberState
    attempts: int
    case: CaseSummary | None
    failure: MemberFailure | None
    retry: str | None
    fee: MemberFee | None


class HallItemOut(Camel):
    code: str
    name: str


class NextActionOut(Camel):
    kind: NextKind
    text: str
    item_code: str | None
    case_id: str | None
    supplement_id: str | None
    href: str | None
    # For `pay_fee`: the department whose fees are paid together (the body to POST to `href`).
    department: str | None = None


class DepartmentFees(Camel):
    department: str
    total_fen: int
    owed_fen: int
    case_ids: list[str]
    # While anything is owed: POST here (body `{"department": ...}`) pays all of it at once.
    pay: str | None = None


class FeesOut(Camel):
    total_fen: int
    owed_fen: int
    by_department: list[DepartmentFees]


class LifeApplicationOut(Camel):
    id: str
    event_id: str
    event_name: str
    region_code: str
    answers: dict[str, bool]
    submitted_at: str
    state: BundleState
    state_label: str
    members: list[MemberOut]
    hall_items: list[HallItemOut]
    latest_promise_date: str | None
    next_action: NextActionOut
    fees: FeesOut
