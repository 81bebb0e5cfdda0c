"""Plain-SQL migrations: ordered files, checksummed, applied once under an advisory lock.

Files in `migrations/` are named `NNNN_description.sql` and applied in name order, each in its own
transaction. Replicas starting together serialise on one advisory lock, so every file runs exactly
once. Editing a file that was already applied is an error: write a new migration instead.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import asyncpg

# In a checkout the files are at the repository's top; an installed build carries them as `bff.migrations`.
_CHECKOUT = Path(__file__).resolve().parents[2] / "migrations"
MIGRATIONS_DIR = _CHECKOUT if _CHECKOUT.is_dir() else Path(__file__).resolve().parents[1] / "migrations"
_LOCK_KEY = 0x5358_4D49_4752  # "SXMIGR"


class MigrationError(Exception):
    pass


def discover(directory: Path = MIGRATIONS_DIR) -> list[tuple[str, str, str]]:
    """(name, sha256, sql) for every migration file, in the order they apply."""
    found = []
    for path in sorted(directory.glob("*.sql")):
        sql = path.read_text(encoding="utf-8")
        found.append((path.name, hashlib.sha256(sql.encode()).hexdigest(), sql))
    return found


async def migrate(dsn: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations; returns the names applied by this call."""
    files = discover(directory)
    # A dedicated connection: a pooled one would drop the session-level lock on release.
    conn = await asyncpg.connect(dsn, timeout=10)
    applied_now: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
        try:
            await conn.execute(
                """
                CREATE SCHEMA IF NOT EXISTS bff;
                CREATE TABLE IF NOT EXISTS bff.schema_migrations (
                    name text PRIMARY KEY,
                    checksum text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )
                """
            )
            rows = await conn.fetch("SELECT name, checksum FROM bff.schema_migrations")
            done = {row["name"]: row["checksum"] for row in rows}
            names = {name for name, _, _ in files}
            for name in done:
                if name not in names:
                    raise MigrationError(f"applied migration {name} is missing from {directory}")
            for name, checksum, sql in files:
                if name in done:
                    if done[name] != checksum:
                        raise MigrationError(
                            f"migration {name} was edited after it was applied; add a new file instead"
                        )
                    continue
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute(
                        "INSERT INTO bff.schema_migrations (name, checksum) VALUES ($1, $2)",
                        name,
                        checksum,
                    )
                applied_now.append(name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    finally:
        await conn.close()
    return applied_now
