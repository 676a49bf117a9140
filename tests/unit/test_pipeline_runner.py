"""The local pipeline runner and engine: the deployed definition, run without Docker.

End-to-end tests run the real definition (pipeline/definition.py) on an in-process
moto server, exactly as the embedded local stack does.
"""

from __future__ import annotations

import functools
import json
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pandas as pd
import pytest
from moto.server import ThreadedMotoServer
from sklearn.datasets import make_classification

from pipeline.scripts import STEP_SCRIPTS, STEPS_DIR
from trainyard.local.pipeline_engine import EVENT_DETAIL_TYPE, EVENT_SOURCE, LocalPipelineEngine
from trainyard.local.runner import ExecutionResult, PipelineRunner

ROOT = Path(__file__).resolve().parents[2]
FIXTURE_DEFINITION = ROOT / "tests" / "fixtures" / "pipeline_definition.json"
REGION, ACCOUNT = "us-east-1", "123456789012"
RECORDER_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:trainyard-recorder"


# --------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws(endpoint: str) -> Callable[[str], Any]:
    def client(service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    return client


@pytest.fixture
def bucket(aws: Callable[[str], Any]) -> str:
    name = f"trainyard-test-{uuid.uuid4().hex[:12]}"
    aws("s3").create_bucket(Bucket=name)
    return name


class Recorder:
    """The lambda_invoker: records calls, answers like the recorder handler."""

    def __init__(self, fail_with: str | None = None) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.fail_with = fail_with

    def __call__(self, function_arn: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((function_arn, payload))
        if self.fail_with:
            raise RuntimeError(self.fail_with)
        return {"recorded": "true", "x": f"from-{payload.get('name', '?')}"}


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def engine(endpoint: str, tmp_path: Path, recorder: Recorder) -> Iterator[LocalPipelineEngine]:
    engine = LocalPipelineEngine(
        endpoint_url=endpoint,
        region=REGION,
        account_id=ACCOUNT,
        workdir=tmp_path / "engine",
        lambda_invoker=recorder,
    )
    engine.start()
    yield engine
    engine.stop()


def runner(aws: Callable[[str], Any], tmp_path: Path, **kwargs: Any) -> PipelineRunner:
    return PipelineRunner(
        s3=aws("s3"), sagemaker=aws("sagemaker"), workdir=tmp_path / "runner", **kwargs
    )


def csv_dataset(rows: int = 300, seed: int = 7) -> str:
    x, y = make_classification(
        n_samples=rows, n_features=6, n_informative=4, class_sep=1.5, random_state=seed
    )
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(6)])
    frame["label"] = y
    return frame.to_csv(index=False)


def upload_scripts(s3: Any, bucket: str) -> dict[str, str]:
    """Every step script under code/; returns the definition's placeholder values."""
    values = {"RecorderFunctionArn": RECORDER_ARN}
    for placeholder, script in STEP_SCRIPTS.items():
        s3.upload_file(str(STEPS_DIR / script), bucket, f"code/{script}")
        values[placeholder] = f"s3://{bucket}/code/{script}"
    return values


@functools.cache
def _built_definition() -> str:
    from trainyard_core.config import Settings

    from pipeline.definition import build_definition_json

    return build_definition_json(Settings())


def real_definition(placeholders: dict[str, str]) -> str:
    """What the CDK stack deploys, rendered the way Fn::Sub renders it."""
    from pipeline.definition import render_definition

    return render_definition(_built_definition(), placeholders)


def parameters(bucket: str, group: str, run_id: str, **extra: str) -> list[dict[str, str]]:
    values = {
        "TenantId": "acme",
        "RunId": run_id,
        "InputDataUri": f"s3://{bucket}/data/",
        "OutputUri": f"s3://{bucket}/artifacts/",
        "ExecutionRoleArn": f"arn:aws:iam::{ACCOUNT}:role/trainyard-tenant-acme",
        "ModelPackageGroupName": group,
        **extra,
    }
    return [{"Name": k, "Value": v} for k, v in values.items()]


def status_events(sqs: Any, queue_url: str, execution_arn: str) -> list[dict[str, Any]]:
    events = []
    while True:
        batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        if not batch:
            return [e for e in events if e["detail"]["pipelineExecutionArn"] == execution_arn]
        for message in batch:
            events.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


