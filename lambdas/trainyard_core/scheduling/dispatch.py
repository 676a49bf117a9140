"""Dispatch: admit the runs the policy picks under the caps, and start them.

Admission is one transaction (run QUEUED -> STARTING, counters +1 under their
caps); the start carries the run id as ClientRequestToken, so a repeated start
(crash, reconcile, concurrent retry) returns the same execution.

Each run is isolated (``SchedulerContext.isolated``): one that cannot be
written or started is logged and counted, and the others are still admitted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from trainyard_core import events, limits
from trainyard_core.config import Settings
from trainyard_core.lineage import DATA_REPORT_SUFFIX, InputListing, RunLineage, build_lineage
from trainyard_core.models import (
    Run,
    RunRetry,
    RunStatus,
    Tenant,
    TenantStatus,
    WaitingCode,
    WaitingFor,
    iso_ms,
    parse_iso,
)
from trainyard_core.ports.pipeline import StartError
from trainyard_core.ports.runs import AdmitOutcome, Caps, Counters
from trainyard_core.scheduling.completion import finish
from trainyard_core.scheduling.context import SchedulerContext
from trainyard_core.scheduling.policy import (
    Snapshot,
    backoff_seconds,
    plan_dispatch,
    tenant_limit,
)
from trainyard_core.scheduling.queues import read_snapshot
from trainyard_core.scheduling.retry import pending_retry, resume_or_restart
from trainyard_core.training import RunTraining, TrainingError, resolve_run_training


@dataclass
class DispatchReport:
    started: list[Run] = field(default_factory=list)
    start_failures: int = 0
    queued_by_plan: dict[str, int] = field(default_factory=dict)
    running_by_plan: dict[str, int] = field(default_factory=dict)


def dispatch(ctx: SchedulerContext) -> DispatchReport:
    report = DispatchReport()
    now = ctx.clock.now()
    for plan in ctx.settings.plans:
        for run in ctx.runs.due_starts(plan, iso_ms(now) or ""):
            with ctx.isolated("start", run):
                _start(ctx, run, report)

    # Work per invocation is bounded by the caps, not by the backlog: with every
    # slot taken there is nothing to decide, and otherwise only the head of each
    # plan's queue can be admitted now (a tenant has at most one QUEUED run).
    counters = ctx.runs.counters(())  # global and plans only: cheap
    if counters.global_running >= ctx.settings.global_max_concurrent_runs:
        _record_depths(ctx, report, None, counters)
        return report
    window = _window(ctx)
    # A CAP_REACHED means a concurrent scheduler took capacity: re-plan on
    # fresh data (bounded) rather than trust our stale snapshot.
    snapshot = read_snapshot(ctx, window)
    for _ in range(3):
        decision = plan_dispatch(ctx.settings, snapshot)
        if (not decision.admissions or decision.borrowed) and _window_full(snapshot, window):
            # Every run at the head must wait (suspended, over budget) or can only
            # borrow: look past it rather than starve the tenants behind (or lend
            # a slot one of them below its cap could take). Rare: a full read.
            snapshot = read_snapshot(ctx, None)
            decision = plan_dispatch(ctx.settings, snapshot)
        for run, reason in decision.waiting.values():
            with ctx.isolated("waiting-reason", run):
                ctx.runs.set_waiting_reason(run, reason)
                if reason:
                    ctx.log.info(
                        "run waits",
                        extra={
                            "tenant_id": run.tenant_id,
                            "run_id": run.run_id,
                            "code": reason.code.value,
                            "reason": reason.message,
                        },
                    )
        for run, reason in decision.cancellations:
            with ctx.isolated("cancel", run):
                if ctx.runs.cancel_queued(run, reason, iso_ms(now) or ""):
                    at = iso_ms(now) or ""
                    ctx.emit(
                        events.run_event(
                            events.RUN_FAILED,
                            run,
                            at,
                            status=RunStatus.FAILED.value,
                            endedAt=at,
                            failureReason=reason,
                        )
                    )
                    ctx.log.warning(
                        "queued run cancelled", extra={"run_id": run.run_id, "reason": reason}
                    )
        contended = False
        for run in decision.admissions:
            outcome = None
            with ctx.isolated("admit", run):
                outcome = admit(ctx, run, now, borrowing=run.run_id in decision.borrowed)
            if outcome == AdmitOutcome.CAP_REACHED:
                contended = True
                break
            if outcome == AdmitOutcome.ADMITTED:
                with ctx.isolated("start", run):
                    admitted = ctx.runs.get_run(run.tenant_id, run.run_id)
                    if admitted is not None:
                        _start(ctx, admitted, report)
        if not contended:
            break
        snapshot = read_snapshot(ctx, window)
    _record_depths(ctx, report, window, ctx.runs.counters(()))
    return report


def _window_full(snapshot: Snapshot, window: int) -> bool:
    per_plan: dict[str, int] = {}
    for run in snapshot.queued:
        per_plan[run.plan] = per_plan.get(run.plan, 0) + 1
    return any(n >= window for n in per_plan.values())


def _window(ctx: SchedulerContext) -> int:
    # Enough of each queue's head to fill every slot of the plan several times
    # over, so runs that must wait (suspended, over budget) cannot hide the rest.
    caps = [p.max_concurrent_runs for p in ctx.settings.plans.values()]
    return max(100, 4 * max(caps))


def _record_depths(
    ctx: SchedulerContext, report: DispatchReport, window: int | None, counters: Counters
) -> None:
    for plan in ctx.settings.plans:
        running = counters.plans.get(plan, 0)
        report.running_by_plan[plan] = running
        ctx.metrics.record("RunningRuns", running, dimensions={"plan": plan})
        if window is None:
            continue
        head = ctx.runs.queued_runs(plan, limit=window)
        if len(head) < window:  # exact; a longer backlog is counted by reconcile
            report.queued_by_plan[plan] = len(head)
            ctx.metrics.record("QueueDepth", len(head), dimensions={"plan": plan})


def admit(
    ctx: SchedulerContext, run: Run, now: datetime, *, borrowing: bool = False
) -> AdmitOutcome:
    """Admit under the caps; a borrowing admission (``DispatchPlan.borrowed``)
    under the tenant cap plus the plan's borrowing limit, in the same
    transaction, so concurrent schedulers can never borrow past it."""
    plan = ctx.settings.plans[run.plan]
    caps = Caps(
        global_cap=ctx.settings.global_max_concurrent_runs,
        plan_cap=plan.max_concurrent_runs,
        tenant_cap=tenant_limit(ctx.settings, run.plan, borrowing),
    )
    # If we crash between admission and start, reconcile restarts it after this.
    deadline = now + timedelta(seconds=ctx.settings.starting_timeout_seconds)
    outcome = ctx.runs.admit(run, caps, iso_ms(now) or "", iso_ms(deadline) or "")
    if outcome == AdmitOutcome.ADMITTED:
        queued_at = parse_iso(run.queued_at)
        if queued_at is not None:
            delay = max(0.0, (now - queued_at).total_seconds())
            ctx.metrics.record("DispatchDelay", delay, "Seconds", {"plan": run.plan})
    return outcome


def _start(ctx: SchedulerContext, run: Run, report: DispatchReport) -> None:
    ctx.log_keys(run)
    now = ctx.clock.now()
    tenant = ctx.tenants.get(run.tenant_id)
    plan = ctx.settings.plans.get(run.plan)
    missing = _missing_start_inputs(tenant, plan is not None)
    if missing or ctx.pipeline is None:
        _fail_start(ctx, run, f"cannot start: {missing or 'no pipeline configured'}")
        return
    assert tenant is not None and plan is not None
    retry = pending_retry(run)
    if retry is not None:
        try:
            arn, retry = resume_or_restart(ctx, run, retry, tenant)
        except StartError as exc:
            _start_failed(ctx, run, report, exc, now)
            return
        if arn is not None and run.training is not None:
            # Resumed: the execution keeps its parameters, so what it trains and
            # its lineage stay as recorded at its first start.
            _started(ctx, run, report, arn, now, run.training, None, retry)
            return
    # Listed before the start, so it cannot name objects written after the job read.
    inputs = _inputs(ctx, tenant.data_bucket or "", tenant.data_prefix or "")
    try:
        training = resolve_run_training(
            ctx.settings, plan, tenant.training, run.training_request, _data_bytes(run, inputs)
        )
    except TrainingError as exc:
        # The stored choice no longer fits (the catalog or the tenant's plan changed).
        _fail_start(ctx, run, f"cannot start: training settings: {exc.message}")
        return
    baseline = schema_baseline(ctx, run)
    training = training.model_copy(update={"schema_baseline_run_id": baseline})
    parameters = {
        "TenantId": tenant.tenant_id,
        "RunId": run.run_id,
        "InputDataUri": f"s3://{tenant.data_bucket}/{tenant.data_prefix}",
        "OutputUri": tenant.output_uri or "",
        "ExecutionRoleArn": tenant.role_arn or "",
        "ModelPackageGroupName": tenant.model_package_group_name or "",
        "ModelApprovalStatus": ctx.settings.model_approval_status,
        **training_parameters(ctx.settings, training),
    }
    if baseline is not None:
        # Else the definition's default: the platform's no-baseline marker.
        parameters["SchemaBaselineUri"] = f"{tenant.output_uri}{baseline}{DATA_REPORT_SUFFIX}/"
    lineage = build_lineage(inputs, ctx.definition_version, training)
    try:
        # ClientRequestToken = run id: a repeated start (crash, reconcile,
        # concurrent retry) returns the same execution instead of a second one.
        arn = ctx.pipeline.start(
            display_name=run.display_name,
            client_request_token=run.client_request_token,
            parameters=parameters,
        )
    except StartError as exc:
        _start_failed(ctx, run, report, exc, now)
        return
    if retry is not None:
        retry = retry.model_copy(update={"execution_arn": arn})
    _started(ctx, run, report, arn, now, training, lineage, retry)


def _start_failed(
    ctx: SchedulerContext, run: Run, report: DispatchReport, exc: StartError, now: datetime
) -> None:
    attempts = run.start_attempts + 1
    if exc.throttled:
        ctx.metrics.record("StartsThrottled", 1, dimensions={"plan": run.plan})
    report.start_failures += 1
    if not exc.retryable or attempts >= ctx.settings.max_start_attempts:
        _fail_start(ctx, run, f"could not start the pipeline after {attempts} attempt(s): {exc}")
        return
    delay = backoff_seconds(attempts, jitter=ctx.rng.random())
    ctx.runs.record_start_failure(
        run,
        attempts,
        iso_ms(now + timedelta(seconds=delay)) or "",
        WaitingFor(
            code=WaitingCode.START_RETRY,
            message=f"start attempt {attempts} failed ({exc}); retrying at "
            f"{iso_ms(now + timedelta(seconds=delay))}",
        ),
        iso_ms(now) or "",
    )
    ctx.log.warning(
        "pipeline start failed; will retry", extra={"attempt": attempts, "error": str(exc)}
    )


def _started(
    ctx: SchedulerContext,
    run: Run,
    report: DispatchReport,
    arn: str,
    now: datetime,
    training: RunTraining,
    lineage: RunLineage | None,
    retry: RunRetry | None,
) -> None:
    if ctx.runs.mark_started(
        run,
        arn,
        iso_ms(now) or "",
        training.instance_type,
        training.instance_count,
        training,
        lineage,
        retry,
    ):
        ctx.metrics.record("RunsStarted", 1, dimensions={"plan": run.plan})
        ctx.log.info(
            "pipeline execution started",
            extra={
                "execution_arn": arn,
                "retry": retry.mode.value if retry and retry.mode else None,
            },
        )
        # Not when an Executing event (mark_running) moved it first: that one emitted.
        ctx.emit(
            events.run_event(
                events.RUN_STARTED,
                run,
                iso_ms(now) or "",
                status=RunStatus.RUNNING.value,
                startedAt=iso_ms(now),
                executionArn=arn,
            )
        )
    report.started.append(run)


def schema_baseline(ctx: SchedulerContext, run: Run) -> str | None:
    """The run whose schema the drift check compares with: the tenant's latest
    SUCCEEDED run that wrote one (the store's pointer, one consistent GetItem). Only
    a run whose data report has ``schemaDrift`` sets it: that proves preprocess wrote
    the schema.json beside it, and an empty input prefix would fail the next run."""
    baseline = ctx.runs.schema_baseline(run.tenant_id)
    return baseline if baseline != run.run_id else None


def _data_bytes(run: Run, inputs: InputListing | None) -> int:
    """What ``auto`` and the sizing rules measure: the bytes the run trains on, i.e.
    every training file under the prefix as the start's listing saw it (an upload
    run trains on all of them, not only on its own uploads). Without a listing, or
    past its bound, at least what the run's trigger knows."""
    known = run.trigger.input_bytes
    if inputs is None:
        return known
    listed = sum(o.size or 0 for o in inputs.objects)
    return listed if not inputs.truncated else max(listed, known)


