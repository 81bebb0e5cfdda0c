"""What each API process holds of the catalogue mirror: the search index, regions, halls, life
events, and a bounded cache of assembled guides. Rebuilt when the sync publishes a new version.

A poller checks the version every `catalogue_index_poll_s` (Redis first, PostgreSQL when Redis
cannot answer) and swaps in a new snapshot; requests always read one consistent snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import math
import time
import tomllib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from adapters.tasks import cancel
from bff.catalogue.search import Dictionary, ItemDoc, SearchIndex
from bff.catalogue.semantic import SHARED_EMBEDDINGS, SemanticIndex, SemanticModel
from bff.catalogue.semantic import build as build_semantic
from bff.catalogue.sync import VERSION_KEY
from bff.platform.logs import get_logger

log = get_logger("bff.catalogue.mirror")

LIFE_EVENTS_PATH = Path(__file__).parent / "data" / "life_events.toml"
PROVINCE = "430000"
_GUIDE_CACHE_SIZE = 20_000
_STATE_REFRESH_S = 10.0


@dataclass(frozen=True)
class RegionRow:
    code: str
    name: str
    type: str
    level: str
    parent_code: str | None
    lng: float
    lat: float


@dataclass(frozen=True)
class HallRow:
    id: str
    name: str
    region_code: str
    address: str
    hours: str
    phone: str
    lat: float
    lng: float
    demo: bool


@dataclass(frozen=True)
class LifeEventStep:
    item: str
    note: str
    # The question whose yes makes this step apply; None: it always applies.
    when: str | None = None


@dataclass(frozen=True)
class LifeEventQuestion:
    id: str
    text: str
    text_en: str


@dataclass(frozen=True)
class LifeEvent:
    id: str
    name: str
    audience: str
    description: str
    steps: tuple[LifeEventStep, ...]
    questions: tuple[LifeEventQuestion, ...] = ()


def load_life_events(path: Path = LIFE_EVENTS_PATH) -> list[LifeEvent]:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    events = [
        LifeEvent(
            id=e["id"],
            name=e["name"],
            audience=e["audience"],
            description=e["description"],
            steps=tuple(LifeEventStep(s["item"], s["note"], s.get("when")) for s in e["steps"]),
            questions=tuple(
                LifeEventQuestion(q["id"], q["text"], q["text_en"]) for q in e.get("questions", [])
            ),
        )
        for e in data["event"]
    ]
    for event in events:
        asked = {q.id for q in event.questions}
        for step in event.steps:
            if step.when is not None and step.when not in asked:
                raise ValueError(f"life event {event.id}: step {step.item} depends on unknown {step.when}")
    return events


def distance_m(lat1: float, lng1: float, lat2: float, lng2: float) -> int:
    """Great-circle distance in metres (haversine); plenty for "which hall is nearest"."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return round(2 * 6_371_000 * math.asin(math.sqrt(a)))


