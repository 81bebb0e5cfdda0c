"""In-memory search over the catalogue mirror: one index per process, rebuilt when the mirror changes.

Why in memory: the province has ~140 items and ~1,000 handling items, however many regions
implement them (100,000+ entries). The texts worth matching fit in a few hundred kilobytes, so a
per-process index answers in about a millisecond without a round trip, and PostgreSQL keeps only the
job it is good at (the guides themselves). The index is rebuilt from the mirror when the sync
publishes a new version.

How a query is matched (each step documented where it is implemented below):
1. `normalize`: NFKC (full-width letters), control and format characters removed, traditional ->
   simplified (OpenCC t2s), lower case, anything that is not a letter, digit or CJK character
   becomes a space.
2. Queries of Latin letters only are pinyin: matched against each text's full pinyin and its
   initials (kiosk users type `csdj` for 出生登记).
3. Other queries are segmented (rjieba, with the dictionary's words added), stop words dropped,
   and every term found in the dictionary's [synonyms] also tried as its replacements: a handful
   of query variants.
4. Each variant is scored against every text of every item (its name, its aliases from the
   dictionary, its handling items): character-bigram coverage weighted by rarity, containment,
   edit-distance similarity (one-character typos) and the same on pinyin (homophone slips: 结昏登记).
   An item's score is its best text's, times the text's weight (names 1.0, aliases 0.95,
   handling items 0.8).
5. Items implemented in the resident's region (the county or its city) get a boost, so they come
   first among comparable matches.
"""

from __future__ import annotations

import math
import re
import tomllib
import unicodedata
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import product
from pathlib import Path

import opencc
import rjieba
from pypinyin import Style, lazy_pinyin
from rapidfuzz import fuzz, process

DICTIONARY_PATH = Path(__file__).parent / "data" / "search_dictionary.toml"
MAX_QUERY_CHARS = 64
MIN_SCORE = 0.42
LOCAL_BOOST = 0.08
MAX_RESULTS = 100
MAX_VARIANTS = 16
# Edit-distance matching is the costly part: only the first few variants get it.
FUZZY_VARIANTS = 4

_T2S = opencc.OpenCC("t2s")
_ASCII_WORD = re.compile(r"^[a-z ]+$")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def normalize(raw: str) -> str:
    """Query text as the index sees it; '' when nothing searchable is left."""
    text = unicodedata.normalize("NFKC", raw)
    text = "".join(ch for ch in text if unicodedata.category(ch)[0] != "C")
    text = _T2S.convert(text).lower()
    kept = []
    for ch in text:
        if (ch.isascii() and ch.isalnum()) or _CJK.match(ch):
            kept.append(ch)
        else:
            kept.append(" ")
    return " ".join("".join(kept).split())


@lru_cache(maxsize=65536)
def pinyin(text: str) -> str:
    return "".join(lazy_pinyin(text, errors="ignore"))


@lru_cache(maxsize=65536)
def initials(text: str) -> str:
    return "".join(p[:1] for p in lazy_pinyin(text, style=Style.FIRST_LETTER, errors="ignore"))


def bigrams(text: str) -> set[str]:
    text = text.replace(" ", "")
    if len(text) < 2:
        return {text} if text else set()
    return {text[i : i + 2] for i in range(len(text) - 1)}


@dataclass(frozen=True)
class Dictionary:
    synonyms: dict[str, list[str]]
    aliases: dict[str, list[str]]
    stopwords: frozenset[str]

    @classmethod
    def load(cls, path: Path = DICTIONARY_PATH) -> Dictionary:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        return cls(
            synonyms={k: list(v) for k, v in data.get("synonyms", {}).items()},
            aliases={k: list(v) for k, v in data.get("aliases", {}).items()},
            stopwords=frozenset(data.get("stopwords", {}).get("words", [])),
        )


@dataclass
class ItemDoc:
    """One searchable item (主项) with what the mirror knows of it."""

    code: str
    name: str
    audience: str
    theme: str
    kind: str
    department: str
    online: bool
    regions: frozenset[str]
    scenarios: list[tuple[str, str]] = field(default_factory=list)  # (code, name)


@dataclass(frozen=True)
class Hit:
    doc: ItemDoc
    score: float
    local: bool
    matched: str


