"""The recorder Lambda (the pipeline's Lambda step) writes results on the run."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import boto3
import pytest
from moto import mock_aws
from pydantic import ValidationError
from trainyard_core import wiring
from trainyard_core.config import Settings
from trainyard_core.models import Run, RunStatus, Trigger, new_run_id
from trainyard_core.store.run_items import run_to_item
from trainyard_core.store.runs_dynamodb import DynamoRunRepository
from trainyard_core.wiring import Names
from trainyard_handlers import recorder

from trainyard.local.bootstrap import create_tables

NAMES = Names.from_settings(Settings())
PACKAGE = "model-package/trainyard-acme/1"


@dataclass
class Context:
    function_name: str = "trainyard-recorder"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:trainyard-recorder"
    aws_request_id: str = "req-1"


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> Iterator[DynamoRunRepository]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv(wiring.ENV_RUNS_TABLE, NAMES.runs_table)
    monkeypatch.setenv(wiring.ENV_STATE_TABLE, NAMES.state_table)
    monkeypatch.setattr(recorder.metrics, "namespace", "Trainyard")
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_tables(client, NAMES)
        recorder.reset_dependencies()  # built from the environment, as in Lambda
        yield DynamoRunRepository(NAMES.runs_table, NAMES.state_table, client=client)
        recorder.reset_dependencies()


def running_run(runs: DynamoRunRepository) -> Run:
    run = Run(
        run_id=new_run_id(),
        tenant_id="acme",
        plan="basic",
        status=RunStatus.RUNNING,
        trigger=Trigger(type="manual"),
        queued_at="2026-03-10T12:00:00.000Z",
    )
    runs.client.put_item(TableName=NAMES.runs_table, Item=runs._s(run_to_item(run)))
    return run


def step_event(run: Run, **overrides: str) -> dict[str, str]:
    # Pipeline Lambda steps pass every input as a string.
    return {
        "tenant_id": run.tenant_id,
        "run_id": run.run_id,
        "model_package_arn": f"arn:aws:sagemaker:us-east-1:123456789012:{PACKAGE}",
        "auc": "0.8731",
        "evaluation_uri": "s3://bucket/artifacts/run/evaluation/evaluation.json",
        "training_job_name": "pipelines-abc-Train-XYZ",
        **overrides,
    }


def test_results_are_written_on_the_run(runs: DynamoRunRepository) -> None:
    run = running_run(runs)
    assert recorder.handler(step_event(run), Context()) == {"recorded": "true"}
    stored = runs.get_run("acme", run.run_id)
    assert stored is not None
    assert stored.metrics == {"auc": pytest.approx(0.8731)}
    assert stored.model_package_arn == f"arn:aws:sagemaker:us-east-1:123456789012:{PACKAGE}"
    assert stored.status == RunStatus.RUNNING  # the status is the scheduler's business


def test_a_retried_step_records_the_same_values_again(runs: DynamoRunRepository) -> None:
    run = running_run(runs)
    recorder.handler(step_event(run), Context())
    recorder.handler(step_event(run), Context())
    stored = runs.get_run("acme", run.run_id)
    assert stored is not None and stored.metrics == {"auc": pytest.approx(0.8731)}


def test_results_for_an_unknown_run_fail_the_step_clearly(runs: DynamoRunRepository) -> None:
    ghost = running_run(runs).model_copy(update={"run_id": "f" * 32})
    with pytest.raises(recorder.UnknownRunError, match="not in the runs table"):
        recorder.handler(step_event(ghost), Context())
    assert runs.get_run("acme", ghost.run_id) is None


def test_a_non_numeric_auc_is_refused(runs: DynamoRunRepository) -> None:
    run = running_run(runs)
    with pytest.raises(ValidationError, match="auc"):
        recorder.handler(step_event(run, auc="very good"), Context())
    stored = runs.get_run("acme", run.run_id)
    assert stored is not None and stored.metrics == {}


class Registrations:
    """Stands for ModelVersionService: what the recorder announces (and approves)."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, str, str, str, dict[str, float]]] = []
        self.fail = fail

    def registered(self, tenant_id: str, plan: str, arn: str, run_id: str, metrics: dict) -> None:
        self.calls.append((tenant_id, plan, arn, run_id, metrics))
        if self.fail:
            raise RuntimeError("ThrottlingException: Rate exceeded")


@pytest.fixture
def registrations(runs: DynamoRunRepository) -> Iterator[Registrations]:
    from trainyard_handlers import dependencies

    fake = Registrations()
    dependencies.model_versions.override(fake)  # type: ignore[arg-type]
    yield fake
    dependencies.model_versions.reset()


def test_a_model_is_announced_once_however_often_the_step_is_retried(
    runs: DynamoRunRepository, registrations: Registrations
) -> None:
    run = running_run(runs)
    recorder.handler(step_event(run), Context())
    recorder.handler(step_event(run), Context())  # a retried step
    arn = f"arn:aws:sagemaker:us-east-1:123456789012:{PACKAGE}"
    assert registrations.calls == [("acme", "basic", arn, run.run_id, {"auc": 0.8731})]
    # A run without a model (no package registered) announces nothing.
    other = running_run(runs)
    recorder.handler(step_event(other, model_package_arn=""), Context())
    assert len(registrations.calls) == 1


def test_a_failed_announcement_or_approval_does_not_fail_the_step(
    runs: DynamoRunRepository, registrations: Registrations
) -> None:
    registrations.fail = True
    run = running_run(runs)
    assert recorder.handler(step_event(run), Context()) == {"recorded": "true"}
    stored = runs.get_run("acme", run.run_id)
    assert stored is not None and stored.model_package_arn  # the results are kept


def test_every_metric_and_the_data_report_are_written_on_the_run(
    runs: DynamoRunRepository,
) -> None:
    run = running_run(runs)
    report = (
        '{"problemType":"regression","rows":200,"columns":6,'
        '"targetRange":{"min":-3.5,"max":12.25,"mean":4.1},"missingValues":0}'
    )
    event = step_event(run, metrics='{"rmse":1.75,"r2":0.82}', data_report=report)
    del event["auc"]

    recorder.handler(event, Context())

    stored = runs.get_run("acme", run.run_id)
    assert stored is not None
    assert stored.metrics == {"rmse": pytest.approx(1.75), "r2": pytest.approx(0.82)}
    assert stored.data_report == {
        "problemType": "regression",
        "rows": 200,
        "columns": 6,
        "targetRange": {"min": -3.5, "max": 12.25, "mean": 4.1},
        "missingValues": 0,
    }
    assert stored.api_dict()["dataReport"]["targetRange"]["max"] == 12.25


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("metrics", '{"r2": "NaN"}'),
        ("metrics", "not json"),
        ("data_report", '{"rows": 1, "pad": "' + "x" * 5000 + '"}'),
    ],
)
def test_unusable_metrics_or_an_oversized_data_report_are_refused(
    runs: DynamoRunRepository, field: str, value: str
) -> None:
    run = running_run(runs)
    with pytest.raises(ValidationError):
        recorder.handler(step_event(run, **{field: value}), Context())
    stored = runs.get_run("acme", run.run_id)
    assert stored is not None and stored.metrics == {} and stored.data_report is None
