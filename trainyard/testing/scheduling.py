"""In-process fakes for the scheduler's ports (tests, benchmark, simulations)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime

from trainyard_core import arns
from trainyard_core.models import Tenant, TenantStatus
from trainyard_core.ports.pipeline import ExecutionInfo, RetryUnavailableError, StartError


@dataclass
class FakeExecution:
    arn: str
    display_name: str
    token: str
    parameters: dict[str, str]
    status: str = "Executing"
    failure_reason: str | None = None
    ended_at: datetime | None = None


class SchedulerCrash(BaseException):
    """Stands for the scheduler process dying mid-dispatch (not an Exception: nothing
    in the service may catch it, as nothing survives a real crash)."""


@dataclass
class FakePipeline:
    """A PipelinePort that behaves like SageMaker where it matters: a repeated
    ClientRequestToken returns the same execution; it can be told to throttle."""

    name: str = "trainyard-training"
    executions: dict[str, FakeExecution] = field(default_factory=dict)
    by_token: dict[str, str] = field(default_factory=dict)
    start_calls: int = 0
    list_calls: int = 0
    describe_calls: int = 0
    retry_calls: int = 0
    retry_tokens: set[str] = field(default_factory=set)
    throttle_next: int = 0
    fail_next: int = 0  # non-retryable (validation) failures
    # Simulated scheduler crashes (the Lambda dies; not a SageMaker error):
    # "before" = after admission, before SageMaker saw the call;
    # "after" = SageMaker started the execution, the scheduler never recorded it.
    crash_next: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(
        self, *, display_name: str, client_request_token: str, parameters: dict[str, str]
    ) -> str:
        with self._lock:
            self.start_calls += 1
            if self.throttle_next > 0:
                self.throttle_next -= 1
                raise StartError(
                    "ThrottlingException: Rate exceeded", retryable=True, throttled=True
                )
            if self.fail_next > 0:
                self.fail_next -= 1
                raise StartError("ValidationException: bad parameter", retryable=False)
            crash, self.crash_next = self.crash_next, None
            if crash == "before":
                raise SchedulerCrash("crashed before calling StartPipelineExecution")
            if client_request_token in self.by_token:
                if crash == "after":
                    raise SchedulerCrash("crashed after StartPipelineExecution returned")
                return self.by_token[client_request_token]
            arn = arns.arn(
                "sagemaker",
                "us-east-1",
                "123456789012",
                f"pipeline/{self.name}/execution/{len(self.executions):012d}",
            )
            self.executions[arn] = FakeExecution(
                arn, display_name, client_request_token, dict(parameters)
            )
            self.by_token[client_request_token] = arn
            if crash == "after":
                raise SchedulerCrash("crashed after StartPipelineExecution returned")
            return arn

    def retry(self, *, execution_arn: str, client_request_token: str) -> str:
        """RetryPipelineExecution as SageMaker answers it: only a Failed execution
        resumes (Executing again, same ARN); a repeated token is the same retry."""
        with self._lock:
            self.retry_calls += 1
            ex = self.executions.get(execution_arn)
            if ex is None:
                raise RetryUnavailableError(f"ResourceNotFound: {execution_arn} not found")
            if client_request_token in self.retry_tokens:
                return execution_arn
            if ex.status != "Failed":
                raise RetryUnavailableError(
                    f"ValidationException: execution is {ex.status}, not Failed"
                )
            self.retry_tokens.add(client_request_token)
            ex.status, ex.failure_reason, ex.ended_at = "Executing", None, None
            return execution_arn

    def describe(self, execution_arn: str) -> ExecutionInfo | None:
        with self._lock:
            self.describe_calls += 1
            ex = self.executions.get(execution_arn)
        if ex is None:
            return None
        return ExecutionInfo(ex.arn, ex.status, ex.failure_reason, ex.display_name, ex.ended_at)

    def list_statuses(self, since: datetime) -> dict[str, ExecutionInfo]:
        with self._lock:
            self.list_calls += 1
            return {
                ex.arn: ExecutionInfo(ex.arn, ex.status, ex.failure_reason, ex.display_name)
                for ex in self.executions.values()
            }

    def set_status(
        self,
        execution_arn: str,
        status: str,
        reason: str | None = None,
        ended_at: datetime | None = None,
    ) -> None:
        with self._lock:
            ex = self.executions[execution_arn]
            ex.status = status
            ex.failure_reason = reason
            ex.ended_at = ended_at

    def execution_for_run(self, run_id: str) -> FakeExecution | None:
        arn = self.by_token.get(run_id)
        return self.executions.get(arn) if arn else None


def make_tenant(
    tenant_id: str,
    plan: str = "basic",
    status: TenantStatus = TenantStatus.ACTIVE,
    *,
    bucket: str | None = None,
    account_id: str = "123456789012",
) -> Tenant:
    """A fully provisioned silo tenant, as onboarding would leave it."""
    bucket = bucket or f"trainyard-{tenant_id}-{account_id}"
    return Tenant(
        tenant_id=tenant_id,
        plan=plan,
        status=status,
        isolation="silo",
        data_bucket=bucket,
        data_prefix="data/",
        output_uri=f"s3://{bucket}/artifacts/",
        role_arn=arns.arn(
            "iam", "", account_id, f"role/trainyard/tenants/trainyard-tenant-{tenant_id}"
        ),
        model_package_group_name=f"trainyard-{tenant_id}",
        created_at="2026-01-01T00:00:00.000Z",
        updated_at="2026-01-01T00:00:00.000Z",
    )


class RecordingMetrics:
    """A MetricsSink that keeps what was recorded."""

    def __init__(self) -> None:
        self.points: list[tuple[str, float, str, dict[str, str]]] = []

    def record(
        self, name: str, value: float, unit: str = "Count", dimensions: dict[str, str] | None = None
    ) -> None:
        self.points.append((name, value, unit, dict(dimensions or {})))

    def values(self, name: str) -> list[float]:
        return [v for n, v, _, _ in self.points if n == name]
