"""A throw-away database (migrated) and a sandbox process over real HTTP for a benchmark run,
both removed afterwards. Needs an admin DATABASE_URL: a database is created and dropped."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx

from bff.platform.migrate import migrate
from tests.conftest import free_port


@contextlib.asynccontextmanager
async def scratch(admin_url: str) -> AsyncIterator[tuple[str, str]]:
    """(database URL, sandbox URL) for the block."""
    name = f"sx_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(admin_url)
    database_url = urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))
    sandbox: subprocess.Popen[bytes] | None = None
    try:
        await migrate(database_url)
        port = free_port()
        sandbox = subprocess.Popen(
            [sys.executable, "-m", "sandbox", "--port", str(port)],
            env=dict(os.environ, DATABASE_URL=database_url),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        sandbox_url = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                if httpx.get(f"{sandbox_url}/_control/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield database_url, sandbox_url
    finally:
        if sandbox is not None:
            sandbox.terminate()
            sandbox.wait(10)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
