"""Search, type-ahead, guides from the mirror, topics, regions, halls and life events over HTTP."""

from __future__ import annotations

import time

import httpx
import pytest

from bff.catalogue.mirror import load_life_events
from tests.test_catalogue_sync import main_code, run_sync

PROVINCE = "430000"
FURONG = "430102"  # 长沙市芙蓉区, a county-level unit of the demo scale
JISHOU = "433101"  # 吉首市, in 湘西州


@pytest.fixture
async def mirrored(services, sandbox_url: str, make_client) -> httpx.AsyncClient:
    await run_sync(services, sandbox_url)
    client = await make_client()
    await client.app.state.root.catalogue_mirror.refresh(force=True)
    return client


async def search(client: httpx.AsyncClient, q: str, **params: str) -> list[dict]:
    response = await client.get("/api/v1/items", params={"q": q, **params})
    assert response.status_code == 200, response.text
    return response.json()["items"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("出生登记", "出生登记"),
        ("生孩子上户口", "出生登记"),  # colloquial
        ("公积金提取", "住房公积金提取"),  # abbreviation
        ("驾照丢了", "机动车驾驶证补领"),  # abbreviation + colloquial
        ("chushengdengji", "出生登记"),  # full pinyin
        ("jhdj", "结婚登记"),  # initials
        ("結婚登記", "结婚登记"),  # traditional characters
        ("结昏登记", "结婚登记"),  # homophone slip
        ("居民身分证换领", "居民身份证换领"),  # one-character typo
    ],
)
async def test_search_finds_what_residents_type(
    mirrored: httpx.AsyncClient, query: str, expected: str
) -> None:
    items = await search(mirrored, query)
    assert items, query
    assert items[0]["name"] == expected, [i["name"] for i in items[:3]]


async def test_search_puts_items_of_the_residents_region_first(mirrored: httpx.AsyncClient, db) -> None:
    # An item that 芙蓉区 implements itself and 吉首市 leaves to its prefecture.
    missing = await db.fetchval(
        """
        SELECT p.name FROM bff.catalogue_entries p
        WHERE p.region_code = '430000' AND p.parent_code IS NULL AND p.status = 'active'
          AND NOT EXISTS (SELECT 1 FROM bff.catalogue_entries l WHERE l.catalog_code = p.catalog_code
                          AND l.region_code = '433101' AND l.status = 'active')
          AND EXISTS (SELECT 1 FROM bff.catalogue_entries l WHERE l.catalog_code = p.catalog_code
                      AND l.region_code = '430102' AND l.status = 'active')
        ORDER BY p.name LIMIT 1
        """
    )
    assert missing is not None, "the demo scale should have counties that differ"
    theme = await db.fetchval("SELECT theme FROM bff.catalogue_entries WHERE name = $1 LIMIT 1", missing)
    here = await search(mirrored, "", topic=theme, region=FURONG, limit="50")
    there = await search(mirrored, "", topic=theme, region=JISHOU, limit="50")
    rank_here = [i["name"] for i in here].index(missing)
    rank_there = [i["name"] for i in there].index(missing)
    assert next(i for i in there if i["name"] == missing)["availableInRegion"] is False
    assert next(i for i in here if i["name"] == missing)["availableInRegion"] is True
    assert rank_there > rank_here or rank_there == len(there) - 1
    # Among results, every local one comes before every non-local one of equal relevance.
    flags = [i["availableInRegion"] for i in there]
    assert flags == sorted(flags, reverse=True)


async def test_search_filters_and_pages(mirrored: httpx.AsyncClient) -> None:
    legal = await search(mirrored, "登记", audience="legal", limit="50")
    assert legal and all(i["audience"] == "法人" for i in legal)
    first = (await mirrored.get("/api/v1/items", params={"q": "登记", "limit": 3})).json()
    assert len(first["items"]) == 3 and first["nextCursor"]
    second = (
        await mirrored.get("/api/v1/items", params={"q": "登记", "limit": 3, "cursor": first["nextCursor"]})
    ).json()
    assert {i["code"] for i in first["items"]}.isdisjoint(i["code"] for i in second["items"])
    assert first["freshness"]["status"] == "ok"


@pytest.mark.parametrize("query", ["", "   ", "😀😀", "'; DROP TABLE bff.catalogue_entries; --", "%_%"])
async def test_odd_queries_get_a_clear_answer(mirrored: httpx.AsyncClient, db, query: str) -> None:
    response = await mirrored.get("/api/v1/items", params={"q": query})
    assert response.status_code == 200
    body = response.json()
    assert isinstance(body["items"], list)
    if not body["query"]["normalized"]:
        assert body["items"] == [] and body["query"]["notice"]
    assert await db.fetchval("SELECT count(*) FROM bff.catalogue_entries") > 0
    suggest = await mirrored.get("/api/v1/items/suggest", params={"q": query})
    assert suggest.status_code == 200