@pytest.fixture
def status_queue(aws: Callable[[str], Any]) -> str:
    """An SQS queue fed by an EventBridge rule for SageMaker pipeline status events."""
    sqs, events = aws("sqs"), aws("events")
    name = f"status-{uuid.uuid4().hex[:8]}"
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.put_rule(
        Name=name,
        EventPattern=json.dumps({"source": [EVENT_SOURCE], "detail-type": [EVENT_DETAIL_TYPE]}),
    )
    events.put_targets(Rule=name, Targets=[{"Id": "queue", "Arn": arn}])
    yield url
    events.remove_targets(Rule=name, Ids=["queue"])
    events.delete_rule(Name=name)


def start_real_pipeline(
    aws: Callable[[str], Any], bucket: str, data: dict[str, str], **extra: str
) -> tuple[str, str, str]:
    """Upload data + scripts, create group and pipeline in moto, start an execution."""
    s3, sagemaker = aws("s3"), aws("sagemaker")
    for key, body in data.items():
        s3.put_object(Bucket=bucket, Key=f"data/{key}", Body=body.encode())
    definition = real_definition(upload_scripts(s3, bucket))
    group = f"trainyard-acme-{uuid.uuid4().hex[:6]}"
    sagemaker.create_model_package_group(ModelPackageGroupName=group)
    pipeline = f"trainyard-training-{uuid.uuid4().hex[:6]}"
    sagemaker.create_pipeline(
        PipelineName=pipeline,
        PipelineDefinition=definition,
        RoleArn=f"arn:aws:iam::{ACCOUNT}:role/p",
    )
    run_id = uuid.uuid4().hex
    arn = sagemaker.start_pipeline_execution(
        PipelineName=pipeline,
        PipelineExecutionDisplayName=f"acme-{run_id[-12:]}",
        PipelineParameters=parameters(bucket, group, run_id, **extra),
        ClientRequestToken=run_id,
    )["PipelineExecutionArn"]
    return arn, group, run_id


# ---------------------------------------------------- the real definition, end to end


def test_started_execution_trains_registers_records_and_reports_status(
    aws: Callable[[str], Any],
    bucket: str,
    engine: LocalPipelineEngine,
    recorder: Recorder,
    status_queue: str,
) -> None:
    arn, group, run_id = start_real_pipeline(aws, bucket, {"part-1.csv": csv_dataset()})

    assert engine.wait_idle(timeout=600)

    sagemaker = aws("sagemaker")
    described = sagemaker.describe_pipeline_execution(PipelineExecutionArn=arn)
    assert described["PipelineExecutionStatus"] == "Succeeded"
    assert "FailureReason" not in described
    packages = sagemaker.list_model_packages(ModelPackageGroupName=group)["ModelPackageSummaryList"]
    assert len(packages) == 1
    package_arn = packages[0]["ModelPackageArn"]
    package = sagemaker.describe_model_package(ModelPackageName=package_arn)
    model_url = package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
    assert model_url.startswith(f"s3://{bucket}/artifacts/{run_id}/model/")
    assert model_url.endswith("/output/model.tar.gz")
    assert package["ModelApprovalStatus"] == "PendingManualApproval"

    s3 = aws("s3")
    model_key = model_url.split(f"s3://{bucket}/", 1)[1]
    assert s3.head_object(Bucket=bucket, Key=model_key)["ContentLength"] > 0
    evaluation = json.loads(
        s3.get_object(Bucket=bucket, Key=f"artifacts/{run_id}/evaluation/evaluation.json")[
            "Body"
        ].read()
    )
    # The recorder Lambda got what the pipeline promised, resolved.
    [(function_arn, payload)] = recorder.calls
    assert function_arn == RECORDER_ARN
    assert payload["tenant_id"] == "acme"
    assert payload["run_id"] == run_id
    assert payload["model_package_arn"] == package_arn
    assert json.loads(payload["metrics"]) == {
        "auc": evaluation["metrics"]["auc"]["value"],
        "accuracy": evaluation["metrics"]["accuracy"]["value"],
    }
    assert evaluation["primary_metric"]["name"] == "auc"
    assert evaluation["metrics"]["auc"]["value"] > 0.6
    assert payload["problem_type"] == "binary" and payload["algorithm"] == "xgboost"
    # The data report, read from preprocess's PropertyFile.
    report = json.loads(payload["data_report"])
    assert report["rows"] == 300 and report["problemType"] == "binary"
    assert sum(report["classBalance"].values()) == 300
    # The train step ran the provider script in script mode.
    train = next(s for s in engine.result(arn).steps if s.name == "Train")
    assert train.metadata["mode"] == "script"
    assert payload["training_job_name"].startswith("pipelines-")
    # Status changes arrived through EventBridge -> rule -> SQS, as in AWS.
    events = status_events(aws("sqs"), status_queue, arn)
    assert [e["detail"]["currentPipelineExecutionStatus"] for e in events] == [
        "Executing",
        "Succeeded",
    ]
    final = events[-1]
    assert final["source"] == "aws.sagemaker"
    assert final["detail-type"] == "SageMaker Model Building Pipeline Execution Status Change"
    assert final["detail"]["previousPipelineExecutionStatus"] == "Executing"
    assert final["detail"]["pipelineArn"] == described["PipelineArn"]
    assert final["detail"]["pipelineExecutionDisplayName"] == f"acme-{run_id[-12:]}"
    assert final["detail"]["executionStartTime"]
    # Every step ran, in dependency order.
    result = engine.result(arn)
    assert result is not None
    assert [s.name for s in result.steps] == [
        "Preprocess",
        "Train",
        "Evaluate",
        "CheckMetric",
        "Register",
        "RecordRun",
    ]


