"""The catalogue mirror: full sync, incremental sync, resync, cancellation, upstream outage."""

from __future__ import annotations

import asyncpg
import httpx
import pytest

from adapters.catalogue.client import CatalogueClient
from adapters.http import Policy, Upstream
from bff.catalogue.sync import VERSION_KEY, SyncReport, sync_catalogue
from tests.conftest import redis_client

PROVINCE = "430000"


async def run_sync(
    services, sandbox_url: str, *, full: bool | None = None, page_size: int = 500
) -> SyncReport:
    """One sync run against the session's database, Redis and sandbox, as the worker does it."""
    upstream = Upstream("catalogue_sync", f"{sandbox_url}/catalogue", Policy(call_timeout=30))
    await upstream.start()
    pool = await asyncpg.create_pool(services.database_url, min_size=1, max_size=2)
    redis = await redis_client(services)
    try:
        return await sync_catalogue(pool, redis, CatalogueClient(upstream), full=full, page_size=page_size)
    finally:
        await redis.aclose()
        await pool.close()
        await upstream.close()


async def main_code(sandbox: httpx.AsyncClient, name: str) -> str:
    listing = (await sandbox.get("/catalogue/items", params={"limit": 1000})).json()
    return next(str(i["catalog_code"]) for i in listing["items"] if i["name"] == name)


async def sub_code(sandbox: httpx.AsyncClient, name: str, index: int) -> str:
    """The code of the `index`-th handling item of the item called `name`."""
    return (await main_code(sandbox, name))[:9] + f"{index:03d}"


async def test_full_sync_mirrors_every_entry_with_its_guide(services, sandbox_url: str, db, redis) -> None:
    report = await run_sync(services, sandbox_url, full=True)
    upstream_total = 0
    since = 0
    async with httpx.AsyncClient(base_url=sandbox_url) as sandbox:
        while True:
            page = (await sandbox.get("/catalogue/changes", params={"since": since, "limit": 5000})).json()
            upstream_total += len(page["entries"])
            since = page["next_since"]
            if not page["has_more"]:
                break
    assert report.mode == "full"
    assert report.entries_seen == upstream_total > 1000
    mirrored = await db.fetchval("SELECT count(*) FROM bff.catalogue_entries")
    assert mirrored == upstream_total
    missing_guides = await db.fetchval(
        """
        SELECT count(*) FROM bff.catalogue_entries e LEFT JOIN bff.catalogue_guides g
          ON (g.catalog_code, g.region_code, g.version) = (e.catalog_code, e.region_code, e.version)
        WHERE g.body IS NULL
        """
    )
    assert missing_guides == 0
    assert await db.fetchval("SELECT count(*) FROM bff.catalogue_regions") >= 6
    assert await db.fetchval("SELECT count(*) FROM bff.catalogue_halls") >= 6
    state = await db.fetchrow("SELECT * FROM bff.catalogue_sync_state")
    assert state["feed_cursor"] == since
    assert state["last_full_at"] is not None and state["last_error"] is None
    assert int(await redis.get(VERSION_KEY)) == state["index_version"] > 0


async def test_resync_is_idempotent_and_keeps_versions(services, sandbox_url: str, db) -> None:
    await run_sync(services, sandbox_url, full=True)
    before = await db.fetchval("SELECT count(*) FROM bff.catalogue_guides")
    version = await db.fetchval("SELECT index_version FROM bff.catalogue_sync_state")
    again = await run_sync(services, sandbox_url, full=True)
    assert again.entries_changed == 0 and again.withdrawn == 0
    assert await db.fetchval("SELECT count(*) FROM bff.catalogue_guides") == before
    # Nothing changed, so API processes have no reason to rebuild their index.
    assert await db.fetchval("SELECT index_version FROM bff.catalogue_sync_state") == version


