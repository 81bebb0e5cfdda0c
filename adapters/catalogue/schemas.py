"""The item library's wire format (snake_case, its own vocabulary), decoded strictly."""

from __future__ import annotations

import msgspec


class Material(msgspec.Struct, frozen=True):
    name: str
    required: bool
    form: str  # 原件 / 复印件 / 原件和复印件 / 电子
    count: int
    format: str
    source: str
    elicence_type: str | None = None  # the e-licence type that can replace it
    notes: str | None = None
    blank_form: bool = False
    sample: bool = False


class Step(msgspec.Struct, frozen=True):
    name: str
    description: str
    days: int = 0


class Fee(msgspec.Struct, frozen=True):
    name: str
    standard_fen: int
    basis: str
    waivable: bool = False


class Hall(msgspec.Struct, frozen=True):
    id: str
    name: str
    region_code: str
    address: str
    hours: str
    phone: str
    lat: float
    lng: float


class Faq(msgspec.Struct, frozen=True):
    question: str
    answer: str


class ItemEntry(msgspec.Struct, frozen=True):
    """One implementation-list entry (实施清单): an item as one region implements it."""

    catalog_code: str
    task_code: str
    task_version: int
    name: str
    region_code: str
    department: str
    audience: str
    theme: str
    kind: str
    status: str  # active / cancelled
    updated_at: str
    legal_basis: list[str]
    accept_conditions: list[str]
    materials: list[Material]
    steps: list[Step]
    anticipate_day: int
    promise_day: int
    fees: list[Fee]
    halls: list[Hall]
    limit_scene_num: int
    is_online: bool
    online_handle_depth: int
    is_schedule: bool
    is_express: bool
    is_pay_online: bool
    is_service_terminals: bool
    is_entry_center: bool
    tongban_range: str
    faq: list[Faq]
    supervision: str
    demo: bool = True
