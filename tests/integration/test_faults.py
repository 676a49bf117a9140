"""Faults injected into the embedded stack. For each: nothing accepted is lost,
nothing runs twice, no cap is exceeded, the state heals by the next reconcile,
and whatever cannot proceed says why. Catalogue: docs/faults.md."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from trainyard_core.store.runs_dynamodb import DynamoRunRepository

from trainyard.data import feature_names, non_numeric_csv, tenant_csv
from trainyard.local.observations import all_runs, cap_violations, executions_of
from trainyard.local.stack import EmbeddedStack

from .conftest import Api, wait_for

pytestmark = pytest.mark.integration

TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
TICK = 60.0  # the reconcile schedule's period


# --------------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def clean_faults(stack: EmbeddedStack) -> Iterator[None]:
    stack.faults.reset()
    yield
    stack.faults.reset()
    # Whatever a test did, no cap was exceeded by any run so far.
    assert cap_violations(all_runs(stack), stack.settings) == []


def _tid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def _repo(stack: EmbeddedStack) -> DynamoRunRepository:
    return DynamoRunRepository(stack.names.runs_table, stack.names.state_table)


def _runs(stack: EmbeddedStack, tenant: str) -> list[dict[str, Any]]:
    runs, _ = _repo(stack).list_runs(tenant, limit=100)
    return [r.api_dict() for r in runs]


def _slots(stack: EmbeddedStack, tenant: str) -> int:
    return _repo(stack).counters().tenants.get(tenant, 0)


def _upload(stack: EmbeddedStack, tenant: dict[str, Any], name: str, body: bytes) -> None:
    stack.client("s3").put_object(
        Bucket=tenant["dataBucket"], Key=f"{tenant['dataPrefix']}{name}", Body=body
    )


def _one_run(stack: EmbeddedStack, tenant: str, where: Any, what: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        runs = _runs(stack, tenant)
        return runs[0] if len(runs) == 1 and where(runs[0]) else None

    return wait_for(check, timeout=90, interval=0.3, what=f"{tenant}: {what}")


def _terminal(stack: EmbeddedStack, tenant: str) -> dict[str, Any]:
    return _one_run(stack, tenant, lambda r: r["status"] in TERMINAL, "a terminal run")


def _tick(stack: EmbeddedStack, after_seconds: float) -> None:
    """The reconcile schedule firing ``after_seconds`` from now (no sleep)."""
    with stack.faults.later(after_seconds):
        stack.reconcile_now()


def _engine_done(stack: EmbeddedStack, tenant: str, count: int = 1) -> None:
    def finished() -> bool:
        runs = executions_of(stack, tenant)
        return len(runs) == count and all(e.status != "Executing" for e in runs)

    wait_for(finished, timeout=90, interval=0.3, what=f"{tenant}'s execution to end")


def _dropped(stack: EmbeddedStack, count: int) -> list[dict[str, Any]]:
    """The dropped status events once ``count`` are in (emitted just after the
    execution's status changes, so they can trail ``_engine_done`` slightly)."""
    wait_for(
        lambda: len(stack.faults.dropped_status_events) >= count,
        timeout=15,
        interval=0.1,
        what=f"{count} dropped status event(s)",
    )
    return list(stack.faults.dropped_status_events)


def _random_label_csv(rows: int = 2000, features: int = 6, seed: int = 7) -> bytes:
    # Labels independent of the features: no model beats AUC 0.5 by much.
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features))
    y = rng.integers(0, 2, size=rows)
    lines = [",".join([*feature_names(features), "label"])]
    lines += [
        ",".join([*(f"{v:.5f}" for v in row), str(label)]) for row, label in zip(x, y, strict=True)
    ]
    return ("\n".join(lines) + "\n").encode()


# --------------------------------------------------------------------- events