@dataclass
class Snapshot:
    version: int
    index: SearchIndex
    regions: dict[str, RegionRow]
    halls: dict[str, HallRow]
    last_success_at: datetime | None
    item_names: dict[str, str] = field(default_factory=dict)  # name -> code
    # Each main item's implementations: code -> region -> (online, bookable, mailable, department).
    local: dict[str, dict[str, tuple[bool, bool, bool, str]]] = field(default_factory=dict)

    def implementation(self, code: str, region: str) -> tuple[str, bool, bool, bool, str] | None:
        """The most local implementation of `code` for a resident of `region` (the region, then the
        regions above it): (region, online, bookable, mailable, department); None when none
        implements it."""
        found = self.local.get(code, {})
        for place in self.chain(region):
            if place in found:
                return (place, *found[place])
        return None

    @functools.cached_property
    def code_names(self) -> dict[str, str]:
        """code -> name (the first name listed for a code)."""
        out: dict[str, str] = {}
        for name, code in self.item_names.items():
            out.setdefault(code, name)
        return out

    # The guides' own text per item (conditions, FAQ questions) and, once the model is loaded, the
    # item embeddings (bff/catalogue/semantic.py); None: search answers lexically.
    guide_texts: dict[str, list[str]] = field(default_factory=dict)
    semantic: SemanticIndex | None = None

    @property
    def ready(self) -> bool:
        return self.version > 0

    def chain(self, region: str | None) -> tuple[str, ...]:
        """The region, the regions above it, most local first (the province last)."""
        out: list[str] = []
        code = region
        while code is not None and code in self.regions and code not in out:
            out.append(code)
            code = self.regions[code].parent_code
        if PROVINCE not in out:
            out.append(PROVINCE)
        return tuple(out)

    def halls_under(self, region: str) -> list[HallRow]:
        level = self.regions[region].level if region in self.regions else "county"
        prefix = {"province": region[:2], "city": region[:4]}.get(level, region)
        return [h for h in self.halls.values() if h.region_code.startswith(prefix)]


class _Faq(msgspec.Struct):
    question: str = ""


class _GuideText(msgspec.Struct):
    """The parts of a mirrored guide that describe the item in words."""

    conditions: list[str] = msgspec.field(default_factory=list)
    faq: list[_Faq] = msgspec.field(default_factory=list)


_guide_text = msgspec.json.Decoder(_GuideText)


def guide_sentences(body: bytes) -> list[str]:
    try:
        guide = _guide_text.decode(body)
    except msgspec.DecodeError:
        return []
    return [c for c in guide.conditions if c] + [f.question for f in guide.faq if f.question]


class GuideRow(msgspec.Struct, frozen=True):
    region_code: str
    status: str
    etag: str
    body: bytes


