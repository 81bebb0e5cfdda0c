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

Search is measured apart for the queries the lexical engine answers (`query.match == "exact"`)
and those where the semantic fallback runs (`"nearest"`/`"none"`), over the blind set's TUNE half
and the old query file (the held-out half is not sent). Each query is first sent once by 32 paced
clients, when no process cache holds its answer (`first time`); the paced and saturated loops then
repeat them (answers cached per process, as popular queries are in production).

Memory: the API process's RSS (VmRSS, /proc) once its index is built, with the semantic model
(`SEARCH_SEMANTIC=true`, the default) and, started before it in the same run, without it.
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


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def wait_index(base: str, *, semantic: bool) -> None:
    """Until the API's index is built (and, with `semantic`, its embeddings)."""
    async with aiohttp.ClientSession(base) as http:
        for _ in range(600):
            async with http.get("/api/v1/items", params={"q": "marriage registration"}) as response:
                if response.status == 200:
                    body = await response.json()
                    if not semantic or body["query"]["match"] == "nearest":
                        return
            await asyncio.sleep(0.2)
    raise RuntimeError("the API's search index did not come up")


async def run(seconds: float, think_ms: float) -> None:
    queries = list(dict.fromkeys(q for q, _, _, half in load_queries() if half != "held-out"))
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
        base = f"http://127.0.0.1:{port}"
        lexical_only = subprocess.Popen(
            [sys.executable, "-m", "bff.cli", "serve"], env=dict(env, SEARCH_SEMANTIC="false"), cwd=REPO
        )
        try:
            await asyncio.to_thread(wait_http, f"{base}/readyz", lexical_only, 120)
            await wait_index(base, semantic=False)
            rss_lexical = rss_mib(lexical_only.pid)
        finally:
            lexical_only.terminate()
            lexical_only.wait(15)
        api = subprocess.Popen([sys.executable, "-m", "bff.cli", "serve"], env=env, cwd=REPO)
        pool = await asyncpg.create_pool(settings.database_url, min_size=CLIENTS, max_size=CLIENTS)
        try:
            await asyncio.to_thread(wait_http, f"{base}/readyz", api, 120)
            started = time.monotonic()
            await wait_index(base, semantic=True)
            ready_s = time.monotonic() - started
            rss_semantic = rss_mib(api.pid)
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

                # First time: every query once, nothing cached yet, from 32 paced clients; its kind
                # is read from the answer.
                kind: dict[str, str] = {}
                first: dict[str, list[float]] = {"exact": [], "fallback": []}
                todo = list(queries)

                async def first_pass(n: int) -> None:
                    rng = random.Random(n)
                    await asyncio.sleep(rng.uniform(0, think_ms / 1000))
                    while todo:
                        q = todo.pop()
                        began = time.perf_counter()
                        async with http.get("/api/v1/items", params={"q": q}) as response:
                            body = await response.json()
                        took = (time.perf_counter() - began) * 1000
                        kind[q] = "exact" if body["query"]["match"] == "exact" else "fallback"
                        first[kind[q]].append(took)
                        await asyncio.sleep(rng.uniform(0.5, 1.5) * think_ms / 1000)

                await asyncio.gather(*(first_pass(n) for n in range(CLIENTS)))
                lexical_queries = [q for q in queries if kind[q] == "exact"]
                fallback_queries = [q for q in queries if kind[q] == "fallback"]

                def searching(pool_of: list[str]) -> Callable[[random.Random], Awaitable[None]]:
                    async def search(rng: random.Random) -> None:
                        await get("/api/v1/items", {"q": rng.choice(pool_of), "region": rng.choice(regions)})

                    return search

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
                print(f"\nfull scale: {entries} active entries, {len(regions)} regions, {CLIENTS} clients")
                print(
                    f"queries: {len(lexical_queries)} answered lexically, {len(fallback_queries)} by the "
                    f"fallback; model + embeddings ready {ready_s:.1f} s after /readyz"
                )
                print(
                    f"API process RSS: {rss_semantic:.0f} MiB with the model, {rss_lexical:.0f} MiB "
                    f"without (SEARCH_SEMANTIC=false): +{rss_semantic - rss_lexical:.0f} MiB\n"
                )
                print("| load | endpoint | requests | throughput/s | p50 ms | p99 ms | p99 / healthz p99 |")
                print("| --- | --- | --- | --- | --- | --- | --- |")
                for name, values in (
                    ("search, lexical answers", first["exact"]),
                    ("search, fallback runs", first["fallback"]),
                ):
                    if values:
                        print(
                            f"| first time (paced, uncached) | {name} | {len(values)} | - | "
                            f"{statistics.median(values):.1f} | {pct(values, 99):.1f} | - |"
                        )
                for load, think in (("paced", think_ms), ("saturated", 0.0)):
                    rows = []
                    for name, make in (
                        ("healthz (baseline)", healthz),
                        ("search, lexical answers", searching(lexical_queries)),
                        ("search, fallback runs", searching(fallback_queries)),
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
