"""Routes of the uploads domain: one material per request (raw body), its metadata back."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter

from auth.guards import APPLYING_LEVEL, residents_only
from auth.principal import Principal
from bff.idempotency import IdempotencyKey, IdempotencyStore
from bff.platform.openapi import RawBodyOperation
from bff.uploads.schemas import UploadOut
from bff.uploads.service import UploadService


class UploadController(Controller):
    path = "/uploads"
    tags = ["uploads"]
    guards = [residents_only, APPLYING_LEVEL]

    @post(
        "",
        summary="Upload one material (raw body; PDF, JPEG or PNG)",
        status_code=201,
        request_max_body_size=None,  # bounded by the service's own limit (the API-wide one is smaller)
        operation_class=RawBodyOperation,
    )
    async def upload(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        idempotency: NamedDependency[IdempotencyStore],
        uploads: NamedDependency[UploadService],
        idempotency_key: IdempotencyKey,
        name: Annotated[str, QueryParameter(min_length=1, max_length=120)],
    ) -> Response[UploadOut]:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > uploads.max_bytes:
            raise uploads.too_large()
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > uploads.max_bytes:
                raise uploads.too_large()
            chunks.append(chunk)
        content = b"".join(chunks)
        # The idempotency fingerprint reads the body: hand it the bytes we already consumed.
        request._body = request._connection_state.body = content
        media_type, kept_name = uploads.accept(content, request.headers.get("content-type", ""), name)
        return await idempotency.run(
            request,
            principal.person_id,
            lambda ctx: uploads.store(ctx, principal.person_id, kept_name, media_type, content),
        )

    @get("/{upload_id:str}", summary="One of my uploads (metadata; the file is never served back)")
    async def get_upload(
        self,
        principal: NamedDependency[Principal],
        uploads: NamedDependency[UploadService],
        upload_id: FromPath[str],
    ) -> UploadOut:
        return await uploads.get(principal, upload_id)
