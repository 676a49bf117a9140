"""What an execution works with and produces: its context, step records, result,
and the two ways a step ends early (``StepFailure``, ``ExecutionStopped``)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

SUCCEEDED, FAILED, STOPPED, EXECUTING = "Succeeded", "Failed", "Stopped", "Executing"

# SageMaker's own caps (botocore's sagemaker service-2.json): FailureReason (a
# processing or training job, a pipeline step) is at most 1,024 characters,
# PipelineExecutionFailureReason 1,300. A step's 1 MB error becomes a bounded reason.
STEP_FAILURE_REASON_MAX = 1024
EXECUTION_FAILURE_REASON_MAX = 1300
_CUT = " …"


def bounded(reason: str | None, limit: int) -> str | None:
    """``reason`` cut to at most ``limit`` characters (marked with an ellipsis)."""
    if reason is None or len(reason) <= limit:
        return reason
    return reason[: limit - len(_CUT)] + _CUT


class StepFailure(Exception):
    """A step failed; the message is its FailureReason."""


class ExecutionStopped(Exception):
    """The runner was asked to stop while a step was running."""


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ExecutionContext:
    """Values behind ``Execution.*`` variables (and job names)."""

    pipeline_name: str = "local-pipeline"
    pipeline_arn: str = ""
    execution_arn: str = ""
    # The pipeline's RoleArn: pipeline-level work (property files, model
    # registration, creating jobs, invoking Lambda steps) is done as this role.
    role_arn: str = ""
    start_time: datetime = field(default_factory=now)
    # How often RetryPipelineExecution resumed it: each resume's jobs are new jobs.
    retry_count: int = 0

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
    # ListPipelineExecutionSteps' AttemptCount: 1 + the retries its retry policies made.
    attempt_count: int = 1
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


def sanitize(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9-]+", "-", name).strip("-") or "step"


def job_name(context: ExecutionContext, step_name: str, salt: str = "") -> str:
    """SageMaker-valid (<= 63 chars, [a-zA-Z0-9-]) and unique per execution/step
    (and per ``salt``: each retry attempt of a step is a new job)."""
    if context.retry_count:
        salt = f"{salt}|retry-{context.retry_count}"
    digest = hashlib.sha1(f"{context.execution_arn}|{step_name}|{salt}".encode()).hexdigest()
    stem = f"pipelines-{sanitize(context.execution_id)}-{sanitize(step_name)}"[:52].rstrip("-")
    return f"{stem}-{digest[:10]}"


@dataclass
class Step:
    """A step of the definition; steps nested in condition branches are flattened in."""

    name: str
    type: str
    body: dict[str, Any]
    # Condition step that must take this branch for the step to run: (name, branch).
    branch: tuple[str, bool] | None = None
    depends_on: set[str] = field(default_factory=set)
