"""Capacity through a load balancer: 1, 2 and 3 API replicas behind HAProxy, in one run.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/14 \\
        .venv/bin/python -m bench.capacity [--seconds 10] [--connections 32]

It makes its own database, starts the sandbox, logs a resident in, and for each replica count starts
that many `sanxiang serve` processes behind a fresh HAProxy, then drives `GET /api/v1/me` (an
authenticated one-query read: token check, deny-list, PostgreSQL, audit) with `wrk` (Debian's `wrk`)
for the given time. CPU per request is the replicas' own CPU time (from /proc) over the requests
served. All on one 2-core machine, so the total is CPU-bound: what matters is that CPU per request
does not grow with the number of replicas (shared state costs no extra round trips).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx

from bff.platform.migrate import migrate

HERE = Path(__file__).resolve().parents[1]
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    if shutil.which("wrk") is None or shutil.which("haproxy") is None:
        sys.exit("needs `wrk` and `haproxy` (apt-get install wrk haproxy)")
    sys.path.insert(0, str(HERE))
    from bff.app import create_app
    from tests.auth_helpers import login_resident
    from tests.conftest import free_port, make_settings, running, start_process, stop_process, wait_http
    from tests.lb_helper import Replicas, haproxy

    admin_url = os.environ["DATABASE_URL"]
    name = f"sx_bench_capacity_{uuid.uuid4().hex[:8]}"
    parts = urlsplit(admin_url)
    db_url = urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))

    async def prepare() -> None:
        conn = await asyncpg.connect(admin_url)
        await conn.execute(f'CREATE DATABASE "{name}"')
        await conn.close()
        await migrate(db_url)

    asyncio.run(prepare())

    class Services:
        database_url = db_url
        redis_url = os.environ["REDIS_URL"]
        admin_url = os.environ["DATABASE_URL"]

    services: Any = Services()
    port = free_port()
    sandbox = start_process(
        [sys.executable, "-m", "sandbox", "--port", str(port)],
        {**os.environ, "DATABASE_URL": db_url},
        "bench-sandbox",
    )
    sandbox_url = f"http://127.0.0.1:{port}"
    rows = []
    try:
        wait_http(f"{sandbox_url}/_control/health", sandbox, 120)

        async def token() -> str:
            app = create_app(make_settings(services, sandbox_url, log_level="WARNING"), configure_logs=False)
            async with running(app):
                async with (
                    httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://b") as client,
                    httpx.AsyncClient(base_url=sandbox_url) as sb,
                ):
                    who = await login_resident(client, sb, channel="app")
            return str(who["access_token"])

        bearer = asyncio.run(token())
        for count in (1, 2, 3):
            group = Replicas(services, sandbox_url, count, LOG_LEVEL="WARNING", AUTH_ACCESS_TTL_S="600")
            try:
                for p in group.ports:
                    group.start(p)
                with haproxy(group.ports) as url:
                    before = {p: cpu_seconds(proc.pid) for p, proc in group.procs.items()}
                    out = subprocess.run(
                        [
                            "wrk",
                            "-t1",
                            f"-c{args.connections}",
                            f"-d{args.seconds}s",
                            "--latency",
                            "-H",
                            f"Authorization: Bearer {bearer}",
                            f"{url}/api/v1/me",
                        ],
                        capture_output=True,
                        text=True,
                        check=True,
                    ).stdout
                    cpu = sum(cpu_seconds(proc.pid) - before[p] for p, proc in group.procs.items())
                requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
                non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
                p99 = re.search(r"99%\s+(\S+)", out).group(1)  # type: ignore[union-attr]
                rate = requests / args.seconds
                rows.append(
                    (
                        count,
                        rate,
                        rate / count,
                        cpu / requests * 1e3,
                        p99,
                        int(non2xx.group(1)) if non2xx else 0,
                    )
                )
            finally:
                group.stop()
    finally:
        stop_process(sandbox)

        async def drop() -> None:
            conn = await asyncpg.connect(admin_url)
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.close()

        asyncio.run(drop())
    base_cpu = rows[0][3]
    print("| replicas | req/s | req/s per replica | CPU ms per request | vs 1 replica | p99 | non-2xx |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for count, rate, per, cpu_ms, p99, bad in rows:
        print(
            f"| {count} | {rate:,.0f} | {per:,.0f} | {cpu_ms:.2f} | {cpu_ms / base_cpu:.2f}x | {p99} | {bad} |"
        )


if __name__ == "__main__":
    main()
