"""What a tenant's data prefix holds now, from S3 (scheduled retraining's and
run lineage's ports)."""

from __future__ import annotations

from typing import Any

import boto3

from trainyard_core.lineage import InputListing, LineageInput
from trainyard_core.tenants.retraining import DataObject, DataSnapshot
from trainyard_core.uploads import is_training_file

# ListObjectsV2 returns at most 1,000 keys a call.
_PAGE = 1000


class S3DataListing:
    def __init__(self, client: Any | None = None) -> None:
        self._s3 = client or boto3.client("s3")

    def training_files(self, bucket: str, prefix: str, max_objects: int) -> DataSnapshot:
        objects: list[DataObject] = []
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": _PAGE}
        listed = 0
        while True:
            page = self._s3.list_objects_v2(**kwargs)
            for item in page.get("Contents", []):
                listed += 1
                if is_training_file(item["Key"]):
                    objects.append(
                        DataObject(
                            key=item["Key"][len(prefix) :],
                            etag=str(item.get("ETag", "")),
                            size=int(item.get("Size", 0)),
                            last_modified=item["LastModified"],
                        )
                    )
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return DataSnapshot(objects)
            # Bounded in requests (1,000 keys each), whatever the keys are.
            if listed >= max_objects:
                return DataSnapshot(objects, truncated=True)
            kwargs["ContinuationToken"] = token


class S3InputListing:
    """A run's input objects at its start (trainyard_core/lineage.py): one
    ListObjectVersions page, the current version of each training file."""

    def __init__(self, client: Any | None = None) -> None:
        # Made at the first start, not at cold start: the API Lambda builds the same
        # scheduler service and never starts a run.
        self._client = client

    def current_inputs(self, bucket: str, prefix: str, max_keys: int) -> InputListing:
        if self._client is None:
            self._client = boto3.client("s3")
        page = self._client.list_object_versions(Bucket=bucket, Prefix=prefix, MaxKeys=max_keys)
        objects = [
            LineageInput(
                key=item["Key"][len(prefix) :],
                etag=str(item.get("ETag", "")),
                size=int(item.get("Size", 0)),
                # "null": written before versioning was enabled.
                version_id=None if item.get("VersionId") in (None, "null") else item["VersionId"],
            )
            for item in page.get("Versions", [])
            if item.get("IsLatest") and is_training_file(item["Key"])
        ]
        return InputListing(objects, truncated=bool(page.get("IsTruncated")))