def test_redelivered_s3_events_add_no_upload_and_start_no_second_run(
    stack: EmbeddedStack, onboard: Any
) -> None:
    tid = _tid("ft-dup")
    tenant = onboard(tid, "standard")
    _upload(stack, tenant, "a.csv", tenant_csv(tid))
    delivered = wait_for(
        lambda: stack.faults.s3_events_for(tenant["dataBucket"]), timeout=30, what="the S3 event"
    )
    queue = stack.names.intake_queue("standard")
    for _ in range(3):  # at-least-once delivery, while the run is queued or running
        stack.faults.send(queue, delivered[0].body)
    run = _terminal(stack, tid)
    for _ in range(2):  # and long after it finished
        stack.faults.send(queue, delivered[0].body)
    assert stack.wait_idle(30)

    (final,) = _runs(stack, tid)
    assert final["runId"] == run["runId"] and final["status"] == "SUCCEEDED"
    assert [o["key"] for o in final["trigger"]["objects"]] == [f"{tenant['dataPrefix']}a.csv"]
    assert len(executions_of(stack, tid)) == 1
    assert _slots(stack, tid) == 0


def test_out_of_order_status_events_leave_the_run_in_its_final_state(
    stack: EmbeddedStack, onboard: Any
) -> None:
    tid = _tid("ft-order")
    tenant = onboard(tid, "standard")
    stack.faults.drop_status_events(tenant=tid)
    _upload(stack, tenant, "a.csv", tenant_csv(tid))
    _engine_done(stack, tid)
    _dropped(stack, 2)  # the engine emits the final event just after the status changes
    assert [
        json.loads(e["Detail"])["currentPipelineExecutionStatus"]
        for e in stack.faults.dropped_status_events
    ] == ["Executing", "Succeeded"]

    # "Succeeded" arrives first, then the stale "Executing" (and Succeeded again).
    held = list(stack.faults.dropped_status_events)
    assert stack.faults.release_status_events(reverse=True) == 2
    stack.faults.dropped_status_events.extend(held[1:])
    stack.faults.release_status_events()
    assert stack.wait_idle(30)

    run = _terminal(stack, tid)
    assert run["status"] == "SUCCEEDED"
    assert run["endedAt"] >= run["startedAt"]
    assert run["metrics"]["auc"] > 0.6
    assert _slots(stack, tid) == 0


@pytest.mark.parametrize("outcome", ["SUCCEEDED", "FAILED"])
def test_a_lost_completion_event_is_recovered_by_the_next_reconcile(
    stack: EmbeddedStack, onboard: Any, outcome: str
) -> None:
    tid = _tid("ft-lost")
    tenant = onboard(tid, "premium")
    stack.faults.drop_status_events(tenant=tid, statuses={"Succeeded", "Failed", "Stopped"})
    if outcome == "FAILED":
        stack.faults.fail_step(tid, "Train", "AlgorithmError: out of memory")
    _upload(stack, tenant, "a.csv", tenant_csv(tid))
    _engine_done(stack, tid)
    dropped = [json.loads(e["Detail"]) for e in _dropped(stack, 1)]
    assert len(dropped) == 1, dropped

    # Without the event the run still holds its slot ...
    (stuck,) = _runs(stack, tid)
    assert stuck["status"] == "RUNNING" and _slots(stack, tid) == 1
    # ... and the next one-minute tick finds the end by describing the execution.
    ended_by = datetime.now(UTC)
    _tick(stack, TICK)
    (run,) = _runs(stack, tid)
    assert run["status"] == outcome
    assert _slots(stack, tid) == 0
    # endedAt (and so duration and cost) is when the execution ended, not the tick.
    ended = datetime.fromisoformat(run["endedAt"].replace("Z", "+00:00"))
    assert ended <= ended_by + timedelta(seconds=1) < ended + timedelta(seconds=TICK / 2)
    if outcome == "FAILED":
        assert "Step Train failed" in run["failureReason"]
        assert "out of memory" in run["failureReason"]


# --------------------------------------------------------------------- starts


def test_throttled_starts_are_retried_and_the_run_completes_once(
    stack: EmbeddedStack, onboard: Any
) -> None:
    tid = _tid("ft-thr")
    tenant = onboard(tid, "premium")
    stack.faults.fail_starts(3, code="ThrottlingException", tenant=tid)
    _upload(stack, tenant, "a.csv", tenant_csv(tid))

    waiting = _one_run(stack, tid, lambda r: r["waitingFor"], "a start failure")
    assert waiting["status"] == "STARTING"  # holds its slot while it waits to retry
    assert waiting["failureReason"] is None  # a retried start is a wait, not a failure
    assert waiting["waitingFor"]["code"] == "START_RETRY"
    assert "ThrottlingException" in waiting["waitingFor"]["message"]
    assert "retrying" in waiting["waitingFor"]["message"]

    for minute in range(1, 6):  # backoff is seconds; each tick retries what is due
        if _runs(stack, tid)[0]["status"] != "STARTING":
            break
        _tick(stack, minute * TICK)
    run = _terminal(stack, tid)
    assert run["status"] == "SUCCEEDED"
    calls = [c.outcome for c in stack.faults.start_calls if c.tenant == tid]
    assert calls == ["ThrottlingException"] * 3 + ["sent"]
    assert len(executions_of(stack, tid)) == 1
    assert _slots(stack, tid) == 0


