"""The search engine and its dictionary, without the network: built from the item list itself."""

from __future__ import annotations

import opencc
import pytest

from bff.catalogue.search import Dictionary, ItemDoc, SearchIndex, normalize
from sandbox.catalogue.guides import catalog_code, read_items

ROWS = read_items()
NAMES = {row["name"] for row in ROWS}


@pytest.fixture(scope="module")
def index() -> SearchIndex:
    docs = [
        ItemDoc(
            code=catalog_code(i, row),
            name=row["name"],
            audience=row["audience"],
            theme=row["topic"],
            kind=row["kind"],
            department=row["department"],
            online=True,
            regions=frozenset({"430000", "430102"} if i % 2 else {"430000"}),
        )
        for i, row in enumerate(ROWS)
    ]
    return SearchIndex(docs, Dictionary.load(), version=1)


def test_dictionary_is_consistent_data() -> None:
    dictionary = Dictionary.load()
    t2s = opencc.OpenCC("t2s")
    assert len(dictionary.synonyms) > 50 and len(dictionary.aliases) > 20
    for item in dictionary.aliases:
        assert item in NAMES, f"[aliases] names an item the catalogue lacks: {item}"
    words = [*dictionary.synonyms, *(v for vs in dictionary.synonyms.values() for v in vs)]
    words += [a for aliases in dictionary.aliases.values() for a in aliases]
    for word in words:
        assert word == t2s.convert(word).lower(), f"not simplified/lower case: {word}"
        assert word.strip() == word and word
    for key, values in dictionary.synonyms.items():
        assert values and values != [key], key
    # A stop word must never swallow a whole item name.
    assert not dictionary.stopwords & NAMES


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  出生登记  ", "出生登记"),
        ("結婚登記", "结婚登记"),
        ("ＣＳＤＪ", "csdj"),  # full-width Latin from a kiosk keyboard
        ("出生\x00登记\u200b", "出生登记"),  # control and zero-width characters
        ("😀生孩子😀上户口！", "生孩子 上户口"),
        ("'; DROP TABLE x; --", "drop table x"),
        ("😀😀", ""),
    ],
)
def test_normalize(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


def test_variants_rewrite_colloquial_terms(index: SearchIndex) -> None:
    variants = index.variants(normalize("驾照丢了"))
    assert any("驾驶证" in v and "补领" in v for v in variants), variants
    # Stop words go; the meaning stays.
    assert "怎么" not in index.variants(normalize("身份证丢了怎么办"))[0]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("社保卡丢了", "社会保障卡挂失与补换"),
        ("公积金贷款", "住房公积金贷款申请"),
        ("二手房过户", "不动产转移登记"),
        ("shebaoka", "社会保障卡申领"),
        ("qysldj", "企业设立登记"),
        ("異地就醫備案", "异地就医备案"),
        ("结婚登纪", "结婚登记"),
    ],
)
def test_search_ranks_the_intended_item_first(index: SearchIndex, query: str, expected: str) -> None:
    hits = index.search(normalize(query))
    assert hits and hits[0].doc.name == expected, [h.doc.name for h in hits[:3]]


def test_nonsense_finds_nothing(index: SearchIndex) -> None:
    assert index.search(normalize("qwxzv")) == []
    assert index.search(normalize("犇犇犇")) == []


def test_region_boost_orders_local_items_first(index: SearchIndex) -> None:
    plain = index.search(normalize("登记"))
    local = index.search(normalize("登记"), region_chain=("430102",))
    assert {h.doc.code for h in plain} == {h.doc.code for h in local}

    # Items the county implements (odd rows here) move up among matches of similar relevance.
    def mean_rank(hits, wanted: bool) -> float:
        ranks = [n for n, h in enumerate(hits) if ("430102" in h.doc.regions) == wanted]
        return sum(ranks) / len(ranks)

    assert mean_rank(local, True) < mean_rank(plain, True)
    assert all(h.local == ("430102" in h.doc.regions) for h in local)


def test_suggest_by_characters_pinyin_and_initials(index: SearchIndex) -> None:
    assert index.suggest("出生")[0][0] == "出生登记"
    assert "住房公积金提取" in [t for t, _ in index.suggest("gongjijin")]
    assert "结婚登记" in [t for t, _ in index.suggest("jhdj")]
    assert index.suggest("") == []
