"""Demo residents of the identity provider (re-runnable; values are fictitious but well formed)."""

from __future__ import annotations

import random

import asyncpg

from sandbox.idp.ids import random_id_number, random_phone

DEMO = (
    ("demo-resident-l1", "刘一", 1),
    ("demo-resident-l2", "陈二", 2),
    ("demo-resident-l3", "张三", 3),
)


async def seed_idp(pool: asyncpg.Pool) -> None:
    rng = random.Random(20260101)
    for sub, name, level in DEMO:
        await pool.execute(
            """
            INSERT INTO sandbox.idp_residents (sub, name, id_card_number, phone_number, level)
            VALUES ($1, $2, $3, $4, $5) ON CONFLICT (sub) DO NOTHING
            """,
            sub,
            name,
            random_id_number(rng),
            random_phone(rng),
            level,
        )
