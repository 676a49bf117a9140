"""The pipeline definition: golden file, determinism, offline build, and the contract users rely on.

If a change to the definition is intended, regenerate the golden file and review its diff::

    .venv/bin/python -m pipeline.definition --write-golden
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from trainyard_core.config import Settings, XgboostSettings, resolve_settings

from pipeline.contract import PARAMETERS, PLACEHOLDERS
from pipeline.definition import GOLDEN_PATH, build_definition_json, render_definition

REPO_ROOT = Path(__file__).resolve().parents[2]
ROLE = {"Get": "Parameters.ExecutionRoleArn"}


def evaluation_get(path: str) -> dict[str, Any]:
    return {
        "Std:JsonGet": {
            "Path": path,
            "PropertyFile": {"Get": "Steps.Evaluate.PropertyFiles.EvaluationReport"},
        }
    }


METRIC = evaluation_get("primary_metric.value")
METRIC_NAME = evaluation_get("primary_metric.name")


def param(name: str) -> dict[str, str]:
    return {"Get": f"Parameters.{name}"}


def run_join(suffix: str) -> dict[str, Any]:
    return {"Std:Join": {"On": "", "Values": [param("OutputUri"), param("RunId"), suffix]}}


def output_uri(step: str, output: str) -> dict[str, str]:
    return {"Get": f"Steps.{step}.ProcessingOutputConfig.Outputs['{output}'].S3Output.S3Uri"}


def all_steps(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every step by name, including those nested in condition branches."""
    found: dict[str, dict[str, Any]] = {}

    def visit(steps: list[dict[str, Any]]) -> None:
        for step in steps:
            found[step["Name"]] = step
            if step["Type"] == "Condition":
                visit(step["Arguments"]["IfSteps"])
                visit(step["Arguments"]["ElseSteps"])

    visit(definition["Steps"])
    return found


def references(node: Any) -> list[str]:
    """Every {"Get": ...} path in a JSON tree."""
    if isinstance(node, dict):
        own = [node["Get"]] if isinstance(node.get("Get"), str) else []
        return own + [ref for value in node.values() for ref in references(value)]
    if isinstance(node, list):
        return [ref for item in node for ref in references(item)]
    return []


@pytest.fixture(scope="module")
def default_json() -> str:
    return build_definition_json(Settings())


@pytest.fixture(scope="module")
def definition(default_json: str) -> dict[str, Any]:
    return json.loads(default_json)


