"""Change feeds: an event that commits late is never skipped (bff/platform/feeds.py).

The case system numbers its events (`seq`) before its transaction commits. The sandbox's
`commit_delay_ms` keeps one advance's transaction open after its event took its number, so a
later advance commits first with a higher number: the reconciler reads that one, and must still
read the late one on its next run. The same reader with no look-back window skips it for good
(the control, showing the test can fail).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from adapters.cases.client import CaseClient
from adapters.catalogue.client import CatalogueClient
from adapters.http import Policy, Upstream
from bff.cases.events import reconcile
from bff.catalogue.sync import sync_catalogue
from bff.platform.db import init_connection
from bff.platform.feeds import read_from
from tests.auth_helpers import login_resident
from tests.conftest import redis_client
from tests.test_catalogue_sync import PROVINCE, sub_code
from tests.test_journey_helpers import apply, bookable_item, upstream_urls


@pytest.fixture
async def client(make_client, sandbox_url) -> httpx.AsyncClient:
    return await make_client(**upstream_urls(sandbox_url))


@pytest.fixture
async def feed(sandbox_url: str, services: Any) -> AsyncIterator[tuple[asyncpg.Pool, CaseClient]]:
    upstream = Upstream("cases", f"{sandbox_url}/cases", Policy())
    await upstream.start()
    pool = await asyncpg.create_pool(services.database_url, min_size=1, max_size=2, init=init_connection)
    try:
        yield pool, CaseClient(upstream)
    finally:
        await pool.close()
        await upstream.close()


async def _late_commit(
    client: httpx.AsyncClient, sandbox: httpx.AsyncClient, db: asyncpg.Connection, feed: Any, lookback: int
) -> tuple[str, str]:
    """Two cases; the first one's acceptance takes its seq first and commits 1.5 s later than the
    second's. Returns the two event ids after one reconcile in between and one after."""
    pool, cases = feed
    who = await login_resident(client, sandbox, level=3)
    item = await bookable_item(db)
    late_case, early_case = await apply(client, who, item), await apply(client, who, item)
    while await reconcile(pool, cases, lookback=lookback):  # caught up with everything before
        pass

    late = asyncio.create_task(
        sandbox.post(
            f"/cases/_control/applications/{late_case['case']['projectNo']}/advance",
            json={"action": "accept", "deliver": False, "commit_delay_ms": 1500},
        )
    )
    await asyncio.sleep(0.5)  # it has taken its seq and is waiting to commit
    early = await sandbox.post(
        f"/cases/_control/applications/{early_case['case']['projectNo']}/advance",
        json={"action": "accept", "deliver": False},
    )
    assert early.status_code == 201, early.text
    assert not late.done()
    await reconcile(pool, cases, lookback=lookback)  # reads the early one (higher seq) only
    late_answer = await late
    assert late_answer.status_code == 201, late_answer.text
    late_event, early_event = late_answer.json(), early.json()
    assert late_event["seq"] < early_event["seq"]
    assert (
        await db.fetchval("SELECT count(*) FROM bff.case_events WHERE event_id = $1", late_event["event_id"])
        == 0
    )
    await reconcile(pool, cases, lookback=lookback)
    return str(late_event["event_id"]), str(early_event["event_id"])


async def test_the_case_reconciler_reads_an_event_that_committed_late(client, sandbox, db, feed) -> None:
    late, early = await _late_commit(client, sandbox, db, feed, lookback=500)
    rows = await db.fetch(
        "SELECT event_id, via FROM bff.case_events WHERE event_id = ANY($1::text[])", [late, early]
    )
    assert {(r["event_id"], r["via"]) for r in rows} == {(late, "feed"), (early, "feed")}
    case = await db.fetchrow(
        "SELECT c.status FROM bff.cases c JOIN bff.case_events e ON e.case_id = c.id WHERE e.event_id = $1",
        late,
    )
    assert case["status"] == "accepted"
    # Read again by the window, nothing is applied twice.
    assert await reconcile(feed[0], feed[1], lookback=500) == 0


async def test_without_a_look_back_window_the_late_event_is_skipped(client, sandbox, db, feed) -> None:
    """The control: the old rule (cursor = highest seq read) loses the late event."""
    late, _ = await _late_commit(client, sandbox, db, feed, lookback=0)
    assert await db.fetchval("SELECT count(*) FROM bff.case_events WHERE event_id = $1", late) == 0
    # The fixed reader, run afterwards, still finds it.
    await reconcile(feed[0], feed[1], lookback=500)
    assert await db.fetchval("SELECT count(*) FROM bff.case_events WHERE event_id = $1", late) == 1


def test_read_from_never_goes_below_zero() -> None:
    assert read_from(0, 500) == 0
    assert read_from(120, 500) == 0
    assert read_from(1200, 500) == 700
    assert read_from(1200, -3) == 1200


# --- the catalogue's feed, the same rule ---


async def _sync(services: Any, sandbox_url: str, *, full: bool, lookback: int) -> None:
    upstream = Upstream("catalogue_sync", f"{sandbox_url}/catalogue", Policy(call_timeout=30))
    await upstream.start()
    pool = await asyncpg.create_pool(services.database_url, min_size=1, max_size=2)
    redis = await redis_client(services)
    try:
        await sync_catalogue(
            pool, redis, CatalogueClient(upstream), full=full, page_size=500, lookback=lookback
        )
    finally:
        await redis.aclose()
        await pool.close()
        await upstream.close()


async def _version(db: asyncpg.Connection, code: str) -> int:
    return int(
        await db.fetchval(
            "SELECT version FROM bff.catalogue_entries WHERE catalog_code = $1 AND region_code = $2",
            code,
            PROVINCE,
        )
    )


@pytest.mark.parametrize(("lookback", "caught"), [(500, True), (0, False)])
async def test_the_catalogue_sync_reads_a_change_that_committed_late(
    services, sandbox_url, sandbox, db, lookback: int, caught: bool
) -> None:
    await _sync(services, sandbox_url, full=True, lookback=lookback)
    late_code, early_code = await sub_code(sandbox, "居住证申领", 1), await sub_code(sandbox, "居住证申领", 3)
    late_before, early_before = await _version(db, late_code), await _version(db, early_code)
    late = asyncio.create_task(
        sandbox.post(
            f"/_control/catalogue/entries/{late_code}/revise",
            params={"region": PROVINCE},
            json={"promiseDay": 3, "commitDelayMs": 1500},
        )
    )
    await asyncio.sleep(0.5)
    early = await sandbox.post(
        f"/_control/catalogue/entries/{early_code}/revise",
        params={"region": PROVINCE},
        json={"promiseDay": 4},
    )
    assert early.json() == {"changed": 1}
    await _sync(services, sandbox_url, full=False, lookback=lookback)  # reads the early change only
    assert (await late).json() == {"changed": 1}
    assert await _version(db, late_code) == late_before
    await _sync(services, sandbox_url, full=False, lookback=lookback)
    assert await _version(db, early_code) == early_before + 1
    # With the window the late change is read; without it (the old rule) it is skipped for good.
    assert (await _version(db, late_code) == late_before + 1) is caught
