"""The per-tenant stack: a standalone CloudFormation template, deployed by the
onboarding Lambda with CreateStack (one stack per tenant).

Interface (`wiring.TENANT_STACK_PARAMETERS` / `TENANT_STACK_OUTPUTS`): TenantId,
PlanName, IntakeQueueArn in; bucket, prefix, output URI, role, model package
group and upload rule out. No assets, no bootstrap: the template must deploy
from a plain S3 URL with the onboarding Lambda's CloudFormation service role.

Isolation variants (`STORAGE_BY_ISOLATION`): `silo` (a dedicated bucket, built
here) and `pool` (the prefix tenants/<id>/ of the platform's shared pool bucket).
The rule, role and model package group only consume the `TenantLocation` a
variant returns, and keep the same logical ids in both templates, so a plan
change across isolation models is an in-place UpdateStack (the model package
group, i.e. the model history, is untouched).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from aws_cdk import (
    Acknowledgment,
    Aws,
    BootstraplessSynthesizer,
    CfnOutput,
    CfnParameter,
    Fn,
    RemovalPolicy,
    Stack,
    Tags,
    Validations,
)
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct
from trainyard_core import wiring
from trainyard_core.config import Isolation, Settings
from trainyard_core.models import TENANT_ID_MAX, TENANT_ID_MIN, TENANT_ID_RE

from infra.storage import ACCESS_LOGS_PREFIX, CODE_PREFIX, tenant_data_bucket

# Job metrics SageMaker emits on the job's behalf (TrainingJobs, ProcessingJobs, ...).
SAGEMAKER_METRIC_NAMESPACE = "/aws/sagemaker/*"
# Built-in SageMaker framework/algorithm images (XGBoost, scikit-learn) live in
# AWS-owned accounts that differ per region; the repository names are stable.
SAGEMAKER_IMAGE_REPOSITORIES = "repository/sagemaker-*"


@dataclass(frozen=True)
class TenantParameters:
    tenant_id: str
    plan_name: str
    intake_queue_arn: str


@dataclass(frozen=True)
class TenantLocation:
    """Where a tenant's data lives, whatever the isolation model."""

    bucket_name: str
    bucket_arn: str
    data_prefix: str  # key prefix of uploads (what the rule matches)
    output_prefix: str  # key prefix of pipeline output
    # How cdk-nag prints "<bucket arn>/<data prefix>*" and ".../<output prefix>*"
    # in IAM5 findings (for the acknowledgements of the scoped wildcards).
    nag_data_objects: str = ""
    nag_output_objects: str = ""


class TenantStorage(Protocol):
    def __call__(
        self, scope: Construct, params: TenantParameters, names: wiring.Names, settings: Settings
    ) -> TenantLocation: ...


def silo_storage(
    scope: Construct, params: TenantParameters, names: wiring.Names, settings: Settings
) -> TenantLocation:
    """A dedicated bucket (retained on offboarding) with native EventBridge notifications."""
    bucket = tenant_data_bucket(
        scope,
        "DataBucket",
        bucket_name=Fn.sub(names.silo_bucket("${TenantId}", "${AWS::AccountId}")),
        # The platform bucket admits this account's <prefix>-* buckets' logs.
        log_bucket=Fn.sub(names.platform_bucket("${AWS::AccountId}")),
        log_prefix=Fn.sub(f"{ACCESS_LOGS_PREFIX}${{TenantId}}/"),
        logs_for=f"{ACCESS_LOGS_PREFIX}<tenant>/",
        noncurrent_version_days=settings.data_noncurrent_version_days,
    )
    data_prefix = names.silo_data_prefix
    return TenantLocation(
        bucket_name=bucket.bucket_name,
        bucket_arn=bucket.bucket_arn,
        data_prefix=data_prefix,
        output_prefix=names.silo_output_prefix,
        nag_data_objects=f"<DataBucket.Arn>/{data_prefix}*",
        nag_output_objects=f"<DataBucket.Arn>/{names.silo_output_prefix}*",
    )


