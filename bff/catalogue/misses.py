"""Where residents fail to find what they look for: zero-result and low-confidence searches,
counted per day and anonymised, so the province can add aliases where residents fail.

What is kept: the query as the index sees it (`normalize`: simplified, lower case, symbols gone),
the day (China time), the outcome (`zero`: nothing offered; `low`: only a "did you mean" with no
clear winner) and a count. Nothing else: no user, session, device, IP, region or time of day.

What is never kept (`anonymise`, the rule the export relies on): a query is withheld — counted
only in the day's `withheld` total, its text dropped — when it
1. has a run of 4 or more digits (ID numbers, phone numbers, case and licence numbers, dates), or
   an ID-number-like tail (digits then x);
2. held `@`, `://` or `www.` before normalisation (an e-mail address or a link);
3. has a word that looks like a person's name: 2-3 Chinese characters starting with one of the
   common surnames (百家姓, the first 100) that appears in no catalogue text and no dictionary
   word (张三办护照 -> withheld; 结婚登记 -> kept), or a capitalised Latin word after the first
   word (passport for Li Wei -> withheld);
4. is longer than `MAX_KEPT_CHARS` characters (free text tells more about a person than a search).

Counting happens in memory on the request path (no I/O); a background task adds the counts to
PostgreSQL every `search_misses_flush_s` (one upsert per distinct query), and once more at stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import Counter
from collections.abc import Callable
from datetime import date, datetime, timedelta

import asyncpg
import rjieba

from adapters.tasks import cancel
from bff.platform.clock import CHINA
from bff.platform.logs import get_logger

log = get_logger("bff.catalogue.misses")

MAX_KEPT_CHARS = 32
# The 100 most common surnames (single characters), enough to catch how names are typed.
SURNAMES = frozenset(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚"
    "卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)
_DIGITS = re.compile(r"\d{4,}|\d+x\b")
_LINKISH = re.compile(r"@|://|www\.", re.IGNORECASE)
_CJK_WORD = re.compile(r"^[\u4e00-\u9fff]{2,3}$")
_CAPITALISED = re.compile(r"^[A-Z][a-z]+$")


class Anonymiser:
    """`anonymise(raw, normalized)`: the text that may be kept, or None (withheld)."""

    def __init__(
        self,
        known_bigrams: set[str],
        known_words: set[str],
        segment: Callable[[str], list[str]] | None = None,
    ) -> None:
        self.known_bigrams = known_bigrams
        self.known_words = known_words
        self._segment = segment or rjieba.Jieba().cut

    def looks_like_name(self, word: str) -> bool:
        if not _CJK_WORD.match(word) or word[0] not in SURNAMES or word in self.known_words:
            return False
        return not any(word[i : i + 2] in self.known_bigrams for i in range(len(word) - 1))

    def anonymise(self, raw: str, normalized: str) -> str | None:
        if not normalized or len(normalized) > MAX_KEPT_CHARS:
            return None
        if _DIGITS.search(normalized) or _LINKISH.search(raw):
            return None
        latin = raw.split()
        if any(_CAPITALISED.match(w) for w in latin[1:]):
            return None
        for term in self._segment(normalized.replace(" ", "")):
            if self.looks_like_name(term):
                return None
        # A name the segmenter ran into the next word (张三办护照 -> 张三办, 护照).
        if any(self.looks_like_name(normalized[:n]) for n in (2, 3)):
            return None
        return normalized


class SearchMisses:
    """The process's counts of failed searches, flushed to `bff.search_misses`."""

    def __init__(self, pool: asyncpg.Pool, *, flush_seconds: float, keep_days: int) -> None:
        self.pool = pool
        self.flush_seconds = flush_seconds
        self.keep_days = keep_days
        self._counts: Counter[tuple[date, str, str]] = Counter()
        self._task: asyncio.Task[None] | None = None

    @staticmethod
    def today() -> date:
        return datetime.now(CHINA).date()

    def record(self, kept: str | None, outcome: str) -> None:
        """Count one failed search (`outcome`: zero | low); `kept` None: withheld (only counted)."""
        if kept is None:
            self._counts[(self.today(), "", "withheld")] += 1
        else:
            self._counts[(self.today(), kept, outcome)] += 1

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="search-misses-flush")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel([self._task])
        with contextlib.suppress(asyncpg.PostgresError, OSError, TimeoutError):
            await self.flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_seconds)
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("search_misses_flush_failed", error=type(exc).__name__)

    async def flush(self) -> int:
        """Add the counts gathered so far to PostgreSQL; they are kept for the next try on failure."""
        if not self._counts:
            return 0
        taken, self._counts = self._counts, Counter()
        rows = [(day, query, outcome, n) for (day, query, outcome), n in taken.items()]
        try:
            await self.pool.executemany(
                """
                INSERT INTO bff.search_misses (day, query, outcome, count) VALUES ($1, $2, $3, $4)
                ON CONFLICT (day, query, outcome) DO UPDATE SET count = search_misses.count + excluded.count
                """,
                rows,
            )
        except BaseException:
            self._counts.update(taken)
            raise
        return len(rows)

    async def export(self, days: int) -> tuple[list[asyncpg.Record], int, date]:
        """Per kept query over the last `days` days: zero and low counts, last day seen, most failed
        first; and the number of withheld searches."""
        since = self.today() - timedelta(days=days - 1)
        rows = await self.pool.fetch(
            """
            SELECT query,
                   coalesce(sum(count) FILTER (WHERE outcome = 'zero'), 0)::int AS zero,
                   coalesce(sum(count) FILTER (WHERE outcome = 'low'), 0)::int AS low,
                   max(day) AS last_day
            FROM bff.search_misses
            WHERE day >= $1 AND outcome IN ('zero', 'low')
            GROUP BY query ORDER BY sum(count) DESC, query
            """,
            since,
        )
        withheld = await self.pool.fetchval(
            "SELECT coalesce(sum(count), 0)::int FROM bff.search_misses "
            "WHERE day >= $1 AND outcome = 'withheld'",
            since,
        )
        return list(rows), int(withheld), since

    async def expire(self) -> None:
        """Job: forget days older than `keep_days`."""
        await self.pool.execute(
            "DELETE FROM bff.search_misses WHERE day < $1", self.today() - timedelta(days=self.keep_days)
        )