def test_bad_data_run_fails_with_the_preprocess_reason(
    aws: Callable[[str], Any], bucket: str, engine: LocalPipelineEngine, status_queue: str
) -> None:
    no_label = csv_dataset().replace("label", "target", 1)
    arn, group, _ = start_real_pipeline(aws, bucket, {"part-1.csv": no_label})

    assert engine.wait_idle(timeout=600)

    described = aws("sagemaker").describe_pipeline_execution(PipelineExecutionArn=arn)
    assert described["PipelineExecutionStatus"] == "Failed"
    assert "Preprocess" in described["FailureReason"]
    assert "no 'label' column" in described["FailureReason"]
    result = engine.result(arn)
    assert result is not None and [s.name for s in result.steps] == ["Preprocess"]
    packages = aws("sagemaker").list_model_packages(ModelPackageGroupName=group)
    assert packages["ModelPackageSummaryList"] == []
    events = status_events(aws("sqs"), status_queue, arn)
    assert [e["detail"]["currentPipelineExecutionStatus"] for e in events] == [
        "Executing",
        "Failed",
    ]


def test_model_below_threshold_ends_at_the_fail_step_without_registering(
    aws: Callable[[str], Any], bucket: str, engine: LocalPipelineEngine, recorder: Recorder
) -> None:
    # AUC never exceeds 1.0, so this threshold cannot be met.
    arn, group, _ = start_real_pipeline(
        aws, bucket, {"part-1.csv": csv_dataset()}, MetricThreshold="1.01"
    )

    assert engine.wait_idle(timeout=600)

    described = aws("sagemaker").describe_pipeline_execution(PipelineExecutionArn=arn)
    assert described["PipelineExecutionStatus"] == "Failed"
    assert "is below the threshold 1.01" in described["FailureReason"]
    result = engine.result(arn)
    assert result is not None
    assert result.step("MetricBelowThreshold") is not None
    assert result.step("Register") is None and result.step("RecordRun") is None
    assert recorder.calls == []
    packages = aws("sagemaker").list_model_packages(ModelPackageGroupName=group)
    assert packages["ModelPackageSummaryList"] == []


def test_missing_input_data_fails_instead_of_hanging(
    aws: Callable[[str], Any], bucket: str, engine: LocalPipelineEngine
) -> None:
    arn, _, _ = start_real_pipeline(aws, bucket, {})

    assert engine.wait_idle(timeout=600)

    described = aws("sagemaker").describe_pipeline_execution(PipelineExecutionArn=arn)
    assert described["PipelineExecutionStatus"] == "Failed"
    assert "No S3 objects found" in described["FailureReason"]


# ------------------------------------------------------------------- the engine


LAMBDA_ONLY = {
    "Version": "2020-12-01",
    "Parameters": [{"Name": "RunId", "Type": "String"}],
    "Steps": [
        {
            "Name": "Record",
            "Type": "Lambda",
            "FunctionArn": RECORDER_ARN,
            "Arguments": {"run_id": {"Get": "Parameters.RunId"}},
            "OutputParameters": [{"OutputName": "recorded", "OutputType": "String"}],
        }
    ],
}


