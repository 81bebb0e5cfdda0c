"""Applying the case system's events: once each, in any order, from any path.

Webhook deliveries, the change-feed reconciler and the answers to our own calls all end here.
An event is keyed by its id (a second delivery inserts nothing and changes nothing); the case's
status follows the event with the highest per-case sequence, so a late, older event joins the
timeline without rolling the status back. A change the resident should hear about is written to
the outbox in the same transaction.
"""

from __future__ import annotations

from typing import Protocol

import asyncpg
import asyncpg.pool

from adapters.cases.client import CaseClient
from adapters.cases.schemas import CaseEvent
from bff.platform.feeds import read_from
from bff.platform.logs import get_logger
from push import outbox
from push.topics import CaseChanged

# A plain or a pooled connection: both run the same statements.
Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy


log = get_logger("bff.cases.events")

# The case system's status codes -> our stable states (DOMAIN.md).
STATUS_BY_CODE = {
    "01": "submitted",
    "02": "pre_accepted",
    "03": "accepted",
    "04": "not_accepted",
    "05": "in_progress",
    "06": "awaiting_supplement",
    "07": "special_procedure",
    "08": "concluded",
}
RESULTS = {
    "0": "issued",
    "1": "returned",
    "2": "voided",
    "3": "deleted",
    "4": "transferred",
    "5": "supplement_timeout",
    "6": "done",
}
# What a resident is told about; their own submission they just saw on screen.
NOTIFY = frozenset(
    {
        "pre_accepted",
        "accepted",
        "not_accepted",
        "step",
        "supplement_requested",
        "special_started",
        "special_ended",
        "concluded",
    }
)
FEED_CURSOR = "cases.changes"


class CaseEventHook(Protocol):
    """Another domain's reaction to a newly applied case event, inside the same transaction (the
    payments domain turns `refund_requested` into a refund): wired in by the composition root, so
    cases does not import it."""

    async def case_event(self, conn: Conn, case: asyncpg.Record, event: CaseEvent) -> None: ...


async def apply_event(conn: Conn, event: CaseEvent, via: str, hook: CaseEventHook | None = None) -> str:
    """Apply one event inside the caller's transaction: 'applied', 'duplicate' or 'unknown_case'."""
    case = await conn.fetchrow(
        """
        SELECT * FROM bff.cases WHERE project_no = $1 OR request_id::text = $2
        ORDER BY project_no IS NULL LIMIT 1 FOR UPDATE
        """,
        event.project_no,
        event.request_id,
    )
    if case is None:
        return "unknown_case"
    inserted = await conn.fetchval(
        """
        INSERT INTO bff.case_events (event_id, case_id, case_seq, type, occurred_at, data, via)
        VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING RETURNING 1
        """,
        event.event_id,
        case["id"],
        event.case_seq,
        event.type,
        event.occurred_at,
        event.data,
        via,
    )
    if inserted is None:
        return "duplicate"
    if hook is not None:
        await hook.case_event(conn, case, event)
    status = STATUS_BY_CODE.get(event.status_code, case["status"])
    result = RESULTS.get(str(event.data.get("result_code"))) if event.type == "concluded" else None
    advanced = await conn.fetchval(
        """
        UPDATE bff.cases
           SET status = CASE WHEN status = 'rated' THEN status
                             -- mailing the result (delivery's states) comes after 办结
                             WHEN status IN ('delivering', 'delivered') AND $3 = 'concluded' THEN status
                             ELSE $3 END,
               upstream_status_code = $4, result_code = coalesce($5, result_code),
               version = $2, project_no = coalesce(project_no, $6), updated_at = now()
         WHERE id = $1 AND version < $2
        RETURNING 1
        """,
        case["id"],
        event.case_seq,
        status,
        event.status_code,
        result,
        event.project_no,
    )
    if advanced and event.type in NOTIFY:
        await outbox.enqueue(
            conn,
            "case.changed",
            case["person_id"],
            f"case-event:{event.event_id}",
            CaseChanged(
                case_id=str(case["id"]),
                project_no=event.project_no,
                item_name=case["item_name"],
                event=event.type,
                status=status,
                result=result,
                occurred_at=event.occurred_at.isoformat(),
            ),
        )
    return "applied"


async def reconcile(
    pool: asyncpg.Pool,
    client: CaseClient,
    *,
    max_pages: int = 20,
    lookback: int = 500,
    hook: CaseEventHook | None = None,
) -> int:
    """Read the change feed from `lookback` events before where we stopped (bff/platform/feeds.py:
    an event that committed after a higher `seq` was read is still read); events already applied
    are skipped by id. Returns how many events were new to us."""
    applied = 0
    cursor = int(
        await pool.fetchval("SELECT position FROM bff.sync_cursors WHERE name = $1", FEED_CURSOR) or 0
    )
    since = read_from(cursor, lookback)
    for _ in range(max_pages):
        page = await client.changes(since)
        if not page.events:
            break
        known = {
            r["event_id"]
            for r in await pool.fetch(
                "SELECT event_id FROM bff.case_events WHERE event_id = ANY($1::text[])",
                [e.event_id for e in page.events],
            )
        }
        async with pool.acquire() as conn, conn.transaction():
            for event in page.events:
                if event.event_id in known:
                    continue
                if await apply_event(conn, event, "feed", hook) == "applied":
                    applied += 1
            await conn.execute(
                """
                INSERT INTO bff.sync_cursors (name, position) VALUES ($1, $2)
                ON CONFLICT (name) DO UPDATE SET position = greatest(bff.sync_cursors.position, EXCLUDED.position),
                    updated_at = now()
                """,
                FEED_CURSOR,
                page.next_since,
            )
        if page.next_since <= since:
            break
        since = page.next_since
    if applied:
        log.info("cases_reconciled", applied=applied)
    return applied