async def test_incremental_sync_applies_revisions_and_keeps_old_guide(
    services, sandbox_url: str, sandbox: httpx.AsyncClient, db
) -> None:
    await run_sync(services, sandbox_url, full=True)
    code = await sub_code(sandbox, "居住证申领", 2)
    old = await db.fetchrow(
        "SELECT version, etag FROM bff.catalogue_entries WHERE catalog_code = $1 AND region_code = $2",
        code,
        PROVINCE,
    )
    changed = await sandbox.post(
        f"/_control/catalogue/entries/{code}/revise", params={"region": PROVINCE}, json={"promiseDay": 2}
    )
    assert changed.json() == {"changed": 1}
    report = await run_sync(services, sandbox_url, full=False)
    assert report.mode == "incremental"
    assert report.entries_seen == 1 and report.entries_changed == 1
    new = await db.fetchrow(
        "SELECT version, etag FROM bff.catalogue_entries WHERE catalog_code = $1 AND region_code = $2",
        code,
        PROVINCE,
    )
    assert new["version"] == old["version"] + 1 and new["etag"] != old["etag"]
    versions = await db.fetch(
        "SELECT version FROM bff.catalogue_guides WHERE catalog_code = $1 AND region_code = $2 ORDER BY version",
        code,
        PROVINCE,
    )
    assert [r["version"] for r in versions] == [old["version"], new["version"]]
    # A quiet feed: an incremental run reads nothing.
    assert (await run_sync(services, sandbox_url, full=False)).entries_seen == 0


async def test_cancellation_arrives_through_the_feed(
    services, sandbox_url: str, sandbox: httpx.AsyncClient, db
) -> None:
    await run_sync(services, sandbox_url, full=True)
    code = await sub_code(sandbox, "居住证申领", 3)
    await sandbox.post(f"/_control/catalogue/entries/{code}/cancel")
    try:
        await run_sync(services, sandbox_url, full=False)
        statuses = await db.fetch(
            "SELECT DISTINCT status FROM bff.catalogue_entries WHERE catalog_code = $1", code
        )
        assert [r["status"] for r in statuses] == ["cancelled"]
    finally:
        await sandbox.post(f"/_control/catalogue/entries/{code}/restore")
        await run_sync(services, sandbox_url, full=False)
    statuses = await db.fetch(
        "SELECT DISTINCT status FROM bff.catalogue_entries WHERE catalog_code = $1", code
    )
    assert [r["status"] for r in statuses] == ["active"]


async def test_full_resync_withdraws_what_the_library_dropped(
    services, sandbox_url: str, sandbox: httpx.AsyncClient, db
) -> None:
    await run_sync(services, sandbox_url, full=True)
    code = await sub_code(sandbox, "居住证申领", 4)
    # Withdrawn without a feed event: only a full resync can notice.
    assert (await sandbox.delete(f"/_control/catalogue/entries/{code}")).json()["changed"] >= 1
    assert (await run_sync(services, sandbox_url, full=False)).withdrawn == 0
    report = await run_sync(services, sandbox_url, full=True)
    assert report.withdrawn >= 1
    statuses = await db.fetch(
        "SELECT DISTINCT status FROM bff.catalogue_entries WHERE catalog_code = $1", code
    )
    assert [r["status"] for r in statuses] == ["withdrawn"]


@pytest.mark.parametrize(
    "fault", [{"errorRate": 1.0, "errorKind": "503"}, {"errorRate": 1.0, "errorKind": "malformed"}]
)
async def test_failed_sync_keeps_the_mirror_and_cursor(
    services, sandbox_url: str, sandbox: httpx.AsyncClient, db, fault: dict[str, object]
) -> None:
    await run_sync(services, sandbox_url, full=True)
    before = await db.fetchrow("SELECT feed_cursor, last_success_at FROM bff.catalogue_sync_state")
    entries = await db.fetchval("SELECT count(*) FROM bff.catalogue_entries WHERE status = 'active'")
    await sandbox.put("/_control/faults/catalogue", json=fault)
    with pytest.raises(Exception) as failure:
        await run_sync(services, sandbox_url, full=True)
    assert type(failure.value).__name__ in {"UpstreamUnavailable", "BadUpstreamAnswer"}
    after = await db.fetchrow("SELECT feed_cursor, last_success_at, last_error FROM bff.catalogue_sync_state")
    assert after["feed_cursor"] == before["feed_cursor"]
    assert after["last_success_at"] == before["last_success_at"]
    assert after["last_error"]
    assert await db.fetchval("SELECT count(*) FROM bff.catalogue_entries WHERE status = 'active'") == entries


async def test_worker_job_runs_the_sync(services, sandbox_url: str, db) -> None:
    from bff.wiring import open_root
    from tests.conftest import make_settings

    settings = make_settings(services, sandbox_url, catalogue_sync_interval_s=0)
    before = await db.fetchval("SELECT run FROM bff.catalogue_sync_state")
    async with open_root(settings) as root:
        jobs = {job.name: job for job in root.jobs}
        assert "catalogue_sync" in jobs
        await jobs["catalogue_sync"].run()
    state = await db.fetchrow("SELECT run, last_error, last_success_at FROM bff.catalogue_sync_state")
    assert state["run"] == before + 1 and state["last_error"] is None
