"""The shared SageMaker pipeline: step code in the platform bucket, the pipeline
role, and `AWS::SageMaker::Pipeline` with the SDK-built definition."""

from __future__ import annotations

import hashlib
from pathlib import Path

from aws_cdk import Aws, Fn
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct
from trainyard_core import wiring
from trainyard_core.config import Settings

from infra.nag import acknowledge_findings
from infra.platform_files import PlatformFiles
from infra.storage import CODE_PREFIX
from pipeline.contract import (
    DATA_REPORT_FILE,
    DATA_REPORT_SUFFIX,
    EVALUATION_FILE,
    EVALUATION_SUFFIX,
    RECORDER_PLACEHOLDER,
)
from pipeline.scripts import STEP_SCRIPTS, STEPS_DIR

_definitions: dict[str, str] = {}


def definition_json(settings: Settings) -> str:
    """`pipeline.definition.build_definition_json`, memoized per settings (it takes
    seconds: the SDK builds it offline)."""
    key = settings.to_json()
    if key not in _definitions:
        from pipeline.definition import build_definition_json

        _definitions[key] = build_definition_json(settings)
    return _definitions[key]


def step_code_version() -> str:
    """Content hash of the step scripts: each version gets its own code/ prefix, so
    executions of an older definition still find the code they were started with."""
    digest = hashlib.sha256()
    for script in sorted(STEP_SCRIPTS.values()):
        digest.update(script.encode() + b"\0" + (STEPS_DIR / script).read_bytes())
    return digest.hexdigest()[:16]


def deployed_definition_version(settings: Settings) -> str:
    """The version a run's lineage records (``definitionVersion``): the definition
    body and the step scripts' content, i.e. everything the pipeline runs that the
    deployment chooses (the substituted ARNs and buckets are the deployment's own)."""
    from trainyard_core.lineage import definition_version

    return definition_version(definition_json(settings) + "\0" + step_code_version())


def step_code_prefix() -> str:
    return f"{CODE_PREFIX}pipeline/{step_code_version()}/"


def step_script_files() -> dict[str, Path]:
    """Object key in the platform bucket -> script, for `PlatformFiles`."""
    prefix = step_code_prefix()
    return {f"{prefix}{script}": STEPS_DIR / script for script in STEP_SCRIPTS.values()}


def step_script_uris(bucket_name: str) -> dict[str, str]:
    """Placeholder -> the S3 URI of its script in the platform bucket."""
    prefix = step_code_prefix()
    return {
        placeholder: f"s3://{bucket_name}/{prefix}{script}"
        for placeholder, script in STEP_SCRIPTS.items()
    }


