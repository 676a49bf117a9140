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

    def complete_multipart(
        self, target: UploadTarget, upload_id: str, parts: list[CompletedPart]
    ) -> str:
        """The object's ETag; ``UploadRefused`` when S3 refuses."""

    def abort_multipart(self, target: UploadTarget, upload_id: str) -> None:
        """``UploadRefused`` when S3 refuses (NoSuchUpload)."""
