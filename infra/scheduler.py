"""Scheduling: what feeds the scheduler Lambda besides its queues (the
pipeline-status rule and the reconcile schedule) and what it may do."""

from __future__ import annotations

from aws_cdk import Aws
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from constructs import Construct
from trainyard_core import wiring
from trainyard_core.config import Settings

from infra.lambdas import TrainyardFunction
from infra.nag import acknowledge_findings
from infra.queues import Queues
from infra.registry import grant_put_events
from infra.storage import Storage


class Scheduling(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        names: wiring.Names,
        scheduler: TrainyardFunction,
        queues: Queues,
        storage: Storage,
        pipeline_arn: str,
    ) -> None:
        super().__init__(scope, construct_id)
        # SageMaker status changes of *this* pipeline -> status queue -> scheduler:
        # a finished run frees its slot and the next run starts within seconds.
        self.status_rule = events.Rule(
            self,
            "PipelineStatusRule",
            rule_name=names.status_rule,
            description="Trainyard pipeline execution status changes to the scheduler",
            event_pattern=events.EventPattern(
                source=[wiring.SAGEMAKER_STATUS_SOURCE],
                detail_type=[wiring.SAGEMAKER_STATUS_DETAIL_TYPE],
                detail={"pipelineArn": [pipeline_arn]},
            ),
            targets=[targets.SqsQueue(queues.status.queue)],
        )
        # Safety net only (lost events, throttled starts, stuck runs).
        self.reconcile_rule = scheduler.schedule(
            self, "ReconcileRule", settings.reconcile_interval_minutes
        )

        storage.grant_tables(scheduler.role)
        # run.started, run.succeeded, run.failed (and run.queued from intake).
        grant_put_events(scheduler.role)
        executions = f"{pipeline_arn}/execution/*"
        scheduler.role.add_to_policy(
            iam.PolicyStatement(
                sid="DriveThePipeline",
                actions=["sagemaker:StartPipelineExecution", "sagemaker:ListPipelineExecutions"],
                resources=[pipeline_arn],
            )
        )
        scheduler.role.add_to_policy(
            iam.PolicyStatement(
                sid="TrackExecutions",
                actions=[
                    "sagemaker:DescribePipelineExecution",
                    "sagemaker:StopPipelineExecution",
                    "sagemaker:ListPipelineExecutionSteps",
                    # POST .../runs/{runId}/retry: the failed execution resumes.
                    "sagemaker:RetryPipelineExecution",
                ],
                resources=[executions],
            )
        )
        # Run lineage: at each start, one ListObjectVersions page of the tenant's data
        # prefix (trainyard_core/lineage.py), silo buckets and the pool's tenant prefixes.
        partition, account = Aws.PARTITION, Aws.ACCOUNT_ID
        scheduler.role.add_to_policy(
            iam.PolicyStatement(
                sid="ListRunInputs",
                actions=["s3:ListBucketVersions"],
                resources=[
                    f"arn:{partition}:s3:::{names.prefix}-*-{account}",
                    f"arn:{partition}:s3:::{names.pool_bucket(account)}",
                ],
                conditions={
                    "StringLike": {
                        "s3:prefix": [names.silo_data_prefix, names.pool_data_prefix("*")]
                    }
                },
            )
        )
        acknowledge_findings(
            scheduler.role,
            "IAM5",
            {
                "Resource::arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>:"
                f"pipeline/{names.pipeline_name}/execution/*": (
                    "Executions of this one pipeline; their ids are generated at start."
                ),
                f"Resource::arn:<AWS::Partition>:s3:::{names.prefix}-*-<AWS::AccountId>": (
                    "Silo tenants' buckets are created at onboarding; listing only under "
                    "a tenant's data prefix (s3:prefix condition), for run lineage."
                ),
            },
        )
