"""Which IAM actions CloudFormation's resource handlers need for the tenant stacks.

CloudFormation runs a resource type's handlers (create, the read after a create or
update, update, delete) as the stack's service role, and each handler's permissions
are published in the type's registry schema (``handlers.<name>.permissions``). cfn-lint
ships those schemas; they are read here through its package data, so the service role
follows AWS's lists instead of a hand-picked guess.

- ``read`` and ``delete``: the handler's whole list (minus the explicit exclusions).
- ``create`` and ``update``: what the resource's *used properties* need
  (``PROPERTY_ACTIONS``, each action checked against that handler's list), the base
  call, and the read-back calls (Get/List/Describe) the handler lists.

A resource type or property not mapped here raises: a template change must say which
handler permissions it needs before it can deploy. The embedded stack's CloudFormation
(``trainyard/local/cloudformation``) checks the same lists, so a missing permission
fails locally as it would in AWS.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aws_cdk import aws_iam as iam
    from trainyard_core.wiring import Names

HANDLERS = ("create", "read", "update", "delete")
# The schemas are the same in every commercial region for these types.
SCHEMA_REGION = "us-east-1"
# IAM's quota for a role's inline policies (aggregate, whitespace not counted).
ROLE_INLINE_POLICY_LIMIT = 10_240

BUCKET = "AWS::S3::Bucket"
BUCKET_POLICY = "AWS::S3::BucketPolicy"
ROLE = "AWS::IAM::Role"
RULE = "AWS::Events::Rule"
MODEL_PACKAGE_GROUP = "AWS::SageMaker::ModelPackageGroup"
RESOURCE_TYPES = (BUCKET, BUCKET_POLICY, ROLE, RULE, MODEL_PACKAGE_GROUP)

_READ_BACK = re.compile(r"^[a-z0-9-]+:(Get|List|Describe|Head)")


class PermissionMapError(ValueError):
    """The map below disagrees with AWS's schemas, or a template uses something unmapped."""


# The call that makes (or changes) the resource itself.
BASE_ACTIONS: dict[str, dict[str, tuple[str, ...]]] = {
    BUCKET: {"create": ("s3:CreateBucket",), "update": ()},
    BUCKET_POLICY: {"create": ("s3:PutBucketPolicy",), "update": ("s3:PutBucketPolicy",)},
    ROLE: {"create": ("iam:CreateRole",), "update": ()},
    RULE: {"create": ("events:PutRule",), "update": ("events:PutRule",)},
    MODEL_PACKAGE_GROUP: {"create": ("sagemaker:CreateModelPackageGroup",), "update": ()},
}

