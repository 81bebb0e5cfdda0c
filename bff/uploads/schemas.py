"""Upload responses."""

from __future__ import annotations

from bff.platform.problems import define
from bff.platform.schema import Camel

define(
    __name__,
    {
        "upload_type_not_allowed": (
            422,
            "不支持的文件类型（仅限 PDF、JPG、PNG）",
            "Only PDF, JPEG and PNG files are accepted",
        ),
        "upload_type_mismatch": (
            422,
            "文件内容与声明的类型不符",
            "The file's content does not match its declared type",
        ),
        "upload_empty": (422, "文件为空", "The file is empty"),
    },
)


class UploadOut(Camel):
    id: str
    file_name: str
    media_type: str
    size_bytes: int
    sha256: str
    created_at: str
