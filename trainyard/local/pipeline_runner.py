"""Docker-free interpreter for SageMaker pipeline definitions (schema 2020-12-01).

Runs the *same* definition JSON that is deployed to AWS against S3/SageMaker
APIs reached through boto3 (moto locally). Public interface:

    runner = PipelineRunner(s3=..., sagemaker=..., workdir=Path(...),
                            lambda_invoker=fn, job_timeout_seconds=900)
    result = runner.run(definition_json, parameters={"TenantId": "acme", ...},
                        context=ExecutionContext(pipeline_name=..., execution_arn=...))
    result.status          # "Succeeded" | "Failed" | "Stopped"
    result.failure_reason  # None or a human-readable reason
    result.steps           # [StepRecord] of the steps that ran, in order
    result.step("Train").properties["ModelArtifacts"]["S3ModelArtifacts"]

``lambda_invoker(function_arn, payload) -> dict`` executes Lambda steps; its
result provides the step's OutputParameters; an exception fails the step.

Supported: Parameters (String/Integer/Float/Boolean; execution values over
defaults), ``Get`` of Parameters.*, Execution.* and Steps.<name>.<describe-response
path> (e.g. ``ProcessingOutputConfig.Outputs['train'].S3Output.S3Uri``,
``ModelArtifacts.S3ModelArtifacts``, ``OutputParameters['x']``, ``ModelPackageArn``),
``Std:Join``, ``Std:JsonGet`` (PropertyFile or S3Uri), conditions (Equals,
GreaterThan[OrEqualTo], LessThan[OrEqualTo], In, Not, Or, And), DependsOn and data
dependencies, IfSteps/ElseSteps (untaken branches do not run). Step types:
Processing (local Python process, SageMaker directory contract), Training (the
built-in XGBoost container, emulated), RegisterModel and Model (boto3
CreateModelPackage / CreateModel), Lambda, Condition, Fail. Anything else fails
the step with a "not supported by the local runner" reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from trainyard_core.arns import arn

from .iam.enforcer import AccessDenied, AssumeRoleDenied, Enforcer, Principal, acting_as

LambdaInvoker = Callable[[str, dict[str, Any]], dict[str, Any]]
# SageMaker's own service principal: it assumes the pipeline role and the job roles.
SAGEMAKER_PRINCIPAL = "sagemaker.amazonaws.com"

SUCCEEDED, FAILED, STOPPED, EXECUTING = "Succeeded", "Failed", "Stopped", "Executing"
DEFAULT_JOB_TIMEOUT_SECONDS = 15 * 60
OPT_ML = "/opt/ml"
# Local stand-in for the container paths; child processes get it as an env var
# so the step scripts can write /opt/ml/output/message to the mapped place.
ML_ROOT_ENV = "TRAINYARD_ML_ROOT"
_LOG_TAIL_LINES = 40


class StepFailure(Exception):
    """A step failed; the message is its FailureReason."""


class ExecutionStopped(Exception):
    """The runner was asked to stop while a step was running."""


@dataclass(frozen=True)
class ExecutionContext:
    """Values behind ``Execution.*`` variables (and job names)."""

    pipeline_name: str = "local-pipeline"
    pipeline_arn: str = ""
    execution_arn: str = ""
    # The pipeline's RoleArn: pipeline-level work (property files, model
    # registration, creating jobs, invoking Lambda steps) is done as this role.
    role_arn: str = ""
    start_time: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def execution_id(self) -> str:
        if self.execution_arn:
            return self.execution_arn.rsplit("/", 1)[-1]
        return hashlib.sha1(str(self.start_time.timestamp()).encode()).hexdigest()[:12]


@dataclass
class StepRecord:
    """One executed step, shaped like ListPipelineExecutionSteps plus what it produced."""

    name: str
    type: str
    status: str = EXECUTING
    start_time: datetime | None = None
    end_time: datetime | None = None
    failure_reason: str | None = None
    # Describe*-response-shaped data that Steps.<name>.<path> resolves against.
    properties: dict[str, Any] = field(default_factory=dict)
    # Job name/ARN, condition outcome, log tails: for people and logs.
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExecutionResult:
    status: str
    failure_reason: str | None
    steps: list[StepRecord]
    start_time: datetime
    end_time: datetime

    def step(self, name: str) -> StepRecord | None:
        return next((s for s in self.steps if s.name == name), None)


@dataclass
class _Step:
    name: str
    type: str
    body: dict[str, Any]
    # Condition step that must take this branch for the step to run: (name, branch).
    branch: tuple[str, bool] | None = None
    depends_on: set[str] = field(default_factory=set)


def _now() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------- paths


_PATH_TOKEN = re.compile(r"""\.?([A-Za-z0-9_:\-]+)|\[(\d+)\]|\[(['"])(.*?)\3\]""")
# List elements are addressed by name in property paths (Outputs['train']).
_NAME_KEYS = ("OutputName", "InputName", "ChannelName", "MetricName", "Name", "PropertyFileName")


def parse_path(path: str) -> list[str | int]:
    """``a.b['c'][0]`` -> ["a", "b", "c", 0]."""
    tokens: list[str | int] = []
    pos = 0
    while pos < len(path):
        match = _PATH_TOKEN.match(path, pos)
        if not match or match.end() == pos:
            raise ValueError(f"cannot parse path {path!r} at {path[pos:]!r}")
        if match.group(1) is not None:
            tokens.append(match.group(1))
        elif match.group(2) is not None:
            tokens.append(int(match.group(2)))
        else:
            tokens.append(match.group(4))
        pos = match.end()
    return tokens


def walk(data: Any, tokens: list[str | int], where: str) -> Any:
    for token in tokens:
        in_list = (
            isinstance(data, list) and isinstance(token, int) and -len(data) <= token < len(data)
        )
        if (isinstance(data, Mapping) and token in data) or in_list:
            data = data[token]
        elif isinstance(data, list) and isinstance(token, str):
            found = [
                item
                for item in data
                if isinstance(item, Mapping) and any(item.get(k) == token for k in _NAME_KEYS)
            ]
            if not found:
                raise StepFailure(f"{where}: no element named {token!r}")
            data = found[0]
        else:
            raise StepFailure(f"{where}: no property {token!r}")
    return data


def split_s3_uri(uri: str) -> tuple[str, str]:
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise StepFailure(f"not an S3 URI: {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    if not bucket:
        raise StepFailure(f"not an S3 URI: {uri!r}")
    return bucket, key


def _sanitize(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9-]+", "-", name).strip("-") or "step"


def job_name(context: ExecutionContext, step_name: str, salt: str = "") -> str:
    """SageMaker-valid (<= 63 chars, [a-zA-Z0-9-]) and unique per execution/step."""
    digest = hashlib.sha1(f"{context.execution_arn}|{step_name}|{salt}".encode()).hexdigest()
    stem = f"pipelines-{_sanitize(context.execution_id)}-{_sanitize(step_name)}"[:52].rstrip("-")
    return f"{stem}-{digest[:10]}"


# -------------------------------------------------------------------- runner


class PipelineRunner:
    """Interprets one pipeline definition per ``run`` call. Thread-safe: each run
    keeps its state in a private ``_Execution``; boto3 clients are shared."""

    def __init__(
        self,
        *,
        s3: Any,
        sagemaker: Any,
        workdir: Path,
        lambda_invoker: LambdaInvoker | None = None,
        job_timeout_seconds: float = DEFAULT_JOB_TIMEOUT_SECONDS,
        python: str = sys.executable,
        keep_job_dirs: bool = False,
        region: str = "us-east-1",
        account_id: str = "123456789012",
        enforcer: Enforcer | None = None,
    ) -> None:
        self.s3 = s3
        # IAM of the embedded stack; None runs every call unchecked (unit tests).
        self.enforcer = enforcer
        self.sagemaker = sagemaker
        self.workdir = Path(workdir)
        self.lambda_invoker = lambda_invoker
        self.job_timeout_seconds = job_timeout_seconds
        self.python = python
        self.keep_job_dirs = keep_job_dirs
        self.region = region
        self.account_id = account_id

    def run(
        self,
        definition: str | Mapping[str, Any],
        parameters: Mapping[str, Any] | list[Mapping[str, Any]] | None = None,
        context: ExecutionContext | None = None,
        stop_event: threading.Event | None = None,
        on_step: Callable[[StepRecord], None] | None = None,
    ) -> ExecutionResult:
        """Run to completion. Never raises for pipeline problems: they become a
        Failed result with a reason. ``parameters`` may be a name->value mapping or
        StartPipelineExecution's [{"Name", "Value"}] list."""
        execution = _Execution(
            self, context or ExecutionContext(), stop_event or threading.Event(), on_step
        )
        return execution.run(definition, parameters)


class _Execution:
    def __init__(
        self,
        runner: PipelineRunner,
        context: ExecutionContext,
        stop_event: threading.Event,
        on_step: Callable[[StepRecord], None] | None,
    ) -> None:
        self.runner = runner
        self.context = context
        self.stop_event = stop_event
        self.on_step = on_step
        self.params: dict[str, Any] = {}
        self.steps: dict[str, _Step] = {}
        self.records: dict[str, StepRecord] = {}
        # step -> property file name -> its S3 URI (read when a JsonGet needs it).
        self.property_files: dict[str, dict[str, str]] = {}
        self._documents: dict[str, Any] = {}  # S3 URI -> parsed property file
        self.pipeline_principal: Principal | None = None
        self.outcomes: dict[str, bool] = {}  # condition step -> outcome
        self.dir = runner.workdir / _sanitize(context.execution_id)

    # ----------------------------------------------------------- top level

    def run(
        self,
        definition: str | Mapping[str, Any],
        parameters: Mapping[str, Any] | list[Mapping[str, Any]] | None,
    ) -> ExecutionResult:
        start = _now()
        status, reason = SUCCEEDED, None
        try:
            doc = json.loads(definition) if isinstance(definition, str) else dict(definition)
            self.pipeline_principal = self._assume_pipeline_role()
            self._load_parameters(doc.get("Parameters") or [], parameters)
            self._load_steps(doc.get("Steps") or [])
            status, reason = self._execute_all()
        except StepFailure as exc:  # definition-level problems
            status, reason = FAILED, str(exc)
        except (ValueError, TypeError, KeyError) as exc:
            status, reason = FAILED, f"invalid pipeline definition: {exc}"
        finally:
            if not self.runner.keep_job_dirs:
                shutil.rmtree(self.dir, ignore_errors=True)
        return ExecutionResult(status, reason, list(self.records.values()), start, _now())

    def _assume_pipeline_role(self) -> Principal | None:
        enforcer, ctx = self.runner.enforcer, self.context
        if enforcer is None or not ctx.role_arn:
            return None
        try:
            return enforcer.assume(
                ctx.role_arn,
                SAGEMAKER_PRINCIPAL,
                session="SageMaker",
                # SageMaker's documented confused-deputy keys for pipeline executions.
                context={
                    "aws:SourceAccount": self.runner.account_id,
                    "aws:SourceArn": ctx.execution_arn,
                },
            )
        except AssumeRoleDenied as exc:
            raise StepFailure(f"SageMaker could not assume the pipeline role: {exc}") from None

    def _as_pipeline(self) -> Any:
        return acting_as(self.pipeline_principal)

    def _as_job(self, role_arn: str, job_arn: str) -> Any:
        """The identity a job runs with: its RoleArn, assumed by SageMaker."""
        enforcer = self.runner.enforcer
        if enforcer is None:
            return acting_as(None)
        try:
            principal = enforcer.assume(
                role_arn,
                SAGEMAKER_PRINCIPAL,
                session="SageMaker",
                context={"aws:SourceAccount": self.runner.account_id, "aws:SourceArn": job_arn},
            )
        except AssumeRoleDenied as exc:
            raise StepFailure(
                f"ClientError: SageMaker was unable to assume the role {role_arn!r}: {exc}"
            ) from None
        return acting_as(principal)

    def _load_parameters(
        self,
        declared: list[Mapping[str, Any]],
        given: Mapping[str, Any] | list[Mapping[str, Any]] | None,
    ) -> None:
        if isinstance(given, list):
            values = {p["Name"]: p.get("Value") for p in given}
        else:
            values = dict(given or {})
        by_name = {p["Name"]: p for p in declared}
        unknown = sorted(set(values) - set(by_name))
        if unknown:
            raise StepFailure(f"parameters not declared by the pipeline: {', '.join(unknown)}")
        for name, spec in by_name.items():
            kind = spec.get("Type", "String")
            if name in values and values[name] is not None:
                raw = values[name]
            elif "DefaultValue" in spec:
                raw = spec["DefaultValue"]
            else:
                raise StepFailure(f"parameter {name} has no value and no default")
            try:
                value = _coerce(raw, kind)
            except ValueError:
                raise StepFailure(f"parameter {name}: {raw!r} is not a valid {kind}") from None
            enum = spec.get("EnumValues")
            if enum and value not in enum:
                raise StepFailure(f"parameter {name}: {value!r} is not one of {enum}")
            self.params[name] = value

    def _load_steps(self, steps: list[Mapping[str, Any]], branch: tuple[str, bool] | None = None):
        for body in steps:
            name, kind = body["Name"], body["Type"]
            if name in self.steps:
                raise StepFailure(f"duplicate step name {name!r}")
            step = _Step(name, kind, dict(body), branch)
            self.steps[name] = step
            if kind == "Condition":
                args = body.get("Arguments") or {}
                self._load_steps(args.get("IfSteps") or [], (name, True))
                self._load_steps(args.get("ElseSteps") or [], (name, False))
        for step in self.steps.values():
            deps = set(step.body.get("DependsOn") or [])
            body = {k: v for k, v in step.body.items() if k != "Arguments"}
            arguments = dict(step.body.get("Arguments") or {})
            if step.type == "Condition":
                # Nested steps are the condition's children, not its inputs.
                arguments = {"Conditions": arguments.get("Conditions")}
            deps |= set(_referenced_steps(arguments)) | set(_referenced_steps(body))
            if step.branch:
                deps.add(step.branch[0])
            deps.discard(step.name)
            missing = sorted(d for d in deps if d not in self.steps)
            if missing:
                raise StepFailure(f"step {step.name} depends on unknown steps {missing}")
            step.depends_on = deps

    def _execute_all(self) -> tuple[str, str | None]:
        done: set[str] = set()  # ran (any outcome) or will never run
        skipped: set[str] = set()
        pending = list(self.steps)  # definition order breaks ties
        while pending:
            if self.stop_event.is_set():
                return STOPPED, "the local pipeline engine was stopped"
            ready = [n for n in pending if self.steps[n].depends_on <= done]
            if not ready:
                raise StepFailure(f"dependency cycle among steps {sorted(pending)}")
            name = ready[0]
            pending.remove(name)
            done.add(name)
            step = self.steps[name]
            if self._should_skip(step, skipped):
                skipped.add(name)
                continue
            record = self._execute(step)
            if record.status == STOPPED:
                return STOPPED, "the local pipeline engine was stopped"
            if record.status == FAILED:
                if step.type == "Fail":
                    return FAILED, record.failure_reason
                return FAILED, f"Step {name} failed: {record.failure_reason}"
        return SUCCEEDED, None

    def _should_skip(self, step: _Step, skipped: set[str]) -> bool:
        if step.branch and (
            step.branch[0] in skipped or self.outcomes.get(step.branch[0]) != step.branch[1]
        ):
            return True
        # A step whose inputs come from a step that never ran cannot run either.
        return bool(step.depends_on & skipped)

    def _execute(self, step: _Step) -> StepRecord:
        record = StepRecord(step.name, step.type, start_time=_now())
        self.records[step.name] = record
        handlers = {
            "Processing": self._processing,
            "Training": self._training,
            "RegisterModel": self._register_model,
            "Model": self._create_model,
            "Lambda": self._lambda,
            "Condition": self._condition,
            "Fail": self._fail,
        }
        try:
            handler = handlers.get(step.type)
            if handler is None:
                raise StepFailure(f"step type {step.type!r} is not supported by the local runner")
            handler(step, record)
            record.status = SUCCEEDED
        except ExecutionStopped:
            record.status, record.failure_reason = STOPPED, "stopped"
        except StepFailure as exc:
            record.status, record.failure_reason = FAILED, str(exc)
        except Exception as exc:  # boto errors, bad data: a failed step, never a crash
            record.status = FAILED
            record.failure_reason = f"{type(exc).__name__}: {exc}"
        record.end_time = _now()
        if self.on_step:
            self.on_step(record)
        return record

    # ----------------------------------------------------------- expressions

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if set(value) == {"Get"}:
            return self._get(value["Get"])
        if "Std:Join" in value and len(value) == 1:
            spec = value["Std:Join"]
            parts = [_to_text(self.resolve(v)) for v in spec.get("Values", [])]
            return str(spec.get("On", "")).join(parts)
        if "Std:JsonGet" in value and len(value) == 1:
            return self._json_get(value["Std:JsonGet"])
        return {k: self.resolve(v) for k, v in value.items()}

    def _get(self, path: str) -> Any:
        head, _, rest = path.partition(".")
        if head == "Parameters":
            if rest not in self.params:
                raise StepFailure(f"unknown parameter in {path!r}")
            return self.params[rest]
        if head == "Execution":
            return self._execution_variable(rest)
        if head == "Steps":
            tokens = parse_path(rest)
            step_name = str(tokens[0])
            record = self.records.get(step_name)
            if record is None or record.status != SUCCEEDED:
                raise StepFailure(f"{path}: step {step_name} has not succeeded")
            return walk(record.properties, tokens[1:], path)
        raise StepFailure(f"unsupported reference {path!r}")

    def _execution_variable(self, name: str) -> Any:
        ctx = self.context
        values = {
            "PipelineName": ctx.pipeline_name,
            "PipelineArn": ctx.pipeline_arn,
            "PipelineExecutionId": ctx.execution_id,
            "PipelineExecutionArn": ctx.execution_arn,
            "StartDateTime": ctx.start_time.isoformat(),
            "CurrentDateTime": _now().isoformat(),
        }
        if name not in values:
            raise StepFailure(f"execution variable {name} is not supported by the local runner")
        return values[name]

    def _json_get(self, spec: Mapping[str, Any]) -> Any:
        json_path = spec.get("Path", "")
        if "PropertyFile" in spec:
            ref = spec["PropertyFile"]
            ref_path = ref["Get"] if isinstance(ref, dict) else str(ref)
            # Steps.<step>.PropertyFiles.<name>
            tokens = parse_path(ref_path)
            if len(tokens) != 4 or tokens[0] != "Steps" or tokens[2] != "PropertyFiles":
                raise StepFailure(f"unsupported PropertyFile reference {ref_path!r}")
            step_name, file_name = str(tokens[1]), str(tokens[3])
            files = self.property_files.get(step_name)
            if files is None:
                raise StepFailure(f"JsonGet: step {step_name} has not produced property files")
            if file_name not in files:
                raise StepFailure(f"JsonGet: step {step_name} has no property file {file_name}")
            document = self._property_file(files[file_name])
        elif "S3Uri" in spec:
            bucket, key = split_s3_uri(_to_text(self.resolve(spec["S3Uri"])))
            body = self.runner.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            document = json.loads(body)
        else:
            raise StepFailure(f"unsupported Std:JsonGet {spec!r}")
        return walk(document, parse_path(json_path), f"JsonGet {json_path!r}")

    def _property_file(self, uri: str) -> Any:
        """SageMaker reads a property file from the step's S3 output, as the
        pipeline role (not the job's role), when an expression needs it."""
        if uri not in self._documents:
            bucket, key = split_s3_uri(uri)
            with self._as_pipeline():
                body = self.runner.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            try:
                self._documents[uri] = json.loads(body)
            except ValueError as exc:
                raise StepFailure(f"property file {uri} is not JSON: {exc}") from None
        return self._documents[uri]

    def evaluate(self, condition: Mapping[str, Any]) -> bool:
        kind = condition.get("Type")
        if kind == "Not":
            return not self.evaluate(condition["Condition"])
        if kind == "Or":
            return any(self.evaluate(c) for c in condition["Conditions"])
        if kind == "And":
            return all(self.evaluate(c) for c in condition["Conditions"])
        if kind == "In":
            query = self.resolve(condition["QueryValue"])
            return any(_equal(query, self.resolve(v)) for v in condition["Values"])
        left, right = (
            self.resolve(condition.get("LeftValue")),
            self.resolve(condition.get("RightValue")),
        )
        if kind == "Equals":
            return _equal(left, right)
        compare = {
            "GreaterThan": lambda a, b: a > b,
            "GreaterThanOrEqualTo": lambda a, b: a >= b,
            "LessThan": lambda a, b: a < b,
            "LessThanOrEqualTo": lambda a, b: a <= b,
        }.get(str(kind))
        if compare is None:
            raise StepFailure(f"condition type {kind!r} is not supported")
        a, b = _comparable(left, right)
        return bool(compare(a, b))

    # ---------------------------------------------------------- step types

    def _condition(self, step: _Step, record: StepRecord) -> None:
        conditions = (step.body.get("Arguments") or {}).get("Conditions") or []
        outcome = all(self.evaluate(c) for c in conditions)
        self.outcomes[step.name] = outcome
        record.properties = {"Outcome": "True" if outcome else "False"}
        record.metadata["outcome"] = outcome

    def _fail(self, step: _Step, record: StepRecord) -> None:
        message = self.resolve((step.body.get("Arguments") or {}).get("ErrorMessage", ""))
        record.metadata["error_message"] = _to_text(message)
        raise StepFailure(_to_text(message) or f"Fail step {step.name} reached")

    def _lambda(self, step: _Step, record: StepRecord) -> None:
        invoker = self.runner.lambda_invoker
        if invoker is None:
            raise StepFailure("no lambda invoker configured for the local runner")
        function_arn = _to_text(self.resolve(step.body.get("FunctionArn")))
        payload = self.resolve(step.body.get("Arguments") or {})
        record.metadata["function_arn"] = function_arn
        if self.runner.enforcer is not None and self.pipeline_principal is not None:
            try:
                self.runner.enforcer.check_call(
                    self.pipeline_principal, "lambda", "Invoke", {"FunctionName": function_arn}
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
            outputs[name] = _coerce(response[name], spec.get("OutputType", "String"))
        record.properties = {"OutputParameters": outputs}

    def _register_model(self, step: _Step, record: StepRecord) -> None:
        args = self.resolve(step.body.get("Arguments") or {})
        group = args.get("ModelPackageGroupName")
        if group:
            try:
                with self._as_pipeline():
                    self.runner.sagemaker.describe_model_package_group(ModelPackageGroupName=group)
            except Exception as exc:
                if "AccessDenied" in str(exc):
                    raise
                raise StepFailure(f"model package group {group} does not exist") from None
        for key in ("CertifyForMarketplace", "Description"):  # not accepted in pipelines
            args.pop(key, None)
        with self._as_pipeline():
            arn = self.runner.sagemaker.create_model_package(**args)["ModelPackageArn"]
            described = self.runner.sagemaker.describe_model_package(ModelPackageName=arn)
        described.pop("ResponseMetadata", None)
        record.properties = {**described, "ModelPackageArn": arn}
        record.metadata["model_package_arn"] = arn

    def _create_model(self, step: _Step, record: StepRecord) -> None:
        args = self.resolve(step.body.get("Arguments") or {})
        args.setdefault("ModelName", job_name(self.context, step.name))
        with self._as_pipeline():
            arn = self.runner.sagemaker.create_model(**args)["ModelArn"]
        record.properties = {"ModelName": args["ModelName"], "ModelArn": arn}

    def _processing(self, step: _Step, record: StepRecord) -> None:
        args = self.resolve(step.body.get("Arguments") or {})
        name = job_name(self.context, step.name)
        root = self._job_root(step.name)
        app = args.get("AppSpecification") or {}
        entrypoint = list(app.get("ContainerEntrypoint") or [])
        if not entrypoint:
            raise StepFailure(
                f"image {app.get('ImageUri')} without ContainerEntrypoint is not supported by "
                "the local runner (it runs processing code as local Python)"
            )
        record.metadata.update(job_name=name, image=app.get("ImageUri"))
        job_arn = self._create_job("processing-job", "CreateProcessingJob", name, args)
        outputs = (args.get("ProcessingOutputConfig") or {}).get("Outputs") or []
        with self._as_job(str(args.get("RoleArn", "")), job_arn):
            for item in args.get("ProcessingInputs") or []:
                source = item.get("S3Input")
                if not source:
                    raise StepFailure(f"input {item.get('InputName')}: only S3Input is supported")
                if source.get("S3DataType", "S3Prefix") != "S3Prefix":
                    raise StepFailure(f"input {item.get('InputName')}: only S3Prefix is supported")
                local = self._map_path(source["LocalPath"], root)
                self._download(source["S3Uri"], local, item.get("InputName", ""))
        for item in outputs:
            if "S3Output" in item:
                self._map_path(item["S3Output"]["LocalPath"], root).mkdir(
                    parents=True, exist_ok=True
                )
        command = [
            self._map_arg(a, root) for a in entrypoint + list(app.get("ContainerArguments") or [])
        ]
        if command and Path(command[0]).name in ("python", "python3"):
            command[0] = self.runner.python
        env = {str(k): _to_text(v) for k, v in (args.get("Environment") or {}).items()}
        timeout = (args.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds")
        self._run_job(command, root, env, timeout, record)
        with self._as_job(str(args.get("RoleArn", "")), job_arn):
            for item in outputs:
                if "S3Output" in item:
                    local = self._map_path(item["S3Output"]["LocalPath"], root)
                    self._upload(local, item["S3Output"]["S3Uri"])
        record.properties = {
            **args,
            "ProcessingJobName": name,
            "ProcessingJobArn": job_arn,
            "ProcessingJobStatus": "Completed",
            "ProcessingStartTime": record.start_time,
            "ProcessingEndTime": _now(),
        }
        files: dict[str, str] = {}
        for spec in step.body.get("PropertyFiles") or []:
            output = walk(outputs, [spec["OutputName"]], f"PropertyFile {spec['PropertyFileName']}")
            path = self._map_path(output["S3Output"]["LocalPath"], root) / spec["FilePath"]
            try:
                json.loads(path.read_text())  # the job must have written valid JSON
            except (OSError, ValueError) as exc:
                raise StepFailure(
                    f"property file {spec['PropertyFileName']} ({spec['FilePath']}): {exc}"
                ) from None
            uri = f"{str(output['S3Output']['S3Uri']).rstrip('/')}/{spec['FilePath']}"
            files[spec["PropertyFileName"]] = uri
        self.property_files[step.name] = files

    def _training(self, step: _Step, record: StepRecord) -> None:
        args = self.resolve(step.body.get("Arguments") or {})
        name = job_name(self.context, step.name)
        algorithm = args.get("AlgorithmSpecification") or {}
        image = str(algorithm.get("TrainingImage") or algorithm.get("AlgorithmName") or "")
        record.metadata.update(job_name=name, image=image)
        if "xgboost" not in image.lower():
            raise StepFailure(
                f"training image {image!r} is not supported by the local runner "
                "(only the built-in SageMaker XGBoost container is emulated)"
            )
        root = self._job_root(step.name)
        config = root / "input" / "config"
        config.mkdir(parents=True, exist_ok=True)
        hyperparameters = {k: _to_text(v) for k, v in (args.get("HyperParameters") or {}).items()}
        job_arn = self._create_job("training-job", "CreateTrainingJob", name, args)
        role = str(args.get("RoleArn", ""))
        channels: dict[str, Any] = {}
        for channel in args.get("InputDataConfig") or []:
            source = (channel.get("DataSource") or {}).get("S3DataSource")
            if not source:
                raise StepFailure(
                    f"channel {channel.get('ChannelName')}: only S3 data is supported"
                )
            channel_name = channel["ChannelName"]
            with self._as_job(role, job_arn):
                self._download(
                    source["S3Uri"], root / "input" / "data" / channel_name, channel_name
                )
            channels[channel_name] = {
                "ContentType": channel.get("ContentType", "text/csv"),
                "TrainingInputMode": channel.get("InputMode", "File"),
            }
        (config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
        (config / "inputdataconfig.json").write_text(json.dumps(channels))
        command = [
            self.runner.python,
            "-m",
            "trainyard.local.xgboost_container",
            "--ml-root",
            str(root),
        ]
        timeout = (args.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds")
        started = time.monotonic()
        self._run_job(command, root, {}, timeout, record, failure_file="failure")
        seconds = max(1, round(time.monotonic() - started))
        archive = root / "model.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            for path in sorted((root / "model").rglob("*")):
                tar.add(path, arcname=path.relative_to(root / "model").as_posix())
        output_path = (args.get("OutputDataConfig") or {}).get("S3OutputPath")
        if not output_path:
            raise StepFailure("OutputDataConfig.S3OutputPath is required")
        artifact = f"{output_path.rstrip('/')}/{name}/output/model.tar.gz"
        bucket, key = split_s3_uri(artifact)
        with self._as_job(role, job_arn):
            self.runner.s3.upload_file(str(archive), bucket, key)
        metrics_file = root / "output" / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
        resources = args.get("ResourceConfig") or {}
        record.properties = {
            **args,
            "TrainingJobName": name,
            "TrainingJobArn": job_arn,
            "TrainingJobStatus": "Completed",
            "SecondaryStatus": "Completed",
            "ModelArtifacts": {"S3ModelArtifacts": artifact},
            "FinalMetricDataList": [
                {"MetricName": k, "Value": v, "Timestamp": _now()} for k, v in metrics.items()
            ],
            "TrainingStartTime": record.start_time,
            "TrainingEndTime": _now(),
            "TrainingTimeInSeconds": seconds,
            "BillableTimeInSeconds": seconds * int(resources.get("InstanceCount", 1) or 1),
        }
        record.metadata.update(metrics=metrics, training_seconds=seconds)

    # ----------------------------------------------------------- job plumbing

    def _create_job(self, kind: str, operation: str, name: str, args: Mapping[str, Any]) -> str:
        """What SageMaker Pipelines does for a job step: Create*Job with the step's
        arguments, as the pipeline role (iam:PassRole of the job's RoleArn, tag on
        create), validated against the API model; the job is then on record
        (Describe/List*Jobs show its RoleArn and tags)."""
        if self.runner.enforcer is None:
            return self._arn(kind, name)
        name_key = "ProcessingJobName" if kind == "processing-job" else "TrainingJobName"
        request = {k: v for k, v in args.items() if k not in _RUNNER_ONLY_ARGUMENTS}
        method = getattr(self.runner.sagemaker, _snake(operation))
        with self._as_pipeline():
            response = method(**{name_key: name, **request})
        return str(
            response.get(f"{kind.split('-')[0].capitalize()}JobArn") or self._arn(kind, name)
        )

    def _arn(self, kind: str, name: str) -> str:
        return arn(
            "sagemaker", self.runner.region, self.runner.account_id, f"{kind}/{name.lower()}"
        )

    def _job_root(self, step_name: str) -> Path:
        root = self.dir / _sanitize(step_name) / "opt-ml"
        shutil.rmtree(root, ignore_errors=True)
        (root / "output").mkdir(parents=True)
        return root

    @staticmethod
    def _map_path(container_path: str, root: Path) -> Path:
        if container_path != OPT_ML and not container_path.startswith(OPT_ML + "/"):
            raise StepFailure(f"local path {container_path!r} is outside {OPT_ML}")
        relative = container_path[len(OPT_ML) :].lstrip("/")
        if ".." in Path(relative).parts:
            raise StepFailure(f"local path {container_path!r} escapes {OPT_ML}")
        return root / relative

    @staticmethod
    def _map_arg(arg: Any, root: Path) -> str:
        # Rewrites /opt/ml wherever it starts a path, also inside --flag=/opt/ml/...
        return re.sub(r"(?<![\w/])/opt/ml(?=/|$|\s)", str(root), _to_text(arg))

    def _download(self, uri: str, dest: Path, what: str) -> None:
        bucket, prefix = split_s3_uri(uri)
        dest.mkdir(parents=True, exist_ok=True)
        # S3Prefix semantics: every key starting with the prefix; paths are kept
        # relative to the prefix's last "/" (a single object lands by its name).
        base = prefix[: prefix.rfind("/") + 1]
        count = 0
        for key in self._keys(bucket, prefix):
            relative = key[len(base) :]
            if not relative or relative.endswith("/"):
                continue  # "folder" placeholder objects
            target = dest / relative
            if ".." in Path(relative).parts:
                raise StepFailure(f"S3 key {key!r} escapes the input directory")
            target.parent.mkdir(parents=True, exist_ok=True)
            self.runner.s3.download_file(bucket, key, str(target))
            count += 1
        if count == 0:
            raise StepFailure(
                f"ClientError: No S3 objects found under S3 URL {uri!r} given in input "
                f"data source {what!r}"
            )

    def _keys(self, bucket: str, prefix: str) -> Iterator[str]:
        paginator = self.runner.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                yield item["Key"]

    def _upload(self, local: Path, uri: str) -> None:
        bucket, prefix = split_s3_uri(uri)
        prefix = prefix.rstrip("/")
        for path in sorted(local.rglob("*")):
            if path.is_file():
                relative = path.relative_to(local).as_posix()
                key = f"{prefix}/{relative}" if prefix else relative
                self.runner.s3.upload_file(str(path), bucket, key)

    def _run_job(
        self,
        command: list[str],
        root: Path,
        extra_env: Mapping[str, str],
        max_runtime: Any,
        record: StepRecord,
        failure_file: str = "message",
    ) -> None:
        timeout = float(self.runner.job_timeout_seconds)
        if max_runtime:
            timeout = min(timeout, float(max_runtime))
        env = {**os.environ, **extra_env, ML_ROOT_ENV: str(root), "PYTHONUNBUFFERED": "1"}
        stdout_path, stderr_path = root / "job.stdout", root / "job.stderr"
        record.metadata["command"] = shlex.join(command)
        deadline = time.monotonic() + timeout
        with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
            proc = subprocess.Popen(command, cwd=root, env=env, stdout=out, stderr=err)
            try:
                while True:
                    try:
                        returncode = proc.wait(timeout=0.25)
                        break
                    except subprocess.TimeoutExpired:
                        if self.stop_event.is_set():
                            raise ExecutionStopped from None
                        if time.monotonic() > deadline:
                            raise StepFailure(
                                f"job exceeded its maximum runtime of {int(timeout)} seconds"
                            ) from None
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        stdout = stdout_path.read_text(errors="replace")
        stderr = stderr_path.read_text(errors="replace")
        record.metadata["stdout_tail"] = "\n".join(stdout.splitlines()[-_LOG_TAIL_LINES:])
        record.metadata["stderr_tail"] = "\n".join(stderr.splitlines()[-_LOG_TAIL_LINES:])
        if returncode != 0:
            raise StepFailure(_failure_reason(root / "output" / failure_file, stderr, returncode))


# ------------------------------------------------------------------ helpers

# Step arguments that are not part of the Create*Job request.
_RUNNER_ONLY_ARGUMENTS: frozenset[str] = frozenset()


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _failure_reason(message_file: Path, stderr: str, returncode: int) -> str:
    """What SageMaker would show: the job's message file, else the log's last error."""
    if message_file.is_file():
        text = message_file.read_text(errors="replace").strip()
        if text:
            return text
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:")]
    if errors:
        return errors[-1][len("ERROR:") :].strip()
    if lines:
        return lines[-1]
    return f"process exited with status {returncode}"


def _referenced_steps(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        get = value.get("Get")
        if isinstance(get, str) and get.startswith("Steps."):
            yield str(parse_path(get[len("Steps.") :])[0])
        for item in value.values():
            yield from _referenced_steps(item)
    elif isinstance(value, list):
        for item in value:
            yield from _referenced_steps(item)


def _coerce(raw: Any, kind: str) -> Any:
    if kind == "Integer":
        if isinstance(raw, bool):
            raise ValueError(raw)
        if isinstance(raw, float):
            if not raw.is_integer():
                raise ValueError(raw)
            return int(raw)
        return int(str(raw).strip())
    if kind == "Float":
        if isinstance(raw, bool):
            raise ValueError(raw)
        return float(str(raw).strip()) if not isinstance(raw, int | float) else float(raw)
    if kind == "Boolean":
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text not in ("true", "false"):
            raise ValueError(raw)
        return text == "true"
    return raw if isinstance(raw, str) else _to_text(raw)


def _to_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _comparable(left: Any, right: Any) -> tuple[Any, Any]:
    a, b = _number(left), _number(right)
    if a is not None and b is not None:
        return a, b
    if isinstance(left, str) and isinstance(right, str):
        return left, right
    raise StepFailure(f"cannot compare {left!r} with {right!r}")


def _equal(left: Any, right: Any) -> bool:
    if isinstance(left, bool) or isinstance(right, bool):
        return _to_text(left) == _to_text(right)
    if isinstance(left, str) and isinstance(right, str):
        return left == right
    # A JSON number against a Float parameter (or a numeric string) compares by value.
    a, b = _number(left), _number(right)
    if a is not None and b is not None:
        return a == b
    return bool(left == right)
