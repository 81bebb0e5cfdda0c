"""GET /api/v1/items/{code} for an item the mirror does not hold (yet): through the catalogue
adapter, cached in Redis with an ETag, stale copy or a problem when the upstream fails.

Guides served from the mirror are tested in tests/test_catalogue_api.py. Here each test first
removes its item from the mirror (as if it were newer than the last sync), so that the upstream
path is the one exercised whatever other tests synced before.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.test_catalogue_sync import run_sync


@pytest.fixture(scope="module", autouse=True)
async def _mirror_put_back(services, sandbox_url: str) -> AsyncIterator[None]:
    """These tests delete items from the mirror; a full resync afterwards puts them back for the
    modules after this one (an incremental one would not: nothing changed in the library)."""
    yield
    await run_sync(services, sandbox_url, full=True)


async def first_code(sandbox: httpx.AsyncClient, name: str = "出生登记") -> str:
    listing = (await sandbox.get("/catalogue/items", params={"limit": 1000})).json()
    return next(str(i["catalog_code"]) for i in listing["items"] if i["name"] == name)


async def not_mirrored(db, code: str) -> None:
    await db.execute("DELETE FROM bff.catalogue_entries WHERE catalog_code = $1", code)


async def test_guide_is_shaped_for_a_phone(client: httpx.AsyncClient, sandbox: httpx.AsyncClient, db) -> None:
    code = await first_code(sandbox)
    await not_mirrored(db, code)
    response = await client.get(f"/api/v1/items/{code}")
    assert response.status_code == 200
    body = response.json()
    assert body["freshness"]["status"] == "ok"
    item = body["item"]
    assert item["code"] == code
    assert item["name"] == "出生登记"
    assert item["demoData"] is True
    assert item["materials"] and all("replacedByElicence" in m for m in item["materials"])
    # Required materials come first; among them those an e-licence covers come last.
    flags = [(not m["required"], m["replacedByElicence"]) for m in item["materials"]]
    assert flags == sorted(flags)
    assert item["timeLimits"]["statutoryWorkingDays"] >= item["timeLimits"]["promisedWorkingDays"]
    assert item["halls"][0]["name"]
    assert set(item["channels"]) >= {"online", "bookable", "mailable", "payOnline", "kiosk"}
    assert response.headers["etag"].startswith('W/"')


async def test_etag_gives_304(client: httpx.AsyncClient, sandbox: httpx.AsyncClient, db) -> None:
    code = await first_code(sandbox)
    await not_mirrored(db, code)
    first = await client.get(f"/api/v1/items/{code}")
    etag = first.headers["etag"]
    again = await client.get(f"/api/v1/items/{code}", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    other = await client.get(f"/api/v1/items/{code}", headers={"If-None-Match": 'W/"other"'})
    assert other.status_code == 200


async def test_cache_hit_does_not_call_upstream(
    client: httpx.AsyncClient, sandbox: httpx.AsyncClient, db
) -> None:
    code = await first_code(sandbox)
    await not_mirrored(db, code)
    await client.get(f"/api/v1/items/{code}")
    before = (await sandbox.get("/_control/requests/catalogue")).json()["count"]
    for _ in range(5):
        assert (await client.get(f"/api/v1/items/{code}")).status_code == 200
    after = (await sandbox.get("/_control/requests/catalogue")).json()["count"]
    assert after == before


async def test_unknown_item_is_404_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/items/999999999999")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "item_not_found"


async def test_bad_code_and_region_are_400(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/items/abc'%3B--")
    assert response.status_code == 400
    assert response.json()["code"] == "validation_failed"
    response = await client.get("/api/v1/items/070000001000", params={"region": "hunan"})
    assert response.status_code == 400
    assert "region" in response.json()["detail"]


@pytest.mark.parametrize("fault", [{"latencyMs": 2000}, {"errorRate": 1.0, "errorKind": "timeout"}])
async def test_slow_upstream_serves_stale_within_budget(
    make_client, sandbox: httpx.AsyncClient, db, fault: dict[str, object]
) -> None:
    # A zero freshness window makes every read go upstream, so the fallback is exercised.
    client = await make_client(item_cache_ttl_s=0, item_budget_ms=800)
    code = await first_code(sandbox)
    await not_mirrored(db, code)
    assert (await client.get(f"/api/v1/items/{code}")).status_code == 200
    await sandbox.put("/_control/faults/catalogue", json=fault)
    started = time.monotonic()
    response = await client.get(f"/api/v1/items/{code}")
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert response.json()["freshness"]["status"] == "stale"
    assert elapsed < 1.5, elapsed


@pytest.mark.parametrize("fault", [{"latencyMs": 2000}, {"errorRate": 1.0, "errorKind": "timeout"}])
async def test_slow_upstream_without_copy_is_503_within_budget(
    make_client, sandbox: httpx.AsyncClient, redis, db, fault: dict[str, object]
) -> None:
    client = await make_client(item_budget_ms=800)
    code = await first_code(sandbox)
    await not_mirrored(db, code)
    await redis.delete(f"sx:guide:{code}:-")
    await sandbox.put("/_control/faults/catalogue", json=fault)
    started = time.monotonic()
    response = await client.get(f"/api/v1/items/{code}")
    elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "upstream_unavailable"
    assert elapsed < 1.5, elapsed


async def test_malformed_upstream_body_is_502(make_client, sandbox: httpx.AsyncClient, redis, db) -> None:
    client = await make_client()
    code = await first_code(sandbox)
    await not_mirrored(db, code)
    await redis.delete(f"sx:guide:{code}:-")
    await sandbox.put("/_control/faults/catalogue", json={"errorRate": 1.0, "errorKind": "malformed"})
    response = await client.get(f"/api/v1/items/{code}")
    assert response.status_code == 502
    assert response.json()["code"] == "bad_upstream_answer"


async def test_connection_reset_without_copy_is_503(
    make_client, sandbox: httpx.AsyncClient, redis, db
) -> None:
    client = await make_client()
    code = await first_code(sandbox)
    await not_mirrored(db, code)
    await redis.delete(f"sx:guide:{code}:-")
    await sandbox.put("/_control/faults/catalogue", json={"errorRate": 1.0, "errorKind": "reset"})
    response = await client.get(f"/api/v1/items/{code}")
    assert response.status_code == 503
    assert response.json()["code"] == "upstream_unavailable"