@pytest.fixture(scope="module")
def steps(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return all_steps(definition)


@pytest.fixture(scope="module")
def params(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["Name"]: p for p in definition["Parameters"]}


# --- golden file and determinism ---------------------------------------------------------------


def test_default_definition_matches_golden_file_byte_for_byte(default_json: str) -> None:
    # Regenerate with `python -m pipeline.definition --write-golden` when the change is intended.
    assert GOLDEN_PATH.read_bytes() == (default_json + "\n").encode()


def test_building_twice_gives_identical_output(default_json: str) -> None:
    assert build_definition_json(Settings()) == default_json


def test_building_leaves_process_environment_and_root_logger_untouched() -> None:
    # Fresh interpreter: importing the SDK for the first time is what touches the root logger.
    code = textwrap.dedent(
        """
        import logging, os
        from pipeline.definition import build_definition_json
        from trainyard_core.config import Settings
        env, root = dict(os.environ), logging.getLogger()
        handlers, level = list(root.handlers), root.level
        build_definition_json(Settings())
        print(dict(os.environ) == env, root.handlers == handlers, root.level == level)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, timeout=300
    )
    assert result.stdout.split() == ["True", "True", "True"], result.stderr[-4000:]


def test_importing_the_builder_does_not_import_the_sdk() -> None:
    # The local runner and the CDK app import PARAMETERS / render_definition cheaply.
    code = (
        "import sys, pipeline.definition;print(any(m.startswith('sagemaker') for m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    assert result.stdout.strip() == "False"


def test_main_prints_the_default_definition(capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline.definition import main

    assert main([]) == 0
    assert capsys.readouterr().out == GOLDEN_PATH.read_text()


# --- offline: no network, no credentials, import time included ---------------------------------

# Runs in a fresh interpreter: blocks and records every connection and DNS lookup before
# anything is imported, so import-time behaviour of the SDK is covered too. Exceptions the
# SDK swallows (e.g. credential probes) are still recorded.
_BLOCKER = textwrap.dedent(
    """
    import socket, sys, threading
    attempts = []
    def blocked(kind):
        def refuse(*args, **kwargs):
            attempts.append((kind, repr(args[1:] if kind == "connect" else args)[:200]))
            raise OSError(f"network blocked in test: {kind}")
        return refuse
    socket.socket.connect = blocked("connect")
    socket.socket.connect_ex = blocked("connect")
    socket.create_connection = blocked("create_connection")
    socket.getaddrinfo = blocked("getaddrinfo")

    def report_and_exit(payload):
        for thread in threading.enumerate():  # telemetry would be sent from daemon threads
            if thread is not threading.main_thread():
                thread.join(timeout=5)
        print(repr(attempts), file=sys.stderr)
        sys.stdout.write(payload)
        sys.exit(3 if attempts else 0)
    """
)

_CREDENTIAL_ENV = re.compile(
    r"^AWS_(ACCESS_KEY_ID|SECRET_ACCESS_KEY|SESSION_TOKEN|SECURITY_TOKEN|PROFILE|DEFAULT_PROFILE"
    r"|REGION|DEFAULT_REGION|CONTAINER_.*|WEB_IDENTITY_TOKEN_FILE|ROLE_ARN|ROLE_SESSION_NAME"
    r"|ENDPOINT_URL.*)$"
)


def run_offline(body: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not _CREDENTIAL_ENV.match(k)}
    env.update(
        AWS_CONFIG_FILE=str(tmp_path / "no-such-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-such-credentials"),
        HOME=str(tmp_path),  # no ~/.aws, no ~/.config/sagemaker
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])),
    )
    script = _BLOCKER + textwrap.dedent(body)
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )


def test_the_offline_harness_detects_a_network_call(tmp_path: Path) -> None:
    # Proves the next test could fail: a plain HTTP request is caught and reported.
    result = run_offline(
        """
        import urllib.request
        try:
            urllib.request.urlopen("http://example.com", timeout=1)
        except OSError:
            pass
        report_and_exit("")
        """,
        tmp_path,
    )
    assert result.returncode == 3, result.stderr
    assert "example.com" in result.stderr


def test_building_makes_no_network_call_and_needs_no_credentials(tmp_path: Path) -> None:
    result = run_offline(
        """
        from pipeline.definition import build_definition_json
        from trainyard_core.config import Settings
        report_and_exit(build_definition_json(Settings()))
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout + "\n" == GOLDEN_PATH.read_text()


# --- the contract users of the deployed pipeline rely on ----------------------------------------


def test_parameters_have_the_contract_names_in_order(definition: dict[str, Any]) -> None:
    assert [p["Name"] for p in definition["Parameters"]] == PARAMETERS


def test_parameter_types_and_defaults_come_from_settings(
    params: dict[str, dict[str, Any]],
) -> None:
    settings = Settings()
    plan = settings.plan(settings.default_plan)
    types = {name: p["Type"] for name, p in params.items()}
    assert {n for n, t in types.items() if t != "String"} == {
        "TrainingInstanceCount",
        "MetricThreshold",
        "NumRound",
        "MaxDepth",
        "Eta",
        "TrainingVolumeSizeInGB",
    }
    assert types["TrainingInstanceCount"] == types["NumRound"] == types["MaxDepth"] == "Integer"
    assert types["TrainingVolumeSizeInGB"] == "Integer"
    # Today's runs (no problem type, algorithm or hyperparameters passed) are unchanged.
    assert params["ProblemType"]["DefaultValue"] == "binary"
    assert params["Algorithm"]["DefaultValue"] == "xgboost"
    assert params["Hyperparameters"]["DefaultValue"] == "{}"
    assert params["SchemaBaselineUri"]["DefaultValue"] == "${NoSchemaBaselineFileUri}"
    assert params["SchemaDrift"]["DefaultValue"] == settings.default_training.schema_drift
    assert params["TrainingVolumeSizeInGB"]["DefaultValue"] == 30
    assert types["MetricThreshold"] == types["Eta"] == "Float"
    # Tenant- and run-specific values have no default: the scheduler must pass them.
    for name in ("TenantId", "RunId", "InputDataUri", "OutputUri", "ExecutionRoleArn"):
        assert "DefaultValue" not in params[name], name
    assert "DefaultValue" not in params["ModelPackageGroupName"]
    assert params["TrainingInstanceType"]["DefaultValue"] == plan.training_instance_type
    assert params["TrainingInstanceCount"]["DefaultValue"] == plan.training_instance_count
    assert params["ProcessingInstanceType"]["DefaultValue"] == settings.processing_instance_type
    assert params["ModelApprovalStatus"]["DefaultValue"] == settings.model_approval_status
    assert params["MetricThreshold"]["DefaultValue"] == settings.metric_threshold
    assert params["NumRound"]["DefaultValue"] == 50
    assert params["MaxDepth"]["DefaultValue"] == 4
    assert params["Eta"]["DefaultValue"] == 0.2
    # What a run trains: the scheduler always passes them (dispatch.training_parameters).
    assert params["TrainingVolumeSizeInGB"]["DefaultValue"] == plan.training_volume_size_gb
    assert params["ProblemType"]["DefaultValue"] == settings.default_training.problem_type
    assert params["Algorithm"]["DefaultValue"] == settings.default_training.algorithm
    assert params["Hyperparameters"]["DefaultValue"] == "{}"


def test_image_defaults_are_the_builtin_sagemaker_images(
    params: dict[str, dict[str, Any]],
) -> None:
    assert params["TrainingImageUri"]["DefaultValue"] == (
        "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
    )
    assert params["ProcessingImageUri"]["DefaultValue"] == (
        "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
    )


def test_steps_have_the_contract_names_types_and_branches(
    definition: dict[str, Any], steps: dict[str, dict[str, Any]]
) -> None:
    assert [s["Name"] for s in definition["Steps"]] == [
        "Preprocess",
        "Train",
        "Evaluate",
        "CheckMetric",
    ]
    assert {name: s["Type"] for name, s in steps.items()} == {
        "Preprocess": "Processing",
        "Train": "Training",
        "Evaluate": "Processing",
        "CheckMetric": "Condition",
        "Register": "RegisterModel",
        "RecordRun": "Lambda",
        "MetricBelowThreshold": "Fail",
    }
    branches = steps["CheckMetric"]["Arguments"]
    assert [s["Name"] for s in branches["IfSteps"]] == ["Register", "RecordRun"]
    assert [s["Name"] for s in branches["ElseSteps"]] == ["MetricBelowThreshold"]


def test_every_job_runs_with_the_tenant_execution_role(steps: dict[str, dict[str, Any]]) -> None:
    jobs = [s for s in steps.values() if s["Type"] in ("Processing", "Training")]
    assert len(jobs) == 3
    for step in jobs:
        assert step["Arguments"]["RoleArn"] == ROLE, step["Name"]


def test_every_job_carries_the_tenant_and_run_tags(steps: dict[str, dict[str, Any]]) -> None:
    for step in steps.values():
        if step["Type"] in ("Processing", "Training"):
            assert step["Arguments"]["Tags"] == [
                {"Key": "trainyard:tenant-id", "Value": param("TenantId")},
                {"Key": "trainyard:run-id", "Value": param("RunId")},
            ], step["Name"]


def test_every_job_retries_transient_sagemaker_errors_a_bounded_number_of_times(
    steps: dict[str, dict[str, Any]],
) -> None:
    jobs = [s for s in steps.values() if s["Type"] in ("Processing", "Training")]
    assert len(jobs) == 3
    for step in jobs:
        policies = step.get("RetryPolicies") or []
        retried = {kind for policy in policies for kind in policy["ExceptionType"]}
        assert retried == {
            "SageMaker.CAPACITY_ERROR",
            "SageMaker.RESOURCE_LIMIT",
            "SageMaker.JOB_INTERNAL_ERROR",
            "Step.THROTTLING",
            "Step.SERVICE_FAULT",
        }, step["Name"]
        for policy in policies:
            # Bounded by attempts (not only by time), with a growing wait.
            assert 1 <= policy["MaxAttempts"] <= 5, step["Name"]
            assert policy["IntervalSeconds"] >= 1 and policy["BackoffRate"] > 1, step["Name"]


def test_condition_compares_the_problem_types_metric_from_the_evaluation_report(
    steps: dict[str, dict[str, Any]],
) -> None:
    # AUC, macro-F1 or R² (the evaluation picks by ProblemType): higher is better for each.
    assert steps["CheckMetric"]["Arguments"]["Conditions"] == [
        {
            "Type": "GreaterThanOrEqualTo",
            "LeftValue": METRIC,
            "RightValue": param("MetricThreshold"),
        }
    ]
    evaluate = steps["Evaluate"]
    assert evaluate["PropertyFiles"] == [
        {
            "PropertyFileName": "EvaluationReport",
            "OutputName": "evaluation",
            "FilePath": "evaluation.json",
        }
    ]
    outputs = evaluate["Arguments"]["ProcessingOutputConfig"]["Outputs"]
    assert [o["OutputName"] for o in outputs] == ["evaluation"]


def test_preprocess_follows_the_processing_directory_contract(
    steps: dict[str, dict[str, Any]],
) -> None:
    args = steps["Preprocess"]["Arguments"]
    assert args["AppSpecification"] == {
        "ImageUri": param("ProcessingImageUri"),
        "ContainerEntrypoint": ["python3", "/opt/ml/processing/input/code/preprocess.py"],
        "ContainerArguments": [
            "--input-dir",
            "/opt/ml/processing/input/data",
            "--output-dir",
            "/opt/ml/processing/output",
            "--problem-type",
            param("ProblemType"),
            "--report-dir",
            "/opt/ml/processing/report",
            "--baseline-dir",
            "/opt/ml/processing/input/baseline",
            "--schema-drift",
            param("SchemaDrift"),
            "--run-id",
            param("RunId"),
        ],
    }
    assert steps["Preprocess"]["PropertyFiles"] == [
        {"PropertyFileName": "DataReport", "OutputName": "report", "FilePath": "data-report.json"}
    ]
    inputs = {i["InputName"]: i["S3Input"] for i in args["ProcessingInputs"]}
    assert inputs["data"]["S3Uri"] == param("InputDataUri")
    assert inputs["data"]["LocalPath"] == "/opt/ml/processing/input/data"
    assert inputs["code"]["S3Uri"] == "${PreprocessScriptUri}"
    assert inputs["code"]["LocalPath"] == "/opt/ml/processing/input/code"
    # The schema-drift baseline: a processing input may not be empty, so with no
    # earlier success the parameter's default is the platform's no-baseline marker.
    assert inputs["baseline"]["S3Uri"] == param("SchemaBaselineUri")
    assert inputs["baseline"]["LocalPath"] == "/opt/ml/processing/input/baseline"
    outputs = {o["OutputName"]: o["S3Output"] for o in args["ProcessingOutputConfig"]["Outputs"]}
    assert list(outputs) == ["train", "validation", "test", "report"]
    assert outputs.pop("report") == {
        "LocalPath": "/opt/ml/processing/report",
        "S3Uri": run_join("/data-report"),
        "S3UploadMode": "EndOfJob",
    }
    for split, out in outputs.items():
        assert out["LocalPath"] == f"/opt/ml/processing/output/{split}"
        assert out["S3Uri"] == run_join(f"/preprocess/{split}")
    assert args["ProcessingResources"]["ClusterConfig"]["InstanceType"] == param(
        "ProcessingInstanceType"
    )


def test_train_runs_the_provider_script_in_script_mode(steps: dict[str, dict[str, Any]]) -> None:
    args = steps["Train"]["Arguments"]
    assert args["AlgorithmSpecification"]["TrainingImage"] == param("TrainingImageUri")
    assert args["ResourceConfig"]["InstanceType"] == param("TrainingInstanceType")
    assert args["ResourceConfig"]["InstanceCount"] == param("TrainingInstanceCount")
    assert args["ResourceConfig"]["VolumeSizeInGB"] == param("TrainingVolumeSizeInGB")
    assert args["OutputDataConfig"]["S3OutputPath"] == run_join("/model")
    channels = {c["ChannelName"]: c for c in args["InputDataConfig"]}
    assert list(channels) == ["train", "validation", "code"]
    code = channels.pop("code")
    assert code["DataSource"]["S3DataSource"]["S3Uri"] == "${TrainScriptUri}"
    for name, channel in channels.items():
        assert channel["ContentType"] == "text/csv"
        assert channel["DataSource"]["S3DataSource"]["S3Uri"] == output_uri("Preprocess", name)
    hyper = args["HyperParameters"]
    # The framework toolkit copies the code channel to /opt/ml/code and runs train.py.
    assert hyper["sagemaker_program"] == "train.py"
    assert hyper["sagemaker_submit_directory"] == "/opt/ml/input/data/code"
    assert hyper["algorithm"] == param("Algorithm")
    assert hyper["problem_type"] == param("ProblemType")
    assert hyper["hyperparameters"] == param("Hyperparameters")
    # The settings' xgboost defaults ride along; the objective follows ProblemType.
    assert hyper["subsample"] == "0.9"
    assert "objective" not in hyper and "eval_metric" not in hyper
    # Hyperparameters are strings for CreateTrainingJob: numeric parameters are joined to text.
    for key, name in (("num_round", "NumRound"), ("max_depth", "MaxDepth"), ("eta", "Eta")):
        assert hyper[key] == {"Std:Join": {"On": "", "Values": [param(name)]}}


def test_evaluate_reads_the_model_and_test_split(steps: dict[str, dict[str, Any]]) -> None:
    args = steps["Evaluate"]["Arguments"]
    assert args["AppSpecification"]["ImageUri"] == param("TrainingImageUri")
    assert args["AppSpecification"]["ContainerEntrypoint"] == [
        "python3",
        "/opt/ml/processing/input/code/evaluate.py",
    ]
    assert args["AppSpecification"]["ContainerArguments"] == [
        "--model-dir",
        "/opt/ml/processing/input/model",
        "--test-dir",
        "/opt/ml/processing/input/test",
        "--output-dir",
        "/opt/ml/processing/evaluation",
        "--algorithm",
        param("Algorithm"),
        "--problem-type",
        param("ProblemType"),
    ]
    inputs = {i["InputName"]: i["S3Input"] for i in args["ProcessingInputs"]}
    assert inputs["model"]["S3Uri"] == {"Get": "Steps.Train.ModelArtifacts.S3ModelArtifacts"}
    assert inputs["model"]["LocalPath"] == "/opt/ml/processing/input/model"
    assert inputs["test"]["S3Uri"] == output_uri("Preprocess", "test")
    assert inputs["test"]["LocalPath"] == "/opt/ml/processing/input/test"
    assert inputs["code"]["S3Uri"] == "${EvaluateScriptUri}"
    (out,) = args["ProcessingOutputConfig"]["Outputs"]
    assert out["S3Output"]["LocalPath"] == "/opt/ml/processing/evaluation"
    assert out["S3Output"]["S3Uri"] == run_join("/evaluation")


def test_register_puts_the_model_into_the_tenant_group(steps: dict[str, dict[str, Any]]) -> None:
    args = steps["Register"]["Arguments"]
    assert args["ModelPackageGroupName"] == param("ModelPackageGroupName")
    assert args["ModelApprovalStatus"] == param("ModelApprovalStatus")
    (container,) = args["InferenceSpecification"]["Containers"]
    assert container["Image"] == param("TrainingImageUri")
    assert container["ModelDataUrl"] == {"Get": "Steps.Train.ModelArtifacts.S3ModelArtifacts"}
    assert args["InferenceSpecification"]["SupportedContentTypes"] == ["text/csv"]
    assert args["InferenceSpecification"]["SupportedResponseMIMETypes"] == ["text/csv"]
    statistics = args["ModelMetrics"]["ModelQuality"]["Statistics"]
    assert statistics["ContentType"] == "application/json"
    assert statistics["S3Uri"] == {
        "Std:Join": {"On": "/", "Values": [output_uri("Evaluate", "evaluation"), "evaluation.json"]}
    }
    metadata = args["CustomerMetadataProperties"]
    assert metadata["trainyard:primaryMetric"] == METRIC_NAME
    assert metadata["trainyard:primaryMetricValue"] == {"Std:Join": {"On": "", "Values": [METRIC]}}
    assert metadata["trainyard:problemType"] == param("ProblemType")
    assert metadata["trainyard:algorithm"] == param("Algorithm")


def test_record_run_invokes_the_recorder_after_register(steps: dict[str, dict[str, Any]]) -> None:
    record = steps["RecordRun"]
    assert record["FunctionArn"] == "${RecorderFunctionArn}"
    assert record["DependsOn"] == ["Register"]
    assert record["OutputParameters"] == [{"OutputName": "recorded", "OutputType": "String"}]
    inputs = record["Arguments"]
    assert inputs["tenant_id"] == param("TenantId")
    assert inputs["run_id"] == param("RunId")
    assert inputs["model_package_arn"] == {"Get": "Steps.Register.ModelPackageArn"}
    assert inputs["metrics"] == evaluation_get("metrics_json")
    assert inputs["data_report"] == {
        "Std:JsonGet": {
            "Path": "summary",
            "PropertyFile": {"Get": "Steps.Preprocess.PropertyFiles.DataReport"},
        }
    }
    assert inputs["problem_type"] == param("ProblemType")
    assert inputs["training_job_name"] == {"Get": "Steps.Train.TrainingJobName"}
    assert (
        inputs["evaluation_uri"]
        == (steps["Register"]["Arguments"]["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"])
    )


def test_failure_message_names_the_metric_that_was_below_the_threshold(
    steps: dict[str, dict[str, Any]],
) -> None:
    message = steps["MetricBelowThreshold"]["Arguments"]["ErrorMessage"]["Std:Join"]
    assert METRIC_NAME in message["Values"] and METRIC in message["Values"]
    assert param("MetricThreshold") in message["Values"]
    assert any("below the threshold" in v for v in message["Values"] if isinstance(v, str))


def test_every_reference_points_at_a_declared_parameter_or_step(
    definition: dict[str, Any], steps: dict[str, dict[str, Any]]
) -> None:
    refs = references(definition["Steps"])
    assert refs
    for ref in refs:
        kind, name = ref.split(".")[:2]
        if kind == "Parameters":
            assert name in PARAMETERS, ref
        else:
            assert kind == "Steps" and name in steps, ref


# --- placeholders -------------------------------------------------------------------------------

VALUES = {
    "PreprocessScriptUri": "s3://assets/preprocess.py",
    "EvaluateScriptUri": "s3://assets/evaluate.py",
    "TrainScriptUri": "s3://assets/train.py",
    "NoSchemaBaselineFileUri": "s3://assets/no_schema_baseline.json",
    "RecorderFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:trainyard-recorder",
}


def test_definition_contains_exactly_the_contract_placeholders(default_json: str) -> None:
    assert set(re.findall(r"\$\{([^}]*)\}", default_json)) == set(PLACEHOLDERS)
    # Each step script once, the no-baseline marker once, the recorder once.
    assert default_json.count("${") == 5


def test_render_definition_replaces_every_placeholder(default_json: str) -> None:
    rendered = render_definition(default_json, VALUES)
    assert "${" not in rendered
    steps = all_steps(json.loads(rendered))
    assert steps["RecordRun"]["FunctionArn"] == VALUES["RecorderFunctionArn"]
    code = {
        name: next(
            i["S3Input"]["S3Uri"]
            for i in steps[name]["Arguments"]["ProcessingInputs"]
            if i["InputName"] == "code"
        )
        for name in ("Preprocess", "Evaluate")
    }
    assert code == {
        "Preprocess": VALUES["PreprocessScriptUri"],
        "Evaluate": VALUES["EvaluateScriptUri"],
    }


def test_render_definition_matches_textual_substitution(default_json: str) -> None:
    # CloudFormation's Fn::Sub substitutes text; rendering locally must give the same result.
    substituted = default_json
    for name, value in VALUES.items():
        substituted = substituted.replace("${" + name + "}", value)
    assert json.loads(render_definition(default_json, VALUES)) == json.loads(substituted)


def test_render_definition_keeps_json_valid_for_awkward_values(default_json: str) -> None:
    awkward = dict(VALUES, PreprocessScriptUri='s3://b/"quoted"\\path')
    steps = all_steps(json.loads(render_definition(default_json, awkward)))
    uris = [i["S3Input"]["S3Uri"] for i in steps["Preprocess"]["Arguments"]["ProcessingInputs"]]
    assert awkward["PreprocessScriptUri"] in uris


@pytest.mark.parametrize(
    "values",
    [
        {k: v for k, v in VALUES.items() if k != "RecorderFunctionArn"},
        dict(VALUES, Unexpected="x"),
    ],
    ids=["missing", "unknown"],
)
def test_render_definition_rejects_missing_or_unknown_names(
    default_json: str, values: dict[str, str]
) -> None:
    with pytest.raises(ValueError, match="placeholder values"):
        render_definition(default_json, values)


# --- settings flow through ----------------------------------------------------------------------


def test_settings_flow_into_the_definition(default_json: str) -> None:
    settings = resolve_settings(
        {
            "region": "eu-west-1",
            "metricThreshold": 0.75,
            "modelApprovalStatus": "Approved",
            "processingInstanceType": "ml.c5.xlarge",
            "defaultPlan": "standard",
        }
    )
    # Built directly: resolve_settings camel-cases hyperparameter names (num_round -> numRound).
    xgboost = XgboostSettings(
        framework_version="1.5-1",
        hyperparameters={**XgboostSettings().hyperparameters, "num_round": "120"},
    )
    settings = settings.model_copy(update={"xgboost": xgboost})
    text = build_definition_json(settings)
    assert text != default_json
    params = {p["Name"]: p.get("DefaultValue") for p in json.loads(text)["Parameters"]}
    assert params["MetricThreshold"] == 0.75
    assert params["ModelApprovalStatus"] == "Approved"
    assert params["ProcessingInstanceType"] == "ml.c5.xlarge"
    assert params["TrainingInstanceType"] == "ml.m5.xlarge"
    assert params["NumRound"] == 120
    assert params["TrainingImageUri"] == (
        "141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-xgboost:1.5-1"
    )
    assert params["ProcessingImageUri"].startswith("141502667606.dkr.ecr.eu-west-1.amazonaws.com/")