# property -> the calls its value needs beyond the base call (() = part of the base
# call). Only properties the tenant templates use; anything else raises.
PROPERTY_ACTIONS: dict[str, dict[str, dict[str, tuple[str, ...]]]] = {
    BUCKET: {
        "create": {
            "BucketName": (),
            "BucketEncryption": ("s3:PutEncryptionConfiguration",),
            "VersioningConfiguration": ("s3:PutBucketVersioning",),
            "PublicAccessBlockConfiguration": ("s3:PutBucketPublicAccessBlock",),
            "OwnershipControls": ("s3:PutBucketOwnershipControls",),
            "LoggingConfiguration": ("s3:PutBucketLogging",),
            "NotificationConfiguration": ("s3:PutBucketNotification",),
            "LifecycleConfiguration": ("s3:PutLifecycleConfiguration",),
            "Tags": ("s3:PutBucketTagging", "s3:TagResource"),
        },
        "update": {
            "BucketName": (),  # create-only: a change is a replacement (create permissions)
            "BucketEncryption": ("s3:PutEncryptionConfiguration",),
            "VersioningConfiguration": ("s3:PutBucketVersioning",),
            "PublicAccessBlockConfiguration": ("s3:PutBucketPublicAccessBlock",),
            "OwnershipControls": ("s3:PutBucketOwnershipControls",),
            "LoggingConfiguration": ("s3:PutBucketLogging",),
            "NotificationConfiguration": ("s3:PutBucketNotification",),
            # Removing the property deletes the configuration (DeleteBucketLifecycle).
            "LifecycleConfiguration": (
                "s3:PutLifecycleConfiguration",
                "s3:DeleteBucketLifecycle",
            ),
            "Tags": ("s3:PutBucketTagging", "s3:TagResource", "s3:UntagResource"),
        },
    },
    BUCKET_POLICY: {
        "create": {"Bucket": (), "PolicyDocument": ()},
        "update": {"Bucket": (), "PolicyDocument": ()},
    },
    ROLE: {
        "create": {
            "RoleName": (),
            "Path": (),
            "Description": (),
            "AssumeRolePolicyDocument": (),
            "Policies": ("iam:PutRolePolicy",),
            "Tags": ("iam:TagRole",),
        },
        "update": {
            "RoleName": (),
            "Path": (),
            "Description": ("iam:UpdateRole", "iam:UpdateRoleDescription"),
            "AssumeRolePolicyDocument": ("iam:UpdateAssumeRolePolicy",),
            "Policies": ("iam:PutRolePolicy", "iam:DeleteRolePolicy"),
            "Tags": ("iam:TagRole", "iam:UntagRole"),
        },
    },
    RULE: {
        "create": {
            "Name": (),
            "Description": (),
            "EventPattern": (),
            "State": (),
            "Targets": ("events:PutTargets",),
            "Tags": ("events:TagResource",),
        },
        "update": {
            "Name": (),
            "Description": (),
            "EventPattern": (),
            "State": (),
            "Targets": ("events:PutTargets", "events:RemoveTargets"),
            "Tags": ("events:TagResource", "events:UntagResource"),
        },
    },
    MODEL_PACKAGE_GROUP: {
        "create": {
            "ModelPackageGroupName": (),
            "ModelPackageGroupDescription": (),
            "Tags": ("sagemaker:AddTags",),
        },
        "update": {
            "ModelPackageGroupName": (),
            "ModelPackageGroupDescription": (),
            "Tags": ("sagemaker:AddTags", "sagemaker:DeleteTags"),
        },
    },
}


def _passes_a_role(properties: Mapping[str, Any]) -> bool:
    targets = properties.get("Targets") or []
    return "RoleArn" in properties or any(
        isinstance(t, Mapping) and "RoleArn" in t for t in targets
    )


@dataclass(frozen=True)
class Exclusion:
    """Actions a handler's schema lists that these resources never make it call."""

    resource_type: str
    action: str  # an IAM action glob
    reason: str
    # Whether the exclusion holds for these properties (else the template needs the
    # action, which the map does not grant: required_permissions raises).
    holds: Callable[[Mapping[str, Any]], bool] = lambda properties: True


EXCLUSIONS: tuple[Exclusion, ...] = (
    Exclusion(
        RULE,
        "iam:PassRole",
        "The Events::Rule handlers pass the rule's or a target's RoleArn to EventBridge; "
        "a tenant rule's only target is an SQS queue, which EventBridge reaches through "
        "the queue's resource policy, so no role is passed (and iam:PassRole would be "
        "authorized on the passed role, not on the rule).",
        holds=lambda properties: not _passes_a_role(properties),
    ),
    Exclusion(
        BUCKET,
        "iam:PassRole",
        "The S3 bucket handlers pass a role only for a ReplicationConfiguration's Role, "
        "which tenant buckets do not have (and iam:PassRole would be authorized on that "
        "role, not on the bucket).",
        holds=lambda properties: "ReplicationConfiguration" not in properties,
    ),
    Exclusion(
        BUCKET,
        "s3tables:*",
        "S3 Tables calls serve a bucket's MetadataTableConfiguration (journal tables in "
        "an AWS-managed table bucket); tenant buckets configure no metadata tables.",
        holds=lambda properties: "MetadataTableConfiguration" not in properties,
    ),
)


@cache
def _schema(resource_type: str, region: str = SCHEMA_REGION) -> dict[str, Any]:
    schemas = resources.files("cfnlint") / "data" / "schemas"
    providers = json.loads((schemas / "providers" / f"{region}.json").read_text())
    digest = providers[resource_type]
    return dict(json.loads((schemas / "resources" / f"{digest}.json").read_text()))