def pool_storage(
    scope: Construct, params: TenantParameters, names: wiring.Names, settings: Settings
) -> TenantLocation:
    """The prefix tenants/<id>/ of the shared pool bucket (created by the platform
    stack, with native EventBridge notifications). No bucket here: the tenant's
    isolation is its role (scoped to the prefix) and its rule (matching it)."""
    bucket_name = Fn.sub(names.pool_bucket("${AWS::AccountId}"))
    data_prefix = Fn.sub(names.pool_data_prefix("${TenantId}"))
    nag_bucket = f"arn:<AWS::Partition>:s3:::{names.pool_bucket('<AWS::AccountId>')}"
    return TenantLocation(
        bucket_name=bucket_name,
        bucket_arn=f"arn:{Aws.PARTITION}:s3:::{bucket_name}",
        data_prefix=data_prefix,
        output_prefix=Fn.sub(names.pool_output_prefix("${TenantId}")),
        nag_data_objects=f"{nag_bucket}/{names.pool_data_prefix('<TenantId>')}*",
        nag_output_objects=f"{nag_bucket}/{names.pool_output_prefix('<TenantId>')}*",
    )


STORAGE_BY_ISOLATION: dict[Isolation, TenantStorage] = {
    "silo": silo_storage,
    "pool": pool_storage,
}


