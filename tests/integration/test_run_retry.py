"""Retrying a FAILED run through the API, on the embedded stack: the failed execution
resumes from its failed step (RetryPipelineExecution; the steps that succeeded are
not run again), a run that never had an execution restarts from the top, and every
refusal is a 4xx with a code."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from trainyard.data import tenant_csv
from trainyard.local.observations import executions_of
from trainyard.local.stack import EmbeddedStack

from .conftest import Api, wait_for

pytestmark = pytest.mark.integration

TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


def _tid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def _runs(api: Api, tenant_id: str) -> list[dict[str, Any]]:
    resp = api.get(f"/tenants/{tenant_id}/runs")
    assert resp.status_code == 200, resp.text
    return resp.json()["runs"]


def _ended(api: Api, tenant_id: str, what: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        runs = _runs(api, tenant_id)
        return runs[0] if len(runs) == 1 and runs[0]["status"] in TERMINAL else None

    return wait_for(check, timeout=300, interval=0.5, what=what)


def _jobs(stack: EmbeddedStack, execution_arn: str, kind: str) -> list[str]:
    """The processing or training jobs SageMaker holds for one execution."""
    stem = f"pipelines-{execution_arn.rsplit('/', 1)[-1]}-"
    sagemaker = stack.client("sagemaker")
    if kind == "processing":
        pages = sagemaker.get_paginator("list_processing_jobs").paginate(NameContains=stem)
        return sorted(j["ProcessingJobName"] for p in pages for j in p["ProcessingJobSummaries"])
    pages = sagemaker.get_paginator("list_training_jobs").paginate(NameContains=stem)
    return sorted(j["TrainingJobName"] for p in pages for j in p["TrainingJobSummaries"])


def test_a_failed_run_retried_through_the_api_succeeds_without_rerunning_its_succeeded_steps(
    stack: EmbeddedStack, api: Api, onboard: Any
) -> None:
    tid = _tid("rt-resume")
    tenant = onboard(tid, "standard")
    # Not a transient error (no retry policy matches): the execution fails.
    stack.faults.fail_step(tid, "Train", "AlgorithmError: injected for the retry test", times=1)
    stack.client("s3").put_object(
        Bucket=tenant["dataBucket"], Key=f"{tenant['dataPrefix']}a.csv", Body=tenant_csv(tid)
    )
    failed = _ended(api, tid, "the run failed")
    assert failed["status"] == "FAILED" and "AlgorithmError" in failed["failureReason"]
    arn = failed["executionArn"]
    preprocess_jobs = [j for j in _jobs(stack, arn, "processing") if "-Preprocess-" in j]
    assert len(preprocess_jobs) == 1 and len(_jobs(stack, arn, "training")) == 1

    resp = api.call(
        "POST", f"/tenants/{tid}/runs/{failed['runId']}/retry", json={"reason": "flaky job"}
    )
    assert resp.status_code == 202, resp.text
    queued = resp.json()
    assert queued["status"] in ("QUEUED", "STARTING", "RUNNING")
    assert queued["failureReason"] is None and queued["executionArn"] is None
    (retry,) = queued["retries"]
    assert retry["attempt"] == 1 and retry["reason"] == "flaky job"
    assert "AlgorithmError" in retry["previousFailureReason"]
    assert retry["previousExecutionArn"] == arn and retry["requestedBy"]

    done = _ended(api, tid, "the retried run ended")
    assert done["status"] == "SUCCEEDED", done["failureReason"]
    assert done["runId"] == failed["runId"] and done["executionArn"] == arn
    (retry,) = done["retries"]
    assert retry["mode"] == "RESUMED" and retry["executionArn"] == arn
    # Same execution: preprocess kept (one processing job), a new training job.
    assert [j for j in _jobs(stack, arn, "processing") if "-Preprocess-" in j] == preprocess_jobs
    assert len(_jobs(stack, arn, "training")) == 2
    assert done["modelPackageArn"] and done["metrics"]
    assert len(executions_of(stack, tid)) == 1
    # Both executions' time is the run's; the month counts the run once.
    assert done["trainingSeconds"] >= failed["trainingSeconds"]
    usage = api.get(f"/tenants/{tid}/usage").json()
    assert usage["runs"] == 1

    # A run that did not fail cannot be retried; neither can an unknown one.
    again = api.call("POST", f"/tenants/{tid}/runs/{failed['runId']}/retry")
    assert again.status_code == 409 and again.json()["error"]["code"] == "RunNotRetryable"
    missing = api.call("POST", f"/tenants/{tid}/runs/{'0' * 32}/retry")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "RunNotFound"
    bad = api.call("POST", f"/tenants/{tid}/runs/{failed['runId']}/retry", json={"why": 1})
    assert bad.status_code == 400 and bad.json()["error"]["code"]


def test_a_run_that_never_started_restarts_from_the_top_when_retried(
    stack: EmbeddedStack, api: Api, onboard: Any
) -> None:
    tid = _tid("rt-restart")
    tenant = onboard(tid, "standard")
    stack.faults.fail_starts(
        1, code="ValidationException", message="injected: refused start", tenant=tid
    )
    stack.client("s3").put_object(
        Bucket=tenant["dataBucket"], Key=f"{tenant['dataPrefix']}a.csv", Body=tenant_csv(tid)
    )
    failed = _ended(api, tid, "the run failed to start")
    assert failed["status"] == "FAILED" and failed["executionArn"] is None

    resp = api.call("POST", f"/tenants/{tid}/runs/{failed['runId']}/retry")
    assert resp.status_code == 202, resp.text

    done = _ended(api, tid, "the retried run ended")
    assert done["status"] == "SUCCEEDED", done["failureReason"]
    (retry,) = done["retries"]
    assert retry["mode"] == "RESTARTED"
    assert "never had a pipeline execution" in retry["fallbackReason"]
    assert done["executionArn"] == retry["executionArn"]
    (execution,) = executions_of(stack, tid)
    assert execution.token == f"{failed['runId']}-restart-1"
