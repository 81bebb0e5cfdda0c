"""Uploaded materials: type decided by content (magic bytes), size bounded, stored outside any
served directory under a random name, metadata in PostgreSQL, shown to the owner only.

Only what a government form accepts is allowed: PDF, JPEG and PNG. The declared type must agree
with the content, so an executable renamed to `.pdf` is refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from pathlib import Path

from adapters.errors import ProblemError
from bff.platform.problems import register_titles

register_titles(
    {
        "upload_type_not_allowed": (
            "不支持的文件类型（仅限 PDF、JPG、PNG）",
            "Only PDF, JPEG and PNG files are accepted",
        ),
        "upload_type_mismatch": (
            "文件内容与声明的类型不符",
            "The file's content does not match its declared type",
        ),
        "upload_empty": ("文件为空", "The file is empty"),
    }
)

_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "application/pdf"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
)
_EXTENSIONS = {".pdf": "application/pdf", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png"}
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
    if declared != detected or (by_name is not None and by_name != detected):
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
