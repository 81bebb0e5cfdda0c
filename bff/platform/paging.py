"""The one page-cursor format of the API: opaque, URL-safe, signed, and refused with one code.

A cursor is `<payload>.<mac>`: the unpadded URL-safe base64 of a small JSON array, and the first
16 bytes of its HMAC-SHA256 under the process's cursor key (`CURSOR_KEY`; derived from the dev
seed outside prod), so a client can hand back only what it was given: nothing it crafts (an
extreme date, a huge offset, another kind) reaches a query. The array's first element says what
it holds: `["k", moment, id]` for lists read from the database by keyset (the (moment, id) of the
last row shown; the next page starts after it), `["o", offset]` for lists a process holds in
memory (catalogue topics, regions, halls, search hits). A cursor that is not one this API gave
out is a 400 `invalid_cursor`. Keyset queries ask for `limit + 1` rows so that the extra one says
whether there is a next page.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg
import msgspec

from adapters.errors import ProblemError
from bff.platform.problems import define

define(__name__, {"invalid_cursor": (400, "分页参数无效", "The page cursor is not valid")})

T = TypeVar("T")
MAX_OFFSET = 100_000
# Moments a real row can have: anything else did not come from us (and would overflow a query).
_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
_LATEST = datetime(2200, 1, 1, tzinfo=UTC)
_key = hashlib.sha256(b"sanxiang-dev-only-not-a-secret|cursor").digest()


def _invalid() -> ProblemError:
    return ProblemError(
        "cursor: not a cursor this API gave out",
        detail_zh="cursor：不是本接口给出的分页参数，请从第一页重新加载",
        status=400,
        code="invalid_cursor",
    )


def use_key(key: bytes) -> None:
    """Set the process's cursor key (the composition root does, from the settings)."""
    global _key  # noqa: PLW0603 - one key per process, set once at start
    _key = key


def derive_key(cursor_key: str, dev_seed: str) -> bytes:
    return cursor_key.encode() if cursor_key else hashlib.sha256(f"{dev_seed}|cursor".encode()).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _mac(payload: str) -> str:
    return _b64(hmac.new(_key, payload.encode(), hashlib.sha256).digest()[:16])


def _encode(parts: list[Any]) -> str:
    payload = _b64(msgspec.json.encode(parts))
    return f"{payload}.{_mac(payload)}"


def _decode(cursor: str, kind: str) -> list[Any]:
    payload, _, mac = cursor.partition(".")
    parts: list[Any] = []
    if payload and mac and hmac.compare_digest(_mac(payload), mac):
        try:
            raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
            parts = msgspec.json.decode(raw, type=list[Any])
        except (ValueError, binascii.Error, msgspec.DecodeError):
            parts = []
    if not parts or parts[0] != kind:
        raise _invalid()
    return parts


def keyset_cursor(moment: datetime, ident: uuid.UUID) -> str:
    return _encode(["k", moment.isoformat(), str(ident)])


def keyset_after(cursor: str | None) -> tuple[datetime | None, uuid.UUID | None]:
    """The (moment, id) the page starts after: the query's parameters; (None, None) for the first page."""
    if not cursor:
        return None, None
    parts = _decode(cursor, "k")
    try:
        moment, ident = datetime.fromisoformat(parts[1]), uuid.UUID(parts[2])
        if moment.tzinfo is None or not _EARLIEST <= moment <= _LATEST:
            raise ValueError(parts[1])
    except (ValueError, TypeError, IndexError):
        raise _invalid() from None
    return moment, ident


def keyset_page(
    rows: Sequence[asyncpg.Record], limit: int, moment_column: str
) -> tuple[Sequence[asyncpg.Record], str | None]:
    """The rows to show (of `limit + 1` fetched) and the cursor of the next page, if there is one."""
    page = rows[:limit]
    following = keyset_cursor(page[-1][moment_column], page[-1]["id"]) if len(rows) > limit else None
    return page, following


def offset_page(items: Sequence[T], limit: int, cursor: str | None) -> tuple[list[T], str | None]:
    """A page of an in-memory list and the cursor of the next one."""
    start = 0
    if cursor:
        parts = _decode(cursor, "o")
        if len(parts) != 2 or not isinstance(parts[1], int) or not 0 <= parts[1] <= MAX_OFFSET:
            raise _invalid()
        start = parts[1]
    end = start + limit
    following = _encode(["o", end]) if end < len(items) else None
    return list(items[start:end]), following