def lambda_only_pipeline(sagemaker: Any, prefix: str) -> str:
    """A fresh pipeline of LAMBDA_ONLY in moto; returns its name."""
    pipeline = f"{prefix}-{uuid.uuid4().hex[:6]}"
    sagemaker.create_pipeline(
        PipelineName=pipeline,
        PipelineDefinition=json.dumps(LAMBDA_ONLY),
        RoleArn=f"arn:aws:iam::{ACCOUNT}:role/p",
    )
    return pipeline


def test_repeated_client_request_token_starts_one_execution(
    aws: Callable[[str], Any], engine: LocalPipelineEngine, recorder: Recorder
) -> None:
    sagemaker = aws("sagemaker")
    pipeline = lambda_only_pipeline(sagemaker, "tokens")
    token = uuid.uuid4().hex

    def start() -> str:
        return sagemaker.start_pipeline_execution(
            PipelineName=pipeline,
            PipelineParameters=[{"Name": "RunId", "Value": token}],
            ClientRequestToken=token,
        )["PipelineExecutionArn"]

    first, second = start(), start()
    assert engine.wait_idle(timeout=60)

    assert first == second
    summaries = sagemaker.list_pipeline_executions(PipelineName=pipeline)
    assert len(summaries["PipelineExecutionSummaries"]) == 1
    assert recorder.calls == [(RECORDER_ARN, {"run_id": token})]


def test_engine_does_not_rerun_executions_recorded_before_it_started(
    aws: Callable[[str], Any], endpoint: str, tmp_path: Path
) -> None:
    sagemaker = aws("sagemaker")
    pipeline = lambda_only_pipeline(sagemaker, "old")
    sagemaker.start_pipeline_execution(
        PipelineName=pipeline, PipelineParameters=[{"Name": "RunId", "Value": "old"}]
    )
    recorder = Recorder()
    engine = LocalPipelineEngine(endpoint, REGION, ACCOUNT, tmp_path / "e", recorder)
    engine.start()
    try:
        sagemaker.start_pipeline_execution(
            PipelineName=pipeline, PipelineParameters=[{"Name": "RunId", "Value": "new"}]
        )
        assert engine.wait_idle(timeout=60)
    finally:
        engine.stop()

    assert recorder.calls == [(RECORDER_ARN, {"run_id": "new"})]


def test_an_execution_waiting_for_a_worker_is_already_executing_not_finished(
    aws: Callable[[str], Any], endpoint: str, tmp_path: Path
) -> None:
    # moto creates executions "Succeeded"; a reconcile reading that before a
    # worker picked the execution up would end a run that never trained.
    release = threading.Event()
    recorder = Recorder()

    def slow(function_arn: str, payload: dict[str, Any]) -> dict[str, Any]:
        release.wait(30)
        return recorder(function_arn, payload)

    sagemaker = aws("sagemaker")
    pipeline = lambda_only_pipeline(sagemaker, "busy")
    engine = LocalPipelineEngine(endpoint, REGION, ACCOUNT, tmp_path / "e", slow, max_workers=1)
    engine.start()
    try:
        arns = [
            sagemaker.start_pipeline_execution(
                PipelineName=pipeline,
                PipelineParameters=[{"Name": "RunId", "Value": run_id}],
                ClientRequestToken=run_id.ljust(32, "0"),
            )["PipelineExecutionArn"]
            for run_id in ("first-run", "second-run")
        ]
        # The one worker is held by the first; the second waits, Executing.
        listed = sagemaker.list_pipeline_executions(PipelineName=pipeline)
        assert {e["PipelineExecutionStatus"] for e in listed["PipelineExecutionSummaries"]} == {
            "Executing"
        }
        for arn in arns:
            described = sagemaker.describe_pipeline_execution(PipelineExecutionArn=arn)
            assert described["PipelineExecutionStatus"] == "Executing"
        release.set()
        assert engine.wait_idle(timeout=60)
    finally:
        release.set()
        engine.stop()
    for arn in arns:
        described = sagemaker.describe_pipeline_execution(PipelineExecutionArn=arn)
        assert described["PipelineExecutionStatus"] == "Succeeded"
    assert sorted(p["run_id"] for _, p in recorder.calls) == ["first-run", "second-run"]


