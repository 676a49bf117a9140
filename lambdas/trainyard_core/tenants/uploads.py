"""Uploads through the API: a tenant sends its training files with presigned
requests and no AWS credentials (docs/architecture.md §2). Pure.

What is decided here is what S3 then enforces on the tenant's request: the one key
(a validated file name under the tenant's data prefix), ``text/csv``, a
content-length range bounded by the plan's ``maxUploadBytes`` and the room left in
its ``dataQuotaBytes`` (every stored version under the prefix counts), and the
expiry. Files above ``MULTIPART_THRESHOLD_BYTES`` (and every file above S3's 5 GB
POST limit) get a multipart upload whose parts each have a signed length,
completed (or aborted) through the API.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from trainyard_core.clock import Clock, SystemClock
from trainyard_core.config import Settings
from trainyard_core.errors import Conflict, DomainError, InvalidRequest, NotFound
from trainyard_core.limits import (
    DATA_QUOTA_LIST_PAGES,
    ETAG_MAX_CHARS,
    MULTIPART_PART_BYTES,
    MULTIPART_THRESHOLD_BYTES,
    MULTIPART_UPLOAD_SECONDS,
    MULTIPART_URL_SECONDS,
    S3_PART_MAX_BYTES,
    S3_PART_MIN_BYTES,
    S3_PARTS_MAX,
    S3_POST_MAX_BYTES,
    UPLOAD_FILE_NAME_MAX_BYTES,
    UPLOAD_PARTS_MAX,
    UPLOAD_URL_SECONDS,
)
from trainyard_core.models import Tenant, TenantStatus
from trainyard_core.ports.uploads import (
    CompletedPart,
    MultipartStart,
    PresignedPart,
    PresignedPost,
    UploadPlan,
    UploadPlanStore,
    UploadRefused,
    UploadSigner,
    UploadTarget,
)
from trainyard_core.uploads import TRAINING_SUFFIX

CONTENT_TYPE = "text/csv"
# One path segment of letters, digits, '.', '_' and '-', starting with a letter or
# digit: no traversal ('..', '/'), nothing IAM reads as a wildcard ('*', '?'),
# nothing a shell or URL needs to quote.
FILE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*", re.ASCII)
_MIB = 1024**2


class UploadTooLarge(DomainError):
    status = 413
    code = "UploadTooLarge"


class DataQuotaExceeded(Conflict):
    code = "DataQuotaExceeded"


def validate_file_name(name: str) -> str:
    """The file name of an upload, or ``InvalidFileName`` saying what is wrong."""

    def refuse(why: str) -> InvalidRequest:
        return InvalidRequest(f"fileName {name[:80]!r} {why}", code="InvalidFileName")

    if "/" in name or "\\" in name or name in (".", "..") or ".." in name:
        raise refuse("must be a plain file name (no '/', '\\' or '..')")
    if len(name.encode()) > UPLOAD_FILE_NAME_MAX_BYTES:
        raise refuse(f"is longer than {UPLOAD_FILE_NAME_MAX_BYTES} bytes")
    if not name.casefold().endswith(TRAINING_SUFFIX) or len(name) <= len(TRAINING_SUFFIX):
        raise refuse(f"must end with {TRAINING_SUFFIX} (only CSV files train)")
    if not FILE_NAME_RE.fullmatch(name):
        raise refuse("may hold only letters, digits, '.', '_' and '-' (first a letter or digit)")
    return name


def part_sizes(content_length: int, part_bytes: int = MULTIPART_PART_BYTES) -> list[int]:
    """Sizes of a multipart upload's parts: equal parts of at least ``part_bytes`` (a
    whole number of MiB), at most UPLOAD_PARTS_MAX of them, the last one the rest."""
    if part_bytes < S3_PART_MIN_BYTES:
        raise ValueError(f"S3 parts (but the last) are at least {S3_PART_MIN_BYTES} bytes")
    per_part = max(part_bytes, math.ceil(content_length / UPLOAD_PARTS_MAX))
    per_part = math.ceil(per_part / _MIB) * _MIB
    if per_part > S3_PART_MAX_BYTES:
        raise UploadTooLarge(f"{content_length} bytes need parts larger than S3's 5 GiB")
    count = math.ceil(content_length / per_part)
    sizes = [per_part] * (count - 1) + [content_length - per_part * (count - 1)]
    assert count <= min(UPLOAD_PARTS_MAX, S3_PARTS_MAX) and sum(sizes) == content_length
    return sizes


@dataclass(frozen=True)
class UploadGrant:
    """What the API answers: a presigned POST, or a multipart upload's parts."""

    target: UploadTarget
    post: PresignedPost | None = None
    multipart: MultipartStart | None = None


