"""Routes of the catalogue domain: search, type-ahead, guides, topics, regions, halls, life events.

Everything is served from the mirror this process holds (`CatalogueMirror`); a guide the mirror
does not have yet is asked of the item library through the Redis-cached adapter path.
"""

from __future__ import annotations

import base64
import re
from typing import Annotated, TypeVar

import msgspec
from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter

from adapters.errors import ProblemError
from bff.catalogue.guide_cache import GuideCache
from bff.catalogue.mirror import CatalogueMirror, HallRow, LifeEvent, Snapshot, distance_m, guide_etag
from bff.catalogue.schemas import (
    Freshness,
    HallCard,
    HallPage,
    HandlingItem,
    LifeEventOut,
    LifeEventPage,
    LifeEventStepOut,
    QueryInfo,
    RegionOut,
    RegionPage,
    SearchItem,
    SearchPage,
    Suggestion,
    SuggestPage,
    Topic,
    TopicList,
)
from bff.catalogue.search import MAX_QUERY_CHARS, normalize
from bff.platform.paging import encode_token
from bff.platform.problems import register_titles

register_titles(
    {
        "item_not_found": ("未找到该事项", "No such service item"),
        "item_cancelled": ("该事项已取消", "This service item has been cancelled"),
        "query_too_long": ("搜索内容过长", "The search text is too long"),
        "invalid_cursor": ("分页参数无效", "The page cursor is not valid"),
        "catalogue_not_ready": ("事项目录正在同步，请稍后再试", "The catalogue is being synchronised"),
        "hall_not_found": ("未找到该大厅", "No such service hall"),
        "life_event_not_found": ("未找到该主题服务", "No such life event"),
    }
)

_CODE = re.compile(r"^[0-9A-Za-z_-]{1,64}$")
_REGION = re.compile(r"^\d{6}$")
_HALL = re.compile(r"^[0-9A-Za-z_-]{1,64}$")
_NEAR = re.compile(r"^\s*(-?\d{1,3}(?:\.\d{1,8})?)\s*,\s*(-?\d{1,3}(?:\.\d{1,8})?)\s*$")
_AUDIENCES = {
    "person": "个人",
    "individual": "个人",
    "个人": "个人",
    "legal": "法人",
    "business": "法人",
    "法人": "法人",
}
_NEAREST_HALLS = 3
_EMPTY_NOTICE = "请输入事项名称、关键词或拼音，例如“出生登记”“公积金”“csdj”"

_encoder = msgspec.json.Encoder()


def _bad(detail: str) -> ProblemError:
    return ProblemError(detail, status=400, code="validation_failed")


def _region(snapshot: Snapshot, region: str | None) -> str | None:
    if region is None:
        return None
    if not _REGION.match(region):
        raise _bad("region: must be a 6-digit region code")
    if snapshot.ready and region not in snapshot.regions:
        raise _bad(f"region: {region} is not a region of Hunan; see /api/v1/regions")
    return region


def _near(near: str | None) -> tuple[float, float] | None:
    if near is None:
        return None
    match = _NEAR.match(near)
    if not match:
        raise _bad("near: expected `lat,lng` in degrees, e.g. 28.19,112.98")
    lat, lng = float(match.group(1)), float(match.group(2))
    if not (-90 <= lat <= 90 and -180 <= lng <= 180):
        raise _bad("near: latitude must be within ±90 and longitude within ±180")
    return lat, lng


def _audience(audience: str | None) -> str | None:
    if audience is None or audience == "":
        return None
    if audience not in _AUDIENCES:
        raise _bad("audience: one of person, legal (or 个人, 法人)")
    return _AUDIENCES[audience]


def _offset(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor.encode() + b"==").decode()
        if not text.startswith("o:"):
            raise ValueError(text)
        offset = int(text[2:])
        if not 0 <= offset <= 100_000:
            raise ValueError(text)
    except ValueError:
        raise ProblemError(
            "cursor: not a cursor this API gave out", status=400, code="invalid_cursor"
        ) from None
    return offset


T = TypeVar("T")


def _page(items: list[T], limit: int, cursor: str | None) -> tuple[list[T], str | None]:
    start = _offset(cursor)
    end = start + limit
    following = encode_token(f"o:{end}") if end < len(items) else None
    return items[start:end], following


def _ready(mirror: CatalogueMirror) -> Snapshot:
    snapshot = mirror.snapshot
    if not snapshot.ready:
        raise ProblemError(
            "the catalogue has not been synchronised yet",
            status=503,
            code="catalogue_not_ready",
            headers={"Retry-After": "30"},
        )
    return snapshot


