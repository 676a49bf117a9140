"""When and why a QUEUED run waits: its queue position, the reason, and an
estimated start. Pure (no I/O, no clock): the read model (``queues.py``) reads
the snapshot and the plans' recent durations and passes ``now``.

- **Position**: 1-based, within the run's plan, in the order the policy admits
  (``policy.order_within_plan``: fewest running runs of the tenant first, then
  the fair tag); runs that may not start whatever the capacity (suspended, over
  budget, migrating) come after those, oldest first. Not FIFO: a tenant served
  recently queues behind newcomers for up to one ``FAIR_SHARE_QUANTUM``.
- **Reason** (``WaitingFor``): the tenant's blocking reason (the one dispatch
  stores, ``policy.blocking_reason``), else the cap that binds: the tenant's
  own cap, else the plan's (its slots are held, or will be by the runs ahead),
  else the global one; ``DISPATCH_PENDING`` when a slot is free for it now.
  Capacity reasons change with every admission and completion, so they are
  derived here, per read, and never written to the run.
- **Estimate**: each run of a plan is assumed to hold its slot for the plan's
  typical duration (the mean of its recent SUCCEEDED/FAILED runs,
  ``store/run_items.py`` durations); a running run frees its slot after what is
  left of that (at least ``MIN_REMAINING_FRACTION`` of it, when it has run
  longer than typical). The plan's usable slots (its cap, at most the global
  cap) are free now, free when its own runs end, or, while the global cap binds,
  free when the earliest runs of other plans end; the runs ahead take them in
  order. A run whose tenant is at its cap starts no earlier than its tenant's
  first run ends. Null when there is no history for the plan, or the run is
  held back (suspended, over budget, migrating, ...). No pre-emption, no new
  arrivals that would overtake it (fair order), no other plans' queues taking
  freed global slots: an estimate, not a promise.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from trainyard_core.config import Settings
from trainyard_core.models import Run, TenantStatus, WaitingCode, WaitingFor, iso_ms, parse_iso
from trainyard_core.scheduling.policy import Snapshot, blocking_reason, order_within_plan

# A run past its plan's typical duration is assumed to end soon, not now.
MIN_REMAINING_FRACTION = 0.1


@dataclass(frozen=True)
class WaitInfo:
    position: int
    waiting_for: WaitingFor
    estimated_start_at: str | None


def typical_duration(samples: Sequence[float]) -> float | None:
    """Seconds a run of the plan holds its slot: the mean of the recent samples."""
    usable = [s for s in samples if s > 0]
    return sum(usable) / len(usable) if usable else None


def remaining_seconds(duration: float, elapsed: float) -> float:
    return max(duration - max(elapsed, 0.0), MIN_REMAINING_FRACTION * duration)


def start_offsets(free_in: Sequence[float], duration: float, n: int) -> list[float]:
    """When each of the next ``n`` runs in order starts (seconds from now), given
    when each usable slot is free (0 = now), each run holding one for ``duration``."""
    heap = list(free_in)
    heapq.heapify(heap)
    out: list[float] = []
    for _ in range(n if heap else 0):
        free = heapq.heappop(heap)
        out.append(free)
        heapq.heappush(heap, free + duration)
    return out


def wait_view(
    settings: Settings,
    snapshot: Snapshot,
    samples: Mapping[str, Sequence[float]],
    now: datetime,
) -> dict[str, WaitInfo]:
    """run id -> when and why, for every QUEUED run of the snapshot."""
    durations = {p: typical_duration(samples.get(p, ())) for p in settings.plans}
    running_plan = snapshot.running_by_plan()
    running_tenant = snapshot.running_by_tenant()
    global_cap = settings.global_max_concurrent_runs
    global_free = max(0, global_cap - len(snapshot.active))

    def left(run: Run, fallback: float) -> float:
        # A slot holder of a plan without history: as long as the asking plan's runs.
        duration = durations.get(run.plan) or fallback
        started = parse_iso(run.started_at)
        elapsed = (now - started).total_seconds() if started else 0.0
        return remaining_seconds(duration, elapsed)

    by_plan: dict[str, list[Run]] = {}
    for run in snapshot.queued:
        by_plan.setdefault(run.plan, []).append(run)
    out: dict[str, WaitInfo] = {}
    for plan, runs in by_plan.items():
        ready: list[Run] = []
        held: list[tuple[Run, WaitingFor]] = []
        for run in runs:
            reason = _held_back(run, settings, snapshot)
            if reason is None:
                ready.append(run)
            else:
                held.append((run, reason))
        ordered = order_within_plan(ready, running_tenant, snapshot.tenants)
        config = settings.plans.get(plan)
        duration = durations.get(plan)
        offsets: list[float] = []
        if config is not None and duration is not None:
            cap = min(config.max_concurrent_runs, global_cap)
            own = sorted(left(r, duration) for r in snapshot.active if r.plan == plan)
            plan_free = max(0, cap - running_plan.get(plan, 0))
            now_free = min(plan_free, global_free)
            others = sorted(left(r, duration) for r in snapshot.active if r.plan != plan)
            free_in = own[:cap] + [0.0] * now_free + others[: plan_free - now_free]
            offsets = start_offsets(free_in, duration, len(ordered))
        for index, run in enumerate(ordered):
            reason = _capacity(run, index, settings, running_plan, running_tenant, global_free)
            estimate = None
            if index < len(offsets) and duration is not None:
                offset = offsets[index]
                if reason.code == WaitingCode.TENANT_CAP:
                    # Its own slot comes back when the tenant's first run ends.
                    mine = [
                        left(r, duration) for r in snapshot.active if r.tenant_id == run.tenant_id
                    ]
                    offset = max(offset, min(mine, default=offset))
                estimate = iso_ms(now + timedelta(seconds=offset))
            out[run.run_id] = WaitInfo(index + 1, reason, estimate)
        held.sort(key=lambda pair: (pair[0].queued_at, pair[0].run_id))
        for index, (run, reason) in enumerate(held, start=len(ordered) + 1):
            out[run.run_id] = WaitInfo(index, reason, None)
    return out


def queue_positions(settings: Settings, snapshot: Snapshot) -> dict[str, int]:
    """run id -> its 1-based position within its plan (``wait_view``'s)."""
    epoch = datetime.fromtimestamp(0).astimezone()
    return {k: v.position for k, v in wait_view(settings, snapshot, {}, epoch).items()}


def _held_back(run: Run, settings: Settings, snapshot: Snapshot) -> WaitingFor | None:
    tenant = snapshot.tenants.get(run.tenant_id)
    if tenant is None or tenant.status is None or tenant.status == TenantStatus.OFFBOARDING:
        return WaitingFor(
            code=WaitingCode.TENANT_INACTIVE,
            message="tenant is gone or being offboarded; the run will be cancelled",
        )
    return blocking_reason(run, settings, tenant)


def _capacity(
    run: Run,
    ahead: int,
    settings: Settings,
    running_plan: Mapping[str, int],
    running_tenant: Mapping[str, int],
    global_free: int,
) -> WaitingFor:
    """The cap that holds a ready run back.
    ``ahead``: ready runs before it in the plan's order; those of tenants at
    their cap come last in that order (the cap is the plan's), so for a run
    below its cap they are all below theirs too."""
    plan = settings.plans[run.plan]
    holding = running_tenant.get(run.tenant_id, 0)
    if holding >= plan.max_concurrent_runs_per_tenant:
        return WaitingFor(
            code=WaitingCode.TENANT_CAP,
            message=f"the tenant runs {holding} of its {plan.max_concurrent_runs_per_tenant} "
            f"concurrent runs on plan {run.plan}; the run starts when one of them ends",
        )
    cap = min(plan.max_concurrent_runs, settings.global_max_concurrent_runs)
    running = running_plan.get(run.plan, 0)
    plan_free = max(0, cap - running)
    if ahead < min(plan_free, global_free):
        return WaitingFor(
            code=WaitingCode.DISPATCH_PENDING,
            message="a slot is free; the scheduler starts the run at its next dispatch",
        )
    if ahead < plan_free:
        return WaitingFor(
            code=WaitingCode.GLOBAL_CAP,
            message=f"all {settings.global_max_concurrent_runs} platform-wide slots are taken"
            + (f" ({ahead} run(s) of plan {run.plan} ahead)" if ahead else "")
            + "; the run starts as runs end",
        )
    return WaitingFor(
        code=WaitingCode.PLAN_CAP,
        message=f"plan {run.plan} runs {running} of its {plan.max_concurrent_runs} "
        f"concurrent runs, {ahead} queued ahead; the run starts as they end",
    )
