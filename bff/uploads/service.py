"""Uploaded materials (the `uploads` domain): type decided by content (magic bytes), size bounded, stored outside any
served directory under a random name, metadata in PostgreSQL, shown to the owner only.

Only what a government form accepts is allowed: PDF, JPEG and PNG. The declared type must agree
with the content, so an executable renamed to `.pdf` is refused. A file that is also something
else (a polyglot: a PDF that is a ZIP, a JPEG carrying PHP, a PNG carrying SVG or script) is
refused by reading its structure: nothing after a JPEG's end or a PNG's IEND, no markup in their
metadata, no ZIP directory, script, launch action or embedded file in a PDF. Names are normalised
(NFC, whitespace) and refused when a viewer or a file system could misread them: a last extension
that is not the content's (`x.pdf.exe`), bidirectional or other invisible format characters
(`x\u202egpj.exe`), Windows device names (`CON.pdf`), leading dots, trailing dots or spaces.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import struct
import unicodedata
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
_DEVICE_NAMES = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CLOCK$", "CONIN$", "CONOUT$"}
    | {f"{p}{n}" for p in ("COM", "LPT") for n in [*"123456789", "¹", "²", "³"]}
)
_SUFFIX = {"application/pdf": ".pdf", "image/jpeg": ".jpg", "image/png": ".png"}
# Markup or code that a browser or interpreter would run, looked for in metadata we can locate.
_ACTIVE = re.compile(rb"<\?php|<\?=|<script|<svg|<html|<iframe|<%|javascript:", re.IGNORECASE)
_PDF_ACTIVE = re.compile(
    rb"/(?:JavaScript|JS|Launch|EmbeddedFile|EmbeddedFiles|XFA|RichMedia)(?![A-Za-z0-9])"
)
_ZIP = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x01\x02")


def clean_name(file_name: str) -> str:
    """The name as stored, or a 400 when it could be misread; gets the content's suffix if it has none."""
    name = " ".join(unicodedata.normalize("NFC", file_name).split())

    def refuse(why: str, zh: str) -> ProblemError:
        return ProblemError(
            f"name: {why}", detail_zh=f"文件名：{zh}", status=400, code="upload_name_not_allowed"
        )

    if not _NAME.match(name):
        raise refuse("a plain file name of at most 120 characters", "请使用不超过120个字符的普通文件名")
    if any(unicodedata.category(c) in {"Cf", "Cc", "Co", "Cs", "Zl", "Zp"} for c in name):
        raise refuse(
            "invisible or direction-changing characters are not allowed", "不能包含不可见或改变文字方向的字符"
        )
    if name.startswith(".") or name.endswith((".", " ")):
        raise refuse(
            "it may not start with a dot or end with a dot or space", "不能以点开头，也不能以点或空格结尾"
        )
    stem = name.split(".", 1)[0].strip().upper()
    if stem in _DEVICE_NAMES:
        raise refuse(f"{stem} is a reserved device name", f"{stem} 是系统保留的设备名")
    return name


def _jpeg_clean(content: bytes) -> bool:
    body = content.rstrip(b"\x00")
    if not body.endswith(b"\xff\xd9"):
        return False  # something follows the image
    at = 2
    while at + 4 <= len(content) and content[at] == 0xFF:
        marker = content[at + 1]
        if marker == 0xDA:  # start of scan: the entropy-coded image follows
            return True
        (length,) = struct.unpack(">H", content[at + 2 : at + 4])
        segment = content[at + 4 : at + 2 + length]
        if (0xE0 <= marker <= 0xEF or marker == 0xFE) and _ACTIVE.search(segment):
            return False
        at += 2 + length
    return False


def _png_clean(content: bytes) -> bool:
    at = 8
    while at + 12 <= len(content):
        (length,) = struct.unpack(">I", content[at : at + 4])
        kind = content[at + 4 : at + 8]
        data = content[at + 8 : at + 8 + length]
        if kind in (b"tEXt", b"zTXt", b"iTXt") and _ACTIVE.search(data):
            return False
        at += 12 + length
        if kind == b"IEND":
            return not content[at:].strip(b"\x00")
    return False


def _pdf_clean(content: bytes) -> bool:
    if b"%%EOF" not in content[-1024:]:
        return False  # something follows the document
    return not any(magic in content for magic in _ZIP) and not _PDF_ACTIVE.search(content)


def only_itself(content: bytes, media_type: str) -> bool:
    """The content is one file of `media_type` and nothing else."""
    clean = {"image/jpeg": _jpeg_clean, "image/png": _png_clean, "application/pdf": _pdf_clean}
    return clean[media_type](content)


def sniff(content: bytes) -> str | None:
    for magic, media_type in _SIGNATURES:
        if content.startswith(magic):
            return media_type
    return None


