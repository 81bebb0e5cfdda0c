"""Mailing addresses: what the resident sends (in full) and what is shown back (masked)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from bff.platform.problems import define
from bff.platform.schema import Camel, CamelIn

define(
    __name__,
    {
        "address_not_found": (404, "未找到该地址", "No such address"),
        "address_limit_reached": (409, "收件地址数量已达上限", "You keep the most addresses allowed"),
        "region_unknown": (422, "地区代码不是湖南省的行政区划", "The region code is not a region of Hunan"),
    },
)

Phone = Annotated[str, msgspec.Meta(pattern=r"^1[3-9]\d{9}$", description="an 11-digit mainland mobile")]


class AddressIn(CamelIn):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=30, pattern=r"\S")]
    phone: Phone
    address: Annotated[str, msgspec.Meta(min_length=4, max_length=120, pattern=r"\S")]
    region_code: Annotated[str, msgspec.Meta(pattern=r"^\d{6}$", description="a county-level region code")]
    label: Annotated[str, msgspec.Meta(max_length=10)] | None = None


class AddressOut(Camel):
    """An address as shown back: name, phone and street masked (the full values never leave)."""

    id: str
    name: str
    phone: str
    address: str
    region_code: str
    label: str | None
    created_at: str
    updated_at: str


class AddressPage(Camel):
    items: list[AddressOut]
    next_cursor: str | None
