"""The case system's wire format."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec


class CaseEvent(msgspec.Struct, frozen=True):
    event_id: str
    seq: int
    project_no: str
    request_id: str
    case_seq: int
    type: str
    occurred_at: datetime
    status: str
    status_code: str
    data: dict[str, Any]


class Application(msgspec.Struct, frozen=True):
    project_no: str
    request_id: str
    catalog_code: str
    region_code: str
    status: str
    status_code: str
    case_seq: int
    open_supplement: str | None
    events: list[CaseEvent]


class Changes(msgspec.Struct, frozen=True):
    events: list[CaseEvent]
    next_since: int


class SupplementReply(msgspec.Struct, frozen=True):
    event: CaseEvent


class MaterialRef(msgspec.Struct, frozen=True):
    name: str
    kind: Literal["elicence", "upload"]
    reference: str


class Refusal(msgspec.Struct, frozen=True):
    error: str
    message: str = ""


class FeePaidReply(msgspec.Struct, frozen=True):
    events: list[CaseEvent]


class Voided(msgspec.Struct, frozen=True):
    """What the case system did with one request id, made final (`voided`: it never arrived and
    now never will; otherwise `status` and `body` are the answer it gave)."""

    request_id: str
    voided: bool
    status: int
    body: dict[str, Any]

    @property
    def done(self) -> bool:
        return not self.voided and 200 <= self.status < 300
