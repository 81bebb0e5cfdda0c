"""代办 mandates: the agent's invite, the principal's grant, the two lists, accepting and ending
one, and the operator's proof of a guardianship."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from bff.platform.problems import define
from bff.platform.schema import Camel, CamelIn

MAX_DAYS = 366  # a mandate lasts at most a year (a leap year's worth): renew it, never forever

define(
    __name__,
    {
        "mandate_not_found": (404, "未找到该代办授权", "No such mandate"),
        "mandate_invite_invalid": (
            422,
            "邀请码无效或已过期",
            "The invite code is not valid (unknown, used or expired)",
        ),
        "mandate_self_grant": (422, "不能授权给自己", "You cannot grant a mandate to yourself"),
        "mandate_action_unknown": (422, "授权事项无效", "An action is not one a mandate can hold"),
        "mandate_expiry_invalid": (
            422,
            f"授权期限须在将来且不超过{MAX_DAYS}天",
            f"The expiry must be in the future and at most {MAX_DAYS} days away",
        ),
        "mandate_category_unknown": (422, "事项类别无效", "A category is not a topic of the catalogue"),
        "mandate_not_offered": (409, "该授权不在待接受状态", "The mandate is not waiting to be accepted"),
        "mandate_no_proof_needed": (409, "该授权无需或已完成核验", "The mandate is not waiting for a proof"),
    },
)

Kind = Literal["family", "guardian"]
Status = Literal["offered", "pending_proof", "active", "revoked", "expired"]
ProofKind = Literal["birth_certificate", "household_register"]


class InviteOut(Camel):
    """Shown to the agent once: they tell it to the principal (with their masked phone, which the
    principal sees again on the grant to check it is the right person)."""

    code: str
    expires_at: str
    agent_phone: str | None


class MandateIn(CamelIn):
    invite_code: Annotated[str, msgspec.Meta(pattern=r"^[0-9A-Z]{8}$")]
    actions: Annotated[list[str], msgspec.Meta(min_length=1, max_length=4)]
    expires_at: datetime
    kind: Kind = "family"
    # Catalogue topic names (GET /api/v1/topics): when given, `apply` is limited to their items.
    categories: Annotated[list[str], msgspec.Meta(max_length=10)] = []


class Party(Camel):
    person_id: str
    name: str  # masked
    phone: str | None  # masked


class MandateOut(Camel):
    id: str
    # Which side of it the caller is on.
    role: Literal["principal", "agent"]
    kind: Kind
    status: Status
    actions: list[str]
    categories: list[str]
    expires_at: str
    principal: Party
    agent: Party
    created_at: str
    accepted_at: str | None
    revoked_at: str | None
    revoked_by: Literal["principal", "agent"] | None
    proof_kind: ProofKind | None


class MandateLists(Camel):
    granted: list[MandateOut]
    held: list[MandateOut]


class ProofIn(CamelIn):
    """An operator checked the document that makes the agent the minor's guardian."""

    proof_kind: ProofKind
    reference: Annotated[str, msgspec.Meta(min_length=4, max_length=64, pattern=r"^[0-9A-Za-z-]+$")]
