"""Relevance of catalogue search, every engine in one run, on the blind set's two halves and on the
old query file.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/0 \
        .venv/bin/python -m bench.relevance            # --failures: the TUNE half's misses only

Engines (each line of the table):
- `blended`: the engine the API runs: lexical first, the embedding to fill and re-rank
  (bff/catalogue/semantic.py::blend).
- `lexical (main)`: the lexical engine alone, exactly as on main before issue 10 (same code, same
  dictionary): what `SEARCH_SEMANTIC=false` or a missing model gives.
- `semantic only`: the items ranked by the embedding alone (best passage cosine).
- `pg_trgm`: PostgreSQL trigram similarity on the item names, as most teams would write it
  (`WHERE name % q ORDER BY similarity(name, q) DESC`); `pg_trgm (any)`: the same without the
  `%` threshold (every name with any shared trigram, best first). The bench creates the extension in
  its throw-away database, or prints why it cannot (the embedded PostgreSQL 18 wheel has no
  pg_trgm).
- `ILIKE`: plain substring search on the names (`name ILIKE '%q%'`, shortest first).

Query sets: `bench/relevance_blind.tsv` split by `bench/blind_split.py` into `tune` and `held-out`
(never print, log or read held-out rows: only totals are printed), and `bench/relevance_queries.tsv`
(the engine author's own 200 queries) as `old`.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
from redis.asyncio import Redis

from bench.blind_split import is_held_out
from bench.blind_split import load as load_blind
from bench.catalogue_env import catalogue_environment
from bff.catalogue.mirror import CatalogueMirror
from bff.catalogue.search import normalize
from bff.catalogue.semantic import SemanticModel, blend

OLD_QUERIES = Path(__file__).parent / "relevance_queries.tsv"
K = 10
HALVES = ("tune", "held-out", "old")


def load_queries() -> list[tuple[str, set[str], str, str]]:
    """(query, expected names, kind, half)."""
    out = []
    for row in load_blind():
        half = "held-out" if is_held_out(row["query"]) else "tune"
        out.append((row["query"], set(row["expected"].split("|")), row["kind"], half))
    with OLD_QUERIES.open(encoding="utf-8") as handle:
        lines = [line for line in handle if not line.startswith("#")]
    for row in csv.DictReader(lines, delimiter="\t"):
        out.append((row["query"], set(row["expected"].split("|")), row["kind"], "old"))
    return out


def metrics(ranks: list[int | None], empties: int) -> dict[str, float]:
    n = len(ranks) or 1
    return {
        "recall@1": sum(1 for r in ranks if r is not None and r <= 1) / n,
        "recall@3": sum(1 for r in ranks if r is not None and r <= 3) / n,
        "mrr": sum(1 / r for r in ranks if r is not None) / n,
        "empty": empties,
    }


def rank_of(names: list[str], expected: set[str]) -> int | None:
    for position, name in enumerate(names[:K], start=1):
        if name in expected:
            return position
    return None


async def trigram_ready(pool: asyncpg.Pool) -> str | None:
    """None when pg_trgm is usable in the bench database, else why not."""
    try:
        await pool.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except asyncpg.PostgresError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


async def run(show_failures: bool) -> None:
    queries = load_queries()
    model = SemanticModel()
    started = time.monotonic()
    if not model.load():
        sys.exit(f"the embedding model could not be loaded: {model.error}")
    print(f"# model loaded in {time.monotonic() - started:.1f} s", file=sys.stderr)
    async with catalogue_environment("demo") as settings:
        assert settings.database_url and settings.redis_url
        pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
        redis = Redis.from_url(settings.redis_url)
        try:
            mirror = CatalogueMirror(pool, redis, poll_seconds=3600, stale_after_seconds=3600, model=model)
            await mirror.refresh(force=True)
            snapshot = mirror.snapshot
            index, semantic = snapshot.index, snapshot.semantic
            assert semantic is not None
            why_not_trgm = await trigram_ready(pool)

            def blended(q: str) -> list[str]:
                return [h.doc.name for h in blend(index, semantic, normalize(q)).hits]

            def lexical(q: str) -> list[str]:
                return [h.doc.name for h in index.search(normalize(q))]

            def semantic_only(q: str) -> list[str]:
                normalized = normalize(q)
                if not normalized:
                    return []
                scores = semantic.scores(normalized)
                return [index.docs[int(i)].name for i in scores.argsort()[::-1][:K]]

            async def sql(query: str, *args: object) -> list[str]:
                return [r["name"] for r in await pool.fetch(query, *args)]

            entries = "FROM bff.catalogue_entries WHERE parent_code IS NULL AND status = 'active' "
            entries += "AND region_code = '430000'"

            async def trgm(q: str) -> list[str]:
                return await sql(
                    f"SELECT name {entries} AND name % $1 ORDER BY similarity(name, $1) DESC, "
                    "length(name) LIMIT $2",
                    q,
                    K,
                )

            async def trgm_any(q: str) -> list[str]:
                return await sql(
                    f"SELECT name {entries} AND similarity(name, $1) > 0 "
                    "ORDER BY similarity(name, $1) DESC, length(name) LIMIT $2",
                    q,
                    K,
                )

            async def ilike(q: str) -> list[str]:
                pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
                return await sql(
                    f"SELECT name {entries} AND name ILIKE $1 ORDER BY length(name), catalog_code LIMIT $2",
                    pattern,
                    K,
                )

            def sync(fn: Callable[[str], list[str]]) -> Callable[[str], Awaitable[list[str]]]:
                async def call(q: str) -> list[str]:
                    return fn(q)

                return call

            engines: dict[str, Callable[[str], Awaitable[list[str]]]] = {
                "blended": sync(blended),
                "lexical (main)": sync(lexical),
                "semantic only": sync(semantic_only),
            }
            if why_not_trgm is None:
                engines["pg_trgm"] = trgm
                engines["pg_trgm (any)"] = trgm_any
            engines["ILIKE"] = ilike

            ranks: dict[tuple[str, str], list[int | None]] = {}
            empties: dict[tuple[str, str], int] = {}
            kinds: dict[tuple[str, str, str], list[int | None]] = {}
            failures: list[tuple[str, str, str, list[str], list[str]]] = []
            for q, expected, kind, half in queries:
                for engine, fn in engines.items():
                    found = await fn(q)
                    rank = rank_of(found, expected)
                    ranks.setdefault((engine, half), []).append(rank)
                    empties[(engine, half)] = empties.get((engine, half), 0) + (not found)
                    if engine in ("blended", "lexical (main)", "semantic only"):
                        kinds.setdefault((engine, kind, half), []).append(rank)
                    if engine == "blended" and show_failures and half == "tune" and (rank or 99) > 1:
                        failures.append((q, "|".join(expected), kind, found[:3], lexical(q)[:3]))
        finally:
            await redis.aclose()
            await pool.close()
    counts = {h: sum(1 for *_, half in queries if half == h) for h in HALVES}
    print(f"queries: tune {counts['tune']}, held-out {counts['held-out']}, old {counts['old']}\n")
    if why_not_trgm is not None:
        print(f"pg_trgm skipped: {why_not_trgm}\n")
    print("| engine | half | n | recall@1 | recall@3 | MRR@10 | empty answers |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for engine in engines:
        for half in HALVES:
            m = metrics(ranks[(engine, half)], empties[(engine, half)])
            print(
                f"| {engine} | {half} | {counts[half]} | {m['recall@1']:.3f} | {m['recall@3']:.3f} "
                f"| {m['mrr']:.3f} | {m['empty']:.0f} |"
            )
    print("\nrecall@3 by kind (tune / held-out totals):\n")
    print("| kind | " + " | ".join(("blended", "lexical (main)", "semantic only")) + " |")
    print("| --- | --- | --- | --- |")
    for kind in sorted({k for _, k, h in kinds if h != "old"}):
        cells = []
        for engine in ("blended", "lexical (main)", "semantic only"):
            parts = []
            for half in ("tune", "held-out"):
                got = kinds.get((engine, kind, half), [])
                parts.append(f"{metrics(got, 0)['recall@3']:.2f}" if got else "-")
            cells.append(" / ".join(parts))
        n = "/".join(str(len(kinds.get(("blended", kind, h), []))) for h in ("tune", "held-out"))
        print(f"| {kind} (n={n}) | " + " | ".join(cells) + " |")
    if failures:
        print("\nblended, not first in the TUNE half (query, expected, kind, blended top 3, lexical top 3):")
        for q, expected, kind, found, lex in failures:
            print(f"  {q!r} [{kind}] expected {expected}; got {found}; lexical {lex}")


def main(argv: list[str] | None = None, runner: Callable[..., object] = asyncio.run) -> None:
    parser = argparse.ArgumentParser(prog="bench.relevance")
    parser.add_argument("--failures", action="store_true", help="list the tune half's misses")
    args = parser.parse_args(argv)
    runner(run(args.failures))


if __name__ == "__main__":
    main()
