"""Shapes of home (我的待办) and its badges.

Every section carries its own `status` and `asOf`: `ok` (read just now), `stale` (the domain did
not answer within the section's budget; the copy of `asOf` is shown), `unavailable` (nothing to
show: no copy, or the session's level does not reach that domain). `total` counts every to-do of
the section; `items` are the first ones, as many as the channel and display mode show.
"""

from __future__ import annotations

from typing import Literal

from auth.principal import Channel
from bff.licences.schemas import RenewalTodo
from bff.lifeapps.schemas import BundleState, NextKind
from bff.platform.schema import Camel
from bff.platform.uimode import DisplayHint

SectionStatus = Literal["ok", "stale", "unavailable"]
SectionName = Literal[
    "bundles", "supplements", "fees", "appointments", "parcels", "renewals", "ratings", "hotline", "messages"
]
# Why a section has nothing: the domain did not answer in time with no copy kept, or the session
# must step up (real-name level) before that domain is shown.
Reason = Literal["timeout", "failed", "step_up_required"]


class BundleTodo(Camel):
    """A life-event application (一件事一次办) under way: one to-do for all its member cases (their
    补正 and fees are not listed again in those sections; `nextAction` says which comes first)."""

    application_id: str
    event_name: str
    state: BundleState
    state_label: str
    next_action: NextKind
    next_action_text: str
    members: int
    concluded: int
    link: str


class SupplementTodo(Camel):
    case_id: str
    project_no: str
    item_name: str
    supplement_id: str
    link: str


class FeeTodo(Camel):
    case_id: str
    project_no: str
    item_name: str
    fee_id: str
    total_fen: int
    payable_by: str
    link: str


class AppointmentTodo(Camel):
    id: str
    status: str
    starts_at: str
    ends_at: str
    hall_name: str | None
    item_name: str | None
    ticket_no: str | None
    link: str


class ParcelTodo(Camel):
    id: str
    case_id: str
    project_no: str | None
    item_name: str
    carrier: str
    waybill_no: str | None
    status: str
    link: str


class RatingTodo(Camel):
    case_id: str
    project_no: str
    item_name: str
    # The case's last change (its conclusion, or its delivery after it): the rating window runs from it.
    changed_at: str
    link: str


class FeedbackTicketTodo(Camel):
    """A 12345 ticket the department answered, waiting for the resident's rating (回访)."""

    ticket_id: str
    ticket_no: str
    kind: str
    title: str
    department_name: str | None
    answered_at: str
    link: str


class _Section(Camel):
    status: SectionStatus
    # When what is shown was read (China time); null when nothing is shown.
    as_of: str | None
    total: int
    reason: Reason | None = None


class BundleSection(_Section):
    items: list[BundleTodo] = []


class SupplementSection(_Section):
    items: list[SupplementTodo] = []


class FeeSection(_Section):
    items: list[FeeTodo] = []


class AppointmentSection(_Section):
    items: list[AppointmentTodo] = []


class ParcelSection(_Section):
    items: list[ParcelTodo] = []


class RenewalSection(_Section):
    items: list[RenewalTodo] = []


class RatingSection(_Section):
    items: list[RatingTodo] = []


class FeedbackSection(_Section):
    items: list[FeedbackTicketTodo] = []


class MessageSection(_Section):
    """The unread count only: the inbox is a page of its own."""


class HomeSections(Camel, omit_defaults=True):
    """In urgency order; a section elder mode leaves out is absent."""

    bundles: BundleSection | None = None
    supplements: SupplementSection | None = None
    fees: FeeSection | None = None
    appointments: AppointmentSection | None = None
    parcels: ParcelSection | None = None
    renewals: RenewalSection | None = None
    ratings: RatingSection | None = None
    hotline: FeedbackSection | None = None
    messages: MessageSection | None = None


class Home(Camel):
    channel: Channel
    # The sections holding a to-do, most urgent first: what a screen shows top down.
    order: list[SectionName]
    sections: HomeSections
    # Mini-program only: the one-time subscribe templates worth asking for next (wx.requestSubscribeMessage
    # takes up to 3), from what the resident has under way.
    subscribe_templates: list[str] | None = None
    display: DisplayHint | None = None


class BadgeCount(Camel):
    status: SectionStatus
    count: int | None


class Badges(Camel):
    """Counts for the tab bar; a count is null when it could not be read in time."""

    todos: BadgeCount
    messages: BadgeCount