def _check_type(resource_type: str) -> None:
    if resource_type not in RESOURCE_TYPES:
        raise PermissionMapError(
            f"{resource_type} has no handler permissions in infra/cfn_permissions.py; "
            "map the properties the template uses to the actions its handlers call"
        )


def schema_permissions(resource_type: str, handler: str) -> tuple[str, ...]:
    """The handler's permissions as AWS publishes them."""
    _check_type(resource_type)
    return tuple(_schema(resource_type)["handlers"][handler]["permissions"])


def create_only_properties(resource_type: str) -> frozenset[str]:
    """Properties whose change replaces the resource (the schema's createOnlyProperties)."""
    _check_type(resource_type)
    paths = _schema(resource_type).get("createOnlyProperties", [])
    return frozenset(p.removeprefix("/properties/").split("/", 1)[0] for p in paths)


def _excluded(resource_type: str, action: str, properties: Mapping[str, Any]) -> bool:
    from fnmatch import fnmatchcase

    return any(
        e.resource_type == resource_type and fnmatchcase(action, e.action) and e.holds(properties)
        for e in EXCLUSIONS
    )


@cache
def check_maps() -> None:
    """Every mapped action is one its handler's schema lists (else the map is stale)."""
    for resource_type in RESOURCE_TYPES:
        for handler in ("create", "update"):
            listed = set(schema_permissions(resource_type, handler))
            mapped = set(BASE_ACTIONS[resource_type][handler])
            for actions in PROPERTY_ACTIONS[resource_type][handler].values():
                mapped |= set(actions)
            stray = sorted(mapped - listed)
            if stray:
                raise PermissionMapError(
                    f"{resource_type} {handler} handler does not list {stray} in its schema"
                )


def required_permissions(
    resource_type: str, handler: str, properties: Mapping[str, Any] | None = None
) -> list[str]:
    """The IAM actions CloudFormation's ``handler`` makes for a resource with these
    (template) properties, on the resource itself."""
    check_maps()
    if handler not in HANDLERS:
        raise ValueError(f"unknown handler {handler!r}")
    props = dict(properties or {})
    listed = schema_permissions(resource_type, handler)
    if resource_type == RULE and _passes_a_role(props):
        raise PermissionMapError(
            "a rule that passes a role needs iam:PassRole on that role; not mapped here"
        )
    if handler in ("read", "delete"):
        wanted = set(listed)
    else:
        mapping = PROPERTY_ACTIONS[resource_type][handler]
        unmapped = sorted(set(props) - set(mapping))
        if unmapped:
            raise PermissionMapError(
                f"{resource_type} properties {unmapped} have no {handler} actions in "
                "infra/cfn_permissions.py PROPERTY_ACTIONS"
            )
        wanted = set(BASE_ACTIONS[resource_type][handler])
        wanted |= {a for a in listed if _READ_BACK.match(a)}
        for name in props:
            wanted |= set(mapping[name])
    return sorted(a for a in wanted if not _excluded(resource_type, a, props))


def granted_permissions(
    resource_type: str, handler: str, properties: Mapping[str, Any] | None = None
) -> list[str]:
    """What the service role is granted for a handler: the schema's whole list but the
    explained exclusions. Wider than ``required_permissions`` on purpose: a handler
    may call a listed action that no property of ours seems to need, and the grant is
    already scoped to the tenant's own resources."""
    props = dict(properties or {})
    required_permissions(resource_type, handler, props)  # the same map checks apply
    listed = schema_permissions(resource_type, handler)
    return sorted({a for a in listed if not _excluded(resource_type, a, props)})


def resource_permissions(resource: Mapping[str, Any]) -> dict[str, list[str]]:
    """All four handlers' permissions for one template resource."""
    resource_type = str(resource["Type"])
    properties = resource.get("Properties", {})
    return {h: required_permissions(resource_type, h, properties) for h in HANDLERS}


# ---------------------------------------------------------------- the service role

