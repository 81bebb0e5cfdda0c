"""Keep the catalogue mirror current: a full sync, and an incremental sync from the change feed.

Both read the library's change feed (`since=0` is the whole library) page by page and upsert the
entries with their guides already shaped for the phone. A full sync also learns which entries the
library no longer has and marks them withdrawn; it is safe to rerun at any time (unchanged entries
are not rewritten, guide versions are kept, the cursor only moves forward once a run succeeded).
Runs are serialised by an advisory lock, so the worker and `sanxiang dev` never sync at once.

After a run that changed something the index version goes up (in PostgreSQL and in Redis), and
every API process rebuilds its in-memory search index.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, TypeAlias

import asyncpg
import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from adapters import context
from adapters.catalogue.client import CatalogueClient
from adapters.catalogue.schemas import ItemEntry
from bff.catalogue.shaping import shape_guide
from bff.platform.feeds import read_from
from bff.platform.logs import get_logger

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    Conn: TypeAlias = asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]

log = get_logger("bff.catalogue.sync")

VERSION_KEY = "sx:catalogue:version"
_LOCK = 0x5358_4341_5453  # "SXCATS"
# A full resync that sees fewer than this share of the active entries withdraws nothing: an
# upstream answering with a near-empty library is far likelier broken than emptied.
_WITHDRAW_FLOOR = 0.5

_STATUSES = {"active": "active", "cancelled": "cancelled"}
# Sync statements touch thousands of rows: more room than the API's per-query timeout.
_STATEMENT_TIMEOUT_S = 120.0


class SyncReport(msgspec.Struct, kw_only=True):
    mode: str  # full / incremental / skipped
    entries_seen: int = 0
    entries_changed: int = 0
    withdrawn: int = 0
    cursor: int = 0
    index_version: int = 0


def _etag(body: bytes) -> str:
    return 'W/"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def _record(entry: ItemEntry, run: int, now: datetime, encoder: msgspec.json.Encoder) -> tuple[object, ...]:
    body = encoder.encode(shape_guide(entry))
    return (
        entry.catalog_code,
        entry.region_code,
        entry.parent_code,
        entry.scenario,
        entry.name,
        entry.audience,
        entry.theme,
        entry.kind,
        entry.department,
        entry.is_online,
        entry.is_schedule,
        entry.is_express,
        _STATUSES.get(entry.status, "cancelled"),
        entry.task_version,
        _etag(body),
        entry.seq,
        now,
        run,
        body,
    )


_PAGE_COLUMNS = [
    "catalog_code",
    "region_code",
    "parent_code",
    "scenario",
    "name",
    "audience",
    "theme",
    "kind",
    "department",
    "online",
    "bookable",
    "mailable",
    "status",
    "version",
    "etag",
    "upstream_seq",
    "synced_at",
    "sync_run",
    "body",
]


async def _write_page(conn: Conn, records: list[tuple[object, ...]]) -> int:
    """Upsert one page; returns how many entries are new or changed."""
    async with conn.transaction():
        await conn.execute(
            """
            CREATE TEMP TABLE IF NOT EXISTS sync_page (
                catalog_code text, region_code text, parent_code text, scenario text, name text,
                audience text, theme text, kind text, department text, online boolean,
                bookable boolean, mailable boolean, status text, version integer, etag text, upstream_seq bigint,
                synced_at timestamptz, sync_run bigint, body bytea
            ) ON COMMIT DELETE ROWS
            """,
            timeout=_STATEMENT_TIMEOUT_S,
        )
        await conn.copy_records_to_table(
            "sync_page", records=records, columns=_PAGE_COLUMNS, timeout=_STATEMENT_TIMEOUT_S
        )
        changed = await conn.fetchval(
            """
            SELECT count(*) FROM sync_page p
            LEFT JOIN bff.catalogue_entries e USING (catalog_code, region_code)
            WHERE (e.catalog_code IS NULL OR e.etag <> p.etag OR e.status <> p.status OR e.version <> p.version)
              AND (e.upstream_seq IS NULL OR p.upstream_seq >= e.upstream_seq)
            """,
            timeout=_STATEMENT_TIMEOUT_S,
        )
        # A version already kept is rewritten only if its body differs (the library fixed a guide
        # without bumping the version); earlier versions stay as they were.
        await conn.execute(
            """
            INSERT INTO bff.catalogue_guides (catalog_code, region_code, version, etag, body, synced_at)
            SELECT DISTINCT ON (catalog_code, region_code, version)
                catalog_code, region_code, version, etag, body, synced_at
            FROM sync_page ORDER BY catalog_code, region_code, version, upstream_seq DESC
            ON CONFLICT (catalog_code, region_code, version) DO UPDATE
            SET etag = excluded.etag, body = excluded.body, synced_at = excluded.synced_at
            WHERE bff.catalogue_guides.etag <> excluded.etag
            """,
            timeout=_STATEMENT_TIMEOUT_S,
        )
        await conn.execute(
            """
            INSERT INTO bff.catalogue_entries AS e (
                catalog_code, region_code, parent_code, scenario, name, audience, theme, kind,
                department, online, bookable, mailable, status, version, etag, upstream_seq, synced_at,
                sync_run)
            SELECT DISTINCT ON (catalog_code, region_code)
                catalog_code, region_code, parent_code, scenario, name, audience, theme, kind,
                department, online, bookable, mailable, status, version, etag, upstream_seq, synced_at,
                sync_run
            FROM sync_page ORDER BY catalog_code, region_code, upstream_seq DESC
            ON CONFLICT (catalog_code, region_code) DO UPDATE SET
                parent_code = excluded.parent_code, scenario = excluded.scenario, name = excluded.name,
                audience = excluded.audience, theme = excluded.theme, kind = excluded.kind,
                department = excluded.department, online = excluded.online, bookable = excluded.bookable,
                mailable = excluded.mailable,
                status = excluded.status, version = excluded.version, etag = excluded.etag,
                upstream_seq = excluded.upstream_seq,
                synced_at = CASE WHEN e.etag = excluded.etag AND e.status = excluded.status
                                 THEN e.synced_at ELSE excluded.synced_at END,
                sync_run = GREATEST(e.sync_run, excluded.sync_run)
            -- A change read again by the look-back window (bff/platform/feeds.py) never rolls a
            -- newer one back.
            WHERE e.upstream_seq IS NULL OR excluded.upstream_seq >= e.upstream_seq
            """,
            timeout=_STATEMENT_TIMEOUT_S,
        )
    return int(changed)


async def _sync_places(conn: Conn, client: CatalogueClient, now: datetime) -> None:
    regions = await client.regions()
    halls = await client.halls()
    async with conn.transaction():
        await conn.executemany(
            """
            INSERT INTO bff.catalogue_regions (code, name, type, level, parent_code, lng, lat, synced_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            ON CONFLICT (code) DO UPDATE SET name = excluded.name, type = excluded.type,
                level = excluded.level, parent_code = excluded.parent_code, lng = excluded.lng,
                lat = excluded.lat, synced_at = excluded.synced_at
            """,
            [(r.code, r.name, r.type, r.level, r.parent_code, r.lng, r.lat, now) for r in regions],
        )
        await conn.executemany(
            """
            INSERT INTO bff.catalogue_halls (id, name, region_code, address, hours, phone, lat, lng, demo, synced_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
            ON CONFLICT (id) DO UPDATE SET name = excluded.name, region_code = excluded.region_code,
                address = excluded.address, hours = excluded.hours, phone = excluded.phone,
                lat = excluded.lat, lng = excluded.lng, demo = excluded.demo, synced_at = excluded.synced_at
            """,
            [
                (h.id, h.name, h.region_code, h.address, h.hours, h.phone, h.lat, h.lng, h.demo, now)
                for h in halls
            ],
        )
        # The library is the source of truth for places: what it no longer lists goes.
        await conn.execute("DELETE FROM bff.catalogue_halls WHERE synced_at < $1", now)


async def sync_catalogue(
    pool: asyncpg.Pool,
    redis: Redis | None,
    client: CatalogueClient,
    *,
    full: bool | None = None,
    page_size: int = 1000,
    full_every: timedelta = timedelta(days=1),
    page_timeout_s: float | None = None,
    session_dsn: str | None = None,
    lookback: int = 500,
) -> SyncReport:
    """One sync run. `full=None` decides: full when never synced or the last full one is old.

    The run lock is a session lock: with `session_dsn` (PostgreSQL itself, when the pool goes through
    PgBouncer in transaction mode) it is held on a connection of its own; otherwise on the pooled one."""
    async with contextlib.AsyncExitStack() as stack:
        conn = await stack.enter_async_context(pool.acquire())
        locker = conn if session_dsn is None else await asyncpg.connect(session_dsn)
        if session_dsn is not None:
            stack.push_async_callback(locker.close)
        if not await locker.fetchval("SELECT pg_try_advisory_lock($1)", _LOCK):
            return SyncReport(mode="skipped")
        try:
            return await _run(conn, redis, client, full, page_size, full_every, page_timeout_s, lookback)
        except BaseException as exc:
            await conn.execute(
                "UPDATE bff.catalogue_sync_state SET last_attempt_at = now(), last_error = $1 WHERE id = 1",
                f"{type(exc).__name__}: {exc}"[:500],
            )
            raise
        finally:
            await locker.execute("SELECT pg_advisory_unlock($1)", _LOCK)
    raise AssertionError("unreachable")


async def _run(
    conn: Conn,
    redis: Redis | None,
    client: CatalogueClient,
    full: bool | None,
    page_size: int,
    full_every: timedelta,
    page_timeout_s: float | None,
    lookback: int = 500,
) -> SyncReport:
    state = await conn.fetchrow("SELECT * FROM bff.catalogue_sync_state WHERE id = 1")
    assert state is not None, "migration 0201 inserts the one state row"
    now = datetime.now(UTC)
    if full is None:
        full = state["last_full_at"] is None or now - state["last_full_at"] > full_every
    run = int(state["run"]) + 1
    # Incremental runs start `lookback` changes before the cursor: a change the library committed
    # after a higher-numbered one was read is still read (bff/platform/feeds.py).
    cursor_before = 0 if full else int(state["feed_cursor"])
    since = read_from(cursor_before, lookback)
    report = SyncReport(mode="full" if full else "incremental", cursor=since)
    encoder = msgspec.json.Encoder()
    await _sync_places(conn, client, now)
    while True:
        page = await client.changes(since, page_size, timeout=page_timeout_s)
        if page.entries:
            records = [_record(entry, run, now, encoder) for entry in page.entries]
            report.entries_changed += await _write_page(conn, records)
            # Seen: numbers past the cursor (what the window reads again is written, not counted).
            report.entries_seen += sum(1 for entry in page.entries if entry.seq > cursor_before)
        since = max(since, page.next_since)
        if not page.has_more or not page.entries:
            break
    if full:
        active = await conn.fetchval("SELECT count(*) FROM bff.catalogue_entries WHERE status = 'active'")
        if report.entries_seen >= _WITHDRAW_FLOOR * active:
            result = await conn.execute(
                """
                UPDATE bff.catalogue_entries SET status = 'withdrawn', synced_at = $2
                WHERE sync_run < $1 AND status <> 'withdrawn'
                """,
                run,
                now,
                timeout=_STATEMENT_TIMEOUT_S,
            )
            report.withdrawn = int(result.split()[-1])
        else:
            log.warning("catalogue_withdraw_skipped", seen=report.entries_seen, active=active)
    bump = 1 if (report.entries_changed or report.withdrawn or state["index_version"] == 0) else 0
    row = await conn.fetchrow(
        """
        UPDATE bff.catalogue_sync_state SET
            feed_cursor = GREATEST(feed_cursor, $1), run = $2, index_version = index_version + $3,
            last_full_at = CASE WHEN $4 THEN $5 ELSE last_full_at END,
            last_success_at = $5, last_attempt_at = $5, last_error = NULL
        WHERE id = 1 RETURNING feed_cursor, index_version
        """,
        since,
        run,
        bump,
        full,
        now,
    )
    assert row is not None
    report.cursor = int(row["feed_cursor"])
    report.index_version = int(row["index_version"])
    await publish_version(redis, report.index_version)
    log.info(
        "catalogue_synced",
        mode=report.mode,
        seen=report.entries_seen,
        changed=report.entries_changed,
        withdrawn=report.withdrawn,
        cursor=report.cursor,
        index_version=report.index_version,
    )
    return report


async def publish_version(redis: Redis | None, version: int) -> None:
    """Tell every API process which index version is current (they also poll PostgreSQL)."""
    if redis is None:
        return
    try:
        await redis.set(VERSION_KEY, str(version))
    except RedisError:
        log.warning("catalogue_version_publish_failed", version=version)


class CatalogueSync:
    """The sync as the worker and `sanxiang dev` run it, through the process's one item-library
    client (its breaker is the API's too): feed pages are large, so they get a longer timeout."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        redis: Redis,
        client: CatalogueClient,
        *,
        page_size: int,
        page_timeout_s: float,
        full_every: timedelta,
        interval_s: float,
        session_dsn: str | None = None,
        lookback: int = 500,
    ) -> None:
        self.session_dsn = session_dsn
        self.lookback = lookback
        self.pool = pool
        self.redis = redis
        self.client = client
        self.page_size = page_size
        self.page_timeout_s = page_timeout_s
        self.full_every = full_every
        self.interval_s = interval_s
        self._last_run = 0.0

    async def run(self, *, full: bool | None = None) -> SyncReport:
        with context.budget(900.0):
            return await sync_catalogue(
                self.pool,
                self.redis,
                self.client,
                full=full,
                page_size=self.page_size,
                full_every=self.full_every,
                page_timeout_s=self.page_timeout_s,
                session_dsn=self.session_dsn,
                lookback=self.lookback,
            )

    async def tick(self) -> None:
        """The worker's job: the worker ticks often; the sync itself runs at its own period."""
        if time.monotonic() - self._last_run < self.interval_s:
            return
        self._last_run = time.monotonic()
        await self.run()
