"""Uploads through the API: where a tenant's file goes and who signs for it.

Implemented on boto3 by ``trainyard_core/upload_signer.py`` (STS + S3: every URL is
signed with a session of the uploader role narrowed to the one key), in memory by
tests. The domain (``tenants/uploads.py``) decides what may be signed; an
implementation only signs it, with S3 enforcing what the domain decided (key,
content type, sizes, expiry) when the tenant's client sends the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class UploadTarget:
    """One object under one tenant's data prefix."""

    tenant_id: str
    bucket: str
    data_prefix: str
    key: str  # data_prefix + file name


@dataclass(frozen=True)
class PresignedPost:
    url: str
    fields: dict[str, str]
    expires_at: datetime


@dataclass(frozen=True)
class PresignedPart:
    part_number: int
    url: str
    size: int  # signed: S3 refuses a part of any other length


@dataclass(frozen=True)
class MultipartStart:
    upload_id: str
    parts: list[PresignedPart]
    expires_at: datetime


@dataclass(frozen=True)
class CompletedPart:
    part_number: int
    etag: str


@dataclass(frozen=True)
class UploadPlan:
    """A multipart upload as the API started it, kept server-side (the state table)
    until it is completed, aborted or past ``expires_at``: re-signing, completing
    and aborting read the key and the parts from here, never from the client."""

    tenant_id: str
    upload_id: str
    key: str
    content_length: int
    part_size: int  # every part but the last; the last is the rest
    part_count: int
    created_at: datetime
    expires_at: datetime  # parts are re-signed, completed or aborted until then

    def part_size_of(self, number: int) -> int:
        if not 1 <= number <= self.part_count:
            raise ValueError(f"part {number} is not in 1..{self.part_count}")
        if number < self.part_count:
            return self.part_size
        return self.content_length - self.part_size * (self.part_count - 1)


class UploadPlanStore(Protocol):
    """Multipart upload plans by (tenant, upload id); DynamoDB in
    ``store/upload_plans.py`` (with its in-memory twin)."""

    def put(self, plan: UploadPlan) -> None: ...

    def get(self, tenant_id: str, upload_id: str) -> UploadPlan | None:
        """The tenant's plan of ``upload_id`` (expired ones too), or None."""

    def delete(self, tenant_id: str, upload_id: str) -> None: ...


class UploadRefused(Exception):
    """S3 refused to complete or abort a multipart upload (its code and message)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class UploadSigner(Protocol):
    def data_bytes(self, target: UploadTarget, *, max_pages: int) -> int | None:
        """Bytes S3 stores under the target's data prefix: every object version,
        current and noncurrent (not in-progress multipart uploads); None if there
        are more than ``max_pages`` listing pages of them."""

    def presign_post(
        self, target: UploadTarget, *, content_type: str, max_bytes: int, expires_in: int
    ) -> PresignedPost: ...

    def start_multipart(
        self, target: UploadTarget, *, content_type: str, part_sizes: list[int], expires_in: int
    ) -> MultipartStart: ...

    def presign_parts(
        self, target: UploadTarget, upload_id: str, parts: list[tuple[int, int]], expires_in: int
    ) -> tuple[list[PresignedPart], datetime]:
        """Fresh part URLs of an upload in progress for (part number, size) pairs,
        and when they expire."""

    def complete_multipart(
        self, target: UploadTarget, upload_id: str, parts: list[CompletedPart]
    ) -> str:
        """The object's ETag; ``UploadRefused`` when S3 refuses."""

    def abort_multipart(self, target: UploadTarget, upload_id: str) -> None:
        """``UploadRefused`` when S3 refuses (NoSuchUpload)."""
