"""Relevance of catalogue search vs plain substring search (ILIKE '%q%'), measured in one run.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/0 \
        .venv/bin/python -m bench.relevance

Queries: bench/relevance_queries.tsv (written before tuning). Each query falls in the `tune` or the
`holdout` half by a hash of its text, fixed forever; tuning looked at `tune` failures only
(`--failures` prints them; `--failures holdout` exists for the final report, not for tuning).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import hashlib
from collections.abc import Callable
from pathlib import Path

import asyncpg
from redis.asyncio import Redis

from bench.catalogue_env import catalogue_environment
from bff.catalogue.mirror import CatalogueMirror
from bff.catalogue.search import normalize

QUERIES = Path(__file__).parent / "relevance_queries.tsv"
K = 10


def load_queries() -> list[tuple[str, set[str], str, str]]:
    with QUERIES.open(encoding="utf-8") as handle:
        lines = [line for line in handle if not line.startswith("#")]
    out = []
    for row in csv.DictReader(lines, delimiter="\t"):
        half = "tune" if hashlib.blake2b(row["query"].encode()).digest()[0] % 2 == 0 else "holdout"
        out.append((row["query"], set(row["expected"].split("|")), row["kind"], half))
    return out


def metrics(ranks: list[int | None]) -> dict[str, float]:
    n = len(ranks) or 1
    return {
        "recall@1": sum(1 for r in ranks if r is not None and r <= 1) / n,
        "recall@3": sum(1 for r in ranks if r is not None and r <= 3) / n,
        "mrr": sum(1 / r for r in ranks if r is not None) / n,
    }


def rank_of(names: list[str], expected: set[str]) -> int | None:
    for position, name in enumerate(names[:K], start=1):
        if name in expected:
            return position
    return None


async def run(show_failures: str | None) -> None:
    queries = load_queries()
    async with catalogue_environment("demo") as settings:
        assert settings.database_url and settings.redis_url
        pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
        redis = Redis.from_url(settings.redis_url)
        try:
            mirror = CatalogueMirror(pool, redis, poll_seconds=3600, stale_after_seconds=3600)
            await mirror.refresh(force=True)
            index = mirror.snapshot.index

            def ours(q: str) -> list[str]:
                return [hit.doc.name for hit in index.search(normalize(q))]

            async def baseline(q: str) -> list[str]:
                # The substring search a portal would do: names containing the text as typed.
                pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
                rows = await pool.fetch(
                    """
                    SELECT name FROM bff.catalogue_entries
                    WHERE parent_code IS NULL AND status = 'active' AND region_code = '430000'
                      AND name ILIKE $1
                    ORDER BY length(name), catalog_code LIMIT $2
                    """,
                    pattern,
                    K,
                )
                return [r["name"] for r in rows]

            results: dict[tuple[str, str], list[int | None]] = {}
            kinds: dict[tuple[str, str], list[int | None]] = {}
            failures: list[tuple[str, str, str, list[str]]] = []
            for q, expected, kind, half in queries:
                found = ours(q)
                rank = rank_of(found, expected)
                results.setdefault(("search", half), []).append(rank)
                kinds.setdefault((kind, half), []).append(rank)
                results.setdefault(("ILIKE", half), []).append(rank_of(await baseline(q), expected))
                if (rank is None or rank > 1) and show_failures == half:
                    failures.append((q, "|".join(expected), kind, found[:3]))
        finally:
            await redis.aclose()
            await pool.close()
    halves = ("tune", "holdout")
    counts = {h: sum(1 for *_, half in queries if half == h) for h in halves}
    print(f"queries: {len(queries)} (tune {counts['tune']}, holdout {counts['holdout']})\n")
    print("| engine | half | n | recall@1 | recall@3 | MRR@10 |")
    print("| --- | --- | --- | --- | --- | --- |")
    for engine in ("search", "ILIKE"):
        for half in halves:
            m = metrics(results[(engine, half)])
            print(
                f"| {engine} | {half} | {counts[half]} | {m['recall@1']:.3f} | {m['recall@3']:.3f} | {m['mrr']:.3f} |"
            )
    print("\nby kind of query (search, recall@3, tune / holdout):\n")
    for kind in sorted({k for k, _ in kinds}):
        cells = []
        for half in halves:
            ranks = kinds.get((kind, half), [])
            cells.append(f"{metrics(ranks)['recall@3']:.2f} (n={len(ranks)})" if ranks else "-")
        print(f"- {kind}: {' / '.join(cells)}")
    if failures:
        print(f"\nnot first in the {show_failures} half:")
        for q, expected, kind, found in failures:
            print(f"  {q!r} [{kind}] expected {expected}; got {found}")


def main(argv: list[str] | None = None, runner: Callable[..., object] = asyncio.run) -> None:
    parser = argparse.ArgumentParser(prog="bench.relevance")
    parser.add_argument("--failures", nargs="?", const="tune", choices=["tune", "holdout"], default=None)
    args = parser.parse_args(argv)
    runner(run(args.failures))


if __name__ == "__main__":
    main()
