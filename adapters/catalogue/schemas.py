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
    demo: bool = False


class Region(msgspec.Struct, frozen=True):
    code: str
    name: str
    type: str
    level: str  # province / city / county
    parent_code: str | None
    lng: float
    lat: float


class RegionList(msgspec.Struct, frozen=True):
    regions: list[Region]


class HallList(msgspec.Struct, frozen=True):
    halls: list[Hall]


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
    # The main item (主项) of a handling item (业务办理项); None for a main item.
    parent_code: str | None = None
    scenario: str | None = None
    # Position in the library's change feed.
    seq: int = 0


class ChangePage(msgspec.Struct, frozen=True):
    """One page of the change feed: entries with `seq` above the asked cursor, in `seq` order."""

    entries: list[ItemEntry]
    next_since: int
    has_more: bool
