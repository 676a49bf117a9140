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

    def delete(self, stack_name: str) -> None:
        kwargs: dict[str, Any] = {"StackName": stack_name}
        if self._role_arn:
            kwargs["RoleARN"] = self._role_arn
        self._cfn.delete_stack(**kwargs)
