"""Read models for the API: runs with when and why they wait (``waiting.py``), the
queues, usage."""

from __future__ import annotations

from typing import Any

from trainyard_core.models import MONTH_RE, Run, RunStatus
from trainyard_core.scheduling.context import SchedulerContext
from trainyard_core.scheduling.queues import wait_info, wait_snapshot, with_positions
from trainyard_core.scheduling.waiting import WaitInfo


def get_run(ctx: SchedulerContext, tenant_id: str, run_id: str) -> Run | None:
    run = ctx.runs.get_run(tenant_id, run_id)
    if run is not None and run.status == RunStatus.QUEUED:
        run = with_positions(ctx, [run])[0]
    return run


def list_runs(
    ctx: SchedulerContext, tenant_id: str, limit: int = 50, next_token: str | None = None
) -> tuple[list[Run], str | None]:
    runs, token = ctx.runs.list_runs(tenant_id, limit, next_token)
    if any(r.status == RunStatus.QUEUED for r in runs):
        runs = with_positions(ctx, runs)
    return runs, token


def queue_overview(ctx: SchedulerContext) -> dict[str, dict[str, Any]]:
    snapshot = wait_snapshot(ctx)
    info = wait_info(ctx, snapshot)
    out: dict[str, dict[str, Any]] = {}
    for name, plan in ctx.settings.plans.items():
        queued = sorted(
            (r for r in snapshot.queued if r.plan == name),
            key=lambda r: info[r.run_id].position if r.run_id in info else 0,
        )
        out[name] = {
            "queued": len(queued),
            "running": sum(1 for r in snapshot.active if r.plan == name),
            "cap": plan.max_concurrent_runs,
            "runs": [_queued_entry(r, info.get(r.run_id)) for r in queued],
        }
    return out


def _queued_entry(run: Run, info: WaitInfo | None) -> dict[str, Any]:
    waiting = info.waiting_for if info else run.waiting_for
    entry: dict[str, Any] = {
        "runId": run.run_id,
        "tenantId": run.tenant_id,
        "queuePosition": info.position if info else None,
        "queuedAt": run.queued_at,
        "estimatedStartAt": info.estimated_start_at if info else None,
        "waitingFor": waiting.api_dict() if waiting else None,
    }
    if waiting is not None:
        entry["waitingReason"] = waiting.message  # before waitingFor: its text alone
    return entry


def usage(ctx: SchedulerContext, tenant_id: str, month: str) -> dict[str, Any]:
    if not MONTH_RE.fullmatch(month):
        raise ValueError("month must be YYYY-MM")
    recorded = ctx.runs.usage(tenant_id, month)
    tenant = ctx.tenants.get(tenant_id)
    plan = ctx.settings.plans.get(tenant.plan) if tenant else None
    return {
        "tenantId": tenant_id,
        "month": month,
        "runs": int(recorded["runs"]),
        "trainingSeconds": round(recorded["trainingSeconds"], 3),
        "trainingHours": round(recorded["trainingSeconds"] / 3600.0, 4),
        "costEstimateUsd": round(recorded["costEstimateUsd"], 4),
        "budgetHours": plan.monthly_training_hours if plan else None,
    }
