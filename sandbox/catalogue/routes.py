"""The item library's HTTP API, in its own snake_case wire format.

`/changes?since=N` is the change feed: every entry whose `seq` is above N, in `seq` order,
cancellations included. Read from 0 it is the whole library, which is how a full sync pages.
"""

from __future__ import annotations

from typing import Annotated, Any

import asyncpg
from litestar import Response, Router, get
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter

from sandbox.catalogue.regions import PROVINCE

# The entry as the wire carries it: the stored body with the columns that change over its life.
_ENTRY_JSON = """
    (body || jsonb_build_object(
        'status', status, 'task_version', task_version,
        'updated_at', to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'),
        'seq', seq))::text
"""


def _json_list(rows: list[asyncpg.Record]) -> bytes:
    return b"[" + b",".join(row[0].encode() for row in rows) + b"]"


@get("/items/{code:str}")
async def get_entry(
    db: NamedDependency[asyncpg.Pool],
    code: FromPath[str],
    region: Annotated[str | None, QueryParameter()] = None,
) -> Response[Any]:
    text = await db.fetchval(
        f"SELECT {_ENTRY_JSON} FROM sandbox.catalogue_entries WHERE catalog_code = $1 AND region_code = $2",  # noqa: S608 - a constant
        code,
        region or PROVINCE,
    )
    if text is None:
        return Response({"error": "not_found", "message": f"no entry {code}"}, status_code=404)
    return Response(text.encode(), media_type="application/json")


@get("/items")
async def list_entries(
    db: NamedDependency[asyncpg.Pool],
    limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
    region: Annotated[str | None, QueryParameter()] = None,
) -> Response[bytes]:
    """The main items one region implements (the province by default), in code order."""
    rows = await db.fetch(
        f"""
        SELECT {_ENTRY_JSON} FROM sandbox.catalogue_entries
        WHERE region_code = $2 AND parent_code IS NULL ORDER BY catalog_code LIMIT $1
        """,  # noqa: S608 - a constant
        limit,
        region or PROVINCE,
    )
    return Response(b'{"items":' + _json_list(rows) + b"}", media_type="application/json")


@get("/changes")
async def changes(
    db: NamedDependency[asyncpg.Pool],
    since: Annotated[int, QueryParameter(ge=0)] = 0,
    limit: Annotated[int, QueryParameter(ge=1, le=5000)] = 1000,
) -> Response[bytes]:
    rows = await db.fetch(
        f"""
        SELECT {_ENTRY_JSON}, seq FROM sandbox.catalogue_entries
        WHERE seq > $1 ORDER BY seq LIMIT $2
        """,  # noqa: S608 - a constant
        since,
        limit + 1,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    next_since = rows[-1]["seq"] if rows else since
    return Response(
        b'{"entries":'
        + _json_list(rows)
        + f',"next_since":{next_since},"has_more":{"true" if more else "false"}}}'.encode(),
        media_type="application/json",
    )


@get("/regions")
async def regions(db: NamedDependency[asyncpg.Pool]) -> Response[bytes]:
    rows = await db.fetch("SELECT body::text FROM sandbox.catalogue_regions ORDER BY code")
    return Response(b'{"regions":' + _json_list(rows) + b"}", media_type="application/json")


@get("/halls")
async def halls(db: NamedDependency[asyncpg.Pool]) -> Response[bytes]:
    rows = await db.fetch("SELECT body::text FROM sandbox.catalogue_halls ORDER BY id")
    return Response(b'{"halls":' + _json_list(rows) + b"}", media_type="application/json")


router = Router(path="/catalogue", route_handlers=[get_entry, list_entries, changes, regions, halls])