def _freshness(mirror: CatalogueMirror) -> Freshness:
    status, as_of = mirror.freshness()
    return Freshness(status=status, as_of=as_of or "")  # type: ignore[arg-type]


def _hall_card(snapshot: Snapshot, hall: HallRow, origin: tuple[float, float] | None) -> HallCard:
    region = snapshot.regions.get(hall.region_code)
    return HallCard(
        id=hall.id,
        name=hall.name,
        region_code=hall.region_code,
        region_name=region.name if region else "",
        address=hall.address,
        hours=hall.hours,
        phone=hall.phone,
        lat=hall.lat,
        lng=hall.lng,
        distance_m=distance_m(origin[0], origin[1], hall.lat, hall.lng) if origin else None,
        demo_data=hall.demo,
    )


def _sorted_halls(
    snapshot: Snapshot, halls: list[HallRow], origin: tuple[float, float] | None
) -> list[HallCard]:
    cards = [_hall_card(snapshot, hall, origin) for hall in halls]
    if origin is not None:
        cards.sort(key=lambda c: (c.distance_m or 0, c.id))
    return cards


class ItemController(Controller):
    path = "/items"
    tags = ["catalogue"]

    @get("/", summary="Search service items (Chinese, pinyin, initials, traditional, typos, colloquial)")
    async def search(
        self,
        catalogue_mirror: NamedDependency[CatalogueMirror],
        q: Annotated[str | None, QueryParameter(description="what the resident typed")] = None,
        region: Annotated[
            str | None, QueryParameter(description="the resident's 6-digit region code")
        ] = None,
        audience: Annotated[str | None, QueryParameter(description="person or legal")] = None,
        topic: Annotated[str | None, QueryParameter(description="a topic name from /topics")] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=50)] = 20,
        cursor: Annotated[str | None, QueryParameter()] = None,
    ) -> Response[bytes]:
        raw = q or ""
        if len(raw) > MAX_QUERY_CHARS:
            raise ProblemError(
                f"q: at most {MAX_QUERY_CHARS} characters; try the name of the item or a few key words",
                status=400,
                code="query_too_long",
            )
        snapshot = _ready(catalogue_mirror)
        resident = _region(snapshot, region)
        who = _audience(audience)
        if topic and topic not in {d.theme for d in snapshot.index.docs}:
            raise _bad("topic: unknown topic; see /api/v1/topics")
        normalized = normalize(raw)
        info = QueryInfo(text=raw, normalized=normalized)
        if not normalized and not (who or topic):
            info.notice = _EMPTY_NOTICE
            page = SearchPage(items=[], next_cursor=None, query=info, freshness=_freshness(catalogue_mirror))
            return Response(_encoder.encode(page), media_type="application/json")
        # Implemented by the resident's own region: the county (or the city, for a city).
        chain = (resident,) if resident else ()
        hits = snapshot.index.search(normalized, region_chain=chain, audience=who, theme=topic)
        shown, following = _page(hits, limit, cursor)
        items = [
            SearchItem(
                code=h.doc.code,
                name=h.doc.name,
                audience=h.doc.audience,
                topic=h.doc.theme,
                kind=h.doc.kind,
                department=h.doc.department,
                online=h.doc.online,
                available_in_region=h.local if resident else None,
                handling_item_count=len(h.doc.scenarios),
                matched=h.matched,
            )
            for h in shown
        ]
        page = SearchPage(
            items=items, next_cursor=following, query=info, freshness=_freshness(catalogue_mirror)
        )
        return Response(_encoder.encode(page), media_type="application/json")

    @get("/suggest", summary="Type-ahead for the search box")
    async def suggest(
        self,
        catalogue_mirror: NamedDependency[CatalogueMirror],
        q: Annotated[str | None, QueryParameter()] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=10)] = 8,
    ) -> Response[bytes]:
        raw = q or ""
        if len(raw) > MAX_QUERY_CHARS:
            raise ProblemError(f"q: at most {MAX_QUERY_CHARS} characters", status=400, code="query_too_long")
        snapshot = _ready(catalogue_mirror)
        normalized = normalize(raw)
        info = QueryInfo(text=raw, normalized=normalized, notice=None if normalized else _EMPTY_NOTICE)
        key = (raw, limit)
        body = catalogue_mirror.suggestions.get(key, snapshot.version)
        if body is None:
            found = snapshot.index.suggest(normalized, limit) if normalized else []
            page = SuggestPage(
                items=[Suggestion(text=text, code=doc.code) for text, doc in found], query=info
            )
            body = _encoder.encode(page)
            catalogue_mirror.suggestions.put(key, snapshot.version, body)
        return Response(body, media_type="application/json")

    @get("/{code:str}", summary="The guide (办事指南) of one item in a region, shaped for a phone")
    async def get_item(
        self,
        request: Request,  # type: ignore[type-arg]
        guide_cache: NamedDependency[GuideCache],
        catalogue_mirror: NamedDependency[CatalogueMirror],
        code: FromPath[str],
        region: Annotated[str | None, QueryParameter(description="6-digit region code")] = None,
        near: Annotated[str | None, QueryParameter(description="lat,lng: order halls by distance")] = None,
    ) -> Response[bytes]:
        if not _CODE.match(code):
            raise ProblemError("code: not a valid item code", status=400, code="validation_failed")
        snapshot = catalogue_mirror.snapshot
        resident = _region(snapshot, region)
        origin = _near(near)
        if snapshot.ready:
            status, as_of = catalogue_mirror.freshness()
            key = (code, resident, origin, status, as_of)
            assembled = catalogue_mirror.assembled.get(key, snapshot.version)
            if assembled is None:
                assembled = await _assemble(catalogue_mirror, snapshot, code, resident, origin)
                if assembled is not None:
                    catalogue_mirror.assembled.put(key, snapshot.version, assembled)
            if assembled is not None:
                return _conditional(request, *assembled)
        reply = await guide_cache.get(code, resident)
        return _conditional(request, reply.etag, reply.body)


