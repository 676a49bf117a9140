"""``PipelinePort`` on boto3: StartPipelineExecution / DescribePipelineExecution, and
``TenantExecutions`` (a tenant's unfinished executions, StopPipelineExecution) for
offboarding."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from trainyard_core.models import Run
from trainyard_core.ports.pipeline import ExecutionInfo, RetryUnavailableError, StartError
from trainyard_core.ports.provisioning import TenantExecution

# Errors worth retrying later (with backoff) rather than failing the run.
_THROTTLING = {
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "RequestLimitExceeded",
}
_RETRYABLE = _THROTTLING | {
    "ResourceLimitExceeded",  # concurrent-execution quota: capacity frees up
    "ServiceUnavailable",
    "InternalFailure",
    "InternalServerError",
    "ConflictException",
    "ResourceNotFound",  # e.g. the pipeline is being (re)deployed
}


# A retry refused for any other reason (ValidationException, ResourceNotFound: the
# execution is not Failed, too old, or gone) will not pass later: the run restarts.
# ConflictException is transient: another call is changing the execution (a concurrent
# retry with this token), and starting a second execution then could run two at once;
# the same token is asked again with the start's backoff.
_RETRY_TRANSIENT = _THROTTLING | {
    "ResourceLimitExceeded",
    "ServiceUnavailable",
    "InternalFailure",
    "InternalServerError",
    "ConflictException",
}


class SageMakerPipelinePort:
    def __init__(self, pipeline_name: str, client: Any | None = None) -> None:
        self.pipeline_name = pipeline_name
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("sagemaker")  # honours AWS_ENDPOINT_URL
        return self._client

    def start(
        self, *, display_name: str, client_request_token: str, parameters: dict[str, str]
    ) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            resp = self.client.start_pipeline_execution(
                PipelineName=self.pipeline_name,
                PipelineExecutionDisplayName=display_name,
                ClientRequestToken=client_request_token,
                PipelineParameters=[{"Name": k, "Value": v} for k, v in parameters.items()],
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            message = exc.response.get("Error", {}).get("Message", str(exc))
            raise StartError(
                f"{code}: {message}", retryable=code in _RETRYABLE, throttled=code in _THROTTLING
            ) from exc
        except BotoCoreError as exc:  # connection errors, timeouts: transient
            raise StartError(str(exc), retryable=True) from exc
        return str(resp["PipelineExecutionArn"])

    def retry(self, *, execution_arn: str, client_request_token: str) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            resp = self.client.retry_pipeline_execution(
                PipelineExecutionArn=execution_arn, ClientRequestToken=client_request_token
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            message = exc.response.get("Error", {}).get("Message", str(exc))
            if code in _RETRY_TRANSIENT:
                raise StartError(
                    f"{code}: {message}", retryable=True, throttled=code in _THROTTLING
                ) from exc
            raise RetryUnavailableError(f"{code}: {message}") from exc
        except BotoCoreError as exc:
            raise StartError(str(exc), retryable=True) from exc
        return str(resp["PipelineExecutionArn"])

    def list_statuses(self, since: datetime) -> dict[str, ExecutionInfo]:
        out: dict[str, ExecutionInfo] = {}
        kwargs: dict[str, Any] = {
            "PipelineName": self.pipeline_name,
            "CreatedAfter": since,
            "SortBy": "CreationTime",
            "SortOrder": "Descending",
            "MaxResults": 100,
        }
        while True:
            resp = self.client.list_pipeline_executions(**kwargs)
            for item in resp.get("PipelineExecutionSummaries", []):
                reason = item.get("PipelineExecutionFailureReason")
                arn = str(item["PipelineExecutionArn"])
                out[arn] = ExecutionInfo(
                    arn=arn,
                    status=str(item.get("PipelineExecutionStatus", "")),
                    # moto renders a missing reason as the string "None".
                    failure_reason=reason if reason and reason != "None" else None,
                    display_name=item.get("PipelineExecutionDisplayName"),
                )
            token = resp.get("NextToken")
            if not token:
                return out
            kwargs["NextToken"] = token

    def describe(self, execution_arn: str) -> ExecutionInfo | None:
        from botocore.exceptions import ClientError

        try:
            resp = self.client.describe_pipeline_execution(PipelineExecutionArn=execution_arn)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in (
                "ResourceNotFound",
                "ValidationException",
            ):
                return None
            raise
        return ExecutionInfo(
            arn=execution_arn,
            status=str(resp.get("PipelineExecutionStatus", "")),
            failure_reason=resp.get("FailureReason") or None,
            display_name=resp.get("PipelineExecutionDisplayName"),
            last_modified=_utc(resp.get("LastModifiedTime")),
        )


# Statuses of an execution that may still write (DescribePipelineExecution).
_UNFINISHED = ("Executing", "Stopping")


class SageMakerTenantExecutions:
    """A tenant's unfinished executions: its STARTING and RUNNING runs (from the run
    store, ``active_runs``), each confirmed with DescribePipelineExecution (a run
    record lags its execution by a status event)."""

    def __init__(self, pipeline: SageMakerPipelinePort, active_runs: Callable[[str], list[Run]]):
        self._pipeline = pipeline
        self._active_runs = active_runs

    def unfinished(self, tenant_id: str) -> list[TenantExecution]:
        found = []
        for run in self._active_runs(tenant_id):
            if not run.execution_arn:
                found.append(TenantExecution(run.run_id, None, "Starting"))
                continue
            info = self._pipeline.describe(run.execution_arn)
            if info is not None and info.status in _UNFINISHED:
                found.append(TenantExecution(run.run_id, run.execution_arn, info.status))
        return found

    def stop(self, execution_arn: str) -> None:
        from botocore.exceptions import ClientError

        try:
            self._pipeline.client.stop_pipeline_execution(
                PipelineExecutionArn=execution_arn, ClientRequestToken=str(uuid.uuid4())
            )
        except ClientError as exc:
            # Already stopping or ended (ValidationException), or gone: nothing to stop.
            if exc.response.get("Error", {}).get("Code") not in (
                "ValidationException",
                "ResourceNotFound",
                "ConflictException",
            ):
                raise


def _utc(moment: Any) -> datetime | None:
    if not isinstance(moment, datetime):
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
