"""A throw-away environment for the catalogue benchmarks: its own database on the given PostgreSQL,
the sandbox item library at a chosen scale over real HTTP, and a synced mirror.

Needs DATABASE_URL (an admin URL: a database is created and dropped) and REDIS_URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from bff.platform.migrate import migrate
from bff.platform.settings import Settings
from bff.wiring import open_root

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def wait_http(url: str, proc: subprocess.Popen[bytes], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {proc.returncode}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up in {seconds:.0f} s")


@contextlib.asynccontextmanager
async def catalogue_environment(scale: str, redis_db: int = 14) -> AsyncIterator[Settings]:
    admin = os.environ.get("DATABASE_URL")
    redis_url = os.environ.get("REDIS_URL")
    if not admin or not redis_url:
        sys.exit("set DATABASE_URL (admin) and REDIS_URL")
    name = f"sx_bench_{uuid.uuid4().hex[:8]}"
    database_url = _database(admin, name)
    redis_parts = urlsplit(redis_url)
    redis_url = urlunsplit((redis_parts.scheme, redis_parts.netloc, f"/{redis_db}", "", ""))

    async def create() -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        await migrate(database_url)

    async def drop() -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    await create()
    port = free_port()
    env = dict(os.environ, DATABASE_URL=database_url, SANDBOX_CATALOGUE_SCALE=scale)
    sandbox = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "--port", str(port)], env=env, cwd=REPO, stdout=subprocess.DEVNULL
    )
    try:
        started = time.monotonic()
        await asyncio.to_thread(wait_http, f"http://127.0.0.1:{port}/_control/health", sandbox, 300)
        print(
            f"# sandbox up at scale={scale} (seeded in {time.monotonic() - started:.1f} s)", file=sys.stderr
        )
        settings = Settings(
            env="test",
            database_url=database_url,
            redis_url=redis_url,
            catalogue_url=f"http://127.0.0.1:{port}/catalogue",
            log_level="WARNING",
        )
        started = time.monotonic()
        async with open_root(settings) as root:
            report = await root.catalogue_sync.run(full=True)
        print(
            f"# full sync: {report.entries_seen} entries in {time.monotonic() - started:.1f} s",
            file=sys.stderr,
        )
        yield settings
    finally:
        sandbox.terminate()
        sandbox.wait(10)
        await drop()
