"""Data access for a tenant's model registry (its SageMaker model package group): its
versions, their approval (``SageMakerModelVersions``, ports/model_versions.py), and
what an offboarded tenant left behind.

The group is retained when the tenant stack is deleted (it holds the tenant's
models), so a purge removes it explicitly: its model packages first (SageMaker
refuses to delete a group that still holds any), then the group. Without that, the
retained group and bucket would collide with a new tenant of the same id.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
from botocore.exceptions import ClientError

from trainyard_core import limits
from trainyard_core.model_versions import (
    META_DECIDED_AT,
    META_DECIDED_BY,
    META_METRIC_PREFIX,
    META_PRIMARY_METRIC,
    META_PRIMARY_METRIC_VALUE,
    META_RUN,
    META_TENANT,
    ModelStatus,
    ModelVersion,
)
from trainyard_core.models import iso_ms
from trainyard_core.store.tokens import InvalidTokenError, decode_token, encode_token


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _missing(exc: ClientError) -> bool:
    message = str(exc.response.get("Error", {}).get("Message", "")).lower()
    return _code(exc) in ("ResourceNotFound", "404", "NoSuchBucket", "NotFound") or (
        _code(exc) == "ValidationException" and "does not exist" in message
    )


class SageMakerModelRegistry:
    def __init__(self, client: Any | None = None) -> None:
        self._sm = client or boto3.client("sagemaker")

    def exists(self, group: str) -> bool:
        try:
            self._sm.describe_model_package_group(ModelPackageGroupName=group)
        except ClientError as exc:
            if _missing(exc):
                return False
            raise
        return True

    def package_count(self, group: str) -> int:
        """Model packages in the group (0 also when it does not exist)."""
        try:
            page = self._sm.list_model_packages(ModelPackageGroupName=group, MaxResults=1)
        except ClientError as exc:
            if _missing(exc):
                return 0
            raise
        return len(page.get("ModelPackageSummaryList", []))

    def purge(self, group: str) -> int:
        """Delete every model package of the group, then the group; returns how many
        packages went. Idempotent: a group already gone is not an error."""
        deleted = 0
        paginator = self._sm.get_paginator("list_model_packages")
        try:
            for page in paginator.paginate(ModelPackageGroupName=group):
                for package in page.get("ModelPackageSummaryList", []):
                    self._sm.delete_model_package(ModelPackageName=package["ModelPackageArn"])
                    deleted += 1
            self._sm.delete_model_package_group(ModelPackageGroupName=group)
        except ClientError as exc:
            if not _missing(exc):
                raise
        return deleted


# Versions described side by side for one page (one DescribeModelPackage each: the
# listing's summaries carry no customer metadata, i.e. no run and no metrics).
_DESCRIBE_WORKERS = 8


def to_version(described: dict[str, Any]) -> ModelVersion:
    metadata = described.get("CustomerMetadataProperties") or {}
    metrics: dict[str, float] = {}
    for key, value in metadata.items():
        if key.startswith(META_METRIC_PREFIX):
            try:
                number = float(value)
            except ValueError:
                continue
            if math.isfinite(number) and len(metrics) < limits.METRICS_MAX:
                metrics[key[len(META_METRIC_PREFIX) :]] = number
    name = metadata.get(META_PRIMARY_METRIC)
    try:
        value = float(metadata.get(META_PRIMARY_METRIC_VALUE, "nan"))
    except ValueError:
        value = math.nan
    if name and math.isfinite(value) and (name in metrics or len(metrics) < limits.METRICS_MAX):
        metrics[name] = value
    return ModelVersion(
        version=int(described.get("ModelPackageVersion") or 0),
        model_package_arn=described["ModelPackageArn"],
        model_package_group_name=described.get("ModelPackageGroupName") or "",
        status=described.get("ModelApprovalStatus") or "PendingManualApproval",
        metrics=metrics,
        run_id=metadata.get(META_RUN),
        tenant_id=metadata.get(META_TENANT),
        created_at=iso_ms(described.get("CreationTime")) or "",
        decided_by=metadata.get(META_DECIDED_BY),
        decided_at=metadata.get(META_DECIDED_AT),
        reason=described.get("ApprovalDescription") or None,
        package_status=described.get("ModelPackageStatus") or "Completed",
    )


class SageMakerModelVersions:
    """A tenant group's versions: ListModelPackages (newest first), DescribeModelPackage,
    UpdateModelPackage. Page tokens wrap SageMaker's NextToken with the group, signed
    (store/tokens.py), so one listing's token never pages another group."""

    def __init__(self, client: Any | None = None) -> None:
        self._sm = client or boto3.client("sagemaker")

    def _describe(self, arn: str) -> ModelVersion | None:
        try:
            return to_version(self._sm.describe_model_package(ModelPackageName=arn))
        except ClientError as exc:
            if _missing(exc) or "not found" in str(exc).lower():
                return None
            raise

    def list_versions(
        self, group: str, limit: int, next_token: str | None
    ) -> tuple[list[ModelVersion], str | None]:
        request: dict[str, Any] = {
            "ModelPackageGroupName": group,
            "SortBy": "CreationTime",
            "SortOrder": "Descending",
            "MaxResults": limit,
        }
        if next_token:
            key = decode_token(next_token, keys=("group", "page"))
            if key["group"] != group:
                raise InvalidTokenError("nextToken belongs to another tenant's model listing")
            request["NextToken"] = key["page"]
        try:
            page = self._sm.list_model_packages(**request)
        except ClientError as exc:
            if _missing(exc):
                return [], None
            raise
        arns = [p["ModelPackageArn"] for p in page.get("ModelPackageSummaryList", [])]
        with ThreadPoolExecutor(max_workers=_DESCRIBE_WORKERS) as pool:
            described = list(pool.map(self._describe, arns))
        more = page.get("NextToken")
        token = encode_token({"group": group, "page": more}) if more else None
        return [v for v in described if v is not None], token

    def _package_arn(self, group: str, version: int) -> str | None:
        try:
            group_arn = self._sm.describe_model_package_group(ModelPackageGroupName=group)[
                "ModelPackageGroupArn"
            ]
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
        # arn:...:model-package-group/<group> -> arn:...:model-package/<group>/<version>
        prefix, _, name = group_arn.rpartition(":model-package-group/")
        return f"{prefix}:model-package/{name}/{version}"

    def get_version(self, group: str, version: int) -> ModelVersion | None:
        arn = self._package_arn(group, version)
        model = self._describe(arn) if arn else None
        if model is not None and model.model_package_group_name not in ("", group):
            return None
        return model

    def get_by_arn(self, model_package_arn: str) -> ModelVersion | None:
        return self._describe(model_package_arn)

    def latest_approved(self, group: str) -> ModelVersion | None:
        try:
            page = self._sm.list_model_packages(
                ModelPackageGroupName=group,
                ModelApprovalStatus="Approved",
                SortBy="CreationTime",
                SortOrder="Descending",
                MaxResults=1,
            )
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
        summaries = page.get("ModelPackageSummaryList", [])
        return self._describe(summaries[0]["ModelPackageArn"]) if summaries else None

    def add_metadata(self, model: ModelVersion, metadata: dict[str, str]) -> None:
        self._sm.update_model_package(
            ModelPackageArn=model.model_package_arn, CustomerMetadataProperties=metadata
        )

    def set_status(
        self,
        model: ModelVersion,
        status: ModelStatus,
        description: str,
        metadata: dict[str, str],
    ) -> ModelVersion:
        self._sm.update_model_package(
            ModelPackageArn=model.model_package_arn,
            ModelApprovalStatus=status,
            ApprovalDescription=description[: limits.MODEL_REASON_MAX_CHARS],
            CustomerMetadataProperties=metadata,
        )
        return self._describe(model.model_package_arn) or model


