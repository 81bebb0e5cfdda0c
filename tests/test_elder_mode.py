"""长辈版 (elder mode) on the server: the same resident asking the same thing gets fewer, plainer
items, the common services first, no secondary sections and a large-type hint; the mode is saved
once and comes back on every device through /me."""

from __future__ import annotations

import tomllib
import uuid

import httpx
import pytest

from bff.catalogue.elder import ELDER_HALLS, ELDER_PAGE, ELDER_PATH
from tests.auth_helpers import bearer, login_resident
from tests.test_catalogue_api import FURONG
from tests.test_catalogue_sync import run_sync

ELDER = {"X-UI-Mode": "elder"}
NEAR = "28.19,112.98"  # 长沙
COMMON = tomllib.loads(ELDER_PATH.read_text(encoding="utf-8"))["common"]


@pytest.fixture
async def mirrored(services, sandbox_url: str, make_client) -> httpx.AsyncClient:
    await run_sync(services, sandbox_url)
    client = await make_client()
    await client.app.state.root.catalogue_mirror.refresh(force=True)
    return client


async def test_every_common_service_is_an_item_of_the_catalogue(mirrored: httpx.AsyncClient) -> None:
    names = {d.name for d in mirrored.app.state.root.catalogue_mirror.snapshot.index.docs}
    assert set(COMMON) - names == set()
    assert all(plain and plain != name for name, plain in COMMON.items())


async def test_an_elder_search_is_shorter_and_plainer_than_the_normal_one(
    mirrored: httpx.AsyncClient,
) -> None:
    params = {"q": "登记", "region": FURONG, "limit": "20"}
    normal = await mirrored.get("/api/v1/items", params=params)
    elder = await mirrored.get("/api/v1/items", params=params, headers=ELDER)
    assert normal.status_code == elder.status_code == 200, (normal.text, elder.text)
    standard, shaped = normal.json(), elder.json()
    assert len(standard["items"]) > ELDER_PAGE, "the query should find more than an elder page holds"
    assert len(shaped["items"]) == ELDER_PAGE and shaped["nextCursor"] is not None
    # The same items in the same (relevance) order, fewer of them.
    assert [i["code"] for i in shaped["items"]] == [i["code"] for i in standard["items"][:ELDER_PAGE]]
    assert standard["display"] is None and all(i["plainName"] is None for i in standard["items"])
    assert shaped["display"] == {"mode": "elder", "typeScale": 1.5, "lineSpacing": 1.6}
    for item in shaped["items"]:
        assert item["plainName"] == COMMON.get(item["name"])


async def test_an_elders_empty_search_box_lists_the_common_services_first(
    mirrored: httpx.AsyncClient,
) -> None:
    normal = await mirrored.get("/api/v1/items", params={"region": FURONG})
    assert normal.status_code == 200 and normal.json()["items"] == []
    assert normal.json()["query"]["notice"]
    first = await mirrored.get("/api/v1/items", params={"region": FURONG}, headers=ELDER)
    assert first.status_code == 200, first.text
    page = first.json()
    assert [i["name"] for i in page["items"]] == list(COMMON)[:ELDER_PAGE]
    assert [i["plainName"] for i in page["items"]] == list(COMMON.values())[:ELDER_PAGE]
    # The next page goes on down the list.
    second = await mirrored.get(
        "/api/v1/items", params={"region": FURONG, "cursor": page["nextCursor"]}, headers=ELDER
    )
    assert [i["name"] for i in second.json()["items"]] == list(COMMON)[ELDER_PAGE : 2 * ELDER_PAGE]


async def test_browsing_a_topic_in_elder_mode_puts_the_common_services_first(
    mirrored: httpx.AsyncClient,
) -> None:
    params = {"topic": "社会保障", "limit": "50"}
    normal = [i["name"] for i in (await mirrored.get("/api/v1/items", params=params)).json()["items"]]
    elder = [
        i["name"] for i in (await mirrored.get("/api/v1/items", params=params, headers=ELDER)).json()["items"]
    ]
    common_here = [name for name in COMMON if name in normal]
    assert len(common_here) >= 3 and normal[: len(common_here)] != common_here
    assert elder == common_here[:ELDER_PAGE]