# ------------------------------------------------------------- the interpreter


def lambda_step(name: str, args: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "Name": name,
        "Type": "Lambda",
        "FunctionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}",
        "Arguments": {"name": name, **args},
        "OutputParameters": [{"OutputName": "x", "OutputType": "String"}],
        **extra,
    }


def run_definition(
    tmp_path: Path,
    steps: list[dict[str, Any]],
    params: list[dict[str, Any]] | None = None,
    values: dict[str, Any] | None = None,
    invoker: Recorder | None = None,
) -> tuple[ExecutionResult, Recorder]:
    invoker = invoker or Recorder()
    definition = {"Version": "2020-12-01", "Parameters": params or [], "Steps": steps}
    result = PipelineRunner(s3=None, sagemaker=None, workdir=tmp_path, lambda_invoker=invoker).run(
        json.dumps(definition), values or {}
    )
    return result, invoker


def called(invoker: Recorder) -> list[str]:
    return [payload["name"] for _, payload in invoker.calls]


def test_steps_run_after_their_dependencies_whatever_the_listing_order(tmp_path: Path) -> None:
    steps = [
        lambda_step("Last", {}, DependsOn=["Middle"]),
        lambda_step("Middle", {"upstream": {"Get": "Steps.First.OutputParameters['x']"}}),
        lambda_step("First", {}),
    ]

    result, invoker = run_definition(tmp_path, steps)

    assert result.status == "Succeeded"
    assert called(invoker) == ["First", "Middle", "Last"]
    assert invoker.calls[1][1]["upstream"] == "from-First"


def test_parameters_use_execution_values_over_defaults_with_declared_types(
    tmp_path: Path,
) -> None:
    params = [
        {"Name": "Name", "Type": "String", "DefaultValue": "default"},
        {"Name": "Rounds", "Type": "Integer", "DefaultValue": 10},
        {"Name": "Rate", "Type": "Float", "DefaultValue": 0.5},
        {"Name": "Prefix", "Type": "String", "DefaultValue": "s3://b/out/"},
    ]
    joined = {"Std:Join": {"On": "", "Values": [{"Get": "Parameters.Prefix"}, "run", "/model"]}}
    args = {
        "n": {"Get": "Parameters.Name"},
        "rounds": {"Get": "Parameters.Rounds"},
        "rate": {"Get": "Parameters.Rate"},
        "uri": joined,
        "text": {"Std:Join": {"On": "-", "Values": [{"Get": "Parameters.Rounds"}, 1.5]}},
    }

    result, invoker = run_definition(
        tmp_path, [lambda_step("S", args)], params, {"Rounds": "42", "Name": "given"}
    )

    assert result.status == "Succeeded", result.failure_reason
    payload = invoker.calls[0][1]
    assert payload["n"] == "given" and payload["rounds"] == 42 and payload["rate"] == 0.5
    assert payload["uri"] == "s3://b/out/run/model"
    assert payload["text"] == "42-1.5"


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"Rounds": "many"}, "'many' is not a valid Integer"),
        ({}, "parameter Rounds has no value and no default"),
        ({"Rounds": "1", "Typo": "x"}, "not declared by the pipeline: Typo"),
    ],
)
def test_invalid_parameters_fail_the_execution_with_a_reason(
    tmp_path: Path, values: dict[str, str], reason: str
) -> None:
    params = [{"Name": "Rounds", "Type": "Integer"}]

    result, invoker = run_definition(tmp_path, [lambda_step("S", {})], params, values)

    assert result.status == "Failed"
    assert reason in (result.failure_reason or "")
    assert invoker.calls == []


