"""Seed the item library at a scale: `demo` (tests, a few regions) or `full` (the whole province).

The scale comes from `SANDBOX_CATALOGUE_SCALE` (default `demo`; `sanxiang dev` and the benchmark
use `full`). Seeding is deterministic and re-runnable: existing entries are left alone (so changes
made through the control API survive a restart) and a scale already seeded is skipped at once.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import asyncpg
import msgspec

from sandbox.catalogue.guides import generate, halls_for, scale_regions

SCALES = ("demo", "full")
_LOCK = 0x5358_5342_4354  # "SXSBCT"
_CHUNK = 2000
# The full scale writes ~400 MB; on a busy 2-core machine that outlasts the pool's command timeout.
_SEED_TIMEOUT_S = 600.0


def catalogue_scale() -> str:
    scale = os.environ.get("SANDBOX_CATALOGUE_SCALE", "demo").strip() or "demo"
    if scale not in SCALES:
        raise SystemExit(
            f"configuration error in SANDBOX_CATALOGUE_SCALE: must be one of {', '.join(SCALES)}"
        )
    return scale


def _copy_field(value: str | None) -> bytes:
    if value is None:
        return b"\\N"
    # COPY's text format: backslash is its escape character; JSON never holds raw tabs/newlines.
    return value.encode().replace(b"\\", b"\\\\")


async def _rows(scale: str, counter: list[int]) -> AsyncIterator[bytes]:
    encoder = msgspec.json.Encoder()
    lines: list[bytes] = []
    for entry in generate(scale):
        body = encoder.encode(entry).decode()
        fields = (
            entry["catalog_code"],
            entry["region_code"],
            entry["parent_code"],
            entry["task_code"],
            str(entry["task_version"]),
            body,
        )
        lines.append(b"\t".join(_copy_field(f) for f in fields) + b"\n")
        counter[0] += 1
        if len(lines) >= _CHUNK:
            yield b"".join(lines)
            lines = []
    if lines:
        yield b"".join(lines)


async def seed_catalogue(pool: asyncpg.Pool, scale: str | None = None) -> int:
    """Seed `scale` (default: the environment's); returns the number of entries it generated."""
    scale = scale or catalogue_scale()
    async with pool.acquire() as conn:
        done = await conn.fetchval("SELECT entries FROM sandbox.catalogue_seeded WHERE scale = $1", scale)
        if done is not None:
            return int(done)
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK)
        try:
            done = await conn.fetchval("SELECT entries FROM sandbox.catalogue_seeded WHERE scale = $1", scale)
            if done is not None:
                return int(done)
            regions = scale_regions(scale)
            await conn.executemany(
                "INSERT INTO sandbox.catalogue_regions (code, body) VALUES ($1, $2) ON CONFLICT (code) DO NOTHING",
                [(r.code, msgspec.to_builtins(r)) for r in regions],
            )
            await conn.executemany(
                """
                INSERT INTO sandbox.catalogue_halls (id, region_code, body) VALUES ($1, $2, $3)
                ON CONFLICT (id) DO NOTHING
                """,
                [(h["id"], h["region_code"], h) for halls in halls_for(regions).values() for h in halls],
            )
            counter = [0]
            async with conn.transaction():
                await conn.execute(
                    """
                    CREATE TEMP TABLE seed_entries (
                        catalog_code text, region_code text, parent_code text,
                        task_code text, task_version integer, body text
                    ) ON COMMIT DROP
                    """
                )
                await conn.copy_to_table(
                    "seed_entries",
                    source=_rows(scale, counter),
                    columns=[
                        "catalog_code",
                        "region_code",
                        "parent_code",
                        "task_code",
                        "task_version",
                        "body",
                    ],
                    format="text",
                    timeout=_SEED_TIMEOUT_S,
                )
                # In key order, so that the change feed's order is the same on every machine.
                await conn.execute(
                    """
                    INSERT INTO sandbox.catalogue_entries
                        (catalog_code, region_code, parent_code, task_code, task_version, body)
                    SELECT catalog_code, region_code, parent_code, task_code, task_version, body::jsonb
                    FROM seed_entries ORDER BY catalog_code, region_code
                    ON CONFLICT (catalog_code, region_code) DO NOTHING
                    """,
                    timeout=_SEED_TIMEOUT_S,
                )
                await conn.execute(
                    "INSERT INTO sandbox.catalogue_seeded (scale, entries) VALUES ($1, $2)", scale, counter[0]
                )
            return counter[0]
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK)
