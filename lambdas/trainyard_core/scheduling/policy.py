"""Pure scheduling decisions: who starts next, who waits and why.

No I/O and no clock: ``queues.py`` reads a ``Snapshot`` from the stores, dispatch acts
on the ``DispatchPlan``. The admission transaction (store) is the safety net
that enforces the caps under concurrency; this module decides *fairness*:

- Across plans, water-filling by weight: the next free slot goes to the plan
  with the lowest ``running / weight`` that still has eligible backlog and is
  under its own cap. When the global cap binds, plans therefore share it in
  proportion to their weights; a plan without backlog leaves its share to the
  others (borrowing), but no plan ever exceeds its own cap.
- Within a plan: fewest running runs per tenant first, then the earliest
  fair tag (the queued time, but no earlier than the tenant's last admission
  plus FAIR_SHARE_QUANTUM), so a tenant uploading 500 files (coalesced into one
  QUEUED run anyway) cannot starve the others, a tenant that keeps a run queued
  behind each of its starts does not take every freed slot by seniority, and
  nobody waits behind newcomers for more than one quantum; the per-tenant cap
  is respected.
- Work-conserving tenant caps (a plan's ``max_borrowed_runs_per_tenant``, like
  Kueue's borrowing or AWS Batch's share lending): slots left free once every
  admission within the tenant caps is made (in every plan) go, by the same
  water-filling and fair order, to tenants at their cap, up to cap + that limit.
  They come back as those runs end (no pre-emption); with 0 the cap is hard.
- Suspended tenants and tenants over their monthly training budget wait, with
  the reason (``WaitingFor``) stored on the run when it changes; runs of
  offboarded/unknown tenants are cancelled. The capacity reasons and the
  estimates are derived at read time (``waiting.py``).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from trainyard_core.config import Settings
from trainyard_core.models import (
    Run,
    TenantStatus,
    WaitingCode,
    WaitingFor,
    iso_ms,
    parse_iso,
)


@dataclass(frozen=True)
class TenantView:
    """What the policy needs to know about a tenant (None status = unknown tenant)."""

    status: TenantStatus | None
    used_hours: float = 0.0
    budget_hours: float | None = None
    month: str = ""
    last_admitted_at: str = ""  # ISO time its latest run was admitted ("" = never)


@dataclass(frozen=True)
class Snapshot:
    queued: list[Run]
    active: list[Run]
    tenants: Mapping[str, TenantView]

    def running_by_plan(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for run in self.active:
            out[run.plan] = out.get(run.plan, 0) + 1
        return out

    def running_by_tenant(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for run in self.active:
            out[run.tenant_id] = out.get(run.tenant_id, 0) + 1
        return out


@dataclass
class DispatchPlan:
    admissions: list[Run] = field(default_factory=list)
    # run_id -> why it waits, to store (None = clear a stale one); only changes
    waiting: dict[str, tuple[Run, WaitingFor | None]] = field(default_factory=dict)
    cancellations: list[tuple[Run, str]] = field(default_factory=list)
    # run ids of the admissions that borrow beyond their tenant cap
    borrowed: set[str] = field(default_factory=set)


# Fair queuing's "virtual start time", simplified: a tenant whose previous run was
# admitted at T queues its next run as if it had asked at T + this quantum (about
# one run's length) at the earliest. Tenants that were not served recently go
# first; a tenant served recently still waits at most one quantum behind
# newcomers, so a stream of new tenants cannot starve it (plain "served longest
# ago" would: never-served always wins).
FAIR_SHARE_QUANTUM = timedelta(minutes=10)


def fair_tag(run: Run, view: TenantView | None) -> str:
    """When the run counts as having asked, for ordering among equals (ISO)."""
    served = parse_iso(view.last_admitted_at) if view is not None else None
    if served is None:
        return run.queued_at
    return max(run.queued_at, iso_ms(served + FAIR_SHARE_QUANTUM) or "")


def _fair_key(
    run: Run, running_by_tenant: Mapping[str, int], tenants: Mapping[str, TenantView]
) -> tuple[int, str, str]:
    tag = fair_tag(run, tenants.get(run.tenant_id))
    return (running_by_tenant.get(run.tenant_id, 0), tag, run.run_id)


def blocking_reason(run: Run, settings: Settings, tenant: TenantView | None) -> WaitingFor | None:
    """Why a QUEUED run may not start now regardless of capacity (None = it may)."""
    if tenant is None or tenant.status is None:
        return None  # handled as a cancellation
    if run.plan not in settings.plans:
        return _wait(WaitingCode.PLAN_UNKNOWN, f"plan {run.plan!r} is not configured")
    if tenant.status == TenantStatus.SUSPENDED:
        return _wait(
            WaitingCode.SUSPENDED, "tenant is SUSPENDED; the run starts when it is reactivated"
        )
    if tenant.status == TenantStatus.MIGRATING:
        return _wait(
            WaitingCode.MIGRATING,
            "tenant data is being migrated; the run starts when it completes",
        )
    if tenant.status != TenantStatus.ACTIVE:
        return _wait(WaitingCode.TENANT_INACTIVE, f"tenant is {tenant.status.value}")
    if tenant.budget_hours is not None and tenant.used_hours >= tenant.budget_hours:
        return _wait(
            WaitingCode.BUDGET,
            f"monthly training budget exhausted "
            f"({tenant.used_hours:.2f} of {tenant.budget_hours:g} hours used in {tenant.month}); "
            "the run starts next month or after a plan change",
        )
    return None


def _wait(code: WaitingCode, message: str) -> WaitingFor:
    return WaitingFor(code=code, message=message)


def _cancel_reason(tenant: TenantView | None) -> str | None:
    if tenant is None or tenant.status is None:
        return "tenant no longer exists"
    if tenant.status == TenantStatus.OFFBOARDING:
        return "tenant is being offboarded"
    return None


def order_within_plan(
    runs: Iterable[Run],
    running_by_tenant: Mapping[str, int],
    tenants: Mapping[str, TenantView] | None = None,
) -> list[Run]:
    """Dispatch order inside one plan: repeatedly the run whose tenant has the
    fewest running runs (counting the ones just ordered), then the earliest fair
    tag (``fair_tag``)."""
    running = dict(running_by_tenant)
    views = tenants or {}
    # A heap with lazy re-keying: O(n log n) for a backlog of any size. A key goes
    # stale only when its tenant got another run ordered ahead (running + 1).
    heap = [(_fair_key(r, running, views), i, r) for i, r in enumerate(runs)]
    heapq.heapify(heap)
    ordered: list[Run] = []
    while heap:
        key, i, run = heapq.heappop(heap)
        fresh = _fair_key(run, running, views)
        if fresh != key:
            heapq.heappush(heap, (fresh, i, run))
            continue
        ordered.append(run)
        running[run.tenant_id] = running.get(run.tenant_id, 0) + 1
    return ordered


def plan_dispatch(settings: Settings, snapshot: Snapshot) -> DispatchPlan:
    result = DispatchPlan()
    running_plan = snapshot.running_by_plan()
    running_tenant = snapshot.running_by_tenant()
    free = settings.global_max_concurrent_runs - len(snapshot.active)

    candidates: dict[str, list[Run]] = {name: [] for name in settings.plans}
    for run in snapshot.queued:
        tenant = snapshot.tenants.get(run.tenant_id)
        cancel = _cancel_reason(tenant)
        if cancel:
            result.cancellations.append((run, cancel))
            continue
        reason = blocking_reason(run, settings, tenant)
        if reason is not None:
            # Written only when it changes: a dispatch costs no write per waiting run.
            if run.waiting_for != reason:
                result.waiting[run.run_id] = (run, reason)
            continue
        if run.waiting_for is not None:
            result.waiting[run.run_id] = (run, None)
        candidates[run.plan].append(run)

    # Within the tenant caps first; then, in what is left, borrowing (a second
    # pass, so borrowing never takes a slot a tenant below its cap could use).
    # With no plan borrowing, the second pass admits nothing: today's behaviour.
    for borrowing in (False, True):
        pending = {name: list(runs) for name, runs in candidates.items()}
        free = _fill(
            settings, pending, running_plan, running_tenant, snapshot, free, result, borrowing
        )
        for run in result.admissions:
            if run in candidates[run.plan]:
                candidates[run.plan].remove(run)
    return result


def tenant_limit(settings: Settings, plan: str, borrowing: bool) -> int:
    """How many runs a tenant of the plan may hold: its cap, plus the plan's
    borrowing limit for a borrowing admission."""
    config = settings.plans[plan]
    extra = config.max_borrowed_runs_per_tenant if borrowing else 0
    return config.max_concurrent_runs_per_tenant + extra


def _fill(
    settings: Settings,
    candidates: dict[str, list[Run]],
    running_plan: dict[str, int],
    running_tenant: dict[str, int],
    snapshot: Snapshot,
    free: int,
    result: DispatchPlan,
    borrowing: bool,
) -> int:
    """Water-filling of ``free`` slots over the plans; returns the slots left."""
    while free > 0:
        open_plans = [
            name
            for name, runs in candidates.items()
            if runs and running_plan.get(name, 0) < settings.plans[name].max_concurrent_runs
        ]
        if not open_plans:
            break
        name = min(
            open_plans,
            key=lambda p: (
                running_plan.get(p, 0) / settings.plans[p].weight,
                -settings.plans[p].weight,
                p,
            ),
        )
        limit = tenant_limit(settings, name, borrowing)
        eligible = [r for r in candidates[name] if running_tenant.get(r.tenant_id, 0) < limit]
        if not eligible:
            candidates[name] = []  # everyone left in this plan is at its limit
            continue
        chosen = min(eligible, key=lambda r: _fair_key(r, running_tenant, snapshot.tenants))
        candidates[name].remove(chosen)
        result.admissions.append(chosen)
        if borrowing:
            result.borrowed.add(chosen.run_id)
        running_plan[name] = running_plan.get(name, 0) + 1
        running_tenant[chosen.tenant_id] = running_tenant.get(chosen.tenant_id, 0) + 1
        free -= 1
    return free


def backoff_seconds(
    attempt: int, base: float = 2.0, cap: float = 60.0, jitter: float = 0.0
) -> float:
    """Exponential backoff with (caller-supplied, 0..1) full jitter: attempt 1 -> ~base."""
    ceiling = min(cap, base * (2 ** max(0, attempt - 1)))
    return ceiling / 2 + (ceiling / 2) * jitter


def cost_usd(
    settings: Settings, instance_type: str | None, count: int | None, seconds: float
) -> float:
    if not instance_type:
        return 0.0
    return round(seconds / 3600.0 * (count or 1) * settings.price_per_hour(instance_type), 6)
