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
        "upload_polyglot": (
            422,
            "文件同时含有其他格式的内容，已拒绝",
            "The file also contains another format or active content",
        ),
        "upload_name_not_allowed": (400, "文件名不被接受", "The file name is not accepted"),
        "upload_quota_exceeded": (
            409,
            "未使用的上传文件过多，请先提交申请或稍后再试",
            "Too many uploads not yet used in an application",
        ),
    },
)


class UploadOut(Camel):
    id: str
    file_name: str
    media_type: str
    size_bytes: int
    sha256: str
    created_at: str
