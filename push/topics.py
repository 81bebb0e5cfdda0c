"""What each outbox topic carries: one typed payload per topic, so that a consumer can decode
what a producer wrote without guessing (camelCase, as the payloads are also shown in the inbox).

A new topic is a payload here and a template in `push/templates.py`; nothing else changes."""

from __future__ import annotations

from typing import Literal

import msgspec

Topic = Literal[
    "case.changed",
    "payment.changed",
    "delivery.changed",
    "appointment.changed",
    "appointment.reminder",
    "appointment.waitlist_offer",
    "licence.expiring",
    "hotline.changed",
    "mandate.changed",
]


class CaseChanged(msgspec.Struct, frozen=True, rename="camel", kw_only=True):
    """A case moved (accepted, a step, 补正 requested, concluded …)."""

    case_id: str
    project_no: str
    item_name: str
    event: str
    status: str
    result: str | None
    occurred_at: str


class PaymentChanged(msgspec.Struct, frozen=True, rename="camel", kw_only=True):
    """A payment of a case fee moved (paid, closed, refunding, refunded …); money in integer fen."""

    payment_id: str
    case_id: str
    status: str
    amount_fen: int
    refunded_fen: int
    occurred_at: str


class DeliveryChanged(msgspec.Struct, frozen=True, rename="camel", kw_only=True):
    """A mailed result moved: the shipment was created, picked up, is out for delivery, delivered …"""

    delivery_id: str
    case_id: str
    project_no: str
    item_name: str
    waybill_no: str | None
    status: str
    place: str | None
    occurred_at: str


class AppointmentChanged(msgspec.Struct, frozen=True, rename="camel", kw_only=True):
    """A booking was confirmed, moved or cancelled (`event`: booked, rescheduled, cancelled).
    Codes, not names: the appointments domain holds no catalogue names."""

    appointment_id: str
    item_code: str
    hall_id: str
    starts_at: str  # ISO-8601, China time
    booking_no: str
    event: str


class AppointmentReminder(msgspec.Struct, frozen=True, rename="camel", kw_only=True):
    """The day before an appointment."""

    appointment_id: str
    item_code: str
    hall_id: str
    starts_at: str
    booking_no: str


class WaitlistOffer(msgspec.Struct, frozen=True, rename="camel", kw_only=True):
    """A seat freed for a resident in the waitlist, held until `expires_at`: booking it with
    `hold_id` claims it, otherwise it passes to the next in line."""

    entry_id: str
    hold_id: str
    slot_id: str
    item_code: str
    hall_id: str
    starts_at: str  # ISO-8601, China time
    expires_at: str


class LicenceExpiring(msgspec.Struct, frozen=True, rename="camel", kw_only=True):
    """One of the resident's licences ends soon: told once when it comes within `threshold` days
    (90, then 30, then 7). The licence's type name and end date only, never its number."""

    licence_id: str
    type_name: str
    valid_to: str  # ISO date, China
    days_left: int
    threshold: int


class HotlineChanged(msgspec.Struct, frozen=True, rename="camel", kw_only=True):
    """A 12345 ticket reached a step the resident should hear of (`event`: dispatched,
    info_requested, supervised, feedback_given, closed). Numbers and department names only: the
    resident's own text never goes into a message."""

    ticket_id: str
    ticket_no: str
    kind: str
    event: str
    status: str
    department_name: str | None
    deadline_at: str | None  # ISO-8601
    occurred_at: str


class MandateChanged(msgspec.Struct, frozen=True, rename="camel", kw_only=True):
    """A 代办 mandate the resident granted moved, told to them (the principal): `event` accepted
    or revoked (by either side), or `used` (the agent acted under it: once per action and day).
    `status` is the event, for the templates' wording; the agent's name is masked."""

    mandate_id: str
    event: str
    status: str
    agent_name: str
    action: str | None
    occurred_at: str


PAYLOADS: dict[str, type[msgspec.Struct]] = {
    "case.changed": CaseChanged,
    "payment.changed": PaymentChanged,
    "delivery.changed": DeliveryChanged,
    "appointment.changed": AppointmentChanged,
    "appointment.reminder": AppointmentReminder,
    "appointment.waitlist_offer": WaitlistOffer,
    "licence.expiring": LicenceExpiring,
    "hotline.changed": HotlineChanged,
    "mandate.changed": MandateChanged,
}
