"""Data access for tenant lifecycle: CloudFormation (tenant stacks) and S3
(purging and moving a tenant's objects)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.exceptions import ClientError

from trainyard_core.config import Isolation
from trainyard_core.ports.provisioning import PurgePaused, StackState, StoredObject
from trainyard_core.wiring import Names

# CopyObject takes objects up to 5 GiB; larger ones need a multipart copy.
MAX_SINGLE_COPY_BYTES = 5 * 1024**3


def parse_template_urls(raw: str) -> dict[str, str]:
    """The onboarding Lambda's TENANT_TEMPLATE_URLS: JSON {"silo": url, "pool": url}."""
    urls = json.loads(raw)
    if not isinstance(urls, dict) or not all(isinstance(v, str) for v in urls.values()):
        raise ValueError("tenant template URLs must be a JSON object of strings")
    return urls


def template_version(urls: Mapping[str, str], names: Names) -> str | None:
    """The version (content hash) the template URLs were shipped under, the
    ``<version>`` of ``Names.tenant_template_key``; None unless every URL names the
    same one (the template rollout then stays off)."""
    found: set[str] = set()
    for isolation, url in urls.items():
        path = urlsplit(url).path
        parts = path.split("/")
        version = parts[-2] if len(parts) >= 2 else ""
        if not version or not path.endswith("/" + names.tenant_template_key(isolation, version)):
            return None
        found.add(version)
    return found.pop() if len(found) == 1 else None


class CloudFormationProvisioner:
    def __init__(
        self,
        *,
        template_urls: Mapping[str, str],
        role_arn: str | None = None,
        client: Any | None = None,
    ) -> None:
        self._cfn = client or boto3.client("cloudformation")
        self._template_urls = dict(template_urls)
        self._role_arn = role_arn

    def _template_url(self, isolation: str) -> str:
        try:
            return self._template_urls[isolation]
        except KeyError:
            raise ValueError(f"no tenant template for {isolation!r} isolation") from None

    def create(
        self,
        stack_name: str,
        parameters: dict[str, str],
        tags: dict[str, str],
        *,
        isolation: Isolation = "silo",
    ) -> None:
        kwargs: dict[str, Any] = {
            "StackName": stack_name,
            "TemplateURL": self._template_url(isolation),
            "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
            "Capabilities": ["CAPABILITY_NAMED_IAM"],
            "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
            # Roll back, but keep the failed stack and its events: the lifecycle reads
            # the failing resource's reason, then deletes the stack and retries.
            "OnFailure": "ROLLBACK",
        }
        if self._role_arn:
            kwargs["RoleARN"] = self._role_arn
        try:
            self._cfn.create_stack(**kwargs)
        except ClientError as exc:
            # The API call and the lifecycle schedule may both create it: one
            # stack either way, and its status tells the rest.
            if exc.response.get("Error", {}).get("Code") != "AlreadyExistsException":
                raise

    def describe(self, stack_name: str) -> StackState | None:
        try:
            stacks = self._cfn.describe_stacks(StackName=stack_name)["Stacks"]
        except ClientError as exc:
            if "does not exist" in str(exc):
                return None
            raise
        if not stacks:
            return None
        stack = stacks[0]
        if stack["StackStatus"] == "DELETE_COMPLETE":
            return None
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        state = StackState(
            status=stack["StackStatus"], outputs=outputs, reason=stack.get("StackStatusReason")
        )
        if state.failed:
            # The stack's own reason only names the resource ("The following resource(s)
            # failed to create: [X]"); the resource's event says why.
            reason = self.first_failure(stack["StackId"])
            if reason:
                state = StackState(status=state.status, outputs=outputs, reason=reason)
        return state

    def first_failure(self, stack_id: str) -> str | None:
        """The first resource failure of the stack's latest operation, from its events."""
        first: str | None = None
        paginator = self._cfn.get_paginator("describe_stack_events")
        for page in paginator.paginate(StackName=stack_id):
            for event in page["StackEvents"]:  # newest first
                if event.get("ResourceType") == "AWS::CloudFormation::Stack":
                    if event.get("ResourceStatusReason") == "User Initiated":
                        return first  # the start of the latest operation
                    continue
                reason = event.get("ResourceStatusReason") or ""
                if event["ResourceStatus"].endswith("_FAILED") and not reason.startswith(
                    "Resource creation cancelled"
                ):
                    first = f"{event['LogicalResourceId']} {event['ResourceStatus']}: {reason}"
        return first

    def update(
        self, stack_name: str, parameters: dict[str, str], *, isolation: Isolation | None = None
    ) -> None:
        kwargs: dict[str, Any] = {
            "StackName": stack_name,
            "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
            "Capabilities": ["CAPABILITY_NAMED_IAM"],
        }
        if isolation is None:
            kwargs["UsePreviousTemplate"] = True
        else:
            kwargs["TemplateURL"] = self._template_url(isolation)
        if self._role_arn:
            kwargs["RoleARN"] = self._role_arn
        try:
            self._cfn.update_stack(**kwargs)
        except ClientError as exc:
            if "No updates are to be performed" not in str(exc):
                raise

    def delete(self, stack_name: str) -> None:
        kwargs: dict[str, Any] = {"StackName": stack_name}
        if self._role_arn:
            kwargs["RoleARN"] = self._role_arn
        self._cfn.delete_stack(**kwargs)


