"""Routes of the catalogue domain."""

from __future__ import annotations

import re
from typing import Annotated

from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter

from adapters.errors import ProblemError
from bff.catalogue.guide_cache import GuideCache
from bff.platform.problems import register_titles

register_titles({"item_not_found": ("未找到该事项", "No such service item")})

_CODE = re.compile(r"^[0-9A-Za-z_-]{1,64}$")
_REGION = re.compile(r"^\d{6}$")


class ItemController(Controller):
    path = "/items"
    tags = ["catalogue"]

    @get("/{code:str}", summary="The guide (办事指南) of one item, shaped for a phone")
    async def get_item(
        self,
        request: Request,  # type: ignore[type-arg]
        guide_cache: NamedDependency[GuideCache],
        code: FromPath[str],
        region: Annotated[str | None, QueryParameter(description="6-digit region code")] = None,
    ) -> Response[bytes]:
        if not _CODE.match(code):
            raise ProblemError("code: not a valid item code", status=400, code="validation_failed")
        if region is not None and not _REGION.match(region):
            raise ProblemError("region: must be a 6-digit region code", status=400, code="validation_failed")
        reply = await guide_cache.get(code, region)
        headers = {"ETag": reply.etag, "Cache-Control": "no-cache", "Vary": "Accept-Language"}
        if_none_match = request.headers.get("if-none-match")
        if if_none_match and reply.etag in {tag.strip() for tag in if_none_match.split(",")}:
            return Response(content=b"", status_code=304, headers=headers)
        return Response(content=reply.body, media_type="application/json", headers=headers)
