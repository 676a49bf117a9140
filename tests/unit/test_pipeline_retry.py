"""The local runner honours a step's RetryPolicies as SageMaker Pipelines does: a
transient failure of a listed type starts a new job, at most MaxAttempts times;
any other failure fails the step at once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from trainyard.local.faults import CAPACITY_ERROR_REASON
from trainyard.local.runner import Job, PipelineRunner, StepFailure
from trainyard.local.runner.retry import RetryState, exception_type

CAPACITY_POLICY = {
    "ExceptionType": ["SageMaker.CAPACITY_ERROR", "SageMaker.JOB_INTERNAL_ERROR"],
    "IntervalSeconds": 30,
    "BackoffRate": 2.0,
    "MaxAttempts": 3,
}


class FailingLauncher:
    """Fails the first jobs with the given reasons, then succeeds; records job names."""

    def __init__(self, *reasons: str) -> None:
        self.reasons = list(reasons)
        self.jobs: list[str] = []

    def run(self, job: Job) -> None:
        self.jobs.append(job.metadata["job_name"])
        if self.reasons:
            raise StepFailure(self.reasons.pop(0))


def _run(tmp_path: Path, launcher: FailingLauncher, policies: list[dict[str, Any]]) -> Any:
    step = {
        "Name": "Train",
        "Type": "Processing",
        "Arguments": {
            "AppSpecification": {"ImageUri": "sklearn", "ContainerEntrypoint": ["python3", "x"]}
        },
        "RetryPolicies": policies,
    }
    runner = PipelineRunner(s3=None, sagemaker=None, workdir=tmp_path, job_launcher=launcher)
    runner.retry_wait_scale = 0.0  # count the attempts, do not wait
    return runner.run(json.dumps({"Version": "2020-12-01", "Steps": [step]}))


def test_a_capacity_error_is_retried_as_a_new_job_and_the_step_succeeds(tmp_path: Path) -> None:
    launcher = FailingLauncher(CAPACITY_ERROR_REASON)

    result = _run(tmp_path, launcher, [CAPACITY_POLICY])

    assert result.status == "Succeeded", result.failure_reason
    record = result.step("Train")
    assert record.attempt_count == 2
    assert len(launcher.jobs) == 2 and len(set(launcher.jobs)) == 2  # a new job each time


def test_capacity_errors_past_max_attempts_fail_the_step_with_the_capacity_reason(
    tmp_path: Path,
) -> None:
    launcher = FailingLauncher(*[CAPACITY_ERROR_REASON] * 10)

    result = _run(tmp_path, launcher, [CAPACITY_POLICY])

    assert result.status == "Failed"
    assert result.failure_reason == f"Step Train failed: {CAPACITY_ERROR_REASON}"
    assert len(launcher.jobs) == 1 + CAPACITY_POLICY["MaxAttempts"]
    assert result.step("Train").attempt_count == 4


def test_a_failure_of_no_listed_type_is_not_retried(tmp_path: Path) -> None:
    launcher = FailingLauncher("AlgorithmError: out of memory")

    result = _run(tmp_path, launcher, [CAPACITY_POLICY])

    assert result.status == "Failed"
    assert "AlgorithmError: out of memory" in (result.failure_reason or "")
    assert len(launcher.jobs) == 1


def test_a_capacity_error_without_a_policy_listing_it_is_not_retried(tmp_path: Path) -> None:
    internal_only = {**CAPACITY_POLICY, "ExceptionType": ["SageMaker.JOB_INTERNAL_ERROR"]}
    no_policy = FailingLauncher(CAPACITY_ERROR_REASON)
    other_policy = FailingLauncher(CAPACITY_ERROR_REASON)

    assert _run(tmp_path / "a", no_policy, []).status == "Failed"
    assert _run(tmp_path / "b", other_policy, [internal_only]).status == "Failed"
    assert len(no_policy.jobs) == len(other_policy.jobs) == 1


def test_waits_grow_by_the_backoff_rate_and_stop_at_max_attempts() -> None:
    state = RetryState([CAPACITY_POLICY])
    error = StepFailure(CAPACITY_ERROR_REASON)

    assert [state.next_wait(error) for _ in range(4)] == [30.0, 60.0, 120.0, None]


def test_failures_are_classified_into_sagemakers_retry_exception_types() -> None:
    def client_error(code: str, status: int) -> ClientError:
        return ClientError(
            {
                "Error": {"Code": code, "Message": "m"},
                "ResponseMetadata": {"HTTPStatusCode": status},
            },
            "CreateTrainingJob",
        )

    assert exception_type(StepFailure(CAPACITY_ERROR_REASON)) == "SageMaker.CAPACITY_ERROR"
    assert exception_type(StepFailure("InternalServerError: We encountered an internal error")) == (
        "SageMaker.JOB_INTERNAL_ERROR"
    )
    assert exception_type(client_error("ResourceLimitExceeded", 400)) == "SageMaker.RESOURCE_LIMIT"
    assert exception_type(client_error("ThrottlingException", 400)) == "Step.THROTTLING"
    assert exception_type(client_error("ServiceUnavailable", 503)) == "Step.SERVICE_FAULT"
    assert exception_type(client_error("ValidationException", 400)) is None
    assert exception_type(StepFailure("AlgorithmError: injected")) is None
