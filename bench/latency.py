"""Latency of search, suggest and guide at full scale (100,000+ entries), 32 concurrent clients.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/0 \
        .venv/bin/python -m bench.latency

Seeds the sandbox item library at full scale, runs a full sync into a fresh mirror, starts the
BFF API (`sanxiang serve`, one uvicorn worker) as its own process and drives it from this process
with 32 concurrent aiohttp clients. Two load shapes per endpoint:

- paced: each client sends a request, then waits `--think-ms` (people type and read), so the
  machine is busy but not saturated: the latency a resident sees at that rate;
- saturated: each client sends its next request as soon as the last one answered: the throughput
  ceiling (at saturation latency is 32 / throughput, queueing not work).

Baselines measured in the same run, same load: `GET /healthz` (the framework and HTTP floor) and,
for search, the substring query a portal would run on the mirror (`ILIKE '%q%'` over the
entries table, asyncpg from this process, no HTTP).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import aiohttp
import asyncpg

from bench.catalogue_env import REPO, catalogue_environment, free_port, wait_http
from bench.relevance import load_queries

CLIENTS = 32


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def drive(
    make: Callable[[random.Random], Awaitable[None]], *, seconds: float, think_ms: float, seed: int = 7
) -> tuple[list[float], float]:
    latencies: list[float] = []
    stop = time.monotonic() + seconds

    async def client(n: int) -> None:
        rng = random.Random(seed * 1000 + n)
        # Spread the clients' phases so paced load does not arrive in waves.
        await asyncio.sleep(rng.uniform(0, think_ms / 1000))
        while time.monotonic() < stop:
            started = time.perf_counter()
            await make(rng)
            latencies.append((time.perf_counter() - started) * 1000)
            if think_ms:
                await asyncio.sleep(rng.uniform(0.5, 1.5) * think_ms / 1000)

    began = time.monotonic()
    await asyncio.gather(*(client(n) for n in range(CLIENTS)))
    return latencies, len(latencies) / (time.monotonic() - began)


async def run(seconds: float, think_ms: float) -> None:
    queries = [q for q, *_ in load_queries()]
    async with catalogue_environment("full") as settings:
        assert settings.database_url
        port = free_port()
        env = dict(
            os.environ,
            DATABASE_URL=settings.database_url,
            REDIS_URL=settings.redis_url or "",
            CATALOGUE_URL=settings.catalogue_url,
            API_PORT=str(port),
            LOG_LEVEL="WARNING",
            ENV="test",
        )
        api = subprocess.Popen([sys.executable, "-m", "bff.cli", "serve"], env=env, cwd=REPO)
        pool = await asyncpg.create_pool(settings.database_url, min_size=CLIENTS, max_size=CLIENTS)
        try:
            await asyncio.to_thread(wait_http, f"http://127.0.0.1:{port}/readyz", api, 120)
            base = f"http://127.0.0.1:{port}"
            entries = await pool.fetchval(
                "SELECT count(*) FROM bff.catalogue_entries WHERE status = 'active'"
            )
            regions = [r["code"] for r in await pool.fetch("SELECT code FROM bff.catalogue_regions")]
            # The guides residents open: main items in their own region, 2,000 of them, warmed once.
            pairs = [
                (r["catalog_code"], r["region_code"])
                for r in await pool.fetch(
                    """
                    SELECT catalog_code, region_code FROM bff.catalogue_entries
                    WHERE parent_code IS NULL AND status = 'active' ORDER BY md5(catalog_code || region_code) LIMIT 2000
                    """
                )
            ]
            connector = aiohttp.TCPConnector(limit=CLIENTS * 2)
            async with aiohttp.ClientSession(base, connector=connector) as http:
                # Wait for the API's index (built at start from the mirror).
                for _ in range(100):
                    async with http.get("/api/v1/items", params={"q": "出生登记"}) as response:
                        if response.status == 200:
                            break
                    await asyncio.sleep(0.2)

                async def get(path: str, params: dict[str, str] | None = None) -> None:
                    async with http.get(path, params=params) as response:
                        await response.read()
                        if response.status != 200:
                            raise RuntimeError(f"{path} {params}: {response.status}")

                async def search(rng: random.Random) -> None:
                    await get("/api/v1/items", {"q": rng.choice(queries), "region": rng.choice(regions)})

                async def suggest(rng: random.Random) -> None:
                    q = rng.choice(queries)
                    await get("/api/v1/items/suggest", {"q": q[: rng.randint(1, max(1, len(q)))]})

                async def guide(rng: random.Random) -> None:
                    code, region = rng.choice(pairs)
                    await get(f"/api/v1/items/{code}", {"region": region})

                async def healthz(rng: random.Random) -> None:
                    await get("/healthz")

                async def ilike(rng: random.Random) -> None:
                    q = rng.choice(queries)
                    pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
                    await pool.fetch(
                        """
                        SELECT DISTINCT catalog_code, name FROM bff.catalogue_entries
                        WHERE status = 'active' AND name ILIKE $1 LIMIT 20
                        """,
                        pattern,
                    )

                for code, region in pairs:  # warm: every guide read once
                    await get(f"/api/v1/items/{code}", {"region": region})
                print(f"\nfull scale: {entries} active entries, {len(regions)} regions, {CLIENTS} clients\n")
                print("| load | endpoint | requests | throughput/s | p50 ms | p99 ms | p99 / healthz p99 |")
                print("| --- | --- | --- | --- | --- | --- | --- |")
                for load, think in (("paced", think_ms), ("saturated", 0.0)):
                    rows = []
                    for name, make in (
                        ("healthz (baseline)", healthz),
                        ("search", search),
                        ("suggest", suggest),
                        ("guide (warm)", guide),
                        ("ILIKE in SQL (baseline)", ilike),
                    ):
                        latencies, rate = await drive(make, seconds=seconds, think_ms=think)
                        rows.append(
                            (name, len(latencies), rate, statistics.median(latencies), pct(latencies, 99))
                        )
                    floor = rows[0][4]
                    for name, n, rate, p50, p99 in rows:
                        print(
                            f"| {load} | {name} | {n} | {rate:.0f} | {p50:.1f} | {p99:.1f} | {p99 / floor:.1f}x |"
                        )
        finally:
            await pool.close()
            api.terminate()
            api.wait(15)


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.latency")
    parser.add_argument("--seconds", type=float, default=15.0, help="per endpoint and load shape")
    parser.add_argument("--think-ms", type=float, default=100.0, help="pause between a client's requests")
    args = parser.parse_args()
    asyncio.run(run(args.seconds, args.think_ms))


if __name__ == "__main__":
    main()
