"""The catalogue's use cases: search, type-ahead, the guide, topics, regions, halls, life events.

Everything is served from the mirror this process holds (`CatalogueMirror`); a guide the mirror
does not have yet is asked of the item library through the Redis-cached path (`GuideCache`, a
stale copy when the library fails). `guide()` is the one source of a guide for every domain:
applying for an item reads the same guide the resident was shown.
"""

from __future__ import annotations

import re

import msgspec

from adapters.errors import ProblemError
from adapters.pii import mask_text
from bff.catalogue.elder import ELDER_HALLS, ELDER_PAGE, ElderCatalogue, elder_guide
from bff.catalogue.guide_cache import GuideCache
from bff.catalogue.mirror import (
    CatalogueMirror,
    HallRow,
    LifeEvent,
    Snapshot,
    VersionedLRU,
    distance_m,
    guide_etag,
)
from bff.catalogue.misses import Anonymiser, SearchMisses
from bff.catalogue.schemas import (
    Freshness,
    Guide,
    GuideOut,
    HallCard,
    HallPage,
    HandlingItem,
    LifeEventOut,
    LifeEventPage,
    LifeEventStepOut,
    QueryInfo,
    RegionOut,
    RegionPage,
    RegionTruth,
    SearchItem,
    SearchMiss,
    SearchMissPage,
    SearchPage,
    Suggestion,
    SuggestPage,
    Topic,
    TopicList,
)
from bff.catalogue.search import MAX_QUERY_CHARS, Hit, normalize
from bff.catalogue.semantic import blend
from bff.platform.paging import offset_page
from bff.platform.uimode import ELDER_HINT

_REGION = re.compile(r"^\d{6}$")
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
_EMPTY_NOTICE_EN = "Type the name of a service, a few key words or pinyin, e.g. 出生登记, passport, csdj"
_NEAREST_NOTICE = "没有完全匹配的事项，您是不是要找：{}？"
_NEAREST_NOTICE_EN = "No service matches exactly. Did you mean: {}?"
_NONE_NOTICE = "没有找到相关事项，请换个说法，或拨打 12345 咨询"
_NONE_NOTICE_EN = "No service found. Try other words, or call 12345 for help"
_NOTICE_NAMES = 3
_MAX_MISS_DAYS = 90

_encoder = msgspec.json.Encoder()


class GuideBody(msgspec.Struct, frozen=True):
    """A guide response already encoded (the mirror keeps guides shaped and encoded), and its ETag."""

    etag: str
    body: bytes


class _Envelope(msgspec.Struct):
    item: Guide


def _bad(detail: str, zh: str) -> ProblemError:
    return ProblemError(detail, status=400, code="validation_failed", detail_zh=zh)


def _near(near: str | None) -> tuple[float, float] | None:
    if near is None:
        return None
    match = _NEAR.match(near)
    if not match:
        raise _bad(
            "near: expected `lat,lng` in degrees, e.g. 28.19,112.98",
            "near：须为以度表示的 `纬度,经度`，如 28.19,112.98",
        )
    lat, lng = float(match.group(1)), float(match.group(2))
    if not (-90 <= lat <= 90 and -180 <= lng <= 180):
        raise _bad(
            "near: latitude must be within ±90 and longitude within ±180",
            "near：纬度须在 ±90 之内，经度须在 ±180 之内",
        )
    return lat, lng


def _audience(audience: str | None) -> str | None:
    if audience is None or audience == "":
        return None
    if audience not in _AUDIENCES:
        raise _bad(
            "audience: one of person, legal (or 个人, 法人)",
            "audience：须为 person、legal（或 个人、法人）之一",
        )
    return _AUDIENCES[audience]


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


