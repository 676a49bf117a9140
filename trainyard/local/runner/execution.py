"""``PipelineRunner`` and one run of a definition: parameters and steps loaded,
steps ordered by their dependencies, branches taken or skipped, each step handed to
its handler (``step_types.STEP_TYPES``) and recorded, the result reported.

IAM: SageMaker assumes the pipeline's RoleArn for pipeline-level work and each job's
RoleArn for its data; both are ``acting_as`` scopes here (``iam/enforcer.py``)."""

from __future__ import annotations

import json
import re
import shutil
import sys
import threading
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from ..iam.enforcer import AssumeRoleDenied, Enforcer, Principal, acting_as
from . import staging
from .expressions import Resolver, referenced_steps
from .jobs import DEFAULT_JOB_TIMEOUT_SECONDS, Job, JobLauncher, SubprocessJobLauncher
from .records import (
    EXECUTION_FAILURE_REASON_MAX,
    FAILED,
    STEP_FAILURE_REASON_MAX,
    STOPPED,
    SUCCEEDED,
    ExecutionContext,
    ExecutionResult,
    ExecutionStopped,
    Step,
    StepFailure,
    StepRecord,
    bounded,
    now,
    sanitize,
)
from .retry import RetryState
from .staging import OPT_ML
from .step_types import STEP_TYPES

LambdaInvoker = Callable[[str, dict[str, Any]], dict[str, Any]]
# SageMaker's own service principal: it assumes the pipeline role and the job roles.
SAGEMAKER_PRINCIPAL = "sagemaker.amazonaws.com"
# A retry policy's waits (IntervalSeconds x BackoffRate^n, up to hours) scaled down
# and capped locally: the attempts are counted exactly, only the waiting is shortened.
RETRY_WAIT_SCALE = 0.01
RETRY_WAIT_MAX_SECONDS = 2.0


class PipelineRunner:
    """Interprets one pipeline definition per ``run`` call. Thread-safe: each run
    keeps its state in its own ``Execution``; boto3 clients are shared.

    ``job_launcher`` runs the Processing and Training jobs (default: local
    processes); it may be replaced at any time, e.g. by one that wraps it."""

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
        job_launcher: JobLauncher | None = None,
        retry_wait_scale: float = RETRY_WAIT_SCALE,
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
        self.job_launcher: JobLauncher = job_launcher or SubprocessJobLauncher()
        self.retry_wait_scale = retry_wait_scale

    def retry_wait(self, seconds: float) -> float:
        """How long this runner waits where a retry policy says ``seconds``."""
        return min(seconds * self.retry_wait_scale, RETRY_WAIT_MAX_SECONDS)

    def run(
        self,
        definition: str | Mapping[str, Any],
        parameters: Mapping[str, Any] | list[Mapping[str, Any]] | None = None,
        context: ExecutionContext | None = None,
        stop_event: threading.Event | None = None,
        on_step: Callable[[StepRecord], None] | None = None,
        resume: ExecutionResult | None = None,
    ) -> ExecutionResult:
        """Run to completion. Never raises for pipeline problems: they become a
        Failed result with a reason. ``parameters`` may be a name->value mapping or
        StartPipelineExecution's [{"Name", "Value"}] list. ``resume``: the result of
        this execution's previous run (RetryPipelineExecution): its succeeded steps
        are kept as they were (not run again), the others run."""
        execution = Execution(
            self, context or ExecutionContext(), stop_event or threading.Event(), on_step
        )
        if resume is not None:
            execution.reuse = {s.name: s for s in resume.steps if s.status == SUCCEEDED}
        return execution.run(definition, parameters)


