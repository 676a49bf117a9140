"""/tenants/{tenantId}/uploads: presigned uploads of training data (no AWS credentials)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from trainyard_core.models import iso_ms
from trainyard_core.ports.uploads import CompletedPart

from trainyard_handlers import dependencies
from trainyard_handlers.api import requests
from trainyard_handlers.api.bind import bind
from trainyard_handlers.api.models import (
    AbortUploadRequest,
    CompleteUploadRequest,
    CreateUploadRequest,
    PresignUploadPartsRequest,
    Upload,
    UploadPart,
    UploadParts,
    UploadResult,
)
from trainyard_handlers.observability import logger, metrics

router = Router()


@bind(router, "createUpload")
def create_upload(tenant_id: str) -> Response[str]:
    logger.thread_safe_append_keys(tenant_id=tenant_id)
    request = requests.json_body(router.current_event, CreateUploadRequest)
    tenant = dependencies.tenant_service().get(tenant_id)
    grant = dependencies.tenant_uploads().grant(tenant, request.fileName, request.contentLength)
    if grant.post is not None:
        body = Upload(
            method="POST",
            key=grant.target.key,
            url=grant.post.url,
            fields=grant.post.fields,
            expires_at=str(iso_ms(grant.post.expires_at)),
        )
    else:
        assert grant.multipart is not None
        body = Upload(
            method="PUT",
            key=grant.target.key,
            upload_id=grant.multipart.upload_id,
            parts=[
                UploadPart(part_number=p.part_number, url=p.url, size=p.size)
                for p in grant.multipart.parts
            ],
            expires_at=str(iso_ms(grant.multipart.expires_at)),
        )
    logger.info("upload presigned", extra={"key": grant.target.key, "method": body.method})
    metrics.add_metric(name="UploadsPresigned", unit="Count", value=1)
    return requests.json_response(201, body.wire())


@bind(router, "presignUploadParts")
def presign_upload_parts(tenant_id: str, upload_id: str) -> dict[str, Any]:
    logger.thread_safe_append_keys(tenant_id=tenant_id)
    request = requests.json_body(router.current_event, PresignUploadPartsRequest)
    tenant = dependencies.tenant_service().get(tenant_id)
    parts, expires_at = dependencies.tenant_uploads().resign_parts(
        tenant, upload_id, request.partNumbers
    )
    metrics.add_metric(name="UploadPartsPresigned", unit="Count", value=len(parts))
    return UploadParts(
        parts=[UploadPart(part_number=p.part_number, url=p.url, size=p.size) for p in parts],
        expires_at=str(iso_ms(expires_at)),
    ).wire()


@bind(router, "completeUpload")
def complete_upload(tenant_id: str, upload_id: str) -> dict[str, Any]:
    logger.thread_safe_append_keys(tenant_id=tenant_id)
    request = requests.json_body(router.current_event, CompleteUploadRequest)
    tenant = dependencies.tenant_service().get(tenant_id)
    parts = [CompletedPart(part_number=p.partNumber, etag=p.eTag) for p in request.parts]
    target, etag = dependencies.tenant_uploads().complete(tenant, request.key, upload_id, parts)
    return UploadResult(
        key=target.key, upload_id=upload_id, status="COMPLETED", e_tag=etag or None
    ).wire()


@bind(router, "abortUpload")
def abort_upload(tenant_id: str, upload_id: str) -> dict[str, Any]:
    logger.thread_safe_append_keys(tenant_id=tenant_id)
    request = requests.json_body(router.current_event, AbortUploadRequest)
    tenant = dependencies.tenant_service().get(tenant_id)
    target = dependencies.tenant_uploads().abort(tenant, request.key, upload_id)
    return UploadResult(key=target.key, upload_id=upload_id, status="ABORTED").wire()