async def test_control_characters_in_a_query_are_a_400_naming_it(mirrored: httpx.AsyncClient) -> None:
    # Issue 9 §1: the edge refuses control characters in any query parameter, search included.
    for path in ("/api/v1/items", "/api/v1/items/suggest"):
        response = await mirrored.get(path, params={"q": "\x00\x07"})
        assert response.status_code == 400 and response.json()["field"] == "query.q"


async def test_over_long_query_and_bad_parameters_are_problems(mirrored: httpx.AsyncClient) -> None:
    response = await mirrored.get("/api/v1/items", params={"q": "出生登记" * 20})
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "query_too_long"
    for params, field in [
        ({"q": "x", "region": "999999"}, "region"),
        ({"q": "x", "audience": "martian"}, "audience"),
        ({"q": "x", "topic": "不存在"}, "topic"),
        ({"q": "x", "limit": "0"}, "limit"),
    ]:
        response = await mirrored.get("/api/v1/items", params=params)
        assert response.status_code == 400, params
        assert field in response.json()["detail"]
    response = await mirrored.get("/api/v1/items", params={"q": "x", "cursor": "garbage!"})
    assert response.status_code == 400 and response.json()["code"] == "invalid_cursor"


async def test_suggest_completes_characters_and_pinyin(mirrored: httpx.AsyncClient) -> None:
    for typed, expected in [
        ("出生", "出生登记"),
        ("gongji", "住房公积金提取"),
        ("jhd", "结婚登记"),
        ("公积", "住房公积金提取"),
    ]:
        response = await mirrored.get("/api/v1/items/suggest", params={"q": typed})
        assert response.status_code == 200
        names = [s["text"] for s in response.json()["items"]]
        assert expected in names, (typed, names)


async def test_guide_comes_from_the_mirror_for_the_residents_region(
    mirrored: httpx.AsyncClient, sandbox: httpx.AsyncClient
) -> None:
    code = await main_code(sandbox, "出生登记")
    before = (await sandbox.get("/_control/requests/catalogue")).json()["count"]
    response = await mirrored.get(f"/api/v1/items/{code}", params={"region": FURONG})
    assert response.status_code == 200
    body = response.json()
    assert body["source"] == "mirror"
    assert body["item"]["regionCode"] == FURONG
    assert "芙蓉区" in body["item"]["department"]
    assert body["handlingItems"] and all(h["code"].startswith(code[:9]) for h in body["handlingItems"])
    hall = body["nearestHalls"][0]
    assert hall["regionCode"] == FURONG and hall["hours"] and hall["distanceM"] is not None
    assert (await sandbox.get("/_control/requests/catalogue")).json()["count"] == before
    again = await mirrored.get(
        f"/api/v1/items/{code}",
        params={"region": FURONG},
        headers={"If-None-Match": response.headers["etag"]},
    )
    assert again.status_code == 304


async def test_guide_falls_back_to_the_city_then_the_province(mirrored: httpx.AsyncClient, db) -> None:
    # The housing fund is run by the city: a county resident gets the city's implementation.
    code = await db.fetchval(
        "SELECT catalog_code FROM bff.catalogue_entries WHERE name = '住房公积金提取' AND region_code = '430000'"
    )
    body = (await mirrored.get(f"/api/v1/items/{code}", params={"region": FURONG})).json()
    assert body["item"]["regionCode"] == "430100"
    body = (await mirrored.get(f"/api/v1/items/{code}")).json()
    assert body["item"]["regionCode"] == PROVINCE


async def test_guide_near_orders_halls_by_distance(
    mirrored: httpx.AsyncClient, sandbox: httpx.AsyncClient
) -> None:
    code = await main_code(sandbox, "住房公积金提取")
    body = (
        await mirrored.get(f"/api/v1/items/{code}", params={"region": "430100", "near": "28.19,112.98"})
    ).json()
    distances = [h["distanceM"] for h in body["nearestHalls"]]
    assert distances == sorted(distances) and len(distances) >= 2
    bad = await mirrored.get(f"/api/v1/items/{code}", params={"near": "north"})
    assert bad.status_code == 400 and "near" in bad.json()["detail"]


async def test_guide_is_served_while_the_upstream_is_down(
    mirrored: httpx.AsyncClient, sandbox: httpx.AsyncClient
) -> None:
    code = await main_code(sandbox, "结婚登记")
    await sandbox.put("/_control/faults/catalogue", json={"errorRate": 1.0, "errorKind": "timeout"})
    started = time.monotonic()
    response = await mirrored.get(f"/api/v1/items/{code}", params={"region": FURONG})
    assert time.monotonic() - started < 1.0
    assert response.status_code == 200
    freshness = response.json()["freshness"]
    assert freshness["status"] == "ok" and freshness["asOf"]
    assert (await mirrored.get("/api/v1/items", params={"q": "结婚"})).json()["items"]