class SearchIndex:
    def __init__(self, docs: Iterable[ItemDoc], dictionary: Dictionary, version: int = 0) -> None:
        self.version = version
        self.dictionary = dictionary
        self.docs = list(docs)
        self.by_code = {d.code: d for d in self.docs}
        by_name = {d.name: d for d in self.docs}
        # (text, doc index, weight): names, dictionary aliases, handling items.
        texts: list[tuple[str, int, float]] = []
        for i, doc in enumerate(self.docs):
            texts.append((normalize(doc.name), i, 1.0))
        self.position = position = {d.code: i for i, d in enumerate(self.docs)}
        for name, aliases in dictionary.aliases.items():
            named = by_name.get(name)
            if named is not None:
                texts += [(normalize(alias), position[named.code], 0.95) for alias in aliases]
        for i, doc in enumerate(self.docs):
            for _, scenario_name in doc.scenarios:
                texts.append((normalize(scenario_name), i, 0.8))
        self.texts = [t for t, _, _ in texts]
        self.owner = [d for _, d, _ in texts]
        self.weight = [w for _, _, w in texts]
        self.pinyins = [pinyin(t) for t in self.texts]
        self.initials = [initials(t) for t in self.texts]
        self.grams = [bigrams(t) for t in self.texts]
        postings: dict[str, list[int]] = {}
        for j, grams in enumerate(self.grams):
            for g in grams:
                postings.setdefault(g, []).append(j)
        n = len(self.texts) or 1
        self.postings = postings
        self.idf = {g: math.log(1 + n / len(js)) for g, js in postings.items()}
        self._segmenter = rjieba.Jieba()
        for word in [*dictionary.synonyms, *dictionary.stopwords, *dictionary.aliases]:
            self._segmenter.add_word(word, 2000, None)
        for text in self.texts:
            self._segmenter.add_word(text, 500, None)
        # Residents type the pinyin of short forms too (shebaoka = 社保卡): map it back.
        self.spoken = {
            pinyin(word): word for word in [*dictionary.synonyms, *dictionary.aliases] if len(word) >= 2
        }
        self._cache: OrderedDict[tuple[str, str | None], list[tuple[int, float, str]]] = OrderedDict()

    # -- query side -------------------------------------------------------------------------

    def segment(self, text: str) -> list[str]:
        """The words of `text` as the index segments queries (jieba with the dictionary's words)."""
        return [t for t in self._segmenter.cut(text, False) if t.strip()]

    def variants(self, query: str) -> list[str]:
        """The query and its rewrites through the synonym dictionary, stop words removed."""
        terms = [t for t in self._segmenter.cut(query, True) if t.strip()]
        kept = [t for t in terms if t not in self.dictionary.stopwords] or terms
        options = [[t, *self.dictionary.synonyms.get(t, [])] for t in kept]
        found = ["".join(kept)]
        # Fewest substitutions first, so that every replacement of every term is tried before
        # the combinations of several run into the cap.
        combos = sorted(product(*(range(len(o)) for o in options)), key=lambda c: sum(1 for x in c if x))
        for combo in combos:
            joined = "".join(o[x] for o, x in zip(options, combo, strict=True))
            if joined not in found:
                found.append(joined)
            if len(found) >= MAX_VARIANTS:
                break
        if query.replace(" ", "") not in found:
            found.append(query.replace(" ", ""))
        return found

    def _score_variant(self, variant: str, scores: dict[int, tuple[float, str]], *, fuzzy: bool) -> None:
        grams = bigrams(variant)
        total = sum(self.idf.get(g, 1.0) for g in grams) or 1.0
        candidates: dict[int, float] = {}
        for g in grams:
            for j in self.postings.get(g, ()):
                candidates[j] = candidates.get(j, 0.0) + self.idf[g]
        for j, shared_idf in candidates.items():
            text = self.texts[j]
            coverage = shared_idf / total
            precision = len(grams & self.grams[j]) / (len(self.grams[j]) or 1)
            score = 0.7 * coverage + 0.3 * precision
            if variant == text:
                score = 1.0
            elif variant in text:
                score = max(score, 0.82 + 0.16 * len(variant) / len(text))
            elif text in variant:
                score = max(score, 0.6 + 0.3 * len(text) / len(variant))
            self._keep(scores, j, score)
        if not fuzzy:
            return
        # Typos: one character wrong, missing or extra.
        for _text, similarity, j in process.extract(
            variant, self.texts, scorer=fuzz.ratio, limit=10, score_cutoff=70
        ):
            self._keep(scores, j, 0.9 * similarity / 100)
        # Homophone slips: the same sounds written with the wrong characters.
        sound = pinyin(variant)
        if len(sound) >= 4:
            for _text, similarity, j in process.extract(
                sound, self.pinyins, scorer=fuzz.ratio, limit=10, score_cutoff=80
            ):
                self._keep(scores, j, 0.92 * similarity / 100)

    def _score_pinyin(self, query: str, scores: dict[int, tuple[float, str]]) -> None:
        typed = query.replace(" ", "")
        for j, (full, short) in enumerate(zip(self.pinyins, self.initials, strict=True)):
            score = 0.0
            if typed in (full, short):
                score = 1.0
            elif full.startswith(typed) and len(typed) >= 3:
                score = 0.8 + 0.15 * len(typed) / len(full)
            elif short.startswith(typed) and len(typed) >= 2:
                score = 0.75 + 0.2 * len(typed) / len(short)
            elif len(typed) >= 4 and typed in full:
                score = 0.7 + 0.2 * len(typed) / len(full)
            elif len(typed) >= 3 and typed in short:
                score = 0.65 + 0.2 * len(typed) / len(short)
            if score:
                self._keep(scores, j, score)
        if len(typed) >= 5:
            for _, similarity, j in process.extract(
                typed, self.pinyins, scorer=fuzz.ratio, limit=10, score_cutoff=80
            ):
                self._keep(scores, j, 0.9 * similarity / 100)

    def _keep(self, scores: dict[int, tuple[float, str]], j: int, score: float) -> None:
        weighted = score * self.weight[j]
        doc = self.owner[j]
        if weighted > scores.get(doc, (0.0, ""))[0]:
            scores[doc] = (weighted, self.texts[j])

    def _ranked(self, query: str) -> list[tuple[int, float, str]]:
        """(doc index, relevance, matched text), best first; region-independent, so cached."""
        key = (query, None)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        scores: dict[int, tuple[float, str]] = {}
        if _ASCII_WORD.match(query):
            self._score_pinyin(query, scores)
            word = self.spoken.get(query.replace(" ", ""))
            if word is not None:
                for n, variant in enumerate(self.variants(word)):
                    self._score_variant(variant, scores, fuzzy=n < FUZZY_VARIANTS)
        if not _ASCII_WORD.match(query) or not scores:
            for n, variant in enumerate(self.variants(query)):
                self._score_variant(variant, scores, fuzzy=n < FUZZY_VARIANTS)
        ranked = sorted(
            ((i, s, m) for i, (s, m) in scores.items() if s >= MIN_SCORE),
            key=lambda r: (-r[1], len(self.docs[r[0]].name), self.docs[r[0]].code),
        )[:MAX_RESULTS]
        self._cache[key] = ranked
        if len(self._cache) > 4096:
            self._cache.popitem(last=False)
        return ranked

    def search(
        self,
        query: str,
        *,
        region_chain: tuple[str, ...] = (),
        audience: str | None = None,
        theme: str | None = None,
    ) -> list[Hit]:
        """Ranked hits for a normalized query. `region_chain`: the resident's region and the
        regions above it that serve them locally (county, city), most local first."""
        # No text: browse (by topic or audience) in catalogue order.
        ranked = self._ranked(query) if query else [(i, 0.5, "") for i in range(len(self.docs))]
        local_regions = set(region_chain)
        hits = []
        for i, score, matched in ranked:
            doc = self.docs[i]
            if audience and doc.audience != audience:
                continue
            if theme and doc.theme != theme:
                continue
            local = bool(local_regions & doc.regions)
            boosted = score + (LOCAL_BOOST if local else 0.0) if local_regions else score
            hits.append(Hit(doc, round(boosted, 4), local, matched))
        if local_regions:
            hits.sort(key=lambda h: -h.score)
        return hits

    def suggest(self, query: str, limit: int = 8) -> list[tuple[str, ItemDoc]]:
        """Type-ahead: texts that start with what was typed (characters, pinyin or initials),
        then texts containing it, then the best search hits."""
        if not query:
            return []
        typed = query.replace(" ", "")
        ascii_query = bool(_ASCII_WORD.match(query))
        # (-weight, length, text index): item names before aliases, shorter before longer.
        starts: list[tuple[float, int, int]] = []
        contains: list[tuple[float, int, int]] = []
        for j, text in enumerate(self.texts):
            if ascii_query:
                if self.pinyins[j].startswith(typed) or self.initials[j].startswith(typed):
                    starts.append((-self.weight[j], len(text), j))
                elif len(typed) >= 3 and typed in self.pinyins[j]:
                    contains.append((-self.weight[j], len(text), j))
            elif text.startswith(typed):
                starts.append((-self.weight[j], len(text), j))
            elif typed in text:
                contains.append((-self.weight[j], len(text), j))
        out: list[tuple[str, ItemDoc]] = []
        seen: set[str] = set()

        def add(text: str, doc: ItemDoc) -> None:
            if text not in seen and len(out) < limit:
                seen.add(text)
                out.append((text, doc))

        for *_, j in sorted(starts) + sorted(contains):
            doc = self.docs[self.owner[j]]
            # The item's own name even when an alias matched: that is what its guide is called.
            add(doc.name, doc)
        if len(out) < limit:
            for hit in self.search(query)[:limit]:
                add(hit.doc.name, hit.doc)
        return out