def check(content: bytes, declared_type: str, file_name: str) -> tuple[str, str]:
    """The media type the content really has, when it is allowed and agrees with what was said,
    and the name to keep."""
    if not content:
        raise ProblemError("the file is empty", status=422, code="upload_empty", detail_zh="文件为空")
    file_name = clean_name(file_name)
    detected = sniff(content)
    if detected is None:
        raise ProblemError(
            "only PDF, JPEG and PNG files are accepted",
            status=422,
            code="upload_type_not_allowed",
            detail_zh="只接受 PDF、JPEG 和 PNG 文件",
        )
    declared = declared_type.split(";", 1)[0].strip().lower()
    suffix = os.path.splitext(file_name)[1].lower()
    by_name = _EXTENSIONS.get(suffix)
    # `application/octet-stream` says "look at the bytes"; any other type must be the real one, and
    # so must the last extension when there is one (`x.pdf.exe` is an .exe to every file manager).
    if declared not in (detected, OCTET_STREAM) or (suffix and by_name != detected):
        raise ProblemError(
            f"the content is {detected}, not what the name or Content-Type says",
            status=422,
            code="upload_type_mismatch",
            detail_zh=f"文件内容为 {detected}，与文件名或 Content-Type 不符",
        )
    if not only_itself(content, detected):
        raise ProblemError(
            f"the file is not only a {detected}: it carries another format or active content",
            detail_zh="文件中夹带了其他格式或可执行的内容，请上传原始的 PDF、JPG 或 PNG 文件",
            status=422,
            code="upload_polyglot",
        )
    return detected, file_name if suffix else file_name + _SUFFIX[detected]


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


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)


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
    """Uploads count against a per-person quota (`quota_count` files, `quota_bytes` bytes) until a
    case uses them (`attach`); those no case used within `unattached_ttl_s` expire (`expire`, a job
    the root lists): the row and the file go."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        directory: Path,
        *,
        max_bytes: int,
        quota_count: int = 30,
        quota_bytes: int = 50 * 1_048_576,
        unattached_ttl_s: int = 86_400,
    ) -> None:
        self.pool = pool
        self.directory = directory
        self.max_bytes = max_bytes
        self.quota_count = quota_count
        self.quota_bytes = quota_bytes
        self.unattached_ttl_s = unattached_ttl_s

    async def _check_quota(self, conn: Any, person_id: str, upload_id: uuid.UUID, size: int) -> None:
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('sx:uploads:' || $1))", person_id)
        row = await conn.fetchrow(
            """
            SELECT count(*) AS files, coalesce(sum(size_bytes), 0) AS bytes FROM bff.uploads
            WHERE person_id = $1 AND attached_at IS NULL AND id <> $2
            """,
            person_id,
            upload_id,
        )
        if row["files"] + 1 > self.quota_count or row["bytes"] + size > self.quota_bytes:
            raise ProblemError(
                f"at most {self.quota_count} files or {self.quota_bytes} bytes may wait to be used in"
                " an application; apply, or wait for unused ones to expire",
                status=409,
                code="upload_quota_exceeded",
                extra={"quotaCount": self.quota_count, "quotaBytes": self.quota_bytes},
                detail_zh=f"最多 {self.quota_count} 个文件或 {self.quota_bytes} 字节可等待用于申请；请提交申请，或等待未用文件过期",
            )

    async def attach(self, conn: Any, person_id: str, upload_ids: list[str]) -> None:
        """Port for the cases domain, in its transaction: these uploads are used by a case."""
        if upload_ids:
            await conn.execute(
                """
                UPDATE bff.uploads SET attached_at = coalesce(attached_at, now())
                WHERE person_id = $1 AND id::text = ANY($2::text[])
                """,
                person_id,
                upload_ids,
            )

    async def expire(self, batch: int = 500) -> int:
        """The worker's job: uploads no case used within the TTL go, row and file."""
        rows = await self.pool.fetch(
            """
            DELETE FROM bff.uploads WHERE id IN (
                SELECT id FROM bff.uploads
                WHERE attached_at IS NULL AND created_at < now() - make_interval(secs => $1)
                ORDER BY created_at LIMIT $2)
            RETURNING storage_key
            """,
            self.unattached_ttl_s,
            batch,
        )
        for row in rows:
            await asyncio.to_thread(_remove, self.directory / row["storage_key"])
        return len(rows)

    def too_large(self) -> ProblemError:
        return ProblemError(
            f"files are limited to {self.max_bytes} bytes",
            status=413,
            code="payload_too_large",
            detail_zh=f"文件最大 {self.max_bytes} 字节",
        )

    def accept(self, content: bytes, declared_type: str, file_name: str) -> tuple[str, str]:
        """The media type and kept name of an acceptable file (checked before the idempotency key
        is claimed)."""
        return check(content, declared_type, file_name)

    async def store(
        self, ctx: IdemContext, person_id: str, name: str, media_type: str, content: bytes
    ) -> Recorded[UploadOut]:
        upload_id = ctx.request_id
        async with self.pool.acquire() as conn, conn.transaction():
            # Under the person's lock until the row is in: concurrent uploads cannot both fit.
            await self._check_quota(conn, person_id, upload_id, len(content))
            digest = await store(self.directory, upload_id.hex, content)
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
