"""The queues as the policy sees them: a snapshot read from the stores, the
positions of waiting runs, and a waiting run following its tenant's plan."""

from __future__ import annotations

from collections.abc import Iterable

from trainyard_core.models import Run, RunStatus
from trainyard_core.scheduling.context import SchedulerContext, month_of
from trainyard_core.scheduling.policy import Snapshot, TenantView
from trainyard_core.scheduling.waiting import WaitInfo, wait_view


def read_snapshot(
    ctx: SchedulerContext, limit: int | None = None, plans: Iterable[str] | None = None
) -> Snapshot:
    queued: list[Run] = []
    active: list[Run] = []
    for plan in ctx.settings.plans if plans is None else plans:
        queued.extend(ctx.runs.queued_runs(plan, limit=limit))
        active.extend(ctx.runs.active_runs(plan))
    month = month_of(ctx.clock.now())
    waiting_tenants = {r.tenant_id for r in queued}
    # Batched reads, so a dispatch costs the same few requests for 10 waiting
    # tenants or 1,000 (the window bounds how many are read at all): the tenants
    # (consistent BatchGetItem, 100 a call), the counters of the queued ones (their
    # last admission feeds the fair order) and the month's usage of those on a
    # budget. Denormalizing status and budget onto the queued run instead would
    # need every tenant change to rewrite its queued run: batching keeps one writer.
    last_admitted = ctx.runs.counters(waiting_tenants).last_admitted
    found = ctx.tenants.get_many(waiting_tenants) if waiting_tenants else {}
    budgets = {
        tenant_id: plan.monthly_training_hours
        for tenant_id, tenant in found.items()
        if (plan := ctx.settings.plans.get(tenant.plan)) is not None
        and plan.monthly_training_hours is not None
    }
    usage = ctx.runs.usage_many(budgets, month) if budgets else {}
    views: dict[str, TenantView] = {}
    plan_of: dict[str, str] = {}
    for tenant_id in waiting_tenants:
        tenant = found.get(tenant_id)
        if tenant is None:
            views[tenant_id] = TenantView(status=None)
            continue
        plan_of[tenant_id] = tenant.plan
        budget = budgets.get(tenant_id)
        used = usage[tenant_id]["trainingSeconds"] / 3600.0 if budget is not None else 0.0
        views[tenant_id] = TenantView(
            tenant.status, used, budget, month, last_admitted.get(tenant_id, "")
        )
    # Safety net for a plan change whose move was not made (the API calls
    # follow_plan_change): a waiting run goes by its tenant's plan now.
    queued = [
        follow_plan(ctx, r, plan_of[r.tenant_id]) if r.tenant_id in plan_of else r for r in queued
    ]
    return Snapshot(queued=queued, active=active, tenants=views)


def follow_plan(ctx: SchedulerContext, run: Run, plan: str) -> Run:
    if run.plan == plan or plan not in ctx.settings.plans:
        return run
    if ctx.runs.move_queued_run(run, plan):
        ctx.log.info(
            "queued run moved to the tenant's new plan",
            extra={"tenant_id": run.tenant_id, "run_id": run.run_id, "from": run.plan, "to": plan},
        )
        return run.model_copy(update={"plan": plan})
    return run


def follow_plan_change(ctx: SchedulerContext, tenant_id: str) -> Run | None:
    """After a plan change: the tenant's QUEUED run (if any) moves to the new
    plan's queue, so it starts under the new plan's caps, weight and instance."""
    tenant = ctx.tenants.get(tenant_id)
    run_id = ctx.runs.queued_run_id(tenant_id)
    run = ctx.runs.get_run(tenant_id, run_id) if run_id else None
    if tenant is None or run is None or run.status != RunStatus.QUEUED:
        return None
    moved = follow_plan(ctx, run, tenant.plan)
    return moved if moved.plan != run.plan else None


def wait_snapshot(ctx: SchedulerContext, plans: Iterable[str] | None = None) -> Snapshot:
    """The queues of ``plans`` (None: every plan) and the slot holders of every
    plan: the global cap is shared, so the capacity reasons and the estimates
    need them all (bounded by the global cap)."""
    wanted = list(ctx.settings.plans if plans is None else plans)
    snapshot = read_snapshot(ctx, plans=wanted)
    others = [r for p in ctx.settings.plans if p not in wanted for r in ctx.runs.active_runs(p)]
    return Snapshot(snapshot.queued, snapshot.active + others, snapshot.tenants)


def wait_info(ctx: SchedulerContext, snapshot: Snapshot) -> dict[str, WaitInfo]:
    samples = ctx.runs.duration_samples(list(ctx.settings.plans))
    return wait_view(ctx.settings, snapshot, samples, ctx.clock.now())


def with_positions(ctx: SchedulerContext, runs: list[Run]) -> list[Run]:
    """The runs with, on each QUEUED one, its position, waiting reason and
    estimated start (``waiting.py``), computed now from what is stored."""
    waiting_in = {r.plan for r in runs if r.status == RunStatus.QUEUED}
    if not waiting_in:
        return runs
    # A position is within the run's own plan: read only those queues.
    plans = [p for p in ctx.settings.plans if p in waiting_in]
    info = wait_info(ctx, wait_snapshot(ctx, plans))
    return [_with_info(r, info.get(r.run_id)) if r.status == RunStatus.QUEUED else r for r in runs]


def _with_info(run: Run, info: WaitInfo | None) -> Run:
    if info is None:  # not in the queue index yet (it lags a write): what is stored
        return run
    return run.model_copy(
        update={
            "queue_position": info.position,
            "waiting_for": info.waiting_for,
            "estimated_start_at": info.estimated_start_at,
        }
    )