class VersionedLRU:
    """A bounded cache whose entries are valid for one snapshot version only."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._data: OrderedDict[object, tuple[int, Any]] = OrderedDict()

    def get(self, key: object, version: int) -> Any:
        found = self._data.get(key)
        if found is None or found[0] != version:
            return None
        self._data.move_to_end(key)
        return found[1]

    def put(self, key: object, version: int, value: Any) -> None:
        self._data[key] = (version, value)
        self._data.move_to_end(key)
        if len(self._data) > self.size:
            self._data.popitem(last=False)

    def clear(self) -> None:
        self._data.clear()


class CatalogueMirror:
    def __init__(
        self,
        pool: asyncpg.Pool,
        redis: Redis,
        *,
        poll_seconds: float,
        stale_after_seconds: float,
        model: SemanticModel | None = None,
    ) -> None:
        self.pool = pool
        self.model = model or SemanticModel(enabled=False)
        self.embeddings = SHARED_EMBEDDINGS
        self._model_task: asyncio.Task[None] | None = None
        # Run once the model is loaded and the snapshot has its embeddings (the app settles its heap).
        self.after_model: list[Callable[[], None]] = []
        self.redis = redis
        self.poll_seconds = poll_seconds
        self.stale_after_seconds = stale_after_seconds
        self.dictionary = Dictionary.load()
        self.life_events = load_life_events()
        self.snapshot = Snapshot(0, SearchIndex([], self.dictionary), {}, {}, None)
        self._task: asyncio.Task[None] | None = None
        self._guides: OrderedDict[tuple[str, tuple[str, ...]], GuideRow | None] = OrderedDict()
        self._state_checked = 0.0
        # Whole guide responses and type-ahead answers, per snapshot version.
        self.assembled = VersionedLRU(_GUIDE_CACHE_SIZE)
        self.suggestions = VersionedLRU(8192)

    async def start(self) -> None:
        # The model loads in the background: residents are served lexically meanwhile.
        self._model_task = asyncio.create_task(self._load_model(), name="catalogue-search-model")
        with contextlib.suppress(asyncpg.PostgresError, OSError, TimeoutError):
            await self.refresh()
        self._task = asyncio.create_task(self._poll(), name="catalogue-mirror-poll")

    async def stop(self) -> None:
        await cancel(task for task in (self._task, self._model_task) if task is not None)

    async def _load_model(self) -> None:
        await self.model.start()
        await self.attach_semantic()
        for callback in self.after_model:
            callback()

    async def attach_semantic(self) -> None:
        """Give the current snapshot its item embeddings (once the model is loaded)."""
        snapshot = self.snapshot
        if not self.model.available or snapshot.semantic is not None or not snapshot.ready:
            return
        started = time.monotonic()
        semantic = await asyncio.to_thread(
            build_semantic, self.model, self.embeddings, snapshot.index, snapshot.guide_texts
        )
        if self.snapshot is snapshot:
            snapshot.semantic = semantic
            self.suggestions.clear()
            log.info(
                "catalogue_embeddings_ready",
                version=snapshot.version,
                passages=0 if semantic is None else len(semantic.owner),
                computed=self.embeddings.computed,
                reused=self.embeddings.reused,
                ms=round((time.monotonic() - started) * 1000),
            )

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                await self.refresh()
                await self.attach_semantic()  # the model finished loading during a rebuild
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("catalogue_refresh_failed", error=type(exc).__name__, detail=str(exc)[:200])

    async def _published_version(self) -> int | None:
        try:
            raw = await self.redis.get(VERSION_KEY)
        except RedisError:
            return None
        return int(raw) if raw is not None else None

    async def refresh(self, *, force: bool = False) -> None:
        """Rebuild when the published version moved; re-read the sync time every few seconds."""
        published = await self._published_version()
        now = time.monotonic()
        if (
            not force
            and published is not None
            and published == self.snapshot.version
            and now - self._state_checked < _STATE_REFRESH_S
        ):
            return
        state = await self.pool.fetchrow(
            "SELECT index_version, last_success_at FROM bff.catalogue_sync_state WHERE id = 1"
        )
        self._state_checked = now
        version = int(state["index_version"]) if state else 0
        if not force and version == self.snapshot.version:
            self.snapshot.last_success_at = state["last_success_at"] if state else None
            return
        await self._rebuild(version, state["last_success_at"] if state else None)

    async def _rebuild(self, version: int, last_success_at: datetime | None) -> None:
        started = time.monotonic()
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                """
                SELECT catalog_code, parent_code, min(name) AS name, min(audience) AS audience,
                       min(theme) AS theme, min(kind) AS kind,
                       coalesce(max(department) FILTER (WHERE region_code = $1), max(department)) AS department,
                       bool_or(online) AS online, array_agg(region_code) AS regions
                FROM bff.catalogue_entries WHERE status = 'active'
                GROUP BY catalog_code, parent_code ORDER BY catalog_code
                """,
                PROVINCE,
            )
            region_rows = await conn.fetch("SELECT * FROM bff.catalogue_regions ORDER BY code")
            local_rows = await conn.fetch(
                """
                SELECT catalog_code, region_code, online, bookable, mailable, department
                FROM bff.catalogue_entries
                WHERE status = 'active' AND parent_code IS NULL
                """
            )
            hall_rows = await conn.fetch("SELECT * FROM bff.catalogue_halls ORDER BY id")
            # The province's guide of each item: its conditions and FAQ describe it in words.
            guide_rows = await conn.fetch(
                """
                SELECT e.catalog_code, g.body
                FROM bff.catalogue_entries e
                JOIN bff.catalogue_guides g ON g.catalog_code = e.catalog_code
                 AND g.region_code = e.region_code AND g.version = e.version
                WHERE e.region_code = $1 AND e.parent_code IS NULL AND e.status = 'active'
                """,
                PROVINCE,
            )
        docs: dict[str, ItemDoc] = {}
        for row in rows:
            if row["parent_code"] is None:
                docs[row["catalog_code"]] = ItemDoc(
                    code=row["catalog_code"],
                    name=row["name"],
                    audience=row["audience"],
                    theme=row["theme"],
                    kind=row["kind"],
                    department=row["department"],
                    online=row["online"],
                    regions=frozenset(row["regions"]),
                )
        for row in rows:
            parent = docs.get(row["parent_code"]) if row["parent_code"] else None
            if parent is not None:
                parent.scenarios.append((row["catalog_code"], row["name"]))
        index = await asyncio.to_thread(SearchIndex, docs.values(), self.dictionary, version)
        regions = {
            r["code"]: RegionRow(
                r["code"], r["name"], r["type"], r["level"], r["parent_code"], r["lng"], r["lat"]
            )
            for r in region_rows
        }
        halls = {
            h["id"]: HallRow(
                h["id"],
                h["name"],
                h["region_code"],
                h["address"],
                h["hours"],
                h["phone"],
                h["lat"],
                h["lng"],
                h["demo"],
            )
            for h in hall_rows
        }
        local: dict[str, dict[str, tuple[bool, bool, bool, str]]] = {}
        for r in local_rows:
            local.setdefault(r["catalog_code"], {})[r["region_code"]] = (
                r["online"],
                r["bookable"],
                r["mailable"],
                r["department"],
            )
        guide_texts = {r["catalog_code"]: guide_sentences(bytes(r["body"])) for r in guide_rows}
        semantic = None
        if self.model.available:
            semantic = await asyncio.to_thread(
                build_semantic, self.model, self.embeddings, index, guide_texts
            )
        self.snapshot = Snapshot(
            version,
            index,
            regions,
            halls,
            last_success_at,
            {d.name: d.code for d in docs.values()},
            local=local,
            guide_texts=guide_texts,
            semantic=semantic,
        )
        self._guides.clear()
        self.assembled.clear()
        self.suggestions.clear()
        log.info(
            "catalogue_index_built",
            version=version,
            items=len(docs),
            ms=round((time.monotonic() - started) * 1000),
        )

    def freshness(self) -> tuple[str, str | None]:
        synced = self.snapshot.last_success_at
        if synced is None:
            return "unavailable", None
        age = (datetime.now(UTC) - synced).total_seconds()
        return ("ok" if age <= self.stale_after_seconds else "stale"), synced.isoformat(timespec="seconds")

    async def guide(self, code: str, chain: tuple[str, ...]) -> GuideRow | None:
        """The most local mirrored implementation of `code` along `chain`; an inactive row when
        the item is mirrored but implemented nowhere on the chain; None when not mirrored."""
        key = (code, chain)
        if key in self._guides:
            self._guides.move_to_end(key)
            return self._guides[key]
        version = self.snapshot.version
        rows = await self.pool.fetch(
            """
            SELECT e.region_code, e.status, g.etag, g.body
            FROM bff.catalogue_entries e
            JOIN bff.catalogue_guides g
              ON g.catalog_code = e.catalog_code AND g.region_code = e.region_code AND g.version = e.version
            WHERE e.catalog_code = $1 AND e.region_code = ANY($2::text[])
            """,
            code,
            list(chain),
        )
        found: GuideRow | None = None
        by_region = {r["region_code"]: r for r in rows}
        for region in chain:
            row = by_region.get(region)
            if row is not None and row["status"] == "active":
                found = GuideRow(region, "active", row["etag"], bytes(row["body"]))
                break
        if found is None and rows:
            row = rows[0]
            found = GuideRow(row["region_code"], row["status"], row["etag"], b"")
        if version == self.snapshot.version:
            self._guides[key] = found
            if len(self._guides) > _GUIDE_CACHE_SIZE:
                self._guides.popitem(last=False)
        return found


def guide_etag(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
        digest.update(b"\x00")
    return 'W/"' + digest.hexdigest()[:32] + '"'