async def _assemble(
    mirror: CatalogueMirror,
    snapshot: Snapshot,
    code: str,
    resident: str | None,
    origin: tuple[float, float] | None,
) -> tuple[str, bytes] | None:
    """(ETag, body) of the mirrored guide of `code` for a resident of `resident`; None when the
    mirror does not hold the item. The item part was shaped at sync time; halls and handling items
    are added here, from this process's snapshot."""
    row = await mirror.guide(code, snapshot.chain(resident))
    if row is None:
        return None
    if row.status != "active":
        raise ProblemError(f"service item {code} has been cancelled", status=410, code="item_cancelled")
    if origin is None and resident is not None:
        seat = snapshot.regions[resident]
        origin = (seat.lat, seat.lng)
    halls = _sorted_halls(snapshot, snapshot.halls_under(row.region_code), origin)[:_NEAREST_HALLS]
    doc = snapshot.index.by_code.get(code)
    handling = [HandlingItem(code=c, name=n) for c, n in (doc.scenarios if doc else [])]
    extra = _encoder.encode(handling), _encoder.encode(halls)
    etag = guide_etag(row.etag.encode(), *extra)
    body = b"".join(
        (
            b'{"freshness":',
            _encoder.encode(_freshness(mirror)),
            b',"source":"mirror","item":',
            row.body,
            b',"handlingItems":',
            extra[0],
            b',"nearestHalls":',
            extra[1],
            b"}",
        )
    )
    return etag, body


def _conditional(request: Request, etag: str, body: bytes) -> Response[bytes]:  # type: ignore[type-arg]
    headers = {"ETag": etag, "Cache-Control": "no-cache", "Vary": "Accept-Language"}
    if_none_match = request.headers.get("if-none-match")
    if if_none_match and etag in {tag.strip() for tag in if_none_match.split(",")}:
        return Response(content=b"", status_code=304, headers=headers)
    return Response(content=body, media_type="application/json", headers=headers)


