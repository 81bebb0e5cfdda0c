"""Control API to change the item library as its operators would: revise, cancel, restore, withdraw.

Each change takes the next `seq`, so it shows in the change feed (a withdrawal does not: it is the
case a full resync exists for).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Router, delete, post
from litestar.di import NamedDependency
from litestar.params import Body, FromPath, QueryParameter


class Revision(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    promise_day: int | None = None
    name: str | None = None
    # Keep the transaction open this long after the change took its `seq`: it then commits after
    # later changes (for the feed reader's late-commit test).
    commit_delay_ms: int = 0


def _where(region: str | None) -> str:
    return "catalog_code = $1" + (" AND region_code = $2" if region else "")


def _args(code: str, region: str | None) -> list[Any]:
    return [code, region] if region else [code]


@post("/entries/{code:str}/revise", status_code=200)
async def revise(
    db: NamedDependency[asyncpg.Pool],
    code: FromPath[str],
    data: Annotated[Revision, Body()],
    region: Annotated[str | None, QueryParameter()] = None,
) -> dict[str, int]:
    patch: dict[str, Any] = {}
    if data.promise_day is not None:
        patch["promise_day"] = data.promise_day
    if data.name is not None:
        patch["name"] = data.name
    n = len(_args(code, region)) + 1
    async with db.acquire() as conn, conn.transaction():
        status = await _revise(conn, code, region, n, patch)
        if data.commit_delay_ms > 0:
            await asyncio.sleep(min(data.commit_delay_ms, 30_000) / 1000)
    return {"changed": int(status.split()[-1])}


async def _revise(conn: Any, code: str, region: str | None, n: int, patch: dict[str, Any]) -> str:
    status: str = await conn.execute(
        f"""
        UPDATE sandbox.catalogue_entries
        SET task_version = task_version + 1, body = body || ${n}::jsonb,
            updated_at = now(), seq = nextval('sandbox.catalogue_seq')
        WHERE {_where(region)}
        """,  # noqa: S608 - built from constants
        *_args(code, region),
        patch,
    )
    return status


async def _set_status(db: asyncpg.Pool, code: str, region: str | None, status: str) -> dict[str, int]:
    result = await db.execute(
        f"""
        UPDATE sandbox.catalogue_entries
        SET status = '{status}', updated_at = now(), seq = nextval('sandbox.catalogue_seq')
        WHERE {_where(region)}
        """,  # noqa: S608 - built from constants
        *_args(code, region),
    )
    return {"changed": int(result.split()[-1])}


@post("/entries/{code:str}/cancel", status_code=200)
async def cancel(
    db: NamedDependency[asyncpg.Pool],
    code: FromPath[str],
    region: Annotated[str | None, QueryParameter()] = None,
) -> dict[str, int]:
    return await _set_status(db, code, region, "cancelled")


@post("/entries/{code:str}/restore", status_code=200)
async def restore(
    db: NamedDependency[asyncpg.Pool],
    code: FromPath[str],
    region: Annotated[str | None, QueryParameter()] = None,
) -> dict[str, int]:
    return await _set_status(db, code, region, "active")


@delete("/entries/{code:str}", status_code=200)
async def withdraw(
    db: NamedDependency[asyncpg.Pool],
    code: FromPath[str],
    region: Annotated[str | None, QueryParameter()] = None,
) -> dict[str, int]:
    result = await db.execute(
        f"DELETE FROM sandbox.catalogue_entries WHERE {_where(region)}",  # noqa: S608 - built from constants
        *_args(code, region),
    )
    return {"changed": int(result.split()[-1])}


router = Router(path="/_control/catalogue", route_handlers=[revise, cancel, restore, withdraw])
