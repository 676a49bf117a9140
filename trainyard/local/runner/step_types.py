"""One handler per step type, registered in ``STEP_TYPES``: Processing (a local
Python process), Training (the built-in XGBoost container or a framework
container's script mode, emulated), RegisterModel
and Model (boto3 CreateModelPackage / CreateModel), Lambda, Condition, Fail.

A handler gets the execution, the step and its record; it fills in the record's
``properties`` (the Describe*-shaped data later steps ``Get``) or raises
``StepFailure``. A step type missing here fails with "not supported"."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainyard_core.arns import arn

from ..iam.enforcer import AccessDenied
from . import framework_container, staging
from .expressions import coerce, split_s3_uri, to_text, walk
from .records import Step, StepFailure, StepRecord, job_name, now

if TYPE_CHECKING:
    from .execution import Execution

StepHandler = Callable[["Execution", Step, StepRecord], None]

# Step arguments that are not part of the Create*Job request.
_RUNNER_ONLY_ARGUMENTS: frozenset[str] = frozenset()


# ------------------------------------------------------------ pipeline-level steps


def condition(ex: Execution, step: Step, record: StepRecord) -> None:
    conditions = (step.body.get("Arguments") or {}).get("Conditions") or []
    outcome = all(ex.resolver.evaluate(c) for c in conditions)
    ex.outcomes[step.name] = outcome
    record.properties = {"Outcome": "True" if outcome else "False"}
    record.metadata["outcome"] = outcome


def fail(ex: Execution, step: Step, record: StepRecord) -> None:
    message = ex.resolve((step.body.get("Arguments") or {}).get("ErrorMessage", ""))
    record.metadata["error_message"] = to_text(message)
    raise StepFailure(to_text(message) or f"Fail step {step.name} reached")


def lambda_(ex: Execution, step: Step, record: StepRecord) -> None:
    invoker = ex.runner.lambda_invoker
    if invoker is None:
        raise StepFailure("no lambda invoker configured for the local runner")
    function_arn = to_text(ex.resolve(step.body.get("FunctionArn")))
    payload = ex.resolve(step.body.get("Arguments") or {})
    record.metadata["function_arn"] = function_arn
    if ex.runner.enforcer is not None and ex.pipeline_principal is not None:
        try:
            ex.runner.enforcer.check_call(
                ex.pipeline_principal, "lambda", "Invoke", {"FunctionName": function_arn}
            )
        except AccessDenied as exc:
            raise StepFailure(f"ClientError: {exc}") from None
    try:
        response = invoker(function_arn, payload)
    except Exception as exc:
        raise StepFailure(f"Lambda {function_arn} failed: {exc}") from exc
    if not isinstance(response, Mapping):
        raise StepFailure(
            f"Lambda {function_arn} returned {type(response).__name__}, not an object"
        )
    outputs: dict[str, Any] = {}
    for spec in step.body.get("OutputParameters") or []:
        name = spec["OutputName"]
        if name not in response:
            raise StepFailure(f"Lambda {function_arn} response has no output {name!r}")
        outputs[name] = coerce(response[name], spec.get("OutputType", "String"))
    record.properties = {"OutputParameters": outputs}


def register_model(ex: Execution, step: Step, record: StepRecord) -> None:
    args = ex.resolve(step.body.get("Arguments") or {})
    sagemaker = ex.runner.sagemaker
    group = args.get("ModelPackageGroupName")
    if group:
        try:
            with ex.as_pipeline():
                sagemaker.describe_model_package_group(ModelPackageGroupName=group)
        except Exception as exc:
            if "AccessDenied" in str(exc):
                raise
            raise StepFailure(f"model package group {group} does not exist") from None
    for key in ("CertifyForMarketplace", "Description"):  # not accepted in pipelines
        args.pop(key, None)
    with ex.as_pipeline():
        package_arn = sagemaker.create_model_package(**args)["ModelPackageArn"]
        described = sagemaker.describe_model_package(ModelPackageName=package_arn)
    described.pop("ResponseMetadata", None)
    record.properties = {**described, "ModelPackageArn": package_arn}
    record.metadata["model_package_arn"] = package_arn


def create_model(ex: Execution, step: Step, record: StepRecord) -> None:
    args = ex.resolve(step.body.get("Arguments") or {})
    args.setdefault("ModelName", job_name(ex.context, step.name))
    with ex.as_pipeline():
        model_arn = ex.runner.sagemaker.create_model(**args)["ModelArn"]
    record.properties = {"ModelName": args["ModelName"], "ModelArn": model_arn}


# ------------------------------------------------------------------- job steps


def processing(ex: Execution, step: Step, record: StepRecord) -> None:
    args = ex.resolve(step.body.get("Arguments") or {})
    name = job_name(ex.context, step.name, _attempt(record))
    root = ex.job_root(step.name)
    app = args.get("AppSpecification") or {}
    entrypoint = list(app.get("ContainerEntrypoint") or [])
    if not entrypoint:
        raise StepFailure(
            f"image {app.get('ImageUri')} without ContainerEntrypoint is not supported by "
            "the local runner (it runs processing code as local Python)"
        )
    record.metadata.update(job_name=name, image=app.get("ImageUri"))
    job_arn = _create_job(ex, "processing-job", "CreateProcessingJob", name, args)
    outputs = (args.get("ProcessingOutputConfig") or {}).get("Outputs") or []
    s3 = ex.runner.s3
    with ex.as_job(str(args.get("RoleArn", "")), job_arn):
        for item in args.get("ProcessingInputs") or []:
            source = item.get("S3Input")
            if not source:
                raise StepFailure(f"input {item.get('InputName')}: only S3Input is supported")
            if source.get("S3DataType", "S3Prefix") != "S3Prefix":
                raise StepFailure(f"input {item.get('InputName')}: only S3Prefix is supported")
            local = staging.map_path(source["LocalPath"], root)
            staging.download(
                s3, source["S3Uri"], local, item.get("InputName", ""), str(source["LocalPath"])
            )
    for item in outputs:
        if "S3Output" in item:
            staging.map_path(item["S3Output"]["LocalPath"], root).mkdir(parents=True, exist_ok=True)
    command = [
        staging.map_arg(a, root) for a in entrypoint + list(app.get("ContainerArguments") or [])
    ]
    if command and Path(command[0]).name in ("python", "python3"):
        command[0] = ex.runner.python
    env = {str(k): to_text(v) for k, v in (args.get("Environment") or {}).items()}
    timeout = (args.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds")
    ex.launch(record, command, root, env, timeout)
    with ex.as_job(str(args.get("RoleArn", "")), job_arn):
        for item in outputs:
            if "S3Output" in item:
                local = staging.map_path(item["S3Output"]["LocalPath"], root)
                staging.upload(s3, local, item["S3Output"]["S3Uri"])
    record.properties = {
        **args,
        "ProcessingJobName": name,
        "ProcessingJobArn": job_arn,
        "ProcessingJobStatus": "Completed",
        "ProcessingStartTime": record.start_time,
        "ProcessingEndTime": now(),
    }
    files: dict[str, str] = {}
    for spec in step.body.get("PropertyFiles") or []:
        output = walk(outputs, [spec["OutputName"]], f"PropertyFile {spec['PropertyFileName']}")
        path = staging.map_path(output["S3Output"]["LocalPath"], root) / spec["FilePath"]
        try:
            json.loads(path.read_text())  # the job must have written valid JSON
        except (OSError, ValueError) as exc:
            raise StepFailure(
                f"property file {spec['PropertyFileName']} ({spec['FilePath']}): {exc}"
            ) from None
        uri = f"{str(output['S3Output']['S3Uri']).rstrip('/')}/{spec['FilePath']}"
        files[spec["PropertyFileName"]] = uri
    ex.resolver.property_files[step.name] = files
    record.metadata["property_files"] = files  # a resumed execution reads them again


def training(ex: Execution, step: Step, record: StepRecord) -> None:
    args = ex.resolve(step.body.get("Arguments") or {})
    name = job_name(ex.context, step.name, _attempt(record))
    algorithm = args.get("AlgorithmSpecification") or {}
    image = str(algorithm.get("TrainingImage") or algorithm.get("AlgorithmName") or "")
    record.metadata.update(job_name=name, image=image)
    if not any(kind in image.lower() for kind in framework_container.FRAMEWORK_IMAGES):
        raise StepFailure(
            f"training image {image!r} is not supported by the local runner (it emulates "
            "the SageMaker XGBoost container and the XGBoost / scikit-learn script mode)"
        )
    root = ex.job_root(step.name)
    config = root / "input" / "config"
    config.mkdir(parents=True, exist_ok=True)
    hyperparameters = {k: to_text(v) for k, v in (args.get("HyperParameters") or {}).items()}
    problems = framework_container.hyperparameter_problems(hyperparameters)
    if problems:  # CreateTrainingJob's own validation (botocore checks no maximum)
        raise StepFailure(
            f"ValidationException: {len(problems)} validation error(s) detected: "
            + "; ".join(problems[:3])
        )
    script_mode = framework_container.is_script_mode(hyperparameters, image)
    record.metadata["mode"] = "script" if script_mode else "algorithm"
    job_arn = _create_job(ex, "training-job", "CreateTrainingJob", name, args)
    role = str(args.get("RoleArn", ""))
    channels: dict[str, Any] = {}
    for channel in args.get("InputDataConfig") or []:
        source = (channel.get("DataSource") or {}).get("S3DataSource")
        if not source:
            raise StepFailure(f"channel {channel.get('ChannelName')}: only S3 data is supported")
        channel_name = channel["ChannelName"]
        with ex.as_job(role, job_arn):
            staging.download(
                ex.runner.s3,
                source["S3Uri"],
                root / "input" / "data" / channel_name,
                channel_name,
                f"{staging.OPT_ML}/input/data/{channel_name}",
            )
        channels[channel_name] = {
            "ContentType": channel.get("ContentType", "text/csv"),
            "TrainingInputMode": channel.get("InputMode", "File"),
        }
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    (config / "inputdataconfig.json").write_text(json.dumps(channels))
    resources = args.get("ResourceConfig") or {}
    timeout = (args.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds")
    if script_mode:
        with ex.as_job(role, job_arn):
            program = framework_container.stage_code(ex.runner.s3, hyperparameters, root)
        command, env = framework_container.command_and_env(
            ex.runner.python,
            program,
            hyperparameters,
            list(channels),
            root,
            int(resources.get("InstanceCount", 1) or 1),
        )
    else:
        command = [ex.runner.python, "-m", "trainyard.local.runner.xgboost_container"]
        command, env = [*command, "--ml-root", str(root)], {}
    started = time.monotonic()
    ex.launch(record, command, root, env, timeout, "failure")
    seconds = max(1, round(time.monotonic() - started))
    archive = staging.pack_model(root)
    output_path = (args.get("OutputDataConfig") or {}).get("S3OutputPath")
    if not output_path:
        raise StepFailure("OutputDataConfig.S3OutputPath is required")
    artifact = f"{output_path.rstrip('/')}/{name}/output/model.tar.gz"
    bucket, key = split_s3_uri(artifact)
    with ex.as_job(role, job_arn):
        ex.runner.s3.upload_file(str(archive), bucket, key)
    metrics_file = root / "output" / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
    record.properties = {
        **args,
        "TrainingJobName": name,
        "TrainingJobArn": job_arn,
        "TrainingJobStatus": "Completed",
        "SecondaryStatus": "Completed",
        "ModelArtifacts": {"S3ModelArtifacts": artifact},
        "FinalMetricDataList": [
            {"MetricName": k, "Value": v, "Timestamp": now()} for k, v in metrics.items()
        ],
        "TrainingStartTime": record.start_time,
        "TrainingEndTime": now(),
        "TrainingTimeInSeconds": seconds,
        "BillableTimeInSeconds": seconds * int(resources.get("InstanceCount", 1) or 1),
    }
    record.metadata.update(metrics=metrics, training_seconds=seconds)


def _create_job(
    ex: Execution, kind: str, operation: str, name: str, args: Mapping[str, Any]
) -> str:
    """What SageMaker Pipelines does for a job step: Create*Job with the step's
    arguments, as the pipeline role (iam:PassRole of the job's RoleArn, tag on
    create), validated against the API model; the job is then on record
    (Describe/List*Jobs show its RoleArn and tags)."""
    runner = ex.runner
    fallback = arn("sagemaker", runner.region, runner.account_id, f"{kind}/{name.lower()}")
    if runner.enforcer is None:
        return fallback
    name_key = "ProcessingJobName" if kind == "processing-job" else "TrainingJobName"
    request = {k: v for k, v in args.items() if k not in _RUNNER_ONLY_ARGUMENTS}
    method = getattr(runner.sagemaker, _snake(operation))
    with ex.as_pipeline():
        response = method(**{name_key: name, **request})
    return str(response.get(f"{kind.split('-')[0].capitalize()}JobArn") or fallback)


def _attempt(record: StepRecord) -> str:
    # The first attempt keeps the plain name; each retry creates a job of its own.
    return "" if record.attempt_count == 1 else f"attempt-{record.attempt_count}"


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


STEP_TYPES: dict[str, StepHandler] = {
    "Processing": processing,
    "Training": training,
    "RegisterModel": register_model,
    "Model": create_model,
    "Lambda": lambda_,
    "Condition": condition,
    "Fail": fail,
}