class CatalogueService:
    def __init__(self, mirror: CatalogueMirror, guides: GuideCache, misses: SearchMisses) -> None:
        self.mirror = mirror
        self.guides = guides
        self.misses = misses
        self.elder = ElderCatalogue()
        self._anonymiser: tuple[int, Anonymiser] | None = None
        self._anonymised: VersionedLRU = VersionedLRU(8192)

    def _anonymise(self, snapshot: Snapshot, raw: str, normalized: str) -> str | None:
        key = (raw, normalized)
        cached: tuple[str | None] | None = self._anonymised.get(key, snapshot.version)
        if cached is None:
            cached = (self._anonymise_now(snapshot, raw, normalized),)
            self._anonymised.put(key, snapshot.version, cached)
        return cached[0]

    def _anonymise_now(self, snapshot: Snapshot, raw: str, normalized: str) -> str | None:
        if self._anonymiser is None or self._anonymiser[0] != snapshot.version:
            index = snapshot.index
            words = {*index.texts, *index.dictionary.synonyms, *index.dictionary.stopwords}
            words |= {v for vs in index.dictionary.synonyms.values() for v in vs}
            self._anonymiser = (snapshot.version, Anonymiser(set(index.postings), words, index.segment))
        return self._anonymiser[1].anonymise(raw, normalized)

    # --- reading the snapshot ---

    async def place(self, hall_id: str, item_code: str) -> tuple[str | None, str | None, str | None]:
        """Read port for appointments: (hall name, hall address, item name) from the mirror; None
        for what it does not hold (yet). Never raises and never calls upstream."""
        snapshot = self.mirror.snapshot
        hall = snapshot.halls.get(hall_id)
        doc = snapshot.index.by_code.get(item_code) if snapshot.ready else None
        name = doc.name if doc else snapshot.code_names.get(item_code)
        if name is None and snapshot.ready:
            # A 子项 is not indexed for search: its mirrored guide has the name.
            row = await self.mirror.guide(item_code, snapshot.chain(hall.region_code if hall else None))
            if row is not None and row.body:
                body = msgspec.json.decode(row.body)
                found = body.get("name") if isinstance(body, dict) else None
                name = found if isinstance(found, str) else None
        return (hall.name if hall else None, hall.address if hall else None, name)

    def _ready(self) -> Snapshot:
        snapshot = self.mirror.snapshot
        if not snapshot.ready:
            raise ProblemError(
                "the catalogue has not been synchronised yet",
                status=503,
                code="catalogue_not_ready",
                headers={"Retry-After": "30"},
                detail_zh="事项目录尚未同步",
            )
        return snapshot

    def _freshness(self) -> Freshness:
        status, as_of = self.mirror.freshness()
        return Freshness(status=status, as_of=as_of or "")  # type: ignore[arg-type]

    @staticmethod
    def _region(snapshot: Snapshot, region: str | None) -> str | None:
        if region is None:
            return None
        if not _REGION.match(region):
            raise _bad("region: must be a 6-digit region code", "region：须为 6 位行政区划代码")
        if snapshot.ready and region not in snapshot.regions:
            raise _bad(
                f"region: {region} is not a region of Hunan; see /api/v1/regions",
                f"region：{region} 不是湖南省的行政区划，见 /api/v1/regions",
            )
        return region

    def is_region(self, code: str) -> bool:
        """Read port for other domains (addresses): `code` is a region of the province's catalogue.
        Before the first sync nothing can be checked: 503 `catalogue_not_ready`, never a guess."""
        return code in self._ready().regions

    def codes_under(self, topics: tuple[str, ...]) -> tuple[str, ...]:
        """Read port (代办 scopes): the codes of the items filed under `topics`, with their handling
        items (办理项), which are filed under their main item's topic."""
        return tuple(
            code
            for d in self._ready().index.docs
            if d.theme in topics
            for code in (d.code, *(c for c, _ in d.scenarios))
        )

    def is_topic(self, name: str) -> bool:
        return any(d.theme == name for d in self._ready().index.docs)

    # --- search ---

    def search(
        self,
        q: str | None,
        *,
        region: str | None,
        audience: str | None,
        topic: str | None,
        limit: int,
        cursor: str | None,
        english: bool = False,
        elder: bool = False,
    ) -> SearchPage:
        raw = q or ""
        if len(raw) > MAX_QUERY_CHARS:
            raise ProblemError(
                f"q: at most {MAX_QUERY_CHARS} characters; try the name of the item or a few key words",
                status=400,
                code="query_too_long",
                detail_zh=f"q：最多 {MAX_QUERY_CHARS} 个字符，请输入事项名称或几个关键词",
            )
        snapshot = self._ready()
        resident = self._region(snapshot, region)
        who = _audience(audience)
        if topic and topic not in {d.theme for d in snapshot.index.docs}:
            raise _bad("topic: unknown topic; see /api/v1/topics", "topic：未知主题，见 /api/v1/topics")
        normalized = normalize(raw)
        # The echo is masked: a resident who types an ID or phone number must not see it in the page.
        info = QueryInfo(text=mask_text(raw), normalized=mask_text(normalized))
        if elder:
            limit = min(limit, ELDER_PAGE)
        if not normalized and not (who or topic) and not elder:
            info.notice = _EMPTY_NOTICE_EN if english else _EMPTY_NOTICE
            info.match = "none"
            return SearchPage(items=[], next_cursor=None, query=info, freshness=self._freshness())
        # Implemented by the resident's own region: the county (or the city, for a city).
        chain = (resident,) if resident else ()
        if elder and not normalized and not (who or topic):
            # An elder's empty search box lists the common services: that is what most come for.
            hits = self._common(snapshot, resident)
        else:
            found = blend(
                snapshot.index, snapshot.semantic, normalized, region_chain=chain, audience=who, theme=topic
            )
            hits = found.hits
            if elder and not normalized:
                hits = sorted(hits, key=lambda h: self.elder.first(h.doc.name))
        if normalized:
            if not hits:
                info.match = "none"
                info.notice = _NONE_NOTICE_EN if english else _NONE_NOTICE
            elif found.nearest:
                info.match = "nearest"
                names = "、".join(h.doc.name for h in hits[:_NOTICE_NAMES])
                info.notice = (_NEAREST_NOTICE_EN if english else _NEAREST_NOTICE).format(names)
            if not found.confident and not cursor:
                outcome = "zero" if not hits else "low"
                self.misses.record(self._anonymise(snapshot, raw, normalized), outcome)
        shown, following = offset_page(hits, limit, cursor)
        items = []
        for h in shown:
            place = snapshot.implementation(h.doc.code, resident) if resident else None
            truth = RegionTruth(*place) if place else None
            items.append(
                SearchItem(
                    code=h.doc.code,
                    name=h.doc.name,
                    audience=h.doc.audience,
                    topic=h.doc.theme,
                    kind=h.doc.kind,
                    department=truth.department if truth else h.doc.department,
                    # Without a region: online somewhere in Hunan; with one: online for that resident.
                    online=truth.online if truth else (h.doc.online and not resident),
                    available_in_region=h.local if resident else None,
                    handling_item_count=len(h.doc.scenarios),
                    matched=h.matched,
                    in_region=truth,
                    plain_name=self.elder.plain.get(h.doc.name) if elder else None,
                )
            )
        return SearchPage(
            items=items,
            next_cursor=following,
            query=info,
            freshness=self._freshness(),
            display=ELDER_HINT if elder else None,
        )

    def _common(self, snapshot: Snapshot, resident: str | None) -> list[Hit]:
        by_name = {d.name: d for d in snapshot.index.docs}
        return [
            Hit(doc, 0.0, bool(resident and resident in doc.regions), "common")
            for doc in (by_name.get(name) for name in self.elder.plain)
            if doc is not None
        ]

    async def search_misses(self, days: int, limit: int, cursor: str | None) -> SearchMissPage:
        """Staff: the failed searches of the last `days` days (anonymised; see misses.py)."""
        if not 1 <= days <= _MAX_MISS_DAYS:
            raise _bad(f"days: between 1 and {_MAX_MISS_DAYS}", f"days：须在 1 到 {_MAX_MISS_DAYS} 之间")
        await self.misses.flush()  # this process's latest counts too
        rows, withheld, since = await self.misses.export(days)
        items = [
            SearchMiss(
                query=r["query"],
                zero_results=r["zero"],
                low_confidence=r["low"],
                last_day=r["last_day"].isoformat(),
            )
            for r in rows
        ]
        shown, following = offset_page(items, limit, cursor)
        return SearchMissPage(since=since.isoformat(), withheld=withheld, items=shown, next_cursor=following)

    def suggest(self, q: str | None, limit: int) -> SuggestPage:
        raw = q or ""
        if len(raw) > MAX_QUERY_CHARS:
            raise ProblemError(
                f"q: at most {MAX_QUERY_CHARS} characters",
                status=400,
                code="query_too_long",
                detail_zh=f"q：最多 {MAX_QUERY_CHARS} 个字符",
            )
        snapshot = self._ready()
        key = (raw, limit)
        page: SuggestPage | None = self.mirror.suggestions.get(key, snapshot.version)
        if page is None:
            normalized = normalize(raw)
            info = QueryInfo(
                text=mask_text(raw),
                normalized=mask_text(normalized),
                notice=None if normalized else _EMPTY_NOTICE,
            )
            found = snapshot.index.suggest(normalized, limit) if normalized else []
            page = SuggestPage(
                items=[Suggestion(text=text, code=doc.code) for text, doc in found], query=info
            )
            self.mirror.suggestions.put(key, snapshot.version, page)
        return page

    # --- the guide ---

    async def guide_response(
        self, code: str, region: str | None, near: str | None, *, elder: bool = False
    ) -> GuideBody:
        """The guide of `code` for a resident of `region`, as the guide route answers it."""
        snapshot = self.mirror.snapshot
        resident = self._region(snapshot, region)
        origin = _near(near)
        if snapshot.ready:
            status, as_of = self.mirror.freshness()
            key = (code, resident, origin, status, as_of, elder)
            assembled: GuideBody | None = self.mirror.assembled.get(key, snapshot.version)
            if assembled is None:
                assembled = await self._assemble(snapshot, code, resident, origin, elder)
                if assembled is not None:
                    self.mirror.assembled.put(key, snapshot.version, assembled)
            if assembled is not None:
                return assembled
        reply = await self.guides.get(code, resident)
        if not elder:
            return GuideBody(reply.etag, reply.body)
        out = msgspec.json.decode(reply.body, type=GuideOut)
        return self._elder_body(out, reply.etag)

    def _elder_body(self, out: GuideOut, etag: str) -> GuideBody:
        shaped = msgspec.structs.replace(
            out,
            item=elder_guide(out.item),
            nearest_halls=out.nearest_halls[:ELDER_HALLS],
            plain_name=self.elder.plain.get(out.item.name),
            display=ELDER_HINT,
        )
        return GuideBody(guide_etag(etag.encode(), b"elder"), _encoder.encode(shaped))

    async def guide(self, code: str, region: str | None) -> Guide:
        """The guide itself, for another domain (applying, 补正): the mirror first, else the library."""
        snapshot = self.mirror.snapshot
        if snapshot.ready:
            row = await self.mirror.guide(code, snapshot.chain(region))
            if row is not None:
                if row.status != "active":
                    raise ProblemError(
                        f"service item {code} has been cancelled",
                        status=410,
                        code="item_cancelled",
                        detail_zh=f"事项 {code} 已取消",
                    )
                return msgspec.json.decode(row.body, type=Guide)
        reply = await self.guides.get(code, region)
        return msgspec.json.decode(reply.body, type=_Envelope).item

    async def _assemble(
        self,
        snapshot: Snapshot,
        code: str,
        resident: str | None,
        origin: tuple[float, float] | None,
        elder: bool,
    ) -> GuideBody | None:
        """The mirrored guide of `code` for a resident of `resident`; None when the mirror does not
        hold the item. The item part was shaped and encoded at sync time (kept as bytes, so a guide
        is never decoded and re-encoded); halls and handling items are added from this snapshot."""
        row = await self.mirror.guide(code, snapshot.chain(resident))
        if row is None:
            return None
        if row.status != "active":
            raise ProblemError(
                f"service item {code} has been cancelled",
                status=410,
                code="item_cancelled",
                detail_zh=f"事项 {code} 已取消",
            )
        if origin is None and resident is not None:
            seat = snapshot.regions[resident]
            origin = (seat.lat, seat.lng)
        halls = _sorted_halls(snapshot, snapshot.halls_under(row.region_code), origin)[:_NEAREST_HALLS]
        doc = snapshot.index.by_code.get(code)
        handling = [HandlingItem(code=c, name=n) for c, n in (doc.scenarios if doc else [])]
        extra = _encoder.encode(handling), _encoder.encode(halls)
        etag = guide_etag(row.etag.encode(), *extra)
        if elder:
            # Decoded and shaped again only for 长辈版; the standard guide stays the bytes of the sync.
            out = GuideOut(
                freshness=self._freshness(),
                item=msgspec.json.decode(row.body, type=Guide),
                source="mirror",
                handling_items=handling,
                nearest_halls=halls,
            )
            return self._elder_body(out, etag)
        body = b"".join(
            (
                b'{"freshness":',
                _encoder.encode(self._freshness()),
                b',"source":"mirror","item":',
                row.body,
                b',"handlingItems":',
                extra[0],
                b',"nearestHalls":',
                extra[1],
                b"}",
            )
        )
        return GuideBody(etag, body)

    # --- browsing ---

    def topics(self, audience: str | None, limit: int, cursor: str | None) -> TopicList:
        snapshot = self._ready()
        who = _audience(audience)
        counts: dict[tuple[str, str], int] = {}
        for doc in snapshot.index.docs:
            if who is None or doc.audience == who:
                counts[(doc.audience, doc.theme)] = counts.get((doc.audience, doc.theme), 0) + 1
        topics = [
            Topic(name=theme, audience=aud, item_count=n)
            for (aud, theme), n in sorted(counts.items(), key=lambda kv: (kv[0][0], -kv[1], kv[0][1]))
        ]
        shown, following = offset_page(topics, limit, cursor)
        return TopicList(items=shown, next_cursor=following)

    def regions(self, parent: str | None, limit: int, cursor: str | None) -> RegionPage:
        snapshot = self._ready()
        if parent is not None:
            self._region(snapshot, parent)
        rows = [r for r in snapshot.regions.values() if parent is None or r.parent_code == parent]
        out = [RegionOut(r.code, r.name, r.type, r.level, r.parent_code, r.lat, r.lng) for r in rows]
        shown, following = offset_page(out, limit, cursor)
        return RegionPage(items=shown, next_cursor=following)

    def halls(self, region: str | None, near: str | None, limit: int, cursor: str | None) -> HallPage:
        snapshot = self._ready()
        where = self._region(snapshot, region)
        origin = _near(near)
        rows = snapshot.halls_under(where) if where else list(snapshot.halls.values())
        shown, following = offset_page(_sorted_halls(snapshot, rows, origin), limit, cursor)
        return HallPage(items=shown, next_cursor=following)

    def hall(self, hall_id: str, near: str | None) -> HallCard:
        snapshot = self._ready()
        hall = snapshot.halls.get(hall_id)
        if hall is None:
            raise ProblemError(
                f"no service hall {hall_id}",
                status=404,
                code="hall_not_found",
                detail_zh=f"未找到服务大厅 {hall_id}",
            )
        return _hall_card(snapshot, hall, _near(near))

    def life_events(self, region: str | None, limit: int, cursor: str | None) -> LifeEventPage:
        snapshot = self._ready()
        resident = self._region(snapshot, region)
        events = [_life_event(snapshot, e, resident) for e in self.mirror.life_events]
        shown, following = offset_page(events, limit, cursor)
        return LifeEventPage(items=shown, next_cursor=following)

    def life_event(self, event_id: str, region: str | None) -> LifeEventOut:
        snapshot = self._ready()
        resident = self._region(snapshot, region)
        return _life_event(snapshot, self.life_event_spec(event_id), resident)

    def life_event_spec(self, event_id: str) -> LifeEventSpec:
        """Read port for life-event applications: the bundle as declared (questions, steps with
        their conditions), else a 404 `life_event_not_found`."""
        for event in self.mirror.life_events:
            if event.id == event_id:
                return event
        raise ProblemError(
            f"no life event {event_id[:64]}",
            status=404,
            code="life_event_not_found",
            detail_zh=f"未找到主题 {event_id[:64]}",
        )

    def item_code(self, name: str) -> str | None:
        """Read port: the code of the main item named `name` in the current snapshot."""
        return self._ready().item_names.get(name)

    def check_region(self, region: str) -> None:
        """Read port: a 4xx problem unless `region` is a known region."""
        self._region(self._ready(), region)


# The declared bundle, for other domains (life-event applications).
LifeEventSpec = LifeEvent


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