async def test_an_elder_guide_drops_the_secondary_sections_and_caches_apart(
    mirrored: httpx.AsyncClient,
) -> None:
    search = await mirrored.get("/api/v1/items", params={"q": "居民身份证换领", "region": FURONG})
    code = search.json()["items"][0]["code"]
    url = f"/api/v1/items/{code}"
    where = {"near": NEAR}  # the province's guide: every hall, nearest first
    normal = await mirrored.get(url, params=where)
    elder = await mirrored.get(url, params=where, headers=ELDER)
    assert normal.status_code == elder.status_code == 200, (normal.text, elder.text)
    standard, shaped = normal.json(), elder.json()
    assert standard["item"]["legalBasis"] and standard["item"]["faq"] and standard["item"]["supervision"]
    assert len(standard["nearestHalls"]) > ELDER_HALLS
    assert "display" not in standard and "plainName" not in standard
    assert shaped["item"]["legalBasis"] == [] and shaped["item"]["faq"] == []
    assert shaped["item"]["supervision"] == ""
    assert shaped["nearestHalls"] == standard["nearestHalls"][:ELDER_HALLS]
    assert shaped["plainName"] == COMMON["居民身份证换领"] and shaped["display"]["mode"] == "elder"
    # What a resident acts on is all there.
    for kept in ("materials", "steps", "fees", "timeLimits", "channels", "conditions"):
        assert shaped["item"][kept] == standard["item"][kept], kept
    # Two versions of one resource: different validators, and caches told the header matters.
    assert normal.headers["etag"] != elder.headers["etag"]
    assert "X-UI-Mode" in elder.headers["vary"] and "X-UI-Mode" in normal.headers["vary"]
    again = await mirrored.get(url, params=where, headers={**ELDER, "If-None-Match": elder.headers["etag"]})
    assert again.status_code == 304
    crossed = await mirrored.get(url, params=where, headers={"If-None-Match": elder.headers["etag"]})
    assert crossed.status_code == 200 and crossed.json() == standard


@pytest.mark.parametrize("value", ["grandpa", "ELDERLY", ""])
async def test_an_unknown_ui_mode_is_a_400_problem(mirrored: httpx.AsyncClient, value: str) -> None:
    response = await mirrored.get("/api/v1/items", params={"q": "社保卡"}, headers={"X-UI-Mode": value})
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_the_saved_preference_follows_the_resident_to_every_channel(
    client: httpx.AsyncClient, sandbox: httpx.AsyncClient
) -> None:
    phone = await login_resident(client, sandbox, channel="app", level=2)
    me = await client.get("/api/v1/me", headers=bearer(phone))
    assert me.status_code == 200 and me.json()["uiMode"] == "standard"

    url = "/api/v1/me/display-preferences"
    refused = [
        await client.put(url, json={"uiMode": "elder"}, headers=bearer(phone)),  # no Idempotency-Key
        await client.put(
            url, json={"uiMode": "huge"}, headers={**bearer(phone), "Idempotency-Key": uuid.uuid4().hex}
        ),
        await client.put(
            url,
            json={"uiMode": "elder", "x": 1},
            headers={**bearer(phone), "Idempotency-Key": uuid.uuid4().hex},
        ),
    ]
    assert [r.status_code for r in refused] == [400, 400, 400], [r.text for r in refused]
    assert (await client.get("/api/v1/me", headers=bearer(phone))).json()["uiMode"] == "standard"

    key = {"Idempotency-Key": uuid.uuid4().hex}
    saved = await client.put(url, json={"uiMode": "elder"}, headers={**bearer(phone), **key})
    assert saved.status_code == 200 and saved.json() == {"uiMode": "elder"}, saved.text
    assert "no-store" in saved.headers["cache-control"]
    replay = await client.put(url, json={"uiMode": "elder"}, headers={**bearer(phone), **key})
    assert replay.content == saved.content

    # Another device of the same resident learns it at once.
    wechat = await login_resident(client, sandbox, channel="miniprogram", level=2, resident=phone["resident"])
    assert wechat["person_id"] == phone["person_id"]
    mine = await client.get("/api/v1/me", headers=bearer(wechat))
    assert mine.json()["uiMode"] == "elder" and "no-store" in mine.headers["cache-control"]
    back = await client.put(
        url, json={"uiMode": "standard"}, headers={**bearer(wechat), "Idempotency-Key": uuid.uuid4().hex}
    )
    assert back.status_code == 200
    assert (await client.get("/api/v1/me", headers=bearer(phone))).json()["uiMode"] == "standard"
