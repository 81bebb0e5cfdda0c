"""Uploaded materials (the `uploads` domain): type decided by content (magic bytes), size bounded, stored outside any
served directory under a random name, metadata in PostgreSQL, shown to the owner only.

Only what a government form accepts is allowed: PDF, JPEG and PNG. The declared type must agree
with the content, so an executable renamed to `.pdf` is refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import uuid
from pathlib import Path
from typing import Any

import asyncpg

from adapters.errors import ProblemError
from auth.principal import Principal
from bff.idempotency import IdemContext, Recorded
from bff.platform.access import owned, parse_uuid
from bff.uploads.schemas import UploadOut

_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "application/pdf"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
)
_EXTENSIONS = {".pdf": "application/pdf", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png"}
OCTET_STREAM = "application/octet-stream"
_NAME = re.compile(r"^[^/\\\x00-\x1f]{1,120}$")


def sniff(content: bytes) -> str | None:
    for magic, media_type in _SIGNATURES:
        if content.startswith(magic):
            return media_type
    return None


def check(content: bytes, declared_type: str, file_name: str) -> str:
    """The media type the content really has, when it is allowed and agrees with what was said."""
    if not content:
        raise ProblemError("the file is empty", status=422, code="upload_empty")
    if not _NAME.match(file_name):
        raise ProblemError(
            "name: a plain file name of at most 120 characters", status=400, code="validation_failed"
        )
    detected = sniff(content)
    if detected is None:
        raise ProblemError(
            "only PDF, JPEG and PNG files are accepted", status=422, code="upload_type_not_allowed"
        )
    declared = declared_type.split(";", 1)[0].strip().lower()
    by_name = _EXTENSIONS.get(os.path.splitext(file_name)[1].lower())
    # `application/octet-stream` says "look at the bytes"; any other type must be the real one.
    if declared not in (detected, OCTET_STREAM) or (by_name is not None and by_name != detected):
        raise ProblemError(
            f"the content is {detected}, not what the name or Content-Type says",
            status=422,
            code="upload_type_mismatch",
        )
    return detected


def _write(directory: Path, key: str, content: bytes) -> None:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    final = directory / key
    if final.exists():
        return  # a re-run of the same request: the same bytes are already there
    temp = directory / f".{key}.part"
    with temp.open("wb") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(temp, 0o600)
    temp.replace(final)


async def store(directory: Path, key: str, content: bytes) -> str:
    await asyncio.to_thread(_write, directory, key, content)
    return hashlib.sha256(content).hexdigest()


def upload_out(row: asyncpg.Record | None) -> UploadOut:
    assert row is not None
    return UploadOut(
        id=str(row["id"]),
        file_name=row["file_name"],
        media_type=row["media_type"],
        size_bytes=row["size_bytes"],
        sha256=row["sha256"],
        created_at=row["created_at"].isoformat(),
    )


class UploadService:
    def __init__(self, pool: asyncpg.Pool, directory: Path, *, max_bytes: int) -> None:
        self.pool = pool
        self.directory = directory
        self.max_bytes = max_bytes

    def too_large(self) -> ProblemError:
        return ProblemError(
            f"files are limited to {self.max_bytes} bytes", status=413, code="payload_too_large"
        )

    def accept(self, content: bytes, declared_type: str, file_name: str) -> str:
        """The media type of an acceptable file (checked before the idempotency key is claimed)."""
        return check(content, declared_type, file_name)

    async def store(
        self, ctx: IdemContext, person_id: str, name: str, media_type: str, content: bytes
    ) -> Recorded[UploadOut]:
        upload_id = ctx.request_id
        digest = await store(self.directory, upload_id.hex, content)
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                """
                INSERT INTO bff.uploads (id, person_id, file_name, media_type, size_bytes, sha256, storage_key)
                VALUES ($1, $2, $3, $4, $5, $6, $7)
                ON CONFLICT (id) DO UPDATE SET file_name = bff.uploads.file_name RETURNING *
                """,
                upload_id,
                person_id,
                name,
                media_type,
                len(content),
                digest,
                upload_id.hex,
            )
            return await ctx.finish(conn, upload_out(row))

    async def get(self, principal: Principal, upload_id: str) -> UploadOut:
        row = await self.pool.fetchrow(
            "SELECT * FROM bff.uploads WHERE id = $1", parse_uuid(upload_id, "upload")
        )
        return upload_out(await owned(self.pool, principal, "upload", upload_id, row))

    async def owned_upload(self, person_id: str, upload_id: Any) -> uuid.UUID | None:
        """Read port for other domains: the id of `person_id`'s upload, None for anyone else's."""
        found: uuid.UUID | None = await self.pool.fetchval(
            "SELECT id FROM bff.uploads WHERE id::text = $1 AND person_id = $2", str(upload_id), person_id
        )
        return found
