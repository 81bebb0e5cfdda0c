"""The one split rule for the blind relevance set (bench/relevance_blind.tsv).

A query belongs to the held-out half when the first byte of sha256(query as UTF-8) is odd, else to
the tune half. The rule depends on the query text alone, so it never changes when rows are added,
removed or reordered, and any engine's bench can apply it without a shared list.

`python -m bench.blind_split` prints only the sizes of the two halves per kind: it never prints a
held-out query (nobody tuning an engine should read them).
"""

from __future__ import annotations

import csv
import hashlib
import sys
from collections import Counter
from pathlib import Path

BLIND_TSV = Path(__file__).with_name("relevance_blind.tsv")


def is_held_out(query: str) -> bool:
    """True when `query` belongs to the held-out half."""
    return hashlib.sha256(query.encode()).digest()[0] % 2 == 1


def load(path: Path = BLIND_TSV) -> list[dict[str, str]]:
    """Rows of the blind set: query, expected (list as `|`-joined names), kind, note."""
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def split(rows: list[dict[str, str]]) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(tune, held_out)."""
    tune = [r for r in rows if not is_held_out(r["query"])]
    held = [r for r in rows if is_held_out(r["query"])]
    return tune, held


def main(argv: list[str]) -> int:
    path = Path(argv[1]) if len(argv) > 1 else BLIND_TSV
    tune, held = split(load(path))
    t, h = Counter(r["kind"] for r in tune), Counter(r["kind"] for r in held)
    print(f"{'kind':<14}{'tune':>6}{'held-out':>10}")
    for kind in sorted(set(t) | set(h)):
        print(f"{kind:<14}{t[kind]:>6}{h[kind]:>10}")
    print(f"{'total':<14}{len(tune):>6}{len(held):>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