_SCOPES: dict[str, tuple[str, str]] = {
    # resource type -> (statement sid, pattern key)
    BUCKET: ("TenantBuckets", "buckets"),
    BUCKET_POLICY: ("TenantBuckets", "buckets"),
    ROLE: ("TenantRoles", "roles"),
    RULE: ("TenantRules", "rules"),
    MODEL_PACKAGE_GROUP: ("TenantModelPackageGroups", "groups"),
}


def resource_patterns(names: Names, partition: str, account: str, region: str) -> dict[str, str]:
    """What each group of tenant resources may be named (ARN patterns)."""
    acct = f"{region}:{account}"
    return {
        # Silo buckets are <prefix>-<tenant>-<account>; the platform and pool buckets
        # also match that shape and are denied explicitly.
        "buckets": f"arn:{partition}:s3:::{names.prefix}-*-{account}",
        "roles": f"arn:{partition}:iam::{account}:role{names.tenant_role_path}*",
        "rules": f"arn:{partition}:events:{acct}:rule/{names.tenant_rule_prefix}*",
        "groups": f"arn:{partition}:sagemaker:{acct}:model-package-group/{names.prefix}-*",
    }


def service_role_policy(
    names: Names,
    template_resources: Iterable[Mapping[str, Any]],
    *,
    partition: str,
    account: str,
    region: str,
) -> dict[str, Any]:
    """The service role's policy document: every handler permission (the schemas' whole
    lists, but the explained exclusions) of every template resource type, one statement
    per resource pattern, the platform buckets denied. Scoped by resource, not by a
    hand-picked action list."""
    actions: dict[str, set[str]] = {}
    for resource in template_resources:
        resource_type = str(resource["Type"])
        _check_type(resource_type)
        sid, _ = _SCOPES[resource_type]
        properties = resource.get("Properties", {})
        for handler in HANDLERS:
            actions.setdefault(sid, set()).update(
                granted_permissions(resource_type, handler, properties)
            )
    patterns = resource_patterns(names, partition, account, region)
    statements: list[dict[str, Any]] = []
    for sid, key in dict.fromkeys(_SCOPES.values()):
        if sid in actions:
            statements.append(
                {
                    "Sid": sid,
                    "Effect": "Allow",
                    "Action": sorted(actions[sid]),
                    "Resource": patterns[key],
                }
            )
        if sid == "TenantBuckets":
            # Both match the tenant-bucket pattern; they are the platform's, never a
            # tenant stack's, to create, reconfigure or delete.
            for deny_sid, bucket in (
                ("NeverThePlatformBucket", names.platform_bucket(account)),
                ("NeverThePoolBucket", names.pool_bucket(account)),
            ):
                arn = f"arn:{partition}:s3:::{bucket}"
                statements.append(
                    {
                        "Sid": deny_sid,
                        "Effect": "Deny",
                        "Action": "s3:*",
                        "Resource": [arn, f"{arn}/*"],
                    }
                )
    return {"Version": "2012-10-17", "Statement": statements}


def policy_size(document: Mapping[str, Any]) -> int:
    """Characters IAM counts against its quotas (JSON without whitespace)."""
    return len(json.dumps(document, separators=(",", ":")))


def service_role_statements(
    names: Names, template_resources: Iterable[Mapping[str, Any]]
) -> list[iam.PolicyStatement]:
    """The service role's statements with deploy-time tokens, checked against IAM's
    inline-policy quota at the longest partition/region names it could deploy to."""
    from aws_cdk import Aws
    from aws_cdk import aws_iam as iam

    resources_list = list(template_resources)
    worst = service_role_policy(
        names, resources_list, partition="aws-us-gov", account="0" * 12, region="x" * 20
    )
    size = policy_size(worst)
    if size > ROLE_INLINE_POLICY_LIMIT:
        raise PermissionMapError(
            f"the tenant-stack service role's inline policy is {size} characters; IAM "
            f"allows {ROLE_INLINE_POLICY_LIMIT} for a role's inline policies. Split it "
            "into a managed policy or trim the template's resource types"
        )
    document = service_role_policy(
        names, resources_list, partition=Aws.PARTITION, account=Aws.ACCOUNT_ID, region=Aws.REGION
    )
    return [iam.PolicyStatement.from_json(s) for s in document["Statement"]]
