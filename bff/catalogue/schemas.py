"""The guide (办事指南) as the phone sees it: camelCase, only what a resident acts on."""

from __future__ import annotations

from typing import Literal

import msgspec


class Camel(msgspec.Struct, rename="camel"):
    """Response structs: camelCase on the wire."""


class MaterialOut(Camel):
    name: str
    required: bool
    form: str
    count: int
    format: str
    source: str
    # An e-licence replaces it: the resident need not bring it.
    replaced_by_elicence: bool
    elicence_type: str | None
    notes: str | None
    has_blank_form: bool
    has_sample: bool


class StepOut(Camel):
    name: str
    description: str
    days: int


class FeeOut(Camel):
    name: str
    amount_fen: int
    basis: str
    waivable: bool


class HallOut(Camel):
    id: str
    name: str
    region_code: str
    address: str
    hours: str
    phone: str
    lat: float
    lng: float


class FaqOut(Camel):
    question: str
    answer: str


class Channels(Camel):
    online: bool
    online_depth: int
    bookable: bool
    mailable: bool
    pay_online: bool
    kiosk: bool
    in_hall: bool
    visits_needed: int
    tongban_range: str


class TimeLimits(Camel):
    statutory_working_days: int
    promised_working_days: int


class Guide(Camel):
    code: str
    task_code: str
    version: int
    name: str
    region_code: str
    department: str
    audience: str
    theme: str
    kind: str
    conditions: list[str]
    legal_basis: list[str]
    materials: list[MaterialOut]
    steps: list[StepOut]
    time_limits: TimeLimits
    fees: list[FeeOut]
    free: bool
    halls: list[HallOut]
    channels: Channels
    faq: list[FaqOut]
    supervision: str
    demo_data: bool


class Freshness(Camel):
    status: Literal["ok", "stale", "unavailable"]
    as_of: str
