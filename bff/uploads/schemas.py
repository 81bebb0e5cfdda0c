"""Upload responses."""

from __future__ import annotations

from bff.platform.schema import Camel


class UploadOut(Camel):
    id: str
    file_name: str
    media_type: str
    size_bytes: int
    sha256: str
    created_at: str
