"""A step's ``RetryPolicies``, honoured as SageMaker Pipelines does: a failure is
classified into one of SageMaker's retry exception types; the first policy that
lists that type retries the step (a new job) after ``IntervalSeconds`` *
``BackoffRate``^(retry - 1), at most ``MaxAttempts`` retries per policy
("the maximum number of retry attempts": 1 + MaxAttempts attempts in all). A
failure of no listed type, or one past the bound, fails the step.

How SageMaker classifies (developer guide, "Retry Policy for Pipeline Steps"):
``SageMaker.CAPACITY_ERROR`` a job whose FailureReason is a CapacityError (EC2
InsufficientCapacity), ``SageMaker.JOB_INTERNAL_ERROR`` one whose FailureReason is
an InternalServerError, ``SageMaker.RESOURCE_LIMIT`` the Create*Job call refused
with ResourceLimitExceeded, ``Step.THROTTLING`` / ``Step.SERVICE_FAULT`` a throttled
or failing (5xx) call to a downstream service."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

CAPACITY_ERROR = "SageMaker.CAPACITY_ERROR"
JOB_INTERNAL_ERROR = "SageMaker.JOB_INTERNAL_ERROR"
RESOURCE_LIMIT = "SageMaker.RESOURCE_LIMIT"
THROTTLING = "Step.THROTTLING"
SERVICE_FAULT = "Step.SERVICE_FAULT"

# The FailureReason prefix (or API error code) SageMaker reports for each type.
_REASON_PREFIXES: tuple[tuple[str, str], ...] = (
    ("CapacityError", CAPACITY_ERROR),
    ("InsufficientCapacity", CAPACITY_ERROR),
    ("InternalServerError", JOB_INTERNAL_ERROR),
    ("ResourceLimitExceeded", RESOURCE_LIMIT),
    ("ThrottlingException", THROTTLING),
    ("Throttling", THROTTLING),
    ("TooManyRequestsException", THROTTLING),
    ("ServiceUnavailable", SERVICE_FAULT),
    ("InternalFailure", SERVICE_FAULT),
)
# The SDK's cap on MaxAttempts (sagemaker.mlops.workflow.retry.MAX_ATTEMPTS_CAP).
MAX_ATTEMPTS_CAP = 20


def exception_type(error: BaseException) -> str | None:
    """The retry exception type of a step's failure, None if it is none of them."""
    response = getattr(error, "response", None)
    if isinstance(response, Mapping):  # a botocore ClientError from a call the step made
        code = str((response.get("Error") or {}).get("Code") or "")
        status = int((response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)
        found = _by_prefix(code)
        if found:
            return found
        return SERVICE_FAULT if status >= 500 else None
    return _by_prefix(str(error).lstrip())


def _by_prefix(text: str) -> str | None:
    for prefix, kind in _REASON_PREFIXES:
        if text.startswith(prefix):
            return kind
    return None


@dataclass
class _Policy:
    exception_types: frozenset[str]
    interval_seconds: float
    backoff_rate: float
    max_attempts: int
    retries: int = 0


class RetryState:
    """The retry policies of one step, with the retries each has spent."""

    def __init__(self, policies: Sequence[Mapping[str, Any]] | None) -> None:
        self.policies = [
            _Policy(
                frozenset(str(t) for t in p.get("ExceptionType") or []),
                float(p.get("IntervalSeconds", 1)),
                float(p.get("BackoffRate", 2.0)),
                # ExpireAfterMin alone bounds by time; locally that is the SDK's cap.
                min(int(p.get("MaxAttempts") or MAX_ATTEMPTS_CAP), MAX_ATTEMPTS_CAP),
            )
            for p in policies or []
        ]

    def next_wait(self, error: BaseException) -> float | None:
        """Seconds to wait before retrying after ``error``, None to fail the step."""
        kind = exception_type(error)
        if kind is None:
            return None
        policy = next((p for p in self.policies if kind in p.exception_types), None)
        if policy is None or policy.retries >= policy.max_attempts:
            return None
        policy.retries += 1
        return policy.interval_seconds * policy.backoff_rate ** (policy.retries - 1)