CONDITIONS = [
    ({"Type": "Equals", "LeftValue": 1, "RightValue": 1.0}, True),
    ({"Type": "Equals", "LeftValue": "a", "RightValue": "b"}, False),
    ({"Type": "GreaterThan", "LeftValue": 0.8, "RightValue": {"Get": "Parameters.T"}}, True),
    ({"Type": "GreaterThan", "LeftValue": 0.6, "RightValue": {"Get": "Parameters.T"}}, False),
    (
        {"Type": "GreaterThanOrEqualTo", "LeftValue": 0.6, "RightValue": {"Get": "Parameters.T"}},
        True,
    ),
    ({"Type": "LessThan", "LeftValue": 0.6, "RightValue": {"Get": "Parameters.T"}}, False),
    ({"Type": "LessThanOrEqualTo", "LeftValue": 0.6, "RightValue": {"Get": "Parameters.T"}}, True),
    ({"Type": "In", "QueryValue": "b", "Values": ["a", "b"]}, True),
    ({"Type": "In", "QueryValue": "c", "Values": ["a", "b"]}, False),
    ({"Type": "Not", "Condition": {"Type": "Equals", "LeftValue": 1, "RightValue": 1}}, False),
    (
        {
            "Type": "Or",
            "Conditions": [
                {"Type": "Equals", "LeftValue": 1, "RightValue": 2},
                {"Type": "LessThan", "LeftValue": 1, "RightValue": 2},
            ],
        },
        True,
    ),
]


@pytest.mark.parametrize(("condition", "expected"), CONDITIONS)
def test_condition_takes_exactly_one_branch(
    tmp_path: Path, condition: dict[str, Any], expected: bool
) -> None:
    step = {
        "Name": "Check",
        "Type": "Condition",
        "Arguments": {
            "Conditions": [condition],
            "IfSteps": [lambda_step("Yes", {})],
            "ElseSteps": [lambda_step("No", {})],
        },
    }
    params = [{"Name": "T", "Type": "Float", "DefaultValue": 0.6}]

    result, invoker = run_definition(tmp_path, [step], params)

    assert result.status == "Succeeded", result.failure_reason
    assert called(invoker) == (["Yes"] if expected else ["No"])


def test_fail_step_fails_the_execution_with_its_resolved_message(tmp_path: Path) -> None:
    params = [{"Name": "Tenant", "Type": "String", "DefaultValue": "acme"}]
    fail = {
        "Name": "Stop",
        "Type": "Fail",
        "Arguments": {
            "ErrorMessage": {
                "Std:Join": {"On": " ", "Values": ["no luck for", {"Get": "Parameters.Tenant"}]}
            }
        },
    }

    result, invoker = run_definition(
        tmp_path, [fail, lambda_step("After", {}, DependsOn=["Stop"])], params
    )

    assert result.status == "Failed"
    assert result.failure_reason == "no luck for acme"
    assert invoker.calls == []


def test_lambda_step_error_fails_the_step_and_stops_the_pipeline(tmp_path: Path) -> None:
    steps = [lambda_step("First", {}), lambda_step("Second", {}, DependsOn=["First"])]

    result, invoker = run_definition(tmp_path, steps, invoker=Recorder(fail_with="table missing"))

    assert result.status == "Failed"
    assert "First" in (result.failure_reason or "") and "table missing" in (
        result.failure_reason or ""
    )
    assert called(invoker) == ["First"]
    record = result.step("First")
    assert record is not None and record.status == "Failed"


def test_lambda_step_without_a_declared_output_fails(tmp_path: Path) -> None:
    step = lambda_step("S", {})
    step["OutputParameters"] = [{"OutputName": "missing", "OutputType": "String"}]

    result, _ = run_definition(tmp_path, [step])

    assert result.status == "Failed"
    assert "no output 'missing'" in (result.failure_reason or "")


def test_unknown_step_type_is_reported_as_unsupported(tmp_path: Path) -> None:
    result, _ = run_definition(tmp_path, [{"Name": "E", "Type": "EMR", "Arguments": {}}])

    assert result.status == "Failed"
    assert "not supported by the local runner" in (result.failure_reason or "")


# ------------------------------------------------- processing / training / register


def processing_step(bucket: str, script: str, **arguments: Any) -> dict[str, Any]:
    return {
        "Name": "Job",
        "Type": "Processing",
        "Arguments": {
            "AppSpecification": {
                "ImageUri": "sklearn",
                "ContainerEntrypoint": ["python3", "/opt/ml/processing/input/code/" + script],
                "ContainerArguments": ["--out=/opt/ml/processing/output", "/opt/ml"],
            },
            "ProcessingInputs": [
                {
                    "InputName": "code",
                    "S3Input": {
                        "S3Uri": f"s3://{bucket}/code/{script}",
                        "LocalPath": "/opt/ml/processing/input/code",
                        "S3DataType": "S3Prefix",
                    },
                }
            ],
            "ProcessingOutputConfig": {
                "Outputs": [
                    {
                        "OutputName": "out",
                        "S3Output": {
                            "S3Uri": f"s3://{bucket}/results",
                            "LocalPath": "/opt/ml/processing/output",
                            "S3UploadMode": "EndOfJob",
                        },
                    }
                ]
            },
            **arguments,
        },
    }