class Execution:
    """The state of one run; step handlers read and extend it."""

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
        self.steps: dict[str, Step] = {}
        self.records: dict[str, StepRecord] = {}
        self.resolver = Resolver(context, self.records, runner.s3, self.as_pipeline)
        self.pipeline_principal: Principal | None = None
        self.outcomes: dict[str, bool] = {}  # condition step -> outcome
        # Steps that succeeded in the run this one resumes (RetryPipelineExecution).
        self.reuse: dict[str, StepRecord] = {}
        self.dir = runner.workdir / sanitize(context.execution_id)

    def resolve(self, value: Any) -> Any:
        return self.resolver.resolve(value)

    # ----------------------------------------------------------- top level

    def run(
        self,
        definition: str | Mapping[str, Any],
        parameters: Mapping[str, Any] | list[Mapping[str, Any]] | None,
    ) -> ExecutionResult:
        start = now()
        status, reason = SUCCEEDED, None
        try:
            doc = json.loads(definition) if isinstance(definition, str) else dict(definition)
            self.pipeline_principal = self._assume_pipeline_role()
            self.resolver.load_parameters(doc.get("Parameters") or [], parameters)
            self._load_steps(doc.get("Steps") or [])
            status, reason = self._execute_all()
        except StepFailure as exc:  # definition-level problems
            status, reason = FAILED, str(exc)
        except (ValueError, TypeError, KeyError) as exc:
            status, reason = FAILED, f"invalid pipeline definition: {exc}"
        finally:
            if not self.runner.keep_job_dirs:
                shutil.rmtree(self.dir, ignore_errors=True)
        reason = bounded(self.container_paths(reason), EXECUTION_FAILURE_REASON_MAX)
        return ExecutionResult(status, reason, list(self.records.values()), start, now())

    def container_paths(self, text: str | None) -> str | None:
        """``text`` with this emulator's local paths as a job would see them: a job's
        root is /opt/ml, anything else of the work directory is not shown."""
        if not text:
            return text
        for base in {str(self.dir), str(self.dir.resolve())}:
            text = re.sub(re.escape(base) + r"/[^/\s'\"]+/opt-ml(?=/|\b|$)", OPT_ML, text)
        for base in {str(self.runner.workdir), str(self.runner.workdir.resolve())}:
            text = text.replace(base, "<work>")
        return text

    # ----------------------------------------------------------- identities

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

    def as_pipeline(self) -> AbstractContextManager[Any]:
        return acting_as(self.pipeline_principal)

    def as_job(self, role_arn: str, job_arn: str) -> AbstractContextManager[Any]:
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

    # ----------------------------------------------------------- jobs

    def job_root(self, step_name: str) -> Path:
        return staging.job_root(self.dir / sanitize(step_name))

    def launch(
        self,
        record: StepRecord,
        command: list[str],
        root: Path,
        env: Mapping[str, str],
        max_runtime: Any,
        failure_file: str = "message",
    ) -> None:
        """Run a job of this execution through the runner's job launcher."""
        timeout = float(self.runner.job_timeout_seconds)
        if max_runtime:
            timeout = min(timeout, float(max_runtime))
        job = Job(
            step=record.name,
            parameters=dict(self.resolver.params),
            command=command,
            root=root,
            env=env,
            timeout=timeout,
            failure_file=failure_file,
            stop=self.stop_event,
            metadata=record.metadata,
        )
        self.runner.job_launcher.run(job)

    # ----------------------------------------------------------- ordering

    def _load_steps(self, steps: list[Mapping[str, Any]], branch: tuple[str, bool] | None = None):
        for body in steps:
            name, kind = body["Name"], body["Type"]
            if name in self.steps:
                raise StepFailure(f"duplicate step name {name!r}")
            step = Step(name, kind, dict(body), branch)
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
            deps |= set(referenced_steps(arguments)) | set(referenced_steps(body))
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
            if name in self.reuse:
                self._reuse(self.reuse[name])
                continue
            record = self._execute(step)
            if record.status == STOPPED:
                return STOPPED, "the local pipeline engine was stopped"
            if record.status == FAILED:
                if step.type == "Fail":
                    return FAILED, record.failure_reason
                return FAILED, f"Step {name} failed: {record.failure_reason}"
        return SUCCEEDED, None

    def _reuse(self, previous: StepRecord) -> None:
        """A step that succeeded before the retry: its record, outcome and property
        files stand, as SageMaker keeps a resumed execution's succeeded steps."""
        self.records[previous.name] = previous
        if "outcome" in previous.metadata:
            self.outcomes[previous.name] = bool(previous.metadata["outcome"])
        if "property_files" in previous.metadata:
            self.resolver.property_files[previous.name] = dict(previous.metadata["property_files"])

    def _should_skip(self, step: Step, skipped: set[str]) -> bool:
        if step.branch and (
            step.branch[0] in skipped or self.outcomes.get(step.branch[0]) != step.branch[1]
        ):
            return True
        # A step whose inputs come from a step that never ran cannot run either.
        return bool(step.depends_on & skipped)

    def _execute(self, step: Step) -> StepRecord:
        record = StepRecord(step.name, step.type, start_time=now())
        self.records[step.name] = record
        retries = RetryState(step.body.get("RetryPolicies"))
        while True:
            record.properties = {}
            try:
                handler = STEP_TYPES.get(step.type)
                if handler is None:
                    raise StepFailure(
                        f"step type {step.type!r} is not supported by the local runner"
                    )
                handler(self, step, record)
                record.status, record.failure_reason = SUCCEEDED, None
            except ExecutionStopped:
                record.status, record.failure_reason = STOPPED, "stopped"
            except Exception as exc:  # boto errors, bad data: a failed step, never a crash
                record.status = FAILED
                record.failure_reason = (
                    str(exc) if isinstance(exc, StepFailure) else f"{type(exc).__name__}: {exc}"
                )
                wait = retries.next_wait(exc)
                if wait is not None:  # a retry policy matches: a new attempt (a new job)
                    record.metadata.setdefault("retried_after", []).append(
                        bounded(self.container_paths(record.failure_reason), 256)
                    )
                    if self.stop_event.wait(self.runner.retry_wait(wait)):
                        record.status, record.failure_reason = STOPPED, "stopped"
                        break
                    record.attempt_count += 1
                    continue
            break
        reason = self.container_paths(record.failure_reason)
        record.failure_reason = bounded(reason, STEP_FAILURE_REASON_MAX)
        record.end_time = now()
        if self.on_step:
            self.on_step(record)
        return record
