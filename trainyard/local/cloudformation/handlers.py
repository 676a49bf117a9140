"""Resource handlers of the embedded CloudFormation: the five types the tenant
templates declare, made with plain boto3 calls against the embedded AWS (moto).

Each handler does what CloudFormation's registry handler does that matters here: it
refuses a name that is taken (AlreadyExists) instead of adopting it, applies every
property it supports, and treats "already gone" as a successful delete. A property
or nested setting it does not implement fails the resource with a clear message.
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from infra import cfn_permissions as perms

from .base import (
    Context,
    Handler,
    HandlerError,
    Live,
    Properties,
    error_code,
    tag_list,
    tags_of,
    unsupported,
)
from .s3 import BucketHandler, BucketPolicyHandler

__all__ = ["HANDLERS", "Context", "Handler", "HandlerError", "Live", "Properties"]

# ----------------------------------------------------------------------- IAM


class RoleHandler(Handler):
    type_name = perms.ROLE
    attributes = frozenset({"Arn", "RoleId"})
    name_property = "RoleName"

    def arn(self, ctx: Context, name: str, props: Properties) -> str:
        return f"arn:{ctx.partition}:iam::{ctx.account}:role{props.get('Path', '/')}{name}"

    def create(self, ctx: Context, live: Live) -> None:
        iam = ctx.clients("iam")
        props = live.properties
        kwargs: dict[str, Any] = {
            "RoleName": live.name,
            "Path": props.get("Path", "/"),
            "AssumeRolePolicyDocument": json.dumps(props["AssumeRolePolicyDocument"]),
        }
        if "Description" in props:
            kwargs["Description"] = props["Description"]
        if props.get("Tags"):
            kwargs["Tags"] = list(props["Tags"])
        try:
            role = iam.create_role(**kwargs)["Role"]
        except ClientError as exc:
            if error_code(exc) == "EntityAlreadyExists":
                message = f"Role with name {live.name} already exists."
                raise HandlerError("AlreadyExists", message) from None
            raise
        live.physical_id = live.name
        live.attributes = {"Arn": role["Arn"], "RoleId": role["RoleId"]}
        for policy in props.get("Policies", []):
            iam.put_role_policy(
                RoleName=live.name,
                PolicyName=policy["PolicyName"],
                PolicyDocument=json.dumps(policy["PolicyDocument"]),
            )

    def update(self, ctx: Context, live: Live, old: Properties, new: Properties) -> None:
        iam = ctx.clients("iam")
        name = str(live.physical_id)
        if new.get("Description") != old.get("Description"):
            iam.update_role(RoleName=name, Description=new.get("Description", ""))
        if new["AssumeRolePolicyDocument"] != old.get("AssumeRolePolicyDocument"):
            iam.update_assume_role_policy(
                RoleName=name, PolicyDocument=json.dumps(new["AssumeRolePolicyDocument"])
            )
        before = {p["PolicyName"]: p["PolicyDocument"] for p in old.get("Policies", [])}
        after = {p["PolicyName"]: p["PolicyDocument"] for p in new.get("Policies", [])}
        for policy_name, document in after.items():
            if before.get(policy_name) != document:
                iam.put_role_policy(
                    RoleName=name, PolicyName=policy_name, PolicyDocument=json.dumps(document)
                )
        for policy_name in set(before) - set(after):
            iam.delete_role_policy(RoleName=name, PolicyName=policy_name)
        old_tags, new_tags = tags_of(old), tags_of(new)
        gone = sorted(set(old_tags) - set(new_tags))
        if gone:
            iam.untag_role(RoleName=name, TagKeys=gone)
        changed = {k: v for k, v in new_tags.items() if old_tags.get(k) != v}
        if changed:
            iam.tag_role(RoleName=name, Tags=tag_list(changed))

    def delete(self, ctx: Context, live: Live) -> None:
        iam = ctx.clients("iam")
        name = live.physical_id
        try:
            for policy_name in iam.list_role_policies(RoleName=name)["PolicyNames"]:
                iam.delete_role_policy(RoleName=name, PolicyName=policy_name)
            attached = iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]
            for policy in attached:
                iam.detach_role_policy(RoleName=name, PolicyArn=policy["PolicyArn"])
            iam.delete_role(RoleName=name)
        except ClientError as exc:
            if error_code(exc) != "NoSuchEntity":
                raise


# -------------------------------------------------------------- EventBridge

_TARGET_KEYS = {
    "Arn",
    "Id",
    "Input",
    "InputPath",
    "DeadLetterConfig",
    "RetryPolicy",
    "SqsParameters",
}


class RuleHandler(Handler):
    type_name = perms.RULE
    attributes = frozenset({"Arn"})
    name_property = "Name"

    def arn(self, ctx: Context, name: str, props: Properties) -> str:
        return f"arn:{ctx.partition}:events:{ctx.region}:{ctx.account}:rule/{name}"

    def _put_rule(self, events: Any, name: str, props: Properties, *, tags: bool) -> str:
        kwargs: dict[str, Any] = {"Name": name, "State": props.get("State", "ENABLED")}
        pattern = props.get("EventPattern")
        if pattern is not None:
            kwargs["EventPattern"] = pattern if isinstance(pattern, str) else json.dumps(pattern)
        if "Description" in props:
            kwargs["Description"] = props["Description"]
        if tags and props.get("Tags"):
            kwargs["Tags"] = list(props["Tags"])
        return str(events.put_rule(**kwargs)["RuleArn"])

    @staticmethod
    def _targets(props: Properties) -> dict[str, dict[str, Any]]:
        out = {}
        for target in props.get("Targets", []):
            extra = set(target) - _TARGET_KEYS
            if extra:
                raise unsupported(perms.RULE, f"target settings {sorted(extra)}")
            out[str(target["Id"])] = dict(target)
        return out

    def _put_targets(self, events: Any, name: str, targets: list[dict[str, Any]]) -> None:
        if not targets:
            return
        result = events.put_targets(Rule=name, Targets=targets)
        if result.get("FailedEntryCount"):
            failed = result["FailedEntries"][0]
            raise HandlerError(
                "InvalidRequest", f"{failed.get('ErrorCode')}: {failed.get('ErrorMessage')}"
            )

    def create(self, ctx: Context, live: Live) -> None:
        events = ctx.clients("events")
        targets = self._targets(live.properties)
        try:
            events.describe_rule(Name=live.name)
            raise HandlerError("AlreadyExists", f"{live.name} already exists on EventBus default.")
        except ClientError as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise
        arn = self._put_rule(events, live.name, live.properties, tags=True)
        live.physical_id = live.name
        live.attributes = {"Arn": arn}
        self._put_targets(events, live.name, list(targets.values()))

    def update(self, ctx: Context, live: Live, old: Properties, new: Properties) -> None:
        events = ctx.clients("events")
        name = str(live.physical_id)
        before, after = self._targets(old), self._targets(new)
        self._put_rule(events, name, new, tags=False)
        gone = sorted(set(before) - set(after))
        if gone:
            events.remove_targets(Rule=name, Ids=gone)
        self._put_targets(events, name, [t for i, t in after.items() if before.get(i) != t])
        old_tags, new_tags = tags_of(old), tags_of(new)
        arn = live.attributes["Arn"]
        removed = sorted(set(old_tags) - set(new_tags))
        if removed:
            events.untag_resource(ResourceARN=arn, TagKeys=removed)
        changed = {k: v for k, v in new_tags.items() if old_tags.get(k) != v}
        if changed:
            events.tag_resource(ResourceARN=arn, Tags=tag_list(changed))

    def delete(self, ctx: Context, live: Live) -> None:
        events = ctx.clients("events")
        try:
            ids = [t["Id"] for t in events.list_targets_by_rule(Rule=live.physical_id)["Targets"]]
            if ids:
                events.remove_targets(Rule=live.physical_id, Ids=ids)
            events.delete_rule(Name=live.physical_id)
        except ClientError as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise


# ------------------------------------------------------------------ SageMaker


class ModelPackageGroupHandler(Handler):
    type_name = perms.MODEL_PACKAGE_GROUP
    attributes = frozenset({"ModelPackageGroupArn", "CreationTime", "ModelPackageGroupStatus"})
    name_property = "ModelPackageGroupName"
    name_limit = 63

    def arn(self, ctx: Context, name: str, props: Properties) -> str:
        group = f"model-package-group/{name.lower()}"
        return f"arn:{ctx.partition}:sagemaker:{ctx.region}:{ctx.account}:{group}"

    def ref(self, live: Live) -> str:
        return str(live.attributes["ModelPackageGroupArn"])

    @staticmethod
    def _missing(exc: ClientError) -> bool:
        return error_code(exc) == "ValidationException" and "does not exist" in str(exc)

    def create(self, ctx: Context, live: Live) -> None:
        sm = ctx.clients("sagemaker")
        try:
            found = sm.describe_model_package_group(ModelPackageGroupName=live.name)
            raise HandlerError("AlreadyExists", f"{found['ModelPackageGroupArn']} already exists")
        except ClientError as exc:
            if not self._missing(exc):
                raise
        kwargs: dict[str, Any] = {"ModelPackageGroupName": live.name}
        if "ModelPackageGroupDescription" in live.properties:
            kwargs["ModelPackageGroupDescription"] = live.properties["ModelPackageGroupDescription"]
        if live.properties.get("Tags"):
            kwargs["Tags"] = list(live.properties["Tags"])
        arn = sm.create_model_package_group(**kwargs)["ModelPackageGroupArn"]
        live.physical_id = arn
        described = sm.describe_model_package_group(ModelPackageGroupName=live.name)
        live.attributes = {
            "ModelPackageGroupArn": arn,
            "CreationTime": str(described.get("CreationTime", "")),
            "ModelPackageGroupStatus": described.get("ModelPackageGroupStatus", "Completed"),
        }

    def update(self, ctx: Context, live: Live, old: Properties, new: Properties) -> None:
        sm = ctx.clients("sagemaker")
        arn = live.attributes["ModelPackageGroupArn"]
        old_tags, new_tags = tags_of(old), tags_of(new)
        removed = sorted(set(old_tags) - set(new_tags))
        if removed:
            sm.delete_tags(ResourceArn=arn, TagKeys=removed)
        changed = {k: v for k, v in new_tags.items() if old_tags.get(k) != v}
        if changed:
            sm.add_tags(ResourceArn=arn, Tags=tag_list(changed))

    def delete(self, ctx: Context, live: Live) -> None:
        sm = ctx.clients("sagemaker")
        try:
            try:
                sm.get_model_package_group_policy(ModelPackageGroupName=live.name)
                sm.delete_model_package_group_policy(ModelPackageGroupName=live.name)
            except ClientError as exc:
                if "does not have a resource policy" not in str(exc):
                    raise
            sm.delete_model_package_group(ModelPackageGroupName=live.name)
        except ClientError as exc:
            if not self._missing(exc):
                raise


HANDLERS: dict[str, Handler] = {
    h.type_name: h
    for h in (
        BucketHandler(),
        BucketPolicyHandler(),
        RoleHandler(),
        RuleHandler(),
        ModelPackageGroupHandler(),
    )
}
assert set(HANDLERS) == set(perms.RESOURCE_TYPES)