class S3DataPurger:
    """Deletes a retained tenant bucket's objects and versions, then the bucket."""

    def __init__(self, client: Any | None = None) -> None:
        self._s3 = client or boto3.client("s3")

    def purge(self, bucket: str, prefix: str, stop: Callable[[], bool] | None = None) -> int:
        deleted = 0
        paginator = self._s3.get_paginator("list_object_versions")
        try:
            pages = paginator.paginate(Bucket=bucket, Prefix=prefix)
            for page in pages:
                if deleted and stop is not None and stop():
                    raise PurgePaused(f"{deleted} versions deleted from s3://{bucket}/{prefix}")
                self._delete_page(bucket, page)
                deleted += len(page.get("Versions", [])) + len(page.get("DeleteMarkers", []))
        except ClientError as exc:
            if _missing_bucket(exc):
                return deleted  # a resumed purge whose bucket is already gone
            raise
        if prefix == "":
            self._s3.delete_bucket(Bucket=bucket)
        return deleted

    def _delete_page(self, bucket: str, page: dict[str, Any]) -> None:
        doomed = [
            {"Key": v["Key"], "VersionId": v["VersionId"]}
            for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
        ]
        for i in range(0, len(doomed), 1000):
            self._s3.delete_objects(Bucket=bucket, Delete={"Objects": doomed[i : i + 1000]})


def _missing_bucket(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in ("NoSuchBucket", "404")


class S3DataMover:
    """Moves a tenant's current objects between buckets/prefixes (same relative keys).

    Idempotent: objects already at the destination with the same ETag are not
    copied again, and only source objects still as copied are deleted.
    """

    def __init__(self, client: Any | None = None) -> None:
        self._s3 = client or boto3.client("s3")

    def _current(self, bucket: str, root: str) -> dict[str, StoredObject]:
        found: dict[str, StoredObject] = {}
        paginator = self._s3.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=bucket, Prefix=root):
                for obj in page.get("Contents", []):
                    rel = obj["Key"][len(root) :]
                    modified = obj.get("LastModified")
                    found[rel] = StoredObject(
                        key=rel,
                        etag=obj["ETag"],
                        size=obj["Size"],
                        modified=modified.isoformat() if modified is not None else None,
                    )
        except ClientError as exc:
            if _missing_bucket(exc):
                return {}  # a resumed move whose source bucket is already gone
            raise
        return found

    def copy(
        self,
        src_bucket: str,
        src_root: str,
        dst_bucket: str,
        dst_root: str,
        stop: Callable[[], bool] | None = None,
    ) -> list[StoredObject]:
        source = self._current(src_bucket, src_root)
        present = self._current(dst_bucket, dst_root) if source else {}
        handled: list[StoredObject] = []
        for rel, obj in sorted(source.items()):
            if handled and stop is not None and stop():
                break  # out of time: at least one object always makes progress
            there = present.get(rel)
            if there is None or there.etag != obj.etag:
                src = {"Bucket": src_bucket, "Key": src_root + rel}
                if obj.size <= MAX_SINGLE_COPY_BYTES:
                    self._s3.copy_object(CopySource=src, Bucket=dst_bucket, Key=dst_root + rel)
                else:
                    self._s3.copy(src, dst_bucket, dst_root + rel)
            handled.append(obj)
        return handled

    def verify(self, objects: list[StoredObject], dst_bucket: str, dst_root: str) -> list[str]:
        present = self._current(dst_bucket, dst_root)
        bad = []
        for obj in objects:
            there = present.get(obj.key)
            # A multipart copy gets a new ETag ("...-N"); then size is what compares.
            etag_differs = there is not None and there.etag != obj.etag
            multipart = "-" in obj.etag or (there is not None and "-" in there.etag)
            if there is None or there.size != obj.size or (etag_differs and not multipart):
                bad.append(obj.key)
        return bad

    def delete(self, objects: list[StoredObject], src_bucket: str, src_root: str) -> int:
        wanted = {o.key: o.etag for o in objects}
        doomed: list[dict[str, str]] = []
        paginator = self._s3.get_paginator("list_object_versions")
        try:
            pages = list(paginator.paginate(Bucket=src_bucket, Prefix=src_root))
        except ClientError as exc:
            if _missing_bucket(exc):
                return 0
            raise
        versions = [v for page in pages for v in page.get("Versions", [])]
        markers = [m for page in pages for m in page.get("DeleteMarkers", [])]
        # A key whose latest version changed since the copy was re-uploaded: keep it
        # for the next round (it will be copied then).
        changed = {
            v["Key"]
            for v in versions
            if v.get("IsLatest") and wanted.get(v["Key"][len(src_root) :]) not in (None, v["ETag"])
        }
        for item in versions + markers:
            rel = item["Key"][len(src_root) :]
            if rel in wanted and item["Key"] not in changed:
                entry = {"Key": item["Key"]}
                if item.get("VersionId") and item["VersionId"] != "null":
                    entry["VersionId"] = item["VersionId"]
                doomed.append(entry)
        for i in range(0, len(doomed), 1000):
            self._s3.delete_objects(Bucket=src_bucket, Delete={"Objects": doomed[i : i + 1000]})
        return len(doomed)

    def delete_bucket(self, bucket: str) -> None:
        if self._current(bucket, ""):
            raise RuntimeError(f"bucket {bucket} still holds objects; not deleting it")
        try:
            # Noncurrent versions and delete markers of data deleted before the move.
            S3DataPurger(self._s3).purge(bucket, "")
        except ClientError as exc:
            if not _missing_bucket(exc):
                raise