def _inputs(ctx: SchedulerContext, bucket: str, prefix: str) -> InputListing | None:
    """The run's input objects, or None: a listing that fails is logged and counted
    and the run still starts (lineage is a record; the training does not need it)."""
    if ctx.inputs is None:
        return None
    try:
        return ctx.inputs.current_inputs(bucket, prefix, limits.LINEAGE_LIST_MAX_KEYS)
    except Exception as exc:
        ctx.log.warning("run inputs not listed", extra={"error": str(exc)[:1024]})
        ctx.metrics.record("LineageListingErrors", 1)
        return None


def training_parameters(settings: Settings, training: RunTraining) -> dict[str, str]:
    """The pipeline parameters of what the run trains (pipeline/contract.py's names)."""
    parameters = {
        "TrainingInstanceType": training.instance_type,
        "TrainingInstanceCount": str(training.instance_count),
        "TrainingVolumeSizeInGB": str(training.volume_size_gb),
        "ProblemType": training.problem_type,
        "Algorithm": training.algorithm,
        "Hyperparameters": training.hyperparameters_json(settings),
        "MetricThreshold": str(training.metric_threshold),
        "SchemaDrift": training.schema_drift,
    }
    if training.image_uri is not None:
        # Resolved per region with the settings (pipeline/images.py); unresolved
        # settings (unit tests) leave the definition's default image.
        parameters["TrainingImageUri"] = training.image_uri
    if training.algorithm == "xgboost":
        # The built-in XGBoost step's own parameters, from the effective values.
        for name, key in (("NumRound", "num_round"), ("MaxDepth", "max_depth"), ("Eta", "eta")):
            if key in training.hyperparameters:
                parameters[name] = training.hyperparameters[key]
    return parameters


def _fail_start(ctx: SchedulerContext, run: Run, reason: str) -> None:
    ctx.log.error("run failed to start", extra={"reason": reason})
    finish(ctx, run, RunStatus.FAILED, None, reason, None)


def _missing_start_inputs(tenant: Tenant | None, plan_known: bool) -> str | None:
    if tenant is None:
        return "tenant no longer exists"
    # Read again at the start: an offboarding that began after the admission must not
    # get a new execution (its purge would have to stop it). A migration is safe to
    # start under: it waits for the tenant's STARTING and RUNNING runs.
    if tenant.status in (TenantStatus.OFFBOARDING, TenantStatus.FAILED):
        return f"tenant is {tenant.status.value}"
    if not plan_known:
        return "plan is not configured"
    for attr in (
        "data_bucket",
        "data_prefix",
        "role_arn",
        "output_uri",
        "model_package_group_name",
    ):
        if getattr(tenant, attr) in (None, ""):
            return f"tenant has no {attr}"
    return None
