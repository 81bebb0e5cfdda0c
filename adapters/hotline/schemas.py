"""The 12345 hotline's wire format (its channel API): tickets, their events, the changes feed and
the knowledge base."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec

Kind = Literal["consultation", "complaint", "report", "suggestion", "praise"]
Status = Literal[
    "accepted", "dispatched", "in_progress", "awaiting_info", "supervised", "feedback_given", "closed"
]
Satisfaction = Literal["satisfied", "basically_satisfied", "dissatisfied"]
HotlineChannel = Literal["app", "mini_program", "kiosk", "web"]


class Caller(msgspec.Struct, frozen=True):
    name: str
    phone: str
    ref: str | None = None

    def __repr__(self) -> str:  # never in a log line
        return f"Caller(ref={self.ref!r})"


class Location(msgspec.Struct, frozen=True):
    region_code: str
    address: str = ""
    lng: float | None = None
    lat: float | None = None

    def __repr__(self) -> str:
        return f"Location(region_code={self.region_code!r})"


class Attachment(msgspec.Struct, frozen=True):
    name: str
    url: str
    sha256: str | None = None
    size: int | None = None


class Related(msgspec.Struct, frozen=True):
    catalog_code: str | None = None
    project_no: str | None = None


class HotlineEvent(msgspec.Struct, frozen=True):
    """One step of a ticket, as the webhook, the feed and the ticket itself carry it."""

    event_id: str
    seq: int
    ticket_no: str
    ticket_seq: int
    type: str
    status: Status
    status_code: str
    occurred_at: datetime
    data: dict[str, Any] = {}


class InfoRequest(msgspec.Struct, frozen=True):
    id: str
    questions: list[str]


class Ticket(msgspec.Struct, frozen=True):
    ticket_no: str
    kind: Kind
    status: Status
    status_code: str
    ticket_seq: int
    anonymous: bool
    events: list[HotlineEvent]
    deadline_at: datetime | None = None
    department_name: str | None = None
    open_info_request: InfoRequest | None = None
    follow_code: str | None = None


class EventReply(msgspec.Struct, frozen=True):
    event: HotlineEvent


class Changes(msgspec.Struct, frozen=True):
    events: list[HotlineEvent]
    next_since: int


class KbAnswer(msgspec.Struct, frozen=True):
    kb_id: str
    category: str
    question: str
    answer: str
    department: str
    score: float | None = None


class KbResults(msgspec.Struct, frozen=True):
    results: list[KbAnswer]


class RefusalBody(msgspec.Struct, frozen=True):
    code: str
    message: str = ""


class Refusal(msgspec.Struct, frozen=True):
    """12345 nests its refusals: `{"error": {"code", "message"}}`."""

    error: RefusalBody