@pytest.mark.parametrize(
    ("code", "status", "attempts"),
    [("ValidationException", 400, 1), ("InternalFailure", 500, None)],
    ids=["rejected", "server-error"],
)
def test_a_start_that_keeps_failing_fails_the_run_with_the_reason_and_frees_the_slot(
    stack: EmbeddedStack, onboard: Any, code: str, status: int, attempts: int | None
) -> None:
    expected = attempts or stack.settings.max_start_attempts
    tid = _tid("ft-sfail")
    tenant = onboard(tid, "premium")
    stack.faults.fail_starts(None, code=code, status=status, message="no", tenant=tid)
    _upload(stack, tenant, "a.csv", tenant_csv(tid))
    _one_run(stack, tid, lambda r: r["failureReason"] or r["waitingFor"], "a start failure")
    for minute in range(1, expected + 2):
        if _runs(stack, tid)[0]["status"] in TERMINAL:
            break
        _tick(stack, minute * TICK)

    run = _terminal(stack, tid)
    assert run["status"] == "FAILED"
    assert f"after {expected} attempt(s)" in run["failureReason"]
    assert code in run["failureReason"]
    assert len([c for c in stack.faults.start_calls if c.tenant == tid]) == expected
    assert executions_of(stack, tid) == []
    assert _slots(stack, tid) == 0


def test_a_crash_before_the_start_call_is_restarted_by_reconcile_exactly_once(
    stack: EmbeddedStack, onboard: Any
) -> None:
    tid = _tid("ft-crash1")
    tenant = onboard(tid, "premium")
    stack.faults.crash_before_start(tenant=tid)
    _upload(stack, tenant, "a.csv", tenant_csv(tid))
    wait_for(
        lambda: any(c.tenant == tid for c in stack.faults.start_calls), timeout=30, what="a start"
    )
    (stuck,) = _runs(stack, tid)
    assert stuck["status"] == "STARTING" and not stuck.get("executionArn")
    assert _slots(stack, tid) == 1

    # A tick before the starting timeout leaves it alone (another scheduler may still
    # be mid-start); the next one-minute tick starts it: healed within one period.
    assert stack.settings.starting_timeout_seconds <= TICK
    _tick(stack, stack.settings.starting_timeout_seconds / 2)
    assert _runs(stack, tid)[0]["status"] == "STARTING"
    _tick(stack, TICK + 1)
    run = _terminal(stack, tid)
    assert run["status"] == "SUCCEEDED"
    assert len(executions_of(stack, tid)) == 1
    assert _slots(stack, tid) == 0


@pytest.mark.parametrize("events", ["delivered", "lost"])
def test_a_crash_after_the_start_call_leaves_exactly_one_execution(
    stack: EmbeddedStack, onboard: Any, events: str
) -> None:
    tid = _tid("ft-crash2")
    tenant = onboard(tid, "premium")
    stack.faults.crash_after_start(tenant=tid)
    if events == "lost":
        stack.faults.drop_status_events(tenant=tid)
    _upload(stack, tenant, "a.csv", tenant_csv(tid))
    _engine_done(stack, tid)

    if events == "lost":
        # Nothing told the scheduler: the restart reuses the run's token, so
        # SageMaker answers with the same execution instead of a second one.
        (stuck,) = _runs(stack, tid)
        assert stuck["status"] == "STARTING" and not stuck.get("executionArn"), (
            stuck,
            stack.faults.start_calls,
            stack.faults.dropped_status_events,
        )
        first = stack.settings.starting_timeout_seconds + 1
        _tick(stack, first)
        _tick(stack, first + TICK)

    run = _terminal(stack, tid)
    assert run["status"] == "SUCCEEDED"
    (execution,) = executions_of(stack, tid)
    assert run["executionArn"] == execution.arn
    tokens = {c.token for c in stack.faults.start_calls if c.tenant == tid}
    assert tokens == {run["runId"]}
    assert _slots(stack, tid) == 0