class TenantStack(Stack):
    """Everything one tenant owns. Parameterized; synthesized once per platform."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        isolation: Isolation = "silo",
        **kwargs: object,
    ) -> None:
        if isolation not in STORAGE_BY_ISOLATION:
            raise NotImplementedError(f"tenant isolation {isolation!r} is not implemented yet")
        super().__init__(
            scope,
            construct_id,
            # Deployed by CreateStack from a URL: no bootstrap resources, no assets.
            synthesizer=BootstraplessSynthesizer(),
            analytics_reporting=False,
            description=f"Trainyard tenant resources ({isolation} isolation)",
            **kwargs,  # type: ignore[arg-type]
        )
        names = wiring.Names.from_settings(settings)
        params = self._parameters(settings)
        location = STORAGE_BY_ISOLATION[isolation](self, params, names, settings)

        role = self._role(names, location)
        rule = self._upload_rule(names, params, location)
        group = sagemaker.CfnModelPackageGroup(
            self,
            "ModelPackageGroup",
            model_package_group_name=Fn.sub(names.model_package_group("${TenantId}")),
            model_package_group_description=Fn.sub("Trainyard models of tenant ${TenantId}"),
        )
        # Registered models are tenant data too: deleting the stack must neither
        # fail on a non-empty group nor lose them (a purge removes them explicitly).
        # Deleted only when the create that made it rolls back (nothing registered yet,
        # and a kept group would block the retry's fixed name).
        group.apply_removal_policy(RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE)
        # Cost allocation and ownership: every taggable resource names its tenant.
        Tags.of(self).add(wiring.TENANT_TAG_KEY, params.tenant_id)

        outputs = {
            "DataBucketName": location.bucket_name,
            "DataPrefix": location.data_prefix,
            "OutputUri": f"s3://{location.bucket_name}/{location.output_prefix}",
            "RoleArn": role.role_arn,
            "ModelPackageGroupName": group.model_package_group_name,
            "UploadRuleArn": rule.attr_arn,
        }
        assert tuple(outputs) == wiring.TENANT_STACK_OUTPUTS
        for key, value in outputs.items():
            CfnOutput(self, key, value=value)

    def _parameters(self, settings: Settings) -> TenantParameters:
        tenant = CfnParameter(
            self,
            "TenantId",
            type="String",
            allowed_pattern=TENANT_ID_RE.pattern,
            min_length=TENANT_ID_MIN,
            max_length=TENANT_ID_MAX,
            description="Tenant id (lowercase letters, digits, dashes; 3-32 characters)",
        )
        plan = CfnParameter(
            self,
            "PlanName",
            type="String",
            allowed_values=list(settings.plans),
            description="Usage plan of the tenant",
        )
        queue = CfnParameter(
            self,
            "IntakeQueueArn",
            type="String",
            allowed_pattern=r"^arn:aws[a-z-]*:sqs:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,80}$",
            description="The plan's intake queue that receives this tenant's upload events",
        )
        assert tuple(p.node.id for p in (tenant, plan, queue)) == wiring.TENANT_STACK_PARAMETERS
        return TenantParameters(
            tenant_id=tenant.value_as_string,
            plan_name=plan.value_as_string,
            intake_queue_arn=queue.value_as_string,
        )

    def _upload_rule(
        self, names: wiring.Names, params: TenantParameters, location: TenantLocation
    ) -> events.CfnRule:
        # L1 on purpose: the target is a queue of another stack, and its policy
        # (platform side) already admits rules named <prefix>-tenant-*.
        return events.CfnRule(
            self,
            "UploadRule",
            name=Fn.sub(names.tenant_rule("${TenantId}")),
            description=Fn.sub("Uploads of tenant ${TenantId} start training (${PlanName} plan)"),
            state="ENABLED",
            event_pattern={
                "source": [wiring.S3_SOURCE],
                "detail-type": [wiring.S3_OBJECT_CREATED],
                "detail": {
                    "bucket": {"name": [location.bucket_name]},
                    # Every object created under the data prefix: intake decides what
                    # trains (*.csv in any case) and records the rest on the tenant,
                    # so no upload is dropped unseen. A plain prefix, which AWS and
                    # the embedded stack's EventBridge (moto) evaluate alike.
                    "object": {"key": [{"prefix": location.data_prefix}]},
                },
            },
            targets=[events.CfnRule.TargetProperty(arn=params.intake_queue_arn, id="IntakeQueue")],
        )

    def _role(self, names: wiring.Names, location: TenantLocation) -> iam.Role:
        """The role the tenant's SageMaker jobs run with: its own data and nothing else."""
        data_objects = f"{location.bucket_arn}/{location.data_prefix}*"
        output_objects = f"{location.bucket_arn}/{location.output_prefix}*"
        platform_code = (
            f"arn:{Aws.PARTITION}:s3:::"
            + Fn.sub(names.platform_bucket("${AWS::AccountId}"))
            + f"/{CODE_PREFIX}*"
        )
        sagemaker_logs = (
            f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:/aws/sagemaker/*"
        )
        policy = iam.PolicyDocument(
            statements=[
                iam.PolicyStatement(
                    sid="ListOwnPrefixes",
                    actions=["s3:ListBucket"],
                    resources=[location.bucket_arn],
                    conditions={
                        "StringLike": {
                            "s3:prefix": [
                                f"{location.data_prefix}*",
                                f"{location.output_prefix}*",
                            ]
                        }
                    },
                ),
                iam.PolicyStatement(
                    sid="BucketLocation",
                    actions=["s3:GetBucketLocation"],
                    resources=[location.bucket_arn],
                ),
                iam.PolicyStatement(
                    sid="ReadOwnData",
                    actions=["s3:GetObject"],
                    resources=[data_objects, output_objects],
                ),
                iam.PolicyStatement(
                    sid="WriteOwnArtifacts",
                    actions=["s3:PutObject", "s3:AbortMultipartUpload"],
                    resources=[output_objects],
                ),
                # Processing jobs download the shared step scripts with the job's
                # role; they are platform code (never tenant data) under code/.
                iam.PolicyStatement(
                    sid="ReadPipelineCode",
                    actions=["s3:GetObject"],
                    resources=[platform_code],
                ),
                # The code input is an S3Prefix input: SageMaker lists the prefix before
                # downloading, so GetObject alone fails the job. Only under code/ (no
                # listing of templates/ or the tenants' access-logs/).
                iam.PolicyStatement(
                    sid="ListPipelineCode",
                    actions=["s3:ListBucket"],
                    resources=[
                        f"arn:{Aws.PARTITION}:s3:::"
                        + Fn.sub(names.platform_bucket("${AWS::AccountId}"))
                    ],
                    conditions={"StringLike": {"s3:prefix": [f"{CODE_PREFIX}*"]}},
                ),
                iam.PolicyStatement(
                    sid="JobLogs",
                    actions=[
                        "logs:CreateLogGroup",
                        "logs:CreateLogStream",
                        "logs:PutLogEvents",
                        "logs:DescribeLogStreams",
                    ],
                    resources=[sagemaker_logs, f"{sagemaker_logs}:log-stream:*"],
                ),
                iam.PolicyStatement(
                    sid="JobMetrics",
                    actions=["cloudwatch:PutMetricData"],
                    resources=["*"],
                    conditions={"StringLike": {"cloudwatch:namespace": SAGEMAKER_METRIC_NAMESPACE}},
                ),
                iam.PolicyStatement(
                    sid="EcrLogin",
                    actions=["ecr:GetAuthorizationToken"],
                    resources=["*"],
                ),
                iam.PolicyStatement(
                    sid="PullSageMakerImages",
                    actions=[
                        "ecr:BatchCheckLayerAvailability",
                        "ecr:GetDownloadUrlForLayer",
                        "ecr:BatchGetImage",
                    ],
                    resources=[
                        f"arn:{Aws.PARTITION}:ecr:{Aws.REGION}:*:{SAGEMAKER_IMAGE_REPOSITORIES}"
                    ],
                ),
            ]
        )
        role = iam.Role(
            self,
            "JobRole",
            role_name=Fn.sub(names.tenant_role("${TenantId}")),
            path=names.tenant_role_path,
            description=Fn.sub("SageMaker jobs of Trainyard tenant ${TenantId}"),
            # Only SageMaker, and only on behalf of this account (confused deputy).
            assumed_by=iam.ServicePrincipal(
                "sagemaker.amazonaws.com",
                conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}},
            ),
            inline_policies={"TenantJobAccess": policy},
        )
        cfn_role = role.node.default_child
        assert isinstance(cfn_role, iam.CfnRole)
        cfn_role.override_logical_id("JobRole")
        for finding, reason in (
            (
                f"Resource::{location.nag_data_objects}",
                "Scoped to the tenant's own upload prefix (of its own bucket, or of its "
                "tenants/<id>/ prefix in the pool bucket).",
            ),
            (
                f"Resource::{location.nag_output_objects}",
                "Scoped to the tenant's own artifacts prefix (of its own bucket, or of its "
                "tenants/<id>/ prefix in the pool bucket).",
            ),
            (
                f"Resource::arn:<AWS::Partition>:s3:::{names.prefix}-platform-<AWS::AccountId>"
                f"/{CODE_PREFIX}*",
                "Read-only access to the platform's pipeline step scripts, which the "
                "tenant's processing jobs download; the prefix holds code, no tenant data.",
            ),
            (
                "Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:"
                "log-group:/aws/sagemaker/*",
                "SageMaker jobs write to /aws/sagemaker/<JobType> log groups.",
            ),
            (
                "Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:"
                "log-group:/aws/sagemaker/*:log-stream:*",
                "Log stream names are generated per job by SageMaker.",
            ),
            (
                "Resource::*",
                "ecr:GetAuthorizationToken supports no resource scoping; "
                "cloudwatch:PutMetricData is limited by a cloudwatch:namespace condition.",
            ),
            (
                f"Resource::arn:<AWS::Partition>:ecr:<AWS::Region>:*:{SAGEMAKER_IMAGE_REPOSITORIES}",
                "Built-in SageMaker images live in AWS-owned, region-specific accounts; "
                "pull is limited to the sagemaker-* repositories.",
            ),
        ):
            Validations.of(role).acknowledge(
                Acknowledgment(id=f"AwsSolutions-IAM5[{finding}]", reason=reason)
            )
        return role
