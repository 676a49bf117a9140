"""Reconcile (the one-minute schedule): recover missed status events, report
stuck runs, heal the slot counters, then dispatch and count the full queues.

Every phase, and every run or counter within one, is isolated
(``SchedulerContext.isolated``): whatever one of them raises is logged and
counted, and the rest of the sweep still heals and dispatches."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from trainyard_core.models import Run, RunStatus, parse_iso
from trainyard_core.ports.pipeline import ExecutionInfo
from trainyard_core.ports.runs import GLOBAL, plan_counter, tenant_counter
from trainyard_core.scheduling.completion import TERMINAL_EXECUTION_STATUS, finish, mark_running
from trainyard_core.scheduling.context import SchedulerContext
from trainyard_core.scheduling.dispatch import DispatchReport, dispatch


@dataclass
class ReconcileReport:
    finished: list[str] = field(default_factory=list)
    healed_counters: dict[str, int] = field(default_factory=dict)
    dispatch: DispatchReport | None = None
    # run id -> why it looks stuck (still active; an operator should look).
    stuck: dict[str, str] = field(default_factory=dict)


def reconcile(ctx: SchedulerContext) -> ReconcileReport:
    report = ReconcileReport()
    now = ctx.clock.now()
    if ctx.pipeline is not None:
        with ctx.isolated("recover-executions"):
            _recover_executions(ctx, report, now)
    with ctx.isolated("heal-counters"):
        report.healed_counters = heal_counters(ctx)
    report.dispatch = DispatchReport()
    with ctx.isolated("dispatch"):
        report.dispatch = dispatch(ctx)
    for plan in ctx.settings.plans:
        if plan not in report.dispatch.queued_by_plan:
            with ctx.isolated("queue-depth", plan=plan):
                # Dispatch only counts short queues; the full depth once a minute.
                depth = ctx.runs.queue_depth(plan)
                report.dispatch.queued_by_plan[plan] = depth
                ctx.metrics.record("QueueDepth", depth, dimensions={"plan": plan})
    return report


def _recover_executions(ctx: SchedulerContext, report: ReconcileReport, now: datetime) -> None:
    """Ask SageMaker about the active runs quiet for a while: finish the ones whose
    execution ended unseen, note the ones that look stuck."""
    assert ctx.pipeline is not None
    candidates = []
    for plan in ctx.settings.plans:
        for run in ctx.runs.active_runs(plan):
            if not run.execution_arn:
                continue  # due starts are retried by dispatch
            changed = parse_iso(run.updated_at or run.started_at)
            if changed and (now - changed).total_seconds() < ctx.describe_min_age_seconds:
                continue
            candidates.append(run)
    listed: dict[str, ExecutionInfo] = {}
    with ctx.isolated("list-executions"):
        listed = _list_statuses(ctx, candidates)
    for run in candidates:
        with ctx.isolated("recover-execution", run):
            _recover_one(ctx, run, listed, report, now)
    stuck_by_plan = {plan: 0 for plan in ctx.settings.plans}
    for run in candidates:
        if run.run_id in report.stuck:
            stuck_by_plan[run.plan] = stuck_by_plan.get(run.plan, 0) + 1
    for plan, count in stuck_by_plan.items():
        # Every minute, zeros included, so the RunsStuck alarm clears by itself.
        ctx.metrics.record("RunsStuck", count, dimensions={"plan": plan})


def _recover_one(
    ctx: SchedulerContext,
    run: Run,
    listed: dict[str, ExecutionInfo],
    report: ReconcileReport,
    now: datetime,
) -> None:
    assert ctx.pipeline is not None and run.execution_arn
    info = listed.get(run.execution_arn)
    if info is None or (info.status == "Failed" and not info.failure_reason):
        # Not in the listing (or no reason given): ask for this one only.
        info = ctx.pipeline.describe(run.execution_arn) or info
    if info is None:
        _stuck(
            ctx,
            run,
            f"pipeline execution {run.execution_arn} is unknown to SageMaker; "
            "stop the run's execution or fail the run by hand",
            report,
        )
        return
    ctx.log_keys(run)
    if info.status in TERMINAL_EXECUTION_STATUS and info.last_modified is None:
        # The listing has no end time: ask (lost events are rare), so
        # duration and cost end when the execution did, not now. The
        # answer is fresher than the listing, so it decides.
        info = ctx.pipeline.describe(run.execution_arn) or info
    if info.status in TERMINAL_EXECUTION_STATUS:
        ctx.log.info("missed status event recovered", extra={"status": info.status})
        if finish(
            ctx,
            run,
            TERMINAL_EXECUTION_STATUS[info.status],
            run.execution_arn,
            info.failure_reason,
            info.last_modified,
        ):
            report.finished.append(run.run_id)
        return
    if info.status == "Executing" and run.status == RunStatus.STARTING:
        mark_running(ctx, run, run.execution_arn)
    started = parse_iso(run.started_at)
    limit = ctx.settings.stuck_run_hours
    if started and (now - started).total_seconds() > limit * 3600:
        _stuck(
            ctx,
            run,
            f"executing since {run.started_at}, longer than stuck_run_hours "
            f"({limit:g} h); check the execution in SageMaker, stop it if it hangs",
            report,
        )


def _stuck(ctx: SchedulerContext, run: Run, reason: str, report: ReconcileReport) -> None:
    report.stuck[run.run_id] = reason
    ctx.log.warning("run stuck", extra={"run_id": run.run_id, "reason": reason})
    if run.failure_reason != reason:
        ctx.runs.set_stuck_reason(run, reason)


def _list_statuses(ctx: SchedulerContext, runs: list[Run]) -> dict[str, ExecutionInfo]:
    """One ListPipelineExecutions sweep covering every run to reconcile."""
    lister = getattr(ctx.pipeline, "list_statuses", None)
    starts = [parse_iso(r.started_at) for r in runs]
    known = [s for s in starts if s is not None]
    if not runs or lister is None or len(known) < len(runs):
        return {}
    # Margin: the run records its start after SageMaker created the execution.
    return lister(min(known) - timedelta(minutes=5))


# Tenant counters of idle tenants healed per tick, on top of those of the tenants
# with active runs (always): one Query of ~120 KB. A registry of 10,000 tenants
# ever admitted is covered every 10 minutes; reconcile's reads stay bounded.
HEAL_SLICE = 1_000


def heal_counters(ctx: SchedulerContext, slice_size: int = HEAL_SLICE) -> dict[str, int]:
    """Recount slots from the active runs. Raising a counter is safe at once
    (worst case: briefly admit less); lowering one only when the same drift is
    seen twice in a row, so a lagging index read cannot cause over-admission.

    Bounded per tick: the global and plan counters and those of the tenants with
    active runs every tick (bounded by the global cap), and the other tenants'
    counters a rotating slice at a time (``slice_size``, from a stored cursor), so
    the work does not grow with the tenants ever admitted. A leaked slot of an
    idle tenant is therefore seen once a rotation; "twice in a row" is two
    sightings of that counter. A tenant admitted between the reads has no
    counter read (0): raising it expects 0 and is refused, as it should be."""
    # Counters first, then the runs that hold slots (as before the slices): a run
    # that ends between the two reads is seen as a drift down (needs two
    # sightings), never as one to raise at once. The first read of the active
    # runs only names the tenant counters to read.
    holders = {r.tenant_id for plan in ctx.settings.plans for r in ctx.runs.active_runs(plan)}
    counters = ctx.runs.counters(holders)
    cursor = ctx.runs.heal_cursor()
    idle, next_cursor = ctx.runs.tenant_counters(cursor, slice_size)
    if next_cursor != cursor:
        ctx.runs.set_heal_cursor(next_cursor)
    active = [r for plan in ctx.settings.plans for r in ctx.runs.active_runs(plan)]
    actual: dict[str, int] = {GLOBAL: len(active)}
    for run in active:
        actual[plan_counter(run.plan)] = actual.get(plan_counter(run.plan), 0) + 1
        actual[tenant_counter(run.tenant_id)] = actual.get(tenant_counter(run.tenant_id), 0) + 1
    observed: dict[str, int] = {GLOBAL: counters.global_running}
    observed.update({plan_counter(p): v for p, v in counters.plans.items()})
    observed.update({tenant_counter(t): v for t, v in idle.items()})
    observed.update({tenant_counter(t): v for t, v in counters.tenants.items()})
    healed: dict[str, int] = {}
    for name in sorted(set(actual) | set(observed)):
        have, want = observed.get(name, 0), actual.get(name, 0)
        if have == want:
            continue
        with ctx.isolated("heal-counter", counter=name):
            if have < want or ctx.runs.drift_marker(name) == (have, want):
                if ctx.runs.set_counter(name, want, expected=have):
                    healed[name] = want
                    ctx.log.warning(
                        "slot counter healed", extra={"counter": name, "was": have, "now": want}
                    )
                ctx.runs.put_drift_marker(name, None, None)
            else:
                ctx.runs.put_drift_marker(name, have, want)
    return healed