def put_script(aws: Callable[[str], Any], bucket: str, name: str, source: str) -> None:
    aws("s3").put_object(Bucket=bucket, Key=f"code/{name}", Body=source.encode())


def test_processing_job_runs_with_the_sagemaker_directory_contract(
    aws: Callable[[str], Any], bucket: str, tmp_path: Path
) -> None:
    put_script(
        aws,
        bucket,
        "probe.py",
        "import json, os, sys\n"
        "out = sys.argv[1].split('=', 1)[1]\n"
        "json.dump({'argv': sys.argv, 'exe': sys.executable,\n"
        "           'code': os.listdir(os.path.dirname(__file__))},\n"
        "          open(os.path.join(out, 'probe.json'), 'w'))\n",
    )

    result = runner(aws, tmp_path).run(json.dumps({"Steps": [processing_step(bucket, "probe.py")]}))

    assert result.status == "Succeeded", result.failure_reason
    probe = json.loads(aws("s3").get_object(Bucket=bucket, Key="results/probe.json")["Body"].read())
    assert probe["exe"] == sys.executable
    assert probe["code"] == ["probe.py"]
    mapped_out, mapped_root = probe["argv"][1].split("=", 1)[1], probe["argv"][2]
    assert mapped_out == mapped_root + "/processing/output"
    assert "/opt/ml" not in mapped_root


def test_processing_failure_reason_is_the_jobs_last_error_line(
    aws: Callable[[str], Any], bucket: str, tmp_path: Path
) -> None:
    put_script(
        aws,
        bucket,
        "boom.py",
        "import sys\nprint('ERROR: the data is bad', file=sys.stderr)\n"
        "print('cleanup noise', file=sys.stderr)\nsys.exit(3)\n",
    )

    result = runner(aws, tmp_path).run(json.dumps({"Steps": [processing_step(bucket, "boom.py")]}))

    assert result.status == "Failed"
    assert result.failure_reason == "Step Job failed: the data is bad"


def test_processing_job_over_its_runtime_is_killed_and_fails(
    aws: Callable[[str], Any], bucket: str, tmp_path: Path
) -> None:
    put_script(aws, bucket, "sleepy.py", "import time\ntime.sleep(600)\n")
    step = processing_step(bucket, "sleepy.py", StoppingCondition={"MaxRuntimeInSeconds": 1})

    result = runner(aws, tmp_path).run(json.dumps({"Steps": [step]}))

    assert result.status == "Failed"
    assert "exceeded its maximum runtime of 1 seconds" in (result.failure_reason or "")


def test_training_with_an_unsupported_image_fails_clearly(
    aws: Callable[[str], Any], tmp_path: Path
) -> None:
    step = {
        "Name": "Train",
        "Type": "Training",
        "Arguments": {
            "AlgorithmSpecification": {"TrainingImage": "123.dkr.ecr/my-pytorch:latest"},
            "OutputDataConfig": {"S3OutputPath": "s3://nowhere/model"},
        },
    }

    result = runner(aws, tmp_path).run(json.dumps({"Steps": [step]}))

    assert result.status == "Failed"
    assert "not supported by the local runner" in (result.failure_reason or "")
    assert "my-pytorch" in (result.failure_reason or "")


def test_register_into_a_missing_group_fails_clearly(
    aws: Callable[[str], Any], tmp_path: Path
) -> None:
    step = {
        "Name": "Register",
        "Type": "RegisterModel",
        "Arguments": {
            "ModelPackageGroupName": "no-such-group",
            "InferenceSpecification": {
                "Containers": [{"Image": "xgboost", "ModelDataUrl": "s3://b/model.tar.gz"}],
                "SupportedContentTypes": ["text/csv"],
                "SupportedResponseMIMETypes": ["text/csv"],
            },
            "ModelApprovalStatus": "PendingManualApproval",
        },
    }

    result = runner(aws, tmp_path).run(json.dumps({"Steps": [step]}))

    assert result.status == "Failed"
    assert "model package group no-such-group does not exist" in (result.failure_reason or "")


