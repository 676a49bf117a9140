"""Data access for a tenant's model registry (its SageMaker model package group) and
for what an offboarded tenant left behind.

The group is retained when the tenant stack is deleted (it holds the tenant's
models), so a purge removes it explicitly: its model packages first (SageMaker
refuses to delete a group that still holds any), then the group. Without that, the
retained group and bucket would collide with a new tenant of the same id.
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.exceptions import ClientError


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
