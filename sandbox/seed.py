"""Seed every simulated upstream's demo data (re-runnable)."""

from __future__ import annotations

from sandbox.catalogue.seed import seed_catalogue
from sandbox.db import create_pool, ensure_schema


async def seed_all(database_url: str) -> None:
    pool = await create_pool(database_url)
    try:
        await ensure_schema(pool)
        await seed_catalogue(pool)
    finally:
        await pool.close()