def test_hand_written_fixture_definition_runs_like_the_real_one(
    aws: Callable[[str], Any], bucket: str, tmp_path: Path
) -> None:
    """The fixture keeps the runner honest against the documented schema, independent
    of how the SDK happens to serialize today."""
    s3, sagemaker = aws("s3"), aws("sagemaker")
    s3.put_object(Bucket=bucket, Key="data/a.csv", Body=csv_dataset().encode())
    placeholders = upload_scripts(s3, bucket)
    definition = FIXTURE_DEFINITION.read_text()
    for name, value in placeholders.items():
        definition = definition.replace("${" + name + "}", value)
    group = f"fixture-{uuid.uuid4().hex[:6]}"
    sagemaker.create_model_package_group(ModelPackageGroupName=group)
    recorder = Recorder()

    result = runner(aws, tmp_path, lambda_invoker=recorder).run(
        definition, {p["Name"]: p["Value"] for p in parameters(bucket, group, "r1")}
    )

    assert result.status == "Succeeded", result.failure_reason
    train = result.step("Train")
    assert train is not None and train.properties["FinalMetricDataList"]
    assert {m["MetricName"] for m in train.properties["FinalMetricDataList"]} == {
        "train:auc",
        "validation:auc",
    }
    [(_, payload)] = recorder.calls
    assert payload["model_package_arn"].startswith(f"arn:aws:sagemaker:{REGION}:")


# ------------------------------------------ bounded, path-free failure reasons


def test_a_megabyte_failure_message_becomes_a_reason_within_sagemakers_limits(
    tmp_path: Path,
) -> None:
    fail = {"Name": "Stop", "Type": "Fail", "Arguments": {"ErrorMessage": "x" * 1_000_000}}

    result, _ = run_definition(tmp_path, [fail])

    assert result.status == "Failed"
    # PipelineExecutionFailureReason: max 1,300; a step's FailureReason: max 1,024.
    assert result.failure_reason is not None and len(result.failure_reason) <= 1300
    record = result.step("Stop")
    assert record is not None and len(record.failure_reason or "") <= 1024
    assert (record.failure_reason or "").startswith("xxxx")


def _data_input(bucket: str) -> dict[str, Any]:
    return {
        "InputName": "data",
        "S3Input": {
            "S3Uri": f"s3://{bucket}/data/",
            "LocalPath": "/opt/ml/processing/input/data",
            "S3DataType": "S3Prefix",
        },
    }


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("data/" + "n" * 900 + ".csv", "a path segment is 904 bytes long (the limit is 255)"),
        ("data/../outside.csv", "it has a '.' or '..' path segment"),
    ],
    ids=["900-character-name", "dot-dot-segment"],
)
def test_an_input_key_that_cannot_be_a_file_fails_the_job_naming_the_key_not_a_local_path(
    aws: Callable[[str], Any], bucket: str, tmp_path: Path, key: str, why: str
) -> None:
    put_script(aws, bucket, "noop.py", "print('ran')\n")
    aws("s3").put_object(Bucket=bucket, Key=key, Body=b"f0,label\n1,0\n")
    step = processing_step(bucket, "noop.py")
    step["Arguments"]["ProcessingInputs"].append(_data_input(bucket))

    result = runner(aws, tmp_path).run(json.dumps({"Steps": [step]}))

    assert result.status == "Failed"
    reason = result.failure_reason or ""
    assert why in reason and "input data source 'data'" in reason
    assert key[:60] in reason
    assert str(tmp_path) not in reason and "trainyard-local" not in reason
    assert not (tmp_path.parent / "outside.csv").exists()


def test_a_jobs_error_about_its_files_shows_container_paths_not_local_ones(
    aws: Callable[[str], Any], bucket: str, tmp_path: Path
) -> None:
    put_script(
        aws, bucket, "lost.py", "import sys\nopen(sys.argv[2] + '/processing/input/nope.csv')\n"
    )

    result = runner(aws, tmp_path).run(json.dumps({"Steps": [processing_step(bucket, "lost.py")]}))

    assert result.status == "Failed"
    reason = result.failure_reason or ""
    assert "FileNotFoundError" in reason and "'/opt/ml/processing/input/nope.csv'" in reason
    assert str(tmp_path) not in reason
