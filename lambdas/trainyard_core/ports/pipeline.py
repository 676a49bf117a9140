"""The training pipeline: start an execution, ask about one, list recent ones.

Implemented on boto3 by ``sagemaker_port.py``; tests and the benchmark plug in fakes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class ExecutionInfo:
    arn: str
    status: str  # Executing | Stopping | Stopped | Failed | Succeeded
    failure_reason: str | None = None
    display_name: str | None = None
    # DescribePipelineExecution's LastModifiedTime (the listing has none): for an
    # ended execution, when it ended.
    last_modified: datetime | None = None


class StartError(Exception):
    def __init__(self, message: str, *, retryable: bool, throttled: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.throttled = throttled


class RetryUnavailableError(Exception):
    """RetryPipelineExecution refused this execution for good (not Failed, too old,
    unknown): the caller starts a new execution instead."""


class PipelinePort(Protocol):
    def start(
        self, *, display_name: str, client_request_token: str, parameters: dict[str, str]
    ) -> str:
        """StartPipelineExecution; returns the execution ARN. Raises StartError."""
        ...

    def retry(self, *, execution_arn: str, client_request_token: str) -> str:
        """RetryPipelineExecution: the failed execution resumes from its failed steps;
        returns its ARN. Raises StartError (transient) or RetryUnavailableError."""
        ...

    def describe(self, execution_arn: str) -> ExecutionInfo | None:
        """None if the execution is unknown."""
        ...

    def list_statuses(self, since: datetime) -> dict[str, ExecutionInfo]:
        """Status of every execution created at or after ``since``, by ARN.
        ListPipelineExecutions returns 100 a call, so reconciling N active runs costs
        ceil(N/100) calls instead of N DescribePipelineExecution calls."""
        ...