class CatalogueController(Controller):
    tags = ["catalogue"]

    @get("/topics", summary="Topics (主题) residents and businesses browse by")
    async def topics(
        self,
        catalogue_mirror: NamedDependency[CatalogueMirror],
        audience: Annotated[str | None, QueryParameter(description="person or legal")] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 50,
        cursor: Annotated[str | None, QueryParameter()] = None,
    ) -> TopicList:
        snapshot = _ready(catalogue_mirror)
        who = _audience(audience)
        counts: dict[tuple[str, str], int] = {}
        for doc in snapshot.index.docs:
            if who is None or doc.audience == who:
                counts[(doc.audience, doc.theme)] = counts.get((doc.audience, doc.theme), 0) + 1
        topics = [
            Topic(name=theme, audience=aud, item_count=n)
            for (aud, theme), n in sorted(counts.items(), key=lambda kv: (kv[0][0], -kv[1], kv[0][1]))
        ]
        shown, following = _page(topics, limit, cursor)
        return TopicList(items=shown, next_cursor=following)

    @get("/regions", summary="Hunan's regions: the province, cities/prefectures, county-level units")
    async def regions(
        self,
        catalogue_mirror: NamedDependency[CatalogueMirror],
        parent: Annotated[
            str | None, QueryParameter(description="only the regions directly under this one")
        ] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
        cursor: Annotated[str | None, QueryParameter()] = None,
    ) -> RegionPage:
        snapshot = _ready(catalogue_mirror)
        if parent is not None:
            _region(snapshot, parent)
        rows = [r for r in snapshot.regions.values() if parent is None or r.parent_code == parent]
        out = [RegionOut(r.code, r.name, r.type, r.level, r.parent_code, r.lat, r.lng) for r in rows]
        shown, following = _page(out, limit, cursor)
        return RegionPage(items=shown, next_cursor=following)

    @get("/halls", summary="Service halls, by region and/or nearest first")
    async def halls(
        self,
        catalogue_mirror: NamedDependency[CatalogueMirror],
        region: Annotated[str | None, QueryParameter(description="halls in this region and below")] = None,
        near: Annotated[
            str | None, QueryParameter(description="lat,lng: nearest first, with distance")
        ] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
        cursor: Annotated[str | None, QueryParameter()] = None,
    ) -> HallPage:
        snapshot = _ready(catalogue_mirror)
        where = _region(snapshot, region)
        origin = _near(near)
        rows = snapshot.halls_under(where) if where else list(snapshot.halls.values())
        shown, following = _page(_sorted_halls(snapshot, rows, origin), limit, cursor)
        return HallPage(items=shown, next_cursor=following)

    @get("/halls/{hall_id:str}", summary="One service hall")
    async def hall(
        self,
        catalogue_mirror: NamedDependency[CatalogueMirror],
        hall_id: FromPath[str],
        near: Annotated[str | None, QueryParameter(description="lat,lng: adds the distance")] = None,
    ) -> HallCard:
        if not _HALL.match(hall_id):
            raise _bad("id: not a valid hall id")
        snapshot = _ready(catalogue_mirror)
        hall = snapshot.halls.get(hall_id)
        if hall is None:
            raise ProblemError(f"no service hall {hall_id}", status=404, code="hall_not_found")
        return _hall_card(snapshot, hall, _near(near))

    @get("/life-events", summary="Life-event bundles (一件事一次办) and their items in order")
    async def life_events(
        self,
        catalogue_mirror: NamedDependency[CatalogueMirror],
        region: Annotated[str | None, QueryParameter(description="marks steps implemented there")] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=50)] = 20,
        cursor: Annotated[str | None, QueryParameter()] = None,
    ) -> LifeEventPage:
        snapshot = _ready(catalogue_mirror)
        resident = _region(snapshot, region)
        events = [_life_event(snapshot, e, resident) for e in catalogue_mirror.life_events]
        shown, following = _page(events, limit, cursor)
        return LifeEventPage(items=shown, next_cursor=following)

    @get("/life-events/{event_id:str}", summary="One life-event bundle")
    async def life_event(
        self,
        catalogue_mirror: NamedDependency[CatalogueMirror],
        event_id: FromPath[str],
        region: Annotated[str | None, QueryParameter()] = None,
    ) -> LifeEventOut:
        snapshot = _ready(catalogue_mirror)
        resident = _region(snapshot, region)
        for event in catalogue_mirror.life_events:
            if event.id == event_id:
                return _life_event(snapshot, event, resident)
        raise ProblemError(f"no life event {event_id[:64]}", status=404, code="life_event_not_found")


def _life_event(snapshot: Snapshot, event: LifeEvent, resident: str | None) -> LifeEventOut:
    local = {resident} if resident else set()
    steps = []
    for n, step in enumerate(event.steps, start=1):
        code = snapshot.item_names.get(step.item)
        doc = snapshot.index.by_code.get(code) if code else None
        steps.append(
            LifeEventStepOut(
                order=n,
                code=code,
                name=step.item,
                note=step.note,
                available_in_region=bool(doc and local & doc.regions) if resident else None,
            )
        )
    return LifeEventOut(
        id=event.id, name=event.name, audience=event.audience, description=event.description, steps=steps
    )