class TenantUploads:
    def __init__(
        self,
        settings: Settings,
        signer: UploadSigner,
        plans: UploadPlanStore,
        *,
        multipart_threshold: int = MULTIPART_THRESHOLD_BYTES,
        part_bytes: int = MULTIPART_PART_BYTES,
        clock: Clock | None = None,
    ) -> None:
        self.settings = settings
        self.signer = signer
        self.plans = plans
        self.clock = clock or SystemClock()
        self.multipart_threshold = min(multipart_threshold, S3_POST_MAX_BYTES)
        self.part_bytes = part_bytes

    # --- where
    @staticmethod
    def _accepting(tenant: Tenant) -> None:
        # Only ACTIVE: a MIGRATING tenant's location changes under a URL that lives
        # 15 minutes, and the others' storage is not there (yet, or any more).
        if tenant.status != TenantStatus.ACTIVE or not tenant.data_bucket:
            raise Conflict(
                f"tenant {tenant.tenant_id} is {tenant.status.value}; uploads are accepted "
                "only while it is ACTIVE",
                code="TenantNotAccepting",
            )

    def data_bytes(self, tenant: Tenant) -> int | None:
        """The bytes under the tenant's data prefix (a manual run's data volume);
        None without storage or past the quota check's listing bound."""
        if not tenant.data_bucket or tenant.data_prefix is None:
            return None
        prefix = tenant.data_prefix
        target = UploadTarget(
            tenant_id=tenant.tenant_id, bucket=tenant.data_bucket, data_prefix=prefix, key=prefix
        )
        return self.signer.data_bytes(target, max_pages=DATA_QUOTA_LIST_PAGES)

    def _target(self, tenant: Tenant, file_name: str) -> UploadTarget:
        prefix = tenant.data_prefix or ""
        return UploadTarget(
            tenant_id=tenant.tenant_id,
            bucket=str(tenant.data_bucket),
            data_prefix=prefix,
            key=prefix + validate_file_name(file_name),
        )

    def target_of_key(self, tenant: Tenant, key: str, *, accepting: bool = True) -> UploadTarget:
        """The target of a key the API handed out (for completing or aborting)."""
        if accepting:
            self._accepting(tenant)
        elif not tenant.data_bucket:
            raise Conflict(f"tenant {tenant.tenant_id} has no storage", code="TenantNotAccepting")
        prefix = tenant.data_prefix or ""
        if not key.startswith(prefix):
            raise InvalidRequest(
                f"key {key[:200]!r} is not under the tenant's data prefix {prefix!r}",
                code="InvalidUploadKey",
            )
        try:
            return self._target(tenant, key[len(prefix) :])
        except InvalidRequest as exc:
            raise InvalidRequest(exc.message, code="InvalidUploadKey") from None

    # --- commands
    def grant(self, tenant: Tenant, file_name: str, content_length: int | None) -> UploadGrant:
        self._accepting(tenant)
        target = self._target(tenant, file_name)
        plan = self.settings.plan(tenant.plan)
        if content_length is not None and content_length > plan.max_upload_bytes:
            raise UploadTooLarge(
                f"{content_length} bytes exceed the {plan.name} plan's maxUploadBytes "
                f"({plan.max_upload_bytes})"
            )
        used = self.signer.data_bytes(target, max_pages=DATA_QUOTA_LIST_PAGES)
        if used is None:
            raise Conflict(
                f"tenant {tenant.tenant_id} keeps more than {DATA_QUOTA_LIST_PAGES * 1000} "
                "object versions under its data prefix; delete or combine files to upload "
                "more (deleted and overwritten files' versions count until they expire)",
                code="TooManyDataObjects",
            )
        room = plan.data_quota_bytes - used
        wanted = content_length if content_length is not None else 1
        if wanted > room:
            raise DataQuotaExceeded(
                f"tenant {tenant.tenant_id} keeps {used} bytes of data (with the "
                "versions of overwritten and deleted files, kept "
                f"{self.settings.data_noncurrent_version_days} days); "
                f"{content_length or 'another'} more would exceed the {plan.name} plan's "
                f"dataQuotaBytes ({plan.data_quota_bytes}); delete files first"
            )
        if content_length is not None and content_length > self.multipart_threshold:
            sizes = part_sizes(content_length, self.part_bytes)
            start = self.signer.start_multipart(
                target,
                content_type=CONTENT_TYPE,
                part_sizes=sizes,
                expires_in=MULTIPART_URL_SECONDS,
            )
            now = self.clock.now()
            self.plans.put(
                UploadPlan(
                    tenant_id=tenant.tenant_id,
                    upload_id=start.upload_id,
                    key=target.key,
                    content_length=content_length,
                    part_size=sizes[0],
                    part_count=len(sizes),
                    created_at=now,
                    expires_at=now + timedelta(seconds=MULTIPART_UPLOAD_SECONDS),
                )
            )
            return UploadGrant(target, multipart=start)
        # S3 enforces the range: no file larger than the plan, the quota's room or
        # the POST limit is stored, whatever contentLength said.
        max_bytes = min(plan.max_upload_bytes, room, S3_POST_MAX_BYTES)
        if content_length is not None:
            max_bytes = min(max_bytes, max(content_length, 1))
        post = self.signer.presign_post(
            target, content_type=CONTENT_TYPE, max_bytes=max_bytes, expires_in=UPLOAD_URL_SECONDS
        )
        return UploadGrant(target, post=post)

    def _plan(
        self, tenant: Tenant, upload_id: str, key: str | None, *, expired: bool = False
    ) -> UploadPlan:
        """The stored plan of the tenant's upload in progress: 404 for an upload id
        this API did not start for this tenant (or one past its deadline), 400 when
        the client names another key than the one the upload was started for."""
        plan = self.plans.get(tenant.tenant_id, upload_id)
        if plan is None or (not expired and self.clock.now() >= plan.expires_at):
            raise NotFound(
                f"no multipart upload {upload_id[:120]!r} of tenant {tenant.tenant_id} is in "
                f"progress (an upload is completed or aborted within "
                f"{MULTIPART_UPLOAD_SECONDS // 3600} hours of its start)",
                code="UploadNotFound",
            )
        if key is not None and key != plan.key:
            raise InvalidRequest(
                f"key {key[:200]!r} is not the key upload {upload_id[:120]!r} was started for",
                code="InvalidUploadKey",
            )
        return plan

    def resign_parts(
        self, tenant: Tenant, upload_id: str, part_numbers: list[int]
    ) -> tuple[list[PresignedPart], datetime]:
        """Fresh URLs (an hour) for parts of an upload in progress, each signed with
        its planned size: a slow client re-signs the parts it has not sent yet."""
        self._accepting(tenant)
        plan = self._plan(tenant, upload_id, None)
        if not part_numbers or len(part_numbers) > UPLOAD_PARTS_MAX:
            raise InvalidRequest(
                f"partNumbers must list 1 to {UPLOAD_PARTS_MAX} parts", code="InvalidPartNumbers"
            )
        outside = [n for n in part_numbers if not 1 <= n <= plan.part_count]
        if outside or len(set(part_numbers)) != len(part_numbers):
            raise InvalidRequest(
                f"partNumbers must be unique and from 1 to {plan.part_count} (the upload's "
                f"parts); got {(outside or part_numbers)[:5]}",
                code="InvalidPartNumbers",
            )
        # Never past the plan's deadline (nor under STS's 15-minute minimum).
        left = int((plan.expires_at - self.clock.now()).total_seconds())
        seconds = max(min(MULTIPART_URL_SECONDS, left), UPLOAD_URL_SECONDS)
        target = self.target_of_key(tenant, plan.key)
        wanted = [(n, plan.part_size_of(n)) for n in sorted(part_numbers)]
        return self.signer.presign_parts(target, upload_id, wanted, seconds)

    def complete(
        self, tenant: Tenant, key: str | None, upload_id: str, parts: list[CompletedPart]
    ) -> tuple[UploadTarget, str]:
        self._accepting(tenant)
        plan = self._plan(tenant, upload_id, key)
        target = self.target_of_key(tenant, plan.key)
        _check_parts(parts)
        numbers = [p.part_number for p in parts]
        if numbers != list(range(1, plan.part_count + 1)):
            # Fewer parts would store a shorter file than was planned (and quota-checked).
            raise InvalidRequest(
                f"parts must be exactly parts 1 to {plan.part_count} of the upload",
                code="InvalidParts",
            )
        try:
            etag = self.signer.complete_multipart(target, upload_id, parts)
        except UploadRefused as refused:
            raise _refusal(refused, upload_id) from None
        self.plans.delete(tenant.tenant_id, upload_id)
        return target, etag

    def abort(self, tenant: Tenant, key: str | None, upload_id: str) -> UploadTarget:
        # Whatever the tenant's status: parts left behind are stored (and billed).
        if not tenant.data_bucket:
            raise Conflict(f"tenant {tenant.tenant_id} has no storage", code="TenantNotAccepting")
        # Past the deadline too, while the plan is kept: aborting is always welcome.
        plan = self._plan(tenant, upload_id, key, expired=True)
        target = self.target_of_key(tenant, plan.key, accepting=False)
        try:
            self.signer.abort_multipart(target, upload_id)
        except UploadRefused as refused:
            if refused.code != "NoSuchUpload":
                raise _refusal(refused, upload_id) from None
        self.plans.delete(tenant.tenant_id, upload_id)
        return target


def _check_parts(parts: list[CompletedPart]) -> None:
    def refuse(why: str) -> InvalidRequest:
        return InvalidRequest(why, code="InvalidParts")

    if not parts or len(parts) > UPLOAD_PARTS_MAX:
        raise refuse(f"parts must list 1 to {UPLOAD_PARTS_MAX} parts")
    numbers = [p.part_number for p in parts]
    if numbers != sorted(set(numbers)) or not 1 <= numbers[0] <= numbers[-1] <= S3_PARTS_MAX:
        raise refuse(f"partNumber must be unique, ascending, from 1 to {S3_PARTS_MAX}")
    if any(not p.etag or len(p.etag) > ETAG_MAX_CHARS for p in parts):
        raise refuse(f"every part needs its eTag (at most {ETAG_MAX_CHARS} characters)")


def _refusal(refused: UploadRefused, upload_id: str) -> DomainError:
    if refused.code == "NoSuchUpload":
        return NotFound(
            f"no multipart upload {upload_id[:120]!r} of that key is in progress",
            code="UploadNotFound",
        )
    return InvalidRequest(
        f"S3 refused the parts: {refused.code}: {refused.message}"[:1024], code="InvalidParts"
    )