class RetainedResources:
    """What a tenant id still owns after offboarding without purge: a model package
    group with models, a silo bucket with objects (any version), objects under its
    pool prefix. Empty leftovers hold nothing of the old tenant: ``of`` removes them
    (they would only collide with the new tenant's stack) and reports the rest."""

    def __init__(
        self, registry: SageMakerModelRegistry | None = None, s3: Any | None = None
    ) -> None:
        self._registry = registry or SageMakerModelRegistry()
        self._s3 = s3 or boto3.client("s3")

    def _bucket_exists(self, bucket: str) -> bool | None:
        """True: ours; False: no such bucket; None: the name is taken by a bucket this
        account cannot read (bucket names are global: another account owns it)."""
        try:
            self._s3.head_bucket(Bucket=bucket)
        except ClientError as exc:
            if _missing(exc):
                return False
            if _code(exc) in ("403", "AccessDenied", "Forbidden"):
                return None
            raise
        return True

    def _has_versions(self, bucket: str, prefix: str) -> bool:
        try:
            page = self._s3.list_object_versions(Bucket=bucket, Prefix=prefix, MaxKeys=1)
        except ClientError as exc:
            if _missing(exc):
                return False
            raise
        return bool(page.get("Versions") or page.get("DeleteMarkers"))

    def of(self, *, group: str, silo_bucket: str, pool_bucket: str, pool_prefix: str) -> list[str]:
        found = []
        if self._registry.package_count(group):
            found.append(f"model package group {group} (with models)")
        elif self._registry.exists(group):
            self._registry.purge(group)  # empty: nothing of the old tenant is lost
        exists = self._bucket_exists(silo_bucket)
        if exists is None:
            # CreateStack would fail (BucketAlreadyExists) on every attempt: refuse now.
            found.append(f"bucket name {silo_bucket} (taken by another AWS account)")
        elif exists:
            if self._has_versions(silo_bucket, ""):
                found.append(f"bucket {silo_bucket} (with data)")
            else:
                self._s3.delete_bucket(Bucket=silo_bucket)
        if self._has_versions(pool_bucket, pool_prefix):
            found.append(f"s3://{pool_bucket}/{pool_prefix}")
        return found