# --------------------------------------------------------------------- pipeline steps


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        ("Preprocess", "Step Preprocess failed: column 'f0' has a non-numeric value 'high'"),
        ("Train", "Step Train failed: AlgorithmError: injected"),
        ("Evaluate", "Step Evaluate failed: ClientError: injected"),
        ("MetricBelowThreshold", "is below the threshold"),
        ("RecordRun", "Step RecordRun failed"),
    ],
    ids=["Preprocess", "Train", "Evaluate", "MetricBelowThreshold", "RecordRun"],
)
def test_a_failing_pipeline_step_fails_the_run_with_a_reason_naming_it(
    stack: EmbeddedStack, onboard: Any, step: str, expected: str
) -> None:
    tid = _tid(f"ft-{step.lower()[:8]}")
    tenant = onboard(tid, "standard")
    body = tenant_csv(tid)
    if step == "Preprocess":
        body = non_numeric_csv(tid)
    elif step == "MetricBelowThreshold":
        body = _random_label_csv()
    elif step == "RecordRun":
        stack.faults.fail_function("recorder", tenant=tid, reason="runs table unavailable")
    else:
        stack.faults.fail_step(
            tid, step, f"{'AlgorithmError' if step == 'Train' else 'ClientError'}: injected"
        )
    errors_before = stack.runtime.errors
    _upload(stack, tenant, "a.csv", body)

    run = _terminal(stack, tid)
    assert run["status"] == "FAILED"
    assert expected in run["failureReason"]
    if step == "RecordRun":
        assert "runs table unavailable" in run["failureReason"]
        assert stack.runtime.errors == errors_before + 1  # the step's one invocation
    else:
        assert stack.runtime.errors == errors_before
    assert _slots(stack, tid) == 0


def _training_jobs(stack: EmbeddedStack, tenant: str) -> list[str]:
    """The training jobs SageMaker holds for the tenant's one execution (one per attempt)."""
    (execution,) = executions_of(stack, tenant)
    stem = f"pipelines-{execution.arn.rsplit('/', 1)[-1]}-Train-"
    sagemaker = stack.client("sagemaker")
    names = [
        job["TrainingJobName"]
        for page in sagemaker.get_paginator("list_training_jobs").paginate(NameContains=stem)
        for job in page["TrainingJobSummaries"]
    ]
    return sorted(names)


def test_a_run_whose_training_job_hits_a_capacity_error_succeeds_through_the_retry_policy(
    stack: EmbeddedStack, onboard: Any
) -> None:
    tid = _tid("ft-cap1")
    tenant = onboard(tid, "standard")
    stack.faults.capacity_error(tid, "Train", times=1)
    _upload(stack, tenant, "a.csv", tenant_csv(tid))

    run = _terminal(stack, tid)

    assert run["status"] == "SUCCEEDED", run.get("failureReason")
    assert len(_training_jobs(stack, tid)) == 2  # the failed job and its retry
    assert _slots(stack, tid) == 0


def test_capacity_errors_beyond_the_retry_policys_attempts_fail_the_run_with_the_capacity_reason(
    stack: EmbeddedStack, onboard: Any
) -> None:
    tid = _tid("ft-cap9")
    tenant = onboard(tid, "standard")
    stack.faults.capacity_error(tid, "Train", times=9)
    _upload(stack, tenant, "a.csv", tenant_csv(tid))

    run = _terminal(stack, tid)

    assert run["status"] == "FAILED"
    assert "Step Train failed: CapacityError: Unable to provision" in run["failureReason"]
    assert len(_training_jobs(stack, tid)) == 4  # the first attempt and MaxAttempts (3) retries
    assert _slots(stack, tid) == 0


# --------------------------------------------------------------------- messages


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.getMessage()} {getattr(record, 'error', '')}")


