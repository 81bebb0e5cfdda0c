"""Routes of the catalogue domain: search, type-ahead, guides, topics, regions, halls, life events.
Anonymous: a resident finds the right item and its guide before signing in."""

from __future__ import annotations

import re
from typing import Annotated

from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter

from adapters.errors import ProblemError
from auth.guards import staff_only
from bff.catalogue.schemas import (
    GuideOut,
    HallCard,
    HallPage,
    LifeEventOut,
    LifeEventPage,
    RegionPage,
    SearchMissPage,
    SearchPage,
    SuggestPage,
    TopicList,
)
from bff.catalogue.service import CatalogueService
from bff.platform.problems import english
from bff.platform.responses import conditional
from bff.platform.uimode import UiModeHeader, is_elder

_CODE = re.compile(r"^[0-9A-Za-z_-]{1,64}$")


def _identifier(value: str, field: str) -> str:
    if not _CODE.match(value):
        raise ProblemError(
            f"{field}: not a valid identifier",
            status=400,
            code="validation_failed",
            detail_zh=f"{field}：不是有效的标识",
        )
    return value


class ItemController(Controller):
    path = "/items"
    tags = ["catalogue"]

    @get("/", summary="Search service items (Chinese, pinyin, initials, traditional, typos, colloquial)")
    async def search(
        self,
        request: Request,  # type: ignore[type-arg]
        catalogue: NamedDependency[CatalogueService],
        q: Annotated[str | None, QueryParameter(description="what the resident typed")] = None,
        region: Annotated[
            str | None, QueryParameter(description="the resident's 6-digit region code")
        ] = None,
        audience: Annotated[str | None, QueryParameter(description="person or legal")] = None,
        topic: Annotated[str | None, QueryParameter(description="a topic name from /topics")] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=50)] = 20,
        cursor: Annotated[str | None, QueryParameter()] = None,
        ui_mode: UiModeHeader = None,
    ) -> SearchPage:
        return catalogue.search(
            q,
            region=region,
            audience=audience,
            topic=topic,
            limit=limit,
            cursor=cursor,
            english=english(request.headers.get("accept-language", "")),
            elder=is_elder(ui_mode),
        )

    @get("/suggest", summary="Type-ahead for the search box")
    async def suggest(
        self,
        catalogue: NamedDependency[CatalogueService],
        q: Annotated[str | None, QueryParameter()] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=10)] = 8,
    ) -> SuggestPage:
        return catalogue.suggest(q, limit)

    @get("/{code:str}", summary="The guide (办事指南) of one item in a region, shaped for a phone")
    async def get_item(
        self,
        request: Request,  # type: ignore[type-arg]
        catalogue: NamedDependency[CatalogueService],
        code: FromPath[str],
        region: Annotated[str | None, QueryParameter(description="6-digit region code")] = None,
        near: Annotated[str | None, QueryParameter(description="lat,lng: order halls by distance")] = None,
        ui_mode: UiModeHeader = None,
    ) -> Response[GuideOut]:
        guide = await catalogue.guide_response(
            _identifier(code, "code"), region, near, elder=is_elder(ui_mode)
        )
        return conditional(request.headers.get("if-none-match"), guide.etag, guide.body, GuideOut)


class CatalogueController(Controller):
    tags = ["catalogue"]

    @get("/topics", summary="Topics (主题) residents and businesses browse by")
    async def topics(
        self,
        catalogue: NamedDependency[CatalogueService],
        audience: Annotated[str | None, QueryParameter(description="person or legal")] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 50,
        cursor: Annotated[str | None, QueryParameter()] = None,
    ) -> TopicList:
        return catalogue.topics(audience, limit, cursor)

    @get("/regions", summary="Hunan's regions: the province, cities/prefectures, county-level units")
    async def regions(
        self,
        catalogue: NamedDependency[CatalogueService],
        parent: Annotated[
            str | None, QueryParameter(description="only the regions directly under this one")
        ] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
        cursor: Annotated[str | None, QueryParameter()] = None,
    ) -> RegionPage:
        return catalogue.regions(parent, limit, cursor)

    @get("/halls", summary="Service halls, by region and/or nearest first")
    async def halls(
        self,
        catalogue: NamedDependency[CatalogueService],
        region: Annotated[str | None, QueryParameter(description="halls in this region and below")] = None,
        near: Annotated[
            str | None, QueryParameter(description="lat,lng: nearest first, with distance")
        ] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
        cursor: Annotated[str | None, QueryParameter()] = None,
    ) -> HallPage:
        return catalogue.halls(region, near, limit, cursor)

    @get("/halls/{hall_id:str}", summary="One service hall")
    async def hall(
        self,
        catalogue: NamedDependency[CatalogueService],
        hall_id: FromPath[str],
        near: Annotated[str | None, QueryParameter(description="lat,lng: adds the distance")] = None,
    ) -> HallCard:
        return catalogue.hall(_identifier(hall_id, "id"), near)

    @get("/life-events", summary="Life-event bundles (一件事一次办) and their items in order")
    async def life_events(
        self,
        catalogue: NamedDependency[CatalogueService],
        region: Annotated[str | None, QueryParameter(description="marks steps implemented there")] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=50)] = 20,
        cursor: Annotated[str | None, QueryParameter()] = None,
    ) -> LifeEventPage:
        return catalogue.life_events(region, limit, cursor)

    @get("/life-events/{event_id:str}", summary="One life-event bundle")
    async def life_event(
        self,
        catalogue: NamedDependency[CatalogueService],
        event_id: FromPath[str],
        region: Annotated[str | None, QueryParameter()] = None,
    ) -> LifeEventOut:
        return catalogue.life_event(event_id, region)


class StaffSearchController(Controller):
    """Operators close the loop: where residents' searches fail, so aliases can be added there."""

    path = "/staff/search"
    tags = ["staff", "catalogue"]
    guards = [staff_only]

    @get("/misses", summary="Zero-result and low-confidence searches, anonymised, most frequent first")
    async def misses(
        self,
        catalogue: NamedDependency[CatalogueService],
        days: Annotated[int, QueryParameter(ge=1, le=90, description="the last N days (China time)")] = 7,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100,
        cursor: Annotated[str | None, QueryParameter()] = None,
    ) -> SearchMissPage:
        return await catalogue.search_misses(days, limit, cursor)
