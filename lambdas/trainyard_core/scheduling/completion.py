"""Pipeline status events: a run starts executing or ends, and frees its slot.

``finish`` is the one way a run ends (an event, a failed start, a reconciled
execution): the slot is released and the usage booked in one transaction.
"""

from __future__ import annotations

import re
from datetime import datetime

from trainyard_core import events, limits
from trainyard_core.models import Run, RunStatus, iso_ms, parse_iso
from trainyard_core.scheduling.context import SchedulerContext, month_of
from trainyard_core.scheduling.policy import cost_usd
from trainyard_core.scheduling.retry import is_stale_event

TERMINAL_EXECUTION_STATUS = {
    "Succeeded": RunStatus.SUCCEEDED,
    "Failed": RunStatus.FAILED,
    "Stopped": RunStatus.STOPPED,
}
_DISPLAY_NAME_RE = re.compile(r"^(?P<tenant>[a-z0-9][a-z0-9-]*[a-z0-9])-(?P<suffix>[0-9a-f]{12})$")


class RunNotFoundYetError(Exception):
    """A status event for an execution we cannot match (yet): retry later."""


def handle_status(
    ctx: SchedulerContext,
    execution_arn: str,
    status: str,
    *,
    display_name: str | None = None,
    failure_reason: str | None = None,
    event_time: datetime | None = None,
) -> Run | None:
    """Apply one pipeline status change. Returns the run after the change, or
    None when the event is not about one of our runs (acked)."""
    run = ctx.runs.find_by_execution(execution_arn)
    if run is None and display_name:
        run = _find_by_display_name(ctx, display_name)
        if run is not None and run.execution_arn and run.execution_arn != execution_arn:
            # Not the execution this run is tracking (e.g. a duplicate start on a
            # backend without token idempotency): never let it move the run.
            ctx.log.warning(
                "status event for an untracked execution of a run ignored",
                extra={"execution_arn": execution_arn, "tracked": run.execution_arn},
            )
            return run
        if run is None and not _DISPLAY_NAME_RE.match(display_name):
            ctx.log.warning(
                "status event for a foreign execution ignored",
                extra={"execution_arn": execution_arn, "display_name": display_name},
            )
            return None
    if run is None:
        # Usually the event outran our own record of the start: retry later.
        raise RunNotFoundYetError(execution_arn)
    ctx.log_keys(run)
    if is_stale_event(run, event_time):
        # The execution's end before the run was retried (a late or repeated
        # delivery): it must not end the retry.
        ctx.log.info("status event from before the run's retry ignored", extra={"status": status})
        return run
    if status in TERMINAL_EXECUTION_STATUS:
        finish(
            ctx, run, TERMINAL_EXECUTION_STATUS[status], execution_arn, failure_reason, event_time
        )
    elif status == "Executing":
        mark_running(ctx, run, execution_arn)
    else:
        ctx.log.info("pipeline status noted", extra={"status": status})
    return ctx.runs.get_run(run.tenant_id, run.run_id)


def mark_running(ctx: SchedulerContext, run: Run, execution_arn: str) -> bool:
    """STARTING -> RUNNING from an Executing event (or reconcile); run.started once,
    by whichever of this and dispatch's ``mark_started`` won the write."""
    now = iso_ms(ctx.clock.now()) or ""
    if not ctx.runs.mark_running(run, execution_arn, now):
        return False
    started = events.run_event(
        events.RUN_STARTED,
        run,
        now,
        status=RunStatus.RUNNING.value,
        startedAt=run.started_at or now,
        executionArn=run.execution_arn or execution_arn,
    )
    ctx.emit(started)
    return True


def _find_by_display_name(ctx: SchedulerContext, display_name: str) -> Run | None:
    match = _DISPLAY_NAME_RE.match(display_name)
    if not match:
        return None
    runs, _ = ctx.runs.list_runs(match["tenant"], limit=50)
    for run in runs:
        # A QUEUED run has no execution, unless it is a retried one (its earlier one).
        if run.run_id.endswith(match["suffix"]) and (run.status != RunStatus.QUEUED or run.retries):
            return run
    return None


def finish(
    ctx: SchedulerContext,
    run: Run,
    status: RunStatus,
    execution_arn: str | None,
    failure_reason: str | None,
    event_time: datetime | None,
) -> bool:
    if not run.status.holds_slot:
        ctx.log.info("late or duplicate terminal event ignored", extra={"status": run.status.value})
        return False
    now = ctx.clock.now()
    ended = min(event_time, now) if event_time else now
    started = parse_iso(run.started_at)
    if started is not None and ended < started:
        ended = started
    seconds = max(0.0, (ended - started).total_seconds()) if started else 0.0
    plan = ctx.settings.plans.get(run.plan)
    instance_type = run.instance_type or (plan.training_instance_type if plan else None)
    count = run.instance_count or (plan.training_instance_count if plan else 1)
    cost = cost_usd(ctx.settings, instance_type, count, seconds) if started else 0.0
    # A retried run adds this execution to what its earlier ones used.
    totals = (
        (
            round((run.training_seconds or 0.0) + seconds, 3),
            round((run.cost_estimate_usd or 0.0) + cost, 6),
        )
        if run.retries
        else None
    )
    if status == RunStatus.FAILED and not failure_reason and execution_arn and ctx.pipeline:
        info = ctx.pipeline.describe(execution_arn)
        failure_reason = (info.failure_reason if info else None) or None
    if status == RunStatus.FAILED and not failure_reason:
        failure_reason = "pipeline execution failed"
    if status == RunStatus.STOPPED and not failure_reason:
        failure_reason = "pipeline execution was stopped"
    # A reason is data (a CSV cell, a 60,000-column header): bounded before it
    # reaches an item or a log line (limits.py).
    failure_reason = limits.failure_reason(failure_reason)
    done = ctx.runs.finish(
        run,
        status,
        ended_at=iso_ms(ended) or "",
        month=month_of(ended),
        training_seconds=round(seconds, 3),
        cost_usd=cost,
        totals=totals,
        failure_reason=failure_reason if status != RunStatus.SUCCEEDED else None,
        execution_arn=execution_arn,
        # What the start estimates learn from: how long the plan's runs hold a
        # slot. A stopped run (cut short by a person) or one that never started
        # says nothing about that.
        duration_sample=round(seconds, 3)
        if started and status in (RunStatus.SUCCEEDED, RunStatus.FAILED)
        else None,
    )
    if done:
        # Only the caller whose conditional write ended the run reports it: a repeated
        # status event or a racing reconcile finds it ended and emits nothing.
        ctx.emit(
            events.run_event(
                events.run_end_type(status.value),
                run,
                iso_ms(now) or "",
                status=status.value,
                endedAt=iso_ms(ended),
                executionArn=execution_arn or run.execution_arn,
                failureReason=failure_reason if status != RunStatus.SUCCEEDED else None,
            )
        )
        ctx.log.info(
            "run finished",
            extra={"status": status.value, "training_seconds": seconds, "reason": failure_reason},
        )
        if status == RunStatus.FAILED:
            ctx.metrics.record("RunsFailed", 1, dimensions={"plan": run.plan})
        elif status == RunStatus.SUCCEEDED:
            ctx.metrics.record("RunsSucceeded", 1, dimensions={"plan": run.plan})
    return done
