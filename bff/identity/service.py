"""The resident's own settings that are not sessions or tokens (those live in auth/)."""

from __future__ import annotations

import uuid

import asyncpg

from bff.idempotency import IdemContext, Recorded
from bff.identity.schemas import DisplayPreferences
from bff.platform.uimode import UiMode


async def save_ui_mode(
    pool: asyncpg.Pool, ctx: IdemContext, person_id: str, mode: UiMode
) -> Recorded[DisplayPreferences]:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "UPDATE bff.persons SET ui_mode = $2, updated_at = now() WHERE id = $1",
            uuid.UUID(person_id),
            mode,
        )
        return await ctx.finish(conn, DisplayPreferences(ui_mode=mode))
