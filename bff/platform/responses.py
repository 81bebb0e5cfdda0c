"""Responses whose body is already the JSON encoding of a typed result.

Recorded idempotent answers (replayed byte for byte), and guides the mirror keeps encoded, are
bytes by the time a route returns them. The route still declares the type the bytes encode, so
the OpenAPI document (and every client generated from it) sees the real schema.
"""

from __future__ import annotations

from typing import Any, TypeVar, cast

from litestar import Response

T = TypeVar("T")


def encoded(
    body: bytes,
    of: type[T],
    *,
    status: int = 200,
    media_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> Response[T]:
    """A response whose `body` is the encoding of a `T` (or a problem document)."""
    return cast(
        "Response[T]", Response(content=body, status_code=status, media_type=media_type, headers=headers)
    )


def conditional(
    if_none_match: str | None, etag: str, body: bytes, of: type[T], *, cache_control: str = "no-cache"
) -> Response[T]:
    """A cacheable read: `ETag` on the answer, 304 when the client holds that version already.
    A personal answer passes `no-store`: the client revalidates its own copy, no cache keeps one."""
    headers = {"ETag": etag, "Cache-Control": cache_control, "Vary": "Accept-Language, X-UI-Mode"}
    if if_none_match and etag in {tag.strip() for tag in if_none_match.split(",")}:
        return encoded(b"", of, status=304, headers=headers)
    return encoded(body, of, headers=headers)


def recorded(
    body: bytes, *, status: int, media_type: str, headers: dict[str, str] | None = None
) -> Response[Any]:
    """A stored answer (a success or a problem document), returned as it was first sent."""
    return Response(content=body, status_code=status, media_type=media_type, headers=headers)
