"""The item library's HTTP API, in its own snake_case wire format."""

from __future__ import annotations

from typing import Annotated, Any

import asyncpg
from litestar import Response, Router, get
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter

from sandbox.catalogue.guides import PROVINCE


@get("/items/{code:str}")
async def get_entry(
    db: NamedDependency[asyncpg.Pool],
    code: FromPath[str],
    region: Annotated[str | None, QueryParameter()] = None,
) -> Response[Any]:
    row = await db.fetchrow(
        """
        SELECT body, status, task_version, updated_at FROM sandbox.catalogue_entries
        WHERE catalog_code = $1 AND region_code = $2
        """,
        code,
        region or PROVINCE,
    )
    if row is None:
        return Response({"error": "not_found", "message": f"no entry {code}"}, status_code=404)
    body = dict(row["body"])
    body["status"] = row["status"]
    body["task_version"] = row["task_version"]
    body["updated_at"] = row["updated_at"].isoformat()
    return Response(body)


@get("/items")
async def list_entries(
    db: NamedDependency[asyncpg.Pool],
    limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    rows = await db.fetch(
        "SELECT body FROM sandbox.catalogue_entries ORDER BY catalog_code, region_code LIMIT $1", limit
    )
    return {"items": [row["body"] for row in rows]}


router = Router(path="/catalogue", route_handlers=[get_entry, list_entries])
