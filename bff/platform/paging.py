"""Opaque page cursors: unpadded URL-safe base64 of a short text.

Lists read from the database page by keyset: the cursor holds the (moment, id) of the last row
shown and the next page starts after it. The query asks for `limit + 1` rows so that the extra
one tells whether there is a next page.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from adapters.errors import ProblemError


def encode_token(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def keyset_cursor(moment: datetime, ident: uuid.UUID) -> str:
    return encode_token(f"{moment.isoformat()}|{ident}")


def parse_keyset_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        moment, ident = raw.split("|", 1)
        return datetime.fromisoformat(moment), uuid.UUID(ident)
    except (ValueError, UnicodeDecodeError):
        raise ProblemError(
            "cursor: not a cursor this API gave out", status=400, code="validation_failed"
        ) from None


def keyset_after(cursor: str | None) -> tuple[datetime | None, uuid.UUID | None]:
    """The (moment, id) the page starts after: the query's parameters; (None, None) for the first page."""
    if not cursor:
        return None, None
    return parse_keyset_cursor(cursor)


def keyset_page(
    rows: Sequence[asyncpg.Record], limit: int, moment_column: str
) -> tuple[Sequence[asyncpg.Record], str | None]:
    """The rows to show (of `limit + 1` fetched) and the cursor of the next page, if there is one."""
    page = rows[:limit]
    following = keyset_cursor(page[-1][moment_column], page[-1]["id"]) if len(rows) > limit else None
    return page, following
