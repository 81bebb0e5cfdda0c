"""Seed the item library's tables from data/items.csv (deterministic, re-runnable)."""

from __future__ import annotations

import asyncpg

from sandbox.catalogue.guides import PROVINCE, build_guide, read_items


async def seed_catalogue(pool: asyncpg.Pool) -> int:
    rows = []
    for index, row in enumerate(read_items()):
        guide = build_guide(index, row, PROVINCE)
        rows.append((guide["catalog_code"], PROVINCE, guide["task_code"], guide["task_version"], guide))
    async with pool.acquire() as conn:
        await conn.executemany(
            """
            INSERT INTO sandbox.catalogue_entries (catalog_code, region_code, task_code, task_version, body)
            VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT (catalog_code, region_code) DO NOTHING
            """,
            rows,
        )
    return len(rows)
