"""Seed every simulated upstream's demo data (re-runnable)."""

from __future__ import annotations

from sandbox.booking.seed import seed_booking
from sandbox.catalogue.seed import seed_catalogue
from sandbox.db import create_pool, ensure_schema
from sandbox.elicence.seed import seed_elicence
from sandbox.hotline.seed import seed_hotline
from sandbox.idp.seed import seed_idp


async def seed_all(database_url: str) -> None:
    pool = await create_pool(database_url)
    try:
        await ensure_schema(pool)
        await seed_catalogue(pool)
        await seed_idp(pool)
        await seed_booking(pool)
        await seed_elicence(pool)
        await seed_hotline(pool)
    finally:
        await pool.close()
