"""The scheduler Lambda on moto: SQS batches of EventBridge events, and the schedule."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws
from trainyard_core import wiring
from trainyard_core.clock import VirtualClock
from trainyard_core.config import resolve_settings
from trainyard_core.models import RunStatus, Tenant
from trainyard_core.scheduling.factory import build_scheduler_service
from trainyard_core.store.runs_dynamodb import DynamoRunRepository
from trainyard_core.store.tenants import tenant_to_item
from trainyard_core.wiring import Names
from trainyard_handlers import scheduler

from trainyard.local.bootstrap import create_tables
from trainyard.testing.scheduling import make_tenant

REGION = "us-east-1"
SETTINGS = resolve_settings({"globalMaxConcurrentRuns": 1})
NAMES = Names.from_settings(SETTINGS)


@dataclass
class Context:
    function_name: str = "trainyard-scheduler"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:trainyard-scheduler"
    aws_request_id: str = "req-1"


class Env:
    def __init__(self) -> None:
        self.clock = VirtualClock(datetime.now(UTC))
        self.dynamodb = boto3.client("dynamodb", region_name=REGION)
        self.sagemaker = boto3.client("sagemaker", region_name=REGION)
        self.runs = DynamoRunRepository(NAMES.runs_table, NAMES.state_table, client=self.dynamodb)

    def add_tenant(self, tenant_id: str) -> Tenant:
        tenant = make_tenant(tenant_id, "basic")
        boto3.resource("dynamodb", region_name=REGION).Table(NAMES.tenants_table).put_item(
            Item=tenant_to_item(tenant)
        )
        return tenant

    def invoke(self, event: dict[str, Any]) -> Any:
        return scheduler.handler(event, Context())

    def only_run(self, tenant_id: str) -> Any:
        runs, _ = self.runs.list_runs(tenant_id)
        assert len(runs) == 1, runs
        return runs[0]


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    for key, value in {
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        wiring.ENV_RUNS_TABLE: NAMES.runs_table,
        wiring.ENV_STATE_TABLE: NAMES.state_table,
        wiring.ENV_TENANTS_TABLE: NAMES.tenants_table,
        wiring.ENV_PIPELINE_NAME: NAMES.pipeline_name,
        wiring.ENV_SETTINGS: SETTINGS.to_json(),
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(scheduler.metrics, "namespace", "Trainyard")
    with mock_aws():
        env = Env()
        create_tables(env.dynamodb, NAMES)
        env.sagemaker.create_pipeline(
            PipelineName=NAMES.pipeline_name,
            PipelineDefinition=json.dumps({"Version": "2020-12-01", "Steps": []}),
            RoleArn="arn:aws:iam::123456789012:role/trainyard-pipeline",
        )
        scheduler.set_service(
            build_scheduler_service(
                metrics=scheduler.PowertoolsMetricsSink(), logger=scheduler.logger, clock=env.clock
            )
        )
        yield env
        scheduler.reset_dependencies()


# --- event builders (shapes as EventBridge delivers them to SQS) --------------


def sqs(*bodies: dict[str, Any] | str) -> dict[str, Any]:
    records = []
    for body in bodies:
        records.append(
            {
                "messageId": str(uuid.uuid4()),
                "receiptHandle": "handle",
                "body": body if isinstance(body, str) else json.dumps(body),
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1767225600000",
                    "SenderId": "AIDAEXAMPLE",
                    "ApproximateFirstReceiveTimestamp": "1767225600001",
                },
                "messageAttributes": {},
                "md5OfBody": "x",
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:{REGION}:123456789012:trainyard-intake-basic",
                "awsRegion": REGION,
            }
        )
    return {"Records": records}


def object_created(bucket: str, key: str, etag: str = "9b2cf535f27731c974343645a3985328") -> dict:
    """What S3 sends to EventBridge (AWS documentation shape)."""
    return {
        "version": "0",
        "id": "17793124-05d4-b198-2fde-7ededc63b103",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": "123456789012",
        "time": "2026-03-10T12:00:00Z",
        "region": REGION,
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": {
                "key": key,
                "size": 5,
                "etag": etag,
                "version-id": "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e",
                "sequencer": "617f08299329d189",
            },
            "request-id": "N4N7GDK58NMKJ12R",
            "requester": "123456789012",
            "source-ip-address": "1.2.3.4",
            "reason": "PutObject",
        },
    }


def moto_object_created(bucket: str, key: str, etag: str) -> dict:
    """What moto emits: eTag spelled differently, a float time, no version id."""
    event = object_created(bucket, key, etag)
    obj = event["detail"]["object"]
    obj["eTag"] = obj.pop("etag")
    obj["version-id"] = None
    event["time"] = 1773144000.0
    return event


def status_change(
    arn: str, status: str, display_name: str, at: datetime | None = None, **extra: Any
) -> dict:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "SageMaker Model Building Pipeline Execution Status Change",
        "source": "aws.sagemaker",
        "account": "123456789012",
        "time": (at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [arn.split("/execution/")[0], arn],
        "detail": {
            "pipelineExecutionDisplayName": display_name,
            "currentPipelineExecutionStatus": status,
            "previousPipelineExecutionStatus": "Executing",
            "executionStartTime": "2026-03-10T12:00:00Z",
            "pipelineArn": arn.split("/execution/")[0],
            "pipelineExecutionArn": arn,
            **extra,
        },
    }


SCHEDULED = {
    "version": "0",
    "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "account": "123456789012",
    "time": "2026-03-10T12:00:00Z",
    "region": REGION,
    "resources": ["arn:aws:events:us-east-1:123456789012:rule/trainyard-reconcile"],
    "detail": {},
}


# --- tests -------------------------------------------------------------------


def test_an_upload_event_starts_a_pipeline_execution_for_its_tenant(env: Env) -> None:
    tenant = env.add_tenant("acme")
    result = env.invoke(sqs(object_created(tenant.data_bucket or "", "data/train.csv")))
    assert result == {"batchItemFailures": []}
    run = env.only_run("acme")
    assert run.status == RunStatus.RUNNING and run.execution_arn
    execution = env.sagemaker.describe_pipeline_execution(PipelineExecutionArn=run.execution_arn)
    assert execution["PipelineExecutionDisplayName"] == run.display_name
    assert run.trigger.objects[0].etag == "9b2cf535f27731c974343645a3985328"
    assert run.trigger.objects[0].version_id == "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e"


def test_moto_shaped_events_with_the_same_event_id_are_still_distinct_uploads(env: Env) -> None:
    tenant = env.add_tenant("acme")
    env.add_tenant("busy")
    bucket = tenant.data_bucket or ""
    # Hold the only slot with another tenant so acme's run stays QUEUED.
    env.invoke(sqs(object_created("trainyard-busy-123456789012", "data/x.csv")))
    env.invoke(
        sqs(
            moto_object_created(bucket, "data/a.csv", "aaa"),
            moto_object_created(bucket, "data/b.csv", "bbb"),
            moto_object_created(bucket, "data/a.csv", "aaa"),  # redelivery
        )
    )
    run = env.only_run("acme")
    assert run.status == RunStatus.QUEUED
    assert sorted((o.key, o.etag) for o in run.trigger.objects) == [
        ("data/a.csv", "aaa"),
        ("data/b.csv", "bbb"),
    ]


def test_a_malformed_message_fails_alone_and_the_rest_of_the_batch_is_processed(
    env: Env,
) -> None:
    tenant = env.add_tenant("acme")
    event = sqs(
        "not json at all",
        {"source": "aws.s3", "detail-type": "Object Created", "detail": {"bucket": {}}},
        object_created(tenant.data_bucket or "", "data/train.csv"),
    )
    result = env.invoke(event)
    failed = {f["itemIdentifier"] for f in result["batchItemFailures"]}
    assert failed == {event["Records"][0]["messageId"], event["Records"][1]["messageId"]}
    assert env.only_run("acme").status == RunStatus.RUNNING


def test_an_upload_to_an_unknown_bucket_is_acked_and_recorded_as_rejected(env: Env) -> None:
    result = env.invoke(sqs(object_created("someone-elses-bucket", "data/x.csv")))
    assert result == {"batchItemFailures": []}
    [rejection] = env.runs.list_rejections()
    assert rejection.bucket == "someone-elses-bucket" and rejection.key == "data/x.csv"


def test_a_completion_event_finishes_the_run_and_starts_the_next_one(env: Env) -> None:
    first, second = env.add_tenant("first"), env.add_tenant("second")
    env.invoke(sqs(object_created(first.data_bucket or "", "data/a.csv")))
    env.invoke(sqs(object_created(second.data_bucket or "", "data/b.csv")))
    running = env.only_run("first")
    assert env.only_run("second").status == RunStatus.QUEUED
    env.clock.advance(900)
    assert running.execution_arn
    result = env.invoke(
        sqs(
            status_change(
                running.execution_arn, "Succeeded", running.display_name, at=env.clock.now()
            )
        )
    )
    assert result == {"batchItemFailures": []}
    done = env.only_run("first")
    assert done.status == RunStatus.SUCCEEDED and done.training_seconds == pytest.approx(900, abs=2)
    assert done.cost_estimate_usd and done.cost_estimate_usd > 0
    assert env.only_run("second").status == RunStatus.RUNNING


def test_a_failure_event_records_the_reason(env: Env) -> None:
    tenant = env.add_tenant("acme")
    env.invoke(sqs(object_created(tenant.data_bucket or "", "data/a.csv")))
    run = env.only_run("acme")
    assert run.execution_arn
    env.invoke(
        sqs(
            status_change(
                run.execution_arn,
                "Failed",
                run.display_name,
                failureReason="Step Evaluate: AUC 0.41 below threshold",
            )
        )
    )
    failed = env.only_run("acme")
    assert failed.status == RunStatus.FAILED
    assert failed.failure_reason == "Step Evaluate: AUC 0.41 below threshold"


def test_a_status_event_for_an_unknown_run_of_ours_is_retried(env: Env) -> None:
    arn = "arn:aws:sagemaker:us-east-1:123456789012:pipeline/trainyard-training/execution/zzz"
    event = sqs(status_change(arn, "Succeeded", "acme-0123456789ab"))
    result = env.invoke(event)
    assert result["batchItemFailures"] == [{"itemIdentifier": event["Records"][0]["messageId"]}]


def test_the_schedule_reconciles_executions_whose_events_were_lost(env: Env) -> None:
    tenant = env.add_tenant("acme")
    env.invoke(sqs(object_created(tenant.data_bucket or "", "data/a.csv")))
    assert env.only_run("acme").status == RunStatus.RUNNING
    # moto completes executions at once and sends no event: only reconcile can notice.
    env.clock.advance(120)
    result = env.invoke(SCHEDULED)
    assert result["reconciled"] is True and result["finished"] == 1
    assert env.only_run("acme").status == RunStatus.SUCCEEDED


def test_a_schedule_message_delivered_through_a_queue_also_reconciles(env: Env) -> None:
    tenant = env.add_tenant("acme")
    env.invoke(sqs(object_created(tenant.data_bucket or "", "data/a.csv")))
    env.clock.advance(120)
    assert env.invoke(sqs(SCHEDULED)) == {"batchItemFailures": []}
    assert env.only_run("acme").status == RunStatus.SUCCEEDED
