"""Retrying a FAILED run (``POST /tenants/{id}/runs/{runId}/retry``).

The run queues again under the same caps as any other (admission is dispatch's);
at its start, SageMaker's RetryPipelineExecution resumes the failed execution
from the step that failed, so the steps that succeeded (preprocess, a finished
training job) are not paid for twice. When the execution cannot be retried (it
never existed, it is not Failed, SageMaker refuses it), a new execution starts
from the top with the run's current data and training choice. The run keeps its
id; ``retries`` records each retry (when, why, the failure it followed, RESUMED
or RESTARTED, and why a resume fell back). Usage and cost add up over the
executions; the month's ``runs`` counts the run once.
"""

from __future__ import annotations

from datetime import datetime

from trainyard_core import events, limits
from trainyard_core.errors import Conflict, NotFound
from trainyard_core.models import (
    RetryMode,
    Run,
    RunRetry,
    RunStatus,
    Tenant,
    TenantStatus,
    iso_ms,
    parse_iso,
)
from trainyard_core.ports.pipeline import RetryUnavailableError
from trainyard_core.ports.runs import RetryQueuedError, RunNotRetryableError
from trainyard_core.scheduling.context import SchedulerContext
from trainyard_core.scheduling.intake import ACCEPTING, TenantNotAcceptingError
from trainyard_core.scheduling.queues import with_positions


class RunNotRetryable(Conflict):
    code = "RunNotRetryable"


class RetryLimitReached(Conflict):
    code = "RetryLimitReached"


class RetryAlreadyQueued(Conflict):
    code = "RetryAlreadyQueued"


def request_retry(
    ctx: SchedulerContext,
    tenant_id: str,
    run_id: str,
    reason: str | None,
    requested_by: str | None = None,
) -> Run:
    """Queue a FAILED run again; 404/409 (``DomainError``) when it cannot be."""
    tenant = ctx.tenants.get(tenant_id)
    run = ctx.runs.get_run(tenant_id, run_id)
    if tenant is None or run is None:
        raise NotFound(f"run {run_id!r} of tenant {tenant_id!r} does not exist", code="RunNotFound")
    if tenant.status not in ACCEPTING:  # as for new runs: a SUSPENDED tenant's waits
        raise TenantNotAcceptingError(
            f"tenant {tenant_id} is {tenant.status.value}; its runs cannot be retried"
        )
    if run.status != RunStatus.FAILED:
        raise RunNotRetryable(
            f"run {run_id} is {run.status.value}; only a FAILED run can be retried"
        )
    if len(run.retries) >= ctx.settings.max_run_retries:
        raise RetryLimitReached(
            f"run {run_id} was retried {len(run.retries)} time(s), the most the platform "
            f"allows (maxRunRetries {ctx.settings.max_run_retries}); start a new run instead"
        )
    now = iso_ms(ctx.clock.now()) or ""
    retry = RunRetry(
        attempt=len(run.retries) + 1,
        requested_at=now,
        reason=limits.bounded_or_none(reason, limits.MODEL_REASON_MAX_CHARS),
        requested_by=limits.bounded_or_none(requested_by, limits.ARN_MAX_CHARS),
        previous_failure_reason=run.failure_reason,
        previous_execution_arn=run.execution_arn,
        previous_ended_at=run.ended_at,
        previous_plan=run.plan,
    )
    try:
        # The tenant's plan now: a plan changed since queues the retry in the new one.
        ctx.runs.requeue_for_retry(run, retry, now, tenant.plan)
    except RunNotRetryableError:
        raise RunNotRetryable(
            f"run {run_id} changed meanwhile (retried or no longer FAILED); read it again"
        ) from None
    except RetryQueuedError:
        raise RetryAlreadyQueued(
            f"tenant {tenant_id} already has a retried run waiting to start; retry this "
            "one once that one has started"
        ) from None
    queued = ctx.runs.get_run(tenant_id, run_id)
    assert queued is not None
    ctx.log.info(
        "run queued for retry",
        extra={"tenant_id": tenant_id, "run_id": run_id, "attempt": retry.attempt},
    )
    ctx.emit(events.run_event(events.RUN_QUEUED, queued, now, retryAttempt=retry.attempt))
    return with_positions(ctx, [queued])[0]


def pending_retry(run: Run) -> RunRetry | None:
    """The retry this start carries out (None: a first start, or already started)."""
    retry = run.retry
    return retry if retry is not None and retry.mode is None else None


def _changed_since(run: Run, retry: RunRetry, tenant: Tenant) -> str | None:
    """Why the failed execution's parameters no longer fit the tenant (None: they do):
    a resumed execution keeps its plan's instances and the storage and role it had."""
    if retry.previous_plan and retry.previous_plan != run.plan:
        return (
            "the tenant's plan changed since the failed execution "
            f"({retry.previous_plan} -> {run.plan})"
        )
    moved = parse_iso(tenant.location_since)
    ended = parse_iso(retry.previous_ended_at)
    if tenant.status == TenantStatus.MIGRATING or (moved and ended and moved > ended):
        return "the tenant's storage changed since the failed execution"
    return None


def resume_or_restart(
    ctx: SchedulerContext, run: Run, retry: RunRetry, tenant: Tenant
) -> tuple[str | None, RunRetry]:
    """Resume the failed execution: (its ARN, the retry marked RESUMED). (None, the
    retry marked RESTARTED with the reason) when it cannot be resumed, so the caller
    starts a new execution. Transient refusals (StartError) propagate to the start's
    own backoff."""
    assert ctx.pipeline is not None
    if not retry.previous_execution_arn or run.training is None:
        why = "the run never had a pipeline execution to resume"
        return None, retry.model_copy(update={"mode": RetryMode.RESTARTED, "fallback_reason": why})
    changed = _changed_since(run, retry, tenant)
    if changed is not None:
        return None, retry.model_copy(
            update={"mode": RetryMode.RESTARTED, "fallback_reason": changed}
        )
    try:
        arn = ctx.pipeline.retry(
            execution_arn=retry.previous_execution_arn, client_request_token=run.retry_token
        )
    except RetryUnavailableError as exc:
        ctx.log.warning(
            "pipeline execution cannot be retried; starting a new one",
            extra={"execution_arn": retry.previous_execution_arn, "error": str(exc)[:1024]},
        )
        return None, retry.model_copy(
            update={"mode": RetryMode.RESTARTED, "fallback_reason": limits.failure_reason(str(exc))}
        )
    return arn, retry.model_copy(update={"mode": RetryMode.RESUMED, "execution_arn": arn})


def is_stale_event(run: Run, event_time: datetime | None) -> bool:
    """A status event of the execution before the run's latest retry: SageMaker's
    event time has whole seconds, so anything from before the second the retry was
    asked for, or at or before the second the previous execution ended, is old.
    (A retry asked within the second its run failed, answered by a resumed
    execution ending in that same second, is the one case this cannot tell.)"""
    retry = run.retry
    if retry is None or event_time is None:
        return False
    asked = parse_iso(retry.requested_at)
    ended = parse_iso(retry.previous_ended_at)
    moment = event_time.replace(microsecond=0)
    if asked is not None and moment < asked.replace(microsecond=0):
        return True
    return ended is not None and moment <= ended.replace(microsecond=0)