async def test_mirrored_guide_turns_stale_when_syncs_stop(
    make_client, services, sandbox_url: str, sandbox
) -> None:
    await run_sync(services, sandbox_url)
    client = await make_client(catalogue_stale_after_s=0)
    await client.app.state.root.catalogue_mirror.refresh(force=True)
    code = await main_code(sandbox, "结婚登记")
    body = (await client.get(f"/api/v1/items/{code}")).json()
    assert body["freshness"]["status"] == "stale" and body["freshness"]["asOf"]


async def test_cancelled_item_leaves_search_and_its_guide_is_gone(
    mirrored: httpx.AsyncClient, services, sandbox_url: str, sandbox: httpx.AsyncClient
) -> None:
    code = await main_code(sandbox, "导游证核发")
    assert any(i["code"] == code for i in await search(mirrored, "导游证"))
    await sandbox.post(f"/_control/catalogue/entries/{code}/cancel")
    try:
        await run_sync(services, sandbox_url, full=False)
        await mirrored.app.state.root.catalogue_mirror.refresh()
        assert not any(i["code"] == code for i in await search(mirrored, "导游证"))
        response = await mirrored.get(f"/api/v1/items/{code}")
        assert response.status_code == 410 and response.json()["code"] == "item_cancelled"
    finally:
        await sandbox.post(f"/_control/catalogue/entries/{code}/restore")
        await run_sync(services, sandbox_url, full=False)
    await mirrored.app.state.root.catalogue_mirror.refresh()
    assert any(i["code"] == code for i in await search(mirrored, "导游证"))


async def test_topics_regions_halls(mirrored: httpx.AsyncClient) -> None:
    topics = (await mirrored.get("/api/v1/topics", params={"audience": "person"})).json()["items"]
    assert {"户籍办理", "社会保障"} <= {t["name"] for t in topics}
    assert all(t["audience"] == "个人" and t["itemCount"] > 0 for t in topics)
    regions = (await mirrored.get("/api/v1/regions", params={"parent": "430100"})).json()["items"]
    assert {"芙蓉区", "岳麓区"} <= {r["name"] for r in regions}
    first = (await mirrored.get("/api/v1/regions", params={"limit": 2})).json()
    assert first["items"][0]["code"] == PROVINCE and first["nextCursor"]
    halls = (await mirrored.get("/api/v1/halls", params={"near": "28.2127,112.9452"})).json()["items"]
    assert halls[0]["name"] == "湖南省政务服务中心" and halls[0]["distanceM"] < 100
    assert [h["distanceM"] for h in halls] == sorted(h["distanceM"] for h in halls)
    in_furong = (await mirrored.get("/api/v1/halls", params={"region": FURONG})).json()["items"]
    assert in_furong and all(h["regionCode"] == FURONG for h in in_furong)
    one = await mirrored.get(f"/api/v1/halls/{halls[0]['id']}")
    assert one.status_code == 200 and one.json()["address"]
    missing = await mirrored.get("/api/v1/halls/H000000-99")
    assert missing.status_code == 404 and missing.json()["code"] == "hall_not_found"


async def test_life_events_list_their_items_in_order(mirrored: httpx.AsyncClient) -> None:
    events = (await mirrored.get("/api/v1/life-events", params={"region": FURONG})).json()["items"]
    names = {e["name"] for e in events}
    assert {"新生儿出生", "开办企业", "退休", "二手房过户"} <= names
    for event in events:
        assert all(step["code"] for step in event["steps"]), event["name"]
        assert [s["order"] for s in event["steps"]] == list(range(1, len(event["steps"]) + 1))
    newborn = (await mirrored.get("/api/v1/life-events/newborn")).json()
    assert [s["name"] for s in newborn["steps"]][:3] == [
        "出生医学证明签发与补发",
        "预防接种证补办",
        "出生登记",
    ]
    assert (await mirrored.get("/api/v1/life-events/nope")).status_code == 404


def test_life_event_data_names_only_real_items() -> None:
    from sandbox.catalogue.guides import read_items

    names = {row["name"] for row in read_items()}
    for event in load_life_events():
        for step in event.steps:
            assert step.item in names, (event.id, step.item)


async def test_openapi_lists_the_catalogue_routes(mirrored: httpx.AsyncClient) -> None:
    paths = (await mirrored.get("/schema/openapi.json")).json()["paths"]
    for path in [
        "/api/v1/items",
        "/api/v1/items/suggest",
        "/api/v1/items/{code}",
        "/api/v1/topics",
        "/api/v1/regions",
        "/api/v1/halls",
        "/api/v1/halls/{hall_id}",
        "/api/v1/life-events",
    ]:
        assert path in paths, path