def test_a_poison_message_is_dead_lettered_with_the_reason_logged_and_its_batch_still_processed(
    stack: EmbeddedStack,
) -> None:
    from trainyard_handlers import scheduler

    plan = "basic"
    queue, dlq = stack.names.intake_queue(plan), stack.names.intake_dlq(plan)
    stranger = f"nobody-{uuid.uuid4().hex[:8]}"
    neighbour = {
        "version": "0",
        "id": str(uuid.uuid4()),
        "source": "aws.s3",
        "detail-type": "Object Created",
        "account": stack.account_id,
        "region": stack.region,
        "time": "2026-01-01T00:00:00Z",
        "resources": [f"arn:aws:s3:::{stranger}"],
        "detail": {"bucket": {"name": stranger}, "object": {"key": "x.csv", "size": 1}},
    }
    missing_key = {**neighbour, "detail": {"bucket": {"name": stranger}, "object": {}}}
    poison = ["{not json", json.dumps(missing_key)]
    logs = _Records()
    logging.getLogger(scheduler.logger.name).addHandler(logs)
    sqs = stack.client("sqs")
    try:
        with stack.faults.fast_redelivery(queue):
            sqs.send_message_batch(
                QueueUrl=stack.platform.queue_urls[queue],
                Entries=[
                    {"Id": "p0", "MessageBody": poison[0]},
                    {"Id": "ok", "MessageBody": json.dumps(neighbour)},
                    {"Id": "p1", "MessageBody": poison[1]},
                ],
            )

            def dead_lettered() -> list[str]:
                got = sqs.receive_message(
                    QueueUrl=stack.platform.queue_urls[dlq],
                    MaxNumberOfMessages=10,
                    WaitTimeSeconds=1,
                    VisibilityTimeout=60,
                ).get("Messages", [])
                bodies.extend(m["Body"] for m in got if m["Body"] in poison)
                return sorted(bodies) if len(bodies) >= 2 else []

            bodies: list[str] = []
            assert wait_for(dead_lettered, timeout=60, what="two messages in the DLQ") == sorted(
                poison
            )
            assert stack.wait_idle(30)
    finally:
        logging.getLogger(scheduler.logger.name).removeHandler(logs)

    # The neighbour in the same batch was handled once: rejected with its reason.
    rejections = [r for r in _repo(stack).list_rejections(200) if r.bucket == stranger]
    assert [r.reason for r in rejections] == ["no tenant owns this storage location"]
    assert any("message body is not JSON" in line for line in logs.lines)
    assert any("malformed 'Object Created' event" in line for line in logs.lines)


# --------------------------------------------------------------------- offboarding


def test_offboarding_cancels_queued_runs_lets_the_running_one_end_and_releases_slots(
    stack: EmbeddedStack, api: Api, onboard: Any
) -> None:
    tid = _tid("ft-off")
    tenant = onboard(tid, "basic")  # one run at a time per tenant
    stack.faults.slow_step(tid, "Train", 6)
    _upload(stack, tenant, "a.csv", tenant_csv(tid, part=0, parts=2))
    _one_run(stack, tid, lambda r: r["status"] == "RUNNING", "a running run")
    _upload(stack, tenant, "b.csv", tenant_csv(tid, part=1, parts=2))
    wait_for(
        lambda: [r["status"] for r in _runs(stack, tid)] == ["QUEUED", "RUNNING"],
        timeout=30,
        what="a queued run behind the running one",
    )

    assert api.call("DELETE", f"/tenants/{tid}").status_code == 202
    stack.reconcile_now()
    queued, running = _runs(stack, tid)
    assert queued["status"] == "FAILED"
    assert queued["failureReason"] in ("tenant no longer exists", "tenant is being offboarded")
    assert [o["key"] for o in queued["trigger"]["objects"]] == [f"{tenant['dataPrefix']}b.csv"]

    def ended() -> dict[str, Any] | None:
        run = next(r for r in _runs(stack, tid) if r["runId"] == running["runId"])
        return run if run["status"] in TERMINAL else None

    final = wait_for(ended, timeout=60, what="the running run to end")
    assert final["status"] in ("SUCCEEDED", "STOPPED", "FAILED")
    assert final["status"] == "SUCCEEDED" or final["failureReason"]
    stack.reconcile_now()
    assert len(executions_of(stack, tid)) == 1
    assert _slots(stack, tid) == 0
    assert len(_runs(stack, tid)) == 2
