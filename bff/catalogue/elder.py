"""长辈版 shaping of the catalogue: the common services older residents come for, with plain titles,
and the guide without its secondary sections (data: data/elder.toml)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import msgspec

from bff.catalogue.schemas import Guide

ELDER_PATH = Path(__file__).parent / "data" / "elder.toml"
# Fewer items a screen: an elder page never holds more than this many results.
ELDER_PAGE = 5
# One hall, the nearest: a choice of three is a secondary section in elder mode.
ELDER_HALLS = 1


class ElderCatalogue:
    def __init__(self, path: Path = ELDER_PATH) -> None:
        common: dict[str, str] = tomllib.loads(path.read_text(encoding="utf-8"))["common"]
        self.plain = common
        self.rank = {name: i for i, name in enumerate(common)}

    def first(self, name: str) -> int:
        """Sort key: the common services first, in their order; the rest keep theirs after them."""
        return self.rank.get(name, len(self.rank))


def elder_guide(item: Guide) -> Guide:
    """The guide an older resident needs: what to bring, where, how long, what it costs. Legal basis,
    FAQ and the supervision channel are secondary sections (the hall's staff and 12345 answer those)."""
    return msgspec.structs.replace(item, legal_basis=[], faq=[], supervision="")
