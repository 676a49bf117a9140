"""CloudFormation data access: deploys, describes and deletes tenant stacks."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.exceptions import ClientError

from trainyard_core.tenants import StackState


class CloudFormationProvisioner:
    def __init__(
        self, *, template_url: str, role_arn: str | None = None, client: Any | None = None
    ) -> None:
        self._cfn = client or boto3.client("cloudformation")
        self._template_url = template_url
        self._role_arn = role_arn

    def create(self, stack_name: str, parameters: dict[str, str], tags: dict[str, str]) -> None:
        kwargs: dict[str, Any] = {
            "StackName": stack_name,
            "TemplateURL": self._template_url,
            "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
            "Capabilities": ["CAPABILITY_NAMED_IAM"],
            "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
            # Keep partial resources out of the way on failure; we delete and retry.
            "OnFailure": "DELETE",
        }
        if self._role_arn:
            kwargs["RoleARN"] = self._role_arn
        self._cfn.create_stack(**kwargs)

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
        return StackState(
            status=stack["StackStatus"], outputs=outputs, reason=stack.get("StackStatusReason")
        )

    def update(self, stack_name: str, parameters: dict[str, str]) -> None:
        kwargs: dict[str, Any] = {
            "StackName": stack_name,
            "UsePreviousTemplate": True,
            "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
            "Capabilities": ["CAPABILITY_NAMED_IAM"],
        }
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

    def purge(self, bucket: str, prefix: str) -> int:
        deleted = 0
        paginator = self._s3.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            doomed = [
                {"Key": v["Key"], "VersionId": v["VersionId"]}
                for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
            ]
            for i in range(0, len(doomed), 1000):
                self._s3.delete_objects(Bucket=bucket, Delete={"Objects": doomed[i : i + 1000]})
            deleted += len(doomed)
        if prefix == "":
            self._s3.delete_bucket(Bucket=bucket)
        return deleted
