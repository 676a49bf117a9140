"""Synthesize the tenant stack to a plain CloudFormation template.

Used by the platform stack (shipped as an S3 asset for the onboarding Lambda's
CreateStack) and by the local runtime (deployed into moto). Deterministic: the
same settings give byte-identical JSON, so the asset hash only changes when the
tenant stack does.
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from aws_cdk import App, Aws
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct
from trainyard_core import wiring
from trainyard_core.config import Isolation, Settings

from infra.cdk_context import cdk_json_context
from infra.nag import acknowledge_findings
from infra.tenant_stack import TenantStack

TENANT_STACK_ID = "TrainyardTenant"
# Stack ids of the shipped templates, one per isolation model (the silo one keeps
# the original id so its published template and tests stay where they were).
TENANT_STACK_IDS: dict[Isolation, str] = {"silo": TENANT_STACK_ID, "pool": "TrainyardTenantPool"}
ISOLATIONS: tuple[Isolation, ...] = ("silo", "pool")

# Keep the published template free of CDK-internal metadata.
_APP_CONTEXT = {
    "aws:cdk:enable-path-metadata": False,
    "aws:cdk:disable-version-reporting": True,
}
# Construct-path metadata still appears when the CDK CLI runs the app (its
# context, inherited through the environment, turns it on): always drop it.
_DROPPED_METADATA = ("aws:cdk:path",)


def synth_tenant_template(settings: Settings, isolation: Isolation = "silo") -> dict[str, Any]:
    """A tenant stack template as a dict, synthesized in its own throwaway App."""
    with tempfile.TemporaryDirectory(prefix="trainyard-tenant-") as outdir:
        # cdk.json's feature flags explicitly: same template with or without the CLI.
        app = App(outdir=outdir, context={**cdk_json_context(), **_APP_CONTEXT})
        stack = TenantStack(
            app, TENANT_STACK_IDS[isolation], settings=settings, isolation=isolation
        )
        assembly = app.synth()
        template = assembly.get_stack_artifact(stack.artifact_id).template
    return _without_cdk_metadata(json.loads(json.dumps(template)))


def _without_cdk_metadata(template: dict[str, Any]) -> dict[str, Any]:
    for resource in template.get("Resources", {}).values():
        metadata = resource.get("Metadata")
        if isinstance(metadata, dict):
            for key in _DROPPED_METADATA:
                metadata.pop(key, None)
            if not metadata:
                del resource["Metadata"]
    return template


def render_tenant_template(settings: Settings, isolation: Isolation = "silo") -> str:
    return json.dumps(synth_tenant_template(settings, isolation), indent=1, sort_keys=True) + "\n"


def write_tenant_template(settings: Settings, path: Path, isolation: Isolation = "silo") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_tenant_template(settings, isolation))
    return path


class TenantProvisioning(Construct):
    """What the onboarding Lambda needs to create tenant stacks: both templates
    (silo and pool) as S3 assets written at synth time, and the CloudFormation
    service role it passes.

    The service role can manage tenant resources only (names from `wiring.Names`),
    so the onboarding Lambda itself holds no IAM/S3/EventBridge create rights.
    """

    def __init__(
        self, scope: Construct, construct_id: str, *, settings: Settings, names: wiring.Names
    ) -> None:
        super().__init__(scope, construct_id)
        staging = Path(tempfile.mkdtemp(prefix="trainyard-tenant-template-"))
        # CDK copies assets into the cloud assembly; the staging dir is only a source.
        atexit.register(shutil.rmtree, staging, ignore_errors=True)
        # Both templates always ship: a plan's isolation is config, and a plan change
        # across isolation models swaps the tenant's template with UpdateStack.
        self.assets: dict[Isolation, s3_assets.Asset] = {}
        for isolation in ISOLATIONS:
            path = write_tenant_template(
                settings, staging / f"tenant-stack-{isolation}.template.json", isolation
            )
            # The silo asset keeps its original construct id (stable asset path).
            asset_id = "Template" if isolation == "silo" else f"Template{isolation.capitalize()}"
            self.assets[isolation] = s3_assets.Asset(self, asset_id, path=str(path))
        # The https form CloudFormation's TemplateURL expects.
        self.template_urls: dict[Isolation, str] = {
            isolation: asset.http_url for isolation, asset in self.assets.items()
        }
        self.template_url = self.template_urls["silo"]
        self.template_object_arns = [
            f"arn:{Aws.PARTITION}:s3:::{asset.s3_bucket_name}/{asset.s3_object_key}"
            for asset in self.assets.values()
        ]

        acct = f"{Aws.REGION}:{Aws.ACCOUNT_ID}"
        # Silo buckets are <prefix>-<tenant>-<account>; the platform bucket also
        # matches that shape, so it is denied explicitly below.
        tenant_buckets = f"arn:{Aws.PARTITION}:s3:::{names.prefix}-*-{Aws.ACCOUNT_ID}"
        platform_bucket = f"arn:{Aws.PARTITION}:s3:::{names.platform_bucket(Aws.ACCOUNT_ID)}"
        pool_bucket = f"arn:{Aws.PARTITION}:s3:::{names.pool_bucket(Aws.ACCOUNT_ID)}"
        tenant_roles = f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:role{names.tenant_role_path}*"
        tenant_rules = f"arn:{Aws.PARTITION}:events:{acct}:rule/{names.tenant_rule_prefix}*"
        groups = f"arn:{Aws.PARTITION}:sagemaker:{acct}:model-package-group/{names.prefix}-*"
        policy = iam.PolicyDocument(
            statements=[
                iam.PolicyStatement(
                    sid="TenantBuckets",
                    actions=[
                        "s3:CreateBucket",
                        "s3:DeleteBucket",
                        "s3:DeleteBucketPolicy",
                        "s3:GetBucket*",
                        "s3:GetEncryptionConfiguration",
                        "s3:ListBucket",
                        "s3:PutBucket*",
                        "s3:PutEncryptionConfiguration",
                    ],
                    resources=[tenant_buckets],
                ),
                iam.PolicyStatement(
                    sid="NeverThePlatformBucket",
                    effect=iam.Effect.DENY,
                    actions=["s3:*"],
                    resources=[platform_bucket, f"{platform_bucket}/*"],
                ),
                # The shared pool bucket also matches the tenant-bucket pattern; it is
                # the platform's, never a tenant stack's, to create or reconfigure.
                iam.PolicyStatement(
                    sid="NeverThePoolBucket",
                    effect=iam.Effect.DENY,
                    actions=["s3:*"],
                    resources=[pool_bucket, f"{pool_bucket}/*"],
                ),
                iam.PolicyStatement(
                    sid="TenantRoles",
                    actions=[
                        "iam:CreateRole",
                        "iam:DeleteRole",
                        "iam:GetRole",
                        "iam:UpdateRole",
                        "iam:UpdateRoleDescription",
                        "iam:UpdateAssumeRolePolicy",
                        "iam:PutRolePolicy",
                        "iam:GetRolePolicy",
                        "iam:DeleteRolePolicy",
                        "iam:ListRolePolicies",
                        "iam:ListAttachedRolePolicies",
                        "iam:TagRole",
                        "iam:UntagRole",
                    ],
                    resources=[tenant_roles],
                ),
                iam.PolicyStatement(
                    sid="TenantRules",
                    actions=[
                        "events:PutRule",
                        "events:DeleteRule",
                        "events:DescribeRule",
                        "events:EnableRule",
                        "events:DisableRule",
                        "events:PutTargets",
                        "events:RemoveTargets",
                        "events:ListTargetsByRule",
                        "events:TagResource",
                        "events:UntagResource",
                        "events:ListTagsForResource",
                    ],
                    resources=[tenant_rules],
                ),
                iam.PolicyStatement(
                    sid="TenantModelPackageGroups",
                    actions=[
                        "sagemaker:CreateModelPackageGroup",
                        "sagemaker:DescribeModelPackageGroup",
                        "sagemaker:DeleteModelPackageGroup",
                        "sagemaker:AddTags",
                        "sagemaker:DeleteTags",
                        "sagemaker:ListTags",
                    ],
                    resources=[groups],
                ),
            ]
        )
        self.service_role = iam.Role(
            self,
            "StackRole",
            description="CloudFormation service role for Trainyard tenant stacks",
            assumed_by=iam.ServicePrincipal(
                "cloudformation.amazonaws.com",
                conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}},
            ),
            inline_policies={"TenantResourcesOnly": policy},
        )
        acknowledge_findings(
            self.service_role,
            "IAM5",
            {
                "Action::s3:GetBucket*": "Reads of bucket configuration CloudFormation performs "
                "on tenant buckets (encryption, versioning, policy, notifications, ...).",
                "Action::s3:PutBucket*": "Bucket configuration CloudFormation applies to tenant "
                "buckets (policy, versioning, logging, notifications, public access block).",
                f"Resource::arn:<AWS::Partition>:s3:::{names.prefix}-*-<AWS::AccountId>": (
                    "Tenant silo buckets, named <prefix>-<tenant>-<account> at onboarding; "
                    "the platform and pool buckets are denied explicitly."
                ),
                "Resource::arn:<AWS::Partition>:iam::<AWS::AccountId>:role"
                f"{names.tenant_role_path}*": "Tenant job roles, only under the tenant path.",
                "Resource::arn:<AWS::Partition>:events:<AWS::Region>:<AWS::AccountId>:rule/"
                f"{names.tenant_rule_prefix}*": "Tenant upload rules, named per tenant.",
                "Resource::arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>:"
                f"model-package-group/{names.prefix}-*": "Tenant model package groups.",
            },
        )
