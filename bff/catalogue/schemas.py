"""The guide (办事指南) as the phone sees it: camelCase, only what a resident acts on."""

from __future__ import annotations

from typing import Literal

from bff.platform.problems import define
from bff.platform.schema import Camel
from bff.platform.uimode import DisplayHint

define(
    __name__,
    {
        "item_not_found": (404, "未找到该事项", "No such service item"),
        "item_cancelled": (410, "该事项已取消", "This service item has been cancelled"),
        "query_too_long": (400, "搜索内容过长", "The search text is too long"),
        "catalogue_not_ready": (503, "事项目录正在同步，请稍后再试", "The catalogue is being synchronised"),
        "hall_not_found": (404, "未找到该大厅", "No such service hall"),
        "life_event_not_found": (404, "未找到该主题服务", "No such life event"),
    },
)


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


class QueryInfo(Camel):
    text: str
    normalized: str
    # Said to the resident when the query cannot be searched as typed (empty, only symbols), or
    # when no item matches it well and the nearest items are offered instead ("did you mean").
    notice: str | None = None
    # `exact`: the items match what was typed; `nearest`: no item matched well, these are the
    # closest in meaning (the phone shows "did you mean"); `none`: nothing to offer.
    match: Literal["exact", "nearest", "none"] = "exact"


class RegionTruth(Camel):
    """What the resident's region really offers for an item (the most local implementation)."""

    region_code: str  # the region that implements it for the resident (theirs, the city or the province)
    online: bool
    bookable: bool
    # The result is mailed (免费邮寄送达) rather than only handed over at the hall.
    mailable: bool
    department: str


class SearchItem(Camel):
    code: str
    name: str
    audience: str
    topic: str
    kind: str
    department: str
    online: bool
    # Implemented by the resident's own region (None when no region was given); when False the
    # guide shows the city's or the province's implementation.
    available_in_region: bool | None
    handling_item_count: int
    matched: str
    # With `region`: that region's truth; `online` and `department` above then say the same.
    in_region: RegionTruth | None = None
    # 长辈版 only: a plain-language title to show beside the official name, where we have one.
    plain_name: str | None = None


class SearchPage(Camel):
    items: list[SearchItem]
    next_cursor: str | None
    query: QueryInfo
    freshness: Freshness
    display: DisplayHint | None = None  # 长辈版 only


class SearchMiss(Camel):
    query: str
    zero_results: int
    low_confidence: int
    last_day: str


class SearchMissPage(Camel):
    """`GET /staff/search/misses`: failed searches, anonymised, most frequent first."""

    since: str
    withheld: int
    items: list[SearchMiss]
    next_cursor: str | None


class Suggestion(Camel):
    text: str
    code: str


class SuggestPage(Camel):
    items: list[Suggestion]
    query: QueryInfo


class Topic(Camel):
    name: str
    audience: str
    item_count: int


class TopicList(Camel):
    items: list[Topic]
    next_cursor: str | None


class RegionOut(Camel):
    code: str
    name: str
    type: str
    level: str
    parent_code: str | None
    lat: float
    lng: float


class RegionPage(Camel):
    items: list[RegionOut]
    next_cursor: str | None


class HallCard(Camel):
    id: str
    name: str
    region_code: str
    region_name: str
    address: str
    hours: str
    phone: str
    lat: float
    lng: float
    distance_m: int | None
    demo_data: bool


class HallPage(Camel):
    items: list[HallCard]
    next_cursor: str | None


class HandlingItem(Camel):
    code: str
    name: str


class LifeEventStepOut(Camel):
    order: int
    code: str | None
    name: str
    note: str
    available_in_region: bool | None


class LifeEventOut(Camel):
    id: str
    name: str
    audience: str
    description: str
    steps: list[LifeEventStepOut]


class LifeEventPage(Camel):
    items: list[LifeEventOut]
    next_cursor: str | None


class GuideOut(Camel, omit_defaults=True):
    """`GET /items/{code}`: the guide with its freshness; from the mirror, also the item's handling
    items (业务办理项) and the nearest halls that handle it."""

    freshness: Freshness
    item: Guide
    source: Literal["mirror", "library"] = "library"
    handling_items: list[HandlingItem] = []
    nearest_halls: list[HallCard] = []
    # 长辈版 only: the plain-language title of the item (where we have one) and the large-type hint.
    plain_name: str | None = None
    display: DisplayHint | None = None
