"""Migrations: applied once under an advisory lock, even with three runners racing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from bff.platform.migrate import MigrationError, migrate


@pytest.fixture
async def scratch_db(services) -> AsyncIterator[str]:
    name = f"sx_mig_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(services.admin_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(services.admin_url)
    try:
        yield urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def write_migrations(directory: Path) -> None:
    # A slow first file widens the race window: the others must wait for the lock, not re-run it.
    (directory / "0001_first.sql").write_text(
        "CREATE TABLE bff.counter (n int); SELECT pg_sleep(0.3); INSERT INTO bff.counter VALUES (1);"
    )
    (directory / "0002_second.sql").write_text("INSERT INTO bff.counter VALUES (2);")


async def test_three_concurrent_runs_apply_each_file_once(scratch_db: str, tmp_path: Path) -> None:
    write_migrations(tmp_path)
    results = await asyncio.gather(*(migrate(scratch_db, tmp_path) for _ in range(3)))
    applied = sorted(name for result in results for name in result)
    assert applied == ["0001_first.sql", "0002_second.sql"]
    conn = await asyncpg.connect(scratch_db)
    try:
        assert [r["n"] for r in await conn.fetch("SELECT n FROM bff.counter ORDER BY n")] == [1, 2]
        assert await conn.fetchval("SELECT count(*) FROM bff.schema_migrations") == 2
    finally:
        await conn.close()


async def test_edited_applied_migration_is_refused(scratch_db: str, tmp_path: Path) -> None:
    write_migrations(tmp_path)
    await migrate(scratch_db, tmp_path)
    (tmp_path / "0002_second.sql").write_text("INSERT INTO bff.counter VALUES (3);")
    with pytest.raises(MigrationError, match=r"0002_second\.sql was edited"):
        await migrate(scratch_db, tmp_path)


async def test_missing_applied_migration_is_refused(scratch_db: str, tmp_path: Path) -> None:
    write_migrations(tmp_path)
    await migrate(scratch_db, tmp_path)
    (tmp_path / "0002_second.sql").unlink()
    with pytest.raises(MigrationError, match="missing"):
        await migrate(scratch_db, tmp_path)


async def test_failed_migration_rolls_back_and_is_retried(scratch_db: str, tmp_path: Path) -> None:
    (tmp_path / "0001_bad.sql").write_text("CREATE TABLE bff.half (n int); SELECT 1/0;")
    with pytest.raises(asyncpg.DivisionByZeroError):
        await migrate(scratch_db, tmp_path)
    (tmp_path / "0001_bad.sql").write_text("CREATE TABLE bff.half (n int);")
    assert await migrate(scratch_db, tmp_path) == ["0001_bad.sql"]


async def test_project_migrations_apply_cleanly(scratch_db: str) -> None:
    first = await migrate(scratch_db)
    assert first, "the project has migrations"
    assert await migrate(scratch_db) == []