class TrainingPipeline(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        names: wiring.Names,
        bucket: s3.IBucket,
        recorder: lambda_.IFunction,
        files: PlatformFiles,
    ) -> None:
        super().__init__(scope, construct_id)
        self.pipeline_arn = pipeline_arn(names)

        self.role = iam.Role(
            self,
            "Role",
            description="Trainyard pipeline: starts tenant jobs with the tenant's role",
            assumed_by=iam.ServicePrincipal(
                "sagemaker.amazonaws.com",
                conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}},
            ),
        )
        self._grant(names, bucket, recorder, settings.training_instance_types())

        body = definition_json(settings)
        uris = step_script_uris(bucket.bucket_name)
        # Fn::Sub's variables in the order the definition first uses them (step order),
        # not the scripts' alphabetical one.
        values = {p: uris[p] for p in sorted(uris, key=lambda p: body.find("${" + p + "}"))}
        values[RECORDER_PLACEHOLDER] = recorder.function_arn
        self.pipeline = sagemaker.CfnPipeline(
            self,
            "Pipeline",
            pipeline_name=names.pipeline_name,
            pipeline_display_name=names.pipeline_name,
            pipeline_description="Trainyard: preprocess, train, evaluate, register (per tenant)",
            role_arn=self.role.role_arn,
            pipeline_definition={"PipelineDefinitionBody": Fn.sub(body, values)},
        )
        # The role's policy must exist before the first execution can start jobs,
        # and the scripts before a step downloads them.
        # (The role itself is already a GetAtt dependency; its policy is separate.)
        policy = self.role.node.try_find_child("DefaultPolicy")
        if policy is not None:
            self.pipeline.node.add_dependency(policy)
        self.pipeline.node.add_dependency(files.deployment)

    def _grant(
        self,
        names: wiring.Names,
        bucket: s3.IBucket,
        recorder: lambda_.IFunction,
        training_instance_types: list[str],
    ) -> None:
        arn = f"arn:{Aws.PARTITION}:sagemaker:{Aws.REGION}:{Aws.ACCOUNT_ID}"
        jobs = [f"{arn}:processing-job/*", f"{arn}:training-job/*"]
        groups = f"{arn}:model-package-group/{names.prefix}-*"
        packages = f"{arn}:model-package/{names.prefix}-*/*"
        tenant_roles = f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:role{names.tenant_role_path}*"
        code = bucket.arn_for_objects(f"{CODE_PREFIX}*")

        # <OutputUri><RunId>/evaluation/evaluation.json and .../data-report/data-report.json
        # (the two PropertyFiles): silo buckets keep them under artifacts/, the pool under
        # tenants/<id>/artifacts/ (wiring.Names).
        report = f"*{EVALUATION_SUFFIX}/{EVALUATION_FILE}"
        data_report = f"*{DATA_REPORT_SUFFIX}/{DATA_REPORT_FILE}"
        silo_buckets = f"arn:{Aws.PARTITION}:s3:::{names.prefix}-*-{Aws.ACCOUNT_ID}"
        pool_bucket = f"arn:{Aws.PARTITION}:s3:::{names.pool_bucket(Aws.ACCOUNT_ID)}"

        def in_tenant_outputs(file: str) -> list[str]:
            return [
                f"{silo_buckets}/{names.silo_output_prefix}{file}",
                f"{pool_bucket}/{names.pool_output_prefix('*')}{file}",
            ]

        statements = [
            iam.PolicyStatement(
                sid="TenantJobs",
                actions=[
                    "sagemaker:CreateProcessingJob",
                    "sagemaker:DescribeProcessingJob",
                    "sagemaker:StopProcessingJob",
                    "sagemaker:DescribeTrainingJob",
                    "sagemaker:StopTrainingJob",
                    "sagemaker:AddTags",
                    "sagemaker:ListTags",
                ],
                resources=jobs,
            ),
            # Training jobs only on an instance type some plan trains on (its own or a
            # sizing rule's): a run's parameters cannot buy a larger instance.
            iam.PolicyStatement(
                sid="TenantTrainingJobs",
                actions=["sagemaker:CreateTrainingJob"],
                resources=[f"{arn}:training-job/*"],
                conditions={
                    "ForAllValues:StringEquals": {
                        "sagemaker:InstanceTypes": training_instance_types
                    }
                },
            ),
            iam.PolicyStatement(
                sid="RegisterModels",
                actions=[
                    "sagemaker:CreateModelPackage",
                    "sagemaker:DescribeModelPackage",
                    "sagemaker:DescribeModelPackageGroup",
                    "sagemaker:AddTags",
                ],
                resources=[groups, packages],
            ),
            iam.PolicyStatement(
                sid="RecordRuns",
                actions=["lambda:InvokeFunction"],
                resources=[recorder.function_arn],
            ),
            # Jobs run as the tenant's role; never as any other role of the account.
            iam.PolicyStatement(
                sid="PassTenantRolesToSageMaker",
                actions=["iam:PassRole"],
                resources=[tenant_roles],
                conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
            ),
            iam.PolicyStatement(
                sid="ReadStepCode",
                actions=["s3:GetObject"],
                resources=[code],
            ),
            # SageMaker Pipelines resolves Std:JsonGet on a PropertyFile (the metric
            # condition, the Fail message, RecordRun's arguments) by reading the file
            # from S3 with the pipeline role: the evaluation and data reports only, no data.
            iam.PolicyStatement(
                sid="ReadEvaluationReports",
                actions=["s3:GetObject"],
                resources=in_tenant_outputs(report),
            ),
            iam.PolicyStatement(
                sid="ReadDataReports",
                actions=["s3:GetObject"],
                resources=in_tenant_outputs(data_report),
            ),
        ]
        for statement in statements:
            self.role.add_to_policy(statement)

        acct = "arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>"
        acknowledge_findings(
            self.role,
            "IAM5",
            {
                f"Resource::{acct}:processing-job/*": (
                    "Job names are generated per execution by SageMaker Pipelines; scoped to "
                    "processing jobs of this account."
                ),
                f"Resource::{acct}:training-job/*": (
                    "Job names are generated per execution by SageMaker Pipelines; scoped to "
                    "training jobs of this account."
                ),
                f"Resource::{acct}:model-package-group/{names.prefix}-*": (
                    "Tenant model package groups are created at onboarding, all named "
                    f"{names.prefix}-<tenant>."
                ),
                f"Resource::{acct}:model-package/{names.prefix}-*/*": (
                    "Model package versions inside the tenant groups."
                ),
                "Resource::arn:<AWS::Partition>:iam::<AWS::AccountId>:role"
                f"{names.tenant_role_path}*": (
                    "Tenant roles are created at onboarding under this path only; PassRole is "
                    "further limited to SageMaker by iam:PassedToService."
                ),
                f"Resource::<PlatformBucket.Arn>/{CODE_PREFIX}*": (
                    "Read-only access to the versioned step scripts under code/."
                ),
                f"Resource::arn:<AWS::Partition>:s3:::{names.prefix}-*-<AWS::AccountId>/"
                f"{names.silo_output_prefix}{report}": (
                    "Only the evaluation report of a run (<run>/evaluation/evaluation.json) in "
                    "tenant buckets, which SageMaker reads as the pipeline role for JsonGet."
                ),
                f"Resource::arn:<AWS::Partition>:s3:::{names.pool_bucket('<AWS::AccountId>')}/"
                f"{names.pool_output_prefix('*')}{report}": (
                    "Only the evaluation reports of pool tenants' runs, read for JsonGet."
                ),
                f"Resource::arn:<AWS::Partition>:s3:::{names.prefix}-*-<AWS::AccountId>/"
                f"{names.silo_output_prefix}{data_report}": (
                    "Only the data report of a run (<run>/data-report/data-report.json) in "
                    "tenant buckets, which SageMaker reads as the pipeline role for JsonGet."
                ),
                f"Resource::arn:<AWS::Partition>:s3:::{names.pool_bucket('<AWS::AccountId>')}/"
                f"{names.pool_output_prefix('*')}{data_report}": (
                    "Only the data reports of pool tenants' runs, read for JsonGet."
                ),
            },
        )


def pipeline_arn(names: wiring.Names) -> str:
    return (
        f"arn:{Aws.PARTITION}:sagemaker:{Aws.REGION}:{Aws.ACCOUNT_ID}:"
        f"pipeline/{names.pipeline_name}"
    )
