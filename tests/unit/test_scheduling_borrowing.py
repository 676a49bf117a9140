"""Work-conserving tenant caps: a plan's ``maxBorrowedRunsPerTenant`` lends the
slots nobody below the tenant cap can use, and the admission enforces it."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import settings as settings_
from hypothesis import strategies as st
from trainyard_core.clock import VirtualClock
from trainyard_core.config import Settings, resolve_settings
from trainyard_core.models import Run, RunStatus, TenantStatus, Trigger
from trainyard_core.ports.runs import AdmitOutcome, Caps
from trainyard_core.scheduling.policy import (
    DispatchPlan,
    Snapshot,
    TenantView,
    _fair_key,
    blocking_reason,
    plan_dispatch,
)
from trainyard_core.scheduling.service import SchedulerService
from trainyard_core.store.runs_memory import InMemoryRunRepository
from trainyard_core.store.tenants import InMemoryTenantRepository

from trainyard.testing.scheduling import FakePipeline, make_tenant

PLANS = ("basic", "standard")


def make_settings(global_cap: int, plans: dict[str, tuple[int, int, int]]) -> Settings:
    return resolve_settings(
        {
            "globalMaxConcurrentRuns": global_cap,
            "plans": {
                name: {
                    "maxConcurrentRuns": cap,
                    "maxConcurrentRunsPerTenant": tenant_cap,
                    "maxBorrowedRunsPerTenant": borrow,
                }
                for name, (cap, tenant_cap, borrow) in plans.items()
            },
        }
    )


def run(tenant: str, plan: str, n: int, status: RunStatus = RunStatus.QUEUED) -> Run:
    return Run(
        run_id=f"{n:032x}",
        tenant_id=tenant,
        plan=plan,
        status=status,
        trigger=Trigger(type="s3"),
        queued_at=f"2026-01-01T00:{n // 60 % 60:02d}:{n % 60:02d}.000Z",
    )


def today(settings: Settings, snapshot: Snapshot) -> list[str]:
    """The admissions of the policy before borrowing existed (its loop, verbatim)."""
    running_plan = snapshot.running_by_plan()
    running_tenant = snapshot.running_by_tenant()
    free = settings.global_max_concurrent_runs - len(snapshot.active)
    candidates: dict[str, list[Run]] = {name: [] for name in settings.plans}
    for r in snapshot.queued:
        view = snapshot.tenants.get(r.tenant_id)
        if view is None or view.status is None or view.status == TenantStatus.OFFBOARDING:
            continue
        if blocking_reason(r, settings, view) is None:
            candidates[r.plan].append(r)
    admitted: list[str] = []
    while free > 0:
        open_plans = [
            n
            for n, rs in candidates.items()
            if rs and running_plan.get(n, 0) < settings.plans[n].max_concurrent_runs
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
        cap = settings.plans[name].max_concurrent_runs_per_tenant
        eligible = [r for r in candidates[name] if running_tenant.get(r.tenant_id, 0) < cap]
        if not eligible:
            candidates[name] = []
            continue
        chosen = min(eligible, key=lambda r: _fair_key(r, running_tenant, snapshot.tenants))
        candidates[name].remove(chosen)
        admitted.append(chosen.run_id)
        running_plan[name] = running_plan.get(name, 0) + 1
        running_tenant[chosen.tenant_id] = running_tenant.get(chosen.tenant_id, 0) + 1
        free -= 1
    return admitted


@st.composite
def scenarios(draw: st.DrawFn, borrowing: bool = True) -> tuple[Settings, Snapshot]:
    plans: dict[str, tuple[int, int, int]] = {}
    for name in PLANS:
        cap = draw(st.integers(1, 6))
        tenant_cap = draw(st.integers(1, cap))
        borrow = draw(st.integers(0, cap - tenant_cap)) if borrowing else 0
        plans[name] = (cap, tenant_cap, borrow)
    settings = make_settings(draw(st.integers(1, 10)), plans)
    tenants = {f"t{i}": draw(st.sampled_from(PLANS)) for i in range(draw(st.integers(1, 6)))}
    views = {
        t: TenantView(draw(st.sampled_from([TenantStatus.ACTIVE] * 4 + [TenantStatus.SUSPENDED])))
        for t in tenants
    }
    # Active runs within every cap (plan, global, tenant cap + its borrowing).
    active: list[Run] = []
    n = 0
    for t, plan in tenants.items():
        cap, tenant_cap, borrow = plans[plan]
        for _ in range(draw(st.integers(0, tenant_cap + borrow))):
            in_plan = sum(1 for r in active if r.plan == plan)
            if in_plan < cap and len(active) < settings.global_max_concurrent_runs:
                active.append(run(t, plan, n, RunStatus.RUNNING))
                n += 1
    queued = [
        run(t, tenants[t], 1000 + i)
        for i, t in enumerate(draw(st.lists(st.sampled_from(sorted(tenants)), max_size=12)))
    ]
    return settings, Snapshot(queued, active, views)


def after(snapshot: Snapshot, decision: DispatchPlan) -> tuple[Counter[str], Counter[str]]:
    runs = snapshot.active + decision.admissions
    return Counter(r.plan for r in runs), Counter(r.tenant_id for r in runs)


@settings_(max_examples=300, deadline=None)
@given(scenarios())
def test_borrowing_never_passes_the_plan_global_or_tenant_plus_borrowing_limits(
    case: tuple[Settings, Snapshot],
) -> None:
    settings, snapshot = case
    decision = plan_dispatch(settings, snapshot)
    by_plan, by_tenant = after(snapshot, decision)
    assert sum(by_plan.values()) <= settings.global_max_concurrent_runs
    for name, plan in settings.plans.items():
        assert by_plan[name] <= plan.max_concurrent_runs
    plan_of = {r.tenant_id: r.plan for r in snapshot.active + snapshot.queued}
    for tenant, held in by_tenant.items():
        plan = settings.plans[plan_of[tenant]]
        assert held <= plan.max_concurrent_runs_per_tenant + plan.max_borrowed_runs_per_tenant


@settings_(max_examples=300, deadline=None)
@given(scenarios())
def test_borrowing_happens_only_when_no_tenant_of_the_plan_waits_below_its_cap(
    case: tuple[Settings, Snapshot],
) -> None:
    settings, snapshot = case
    decision = plan_dispatch(settings, snapshot)
    _, by_tenant = after(snapshot, decision)
    admitted = {r.run_id for r in decision.admissions}
    for borrowed in (r for r in decision.admissions if r.run_id in decision.borrowed):
        cap = settings.plans[borrowed.plan].max_concurrent_runs_per_tenant
        assert by_tenant[borrowed.tenant_id] > cap  # it really is beyond the cap
        left_below_cap = [
            r
            for r in snapshot.queued
            if r.plan == borrowed.plan
            and r.run_id not in admitted
            and blocking_reason(r, settings, snapshot.tenants[r.tenant_id]) is None
            and by_tenant[r.tenant_id] < cap
        ]
        assert left_below_cap == []
    # An admission not marked borrowed keeps its tenant within its cap.
    plain = [r for r in decision.admissions if r.run_id not in decision.borrowed]
    for r in plain:
        held = sum(1 for x in snapshot.active + plain if x.tenant_id == r.tenant_id)
        assert held <= settings.plans[r.plan].max_concurrent_runs_per_tenant


@settings_(max_examples=300, deadline=None)
@given(scenarios(borrowing=False))
def test_with_no_borrowing_the_decision_is_exactly_todays(case: tuple[Settings, Snapshot]) -> None:
    settings, snapshot = case
    decision = plan_dispatch(settings, snapshot)
    assert [r.run_id for r in decision.admissions] == today(settings, snapshot)
    assert decision.borrowed == set()


def test_a_lone_tenant_at_its_cap_borrows_the_idle_slots_up_to_the_limit() -> None:
    settings = make_settings(10, {"basic": (8, 1, 3), "standard": (2, 1, 0)})
    active = [run("heavy", "basic", 0, RunStatus.RUNNING)]
    queued = [run("heavy", "basic", 10 + i) for i in range(6)]
    snapshot = Snapshot(queued, active, {"heavy": TenantView(TenantStatus.ACTIVE)})
    decision = plan_dispatch(settings, snapshot)
    assert len(decision.admissions) == 3  # 1 + 3 borrowed = cap 1 + borrowing 3
    assert decision.borrowed == {r.run_id for r in decision.admissions}


def test_a_plan_with_no_borrowing_keeps_its_tenant_cap_hard() -> None:
    settings = make_settings(10, {"basic": (8, 1, 0), "standard": (2, 1, 0)})
    active = [run("heavy", "basic", 0, RunStatus.RUNNING)]
    queued = [run("heavy", "basic", 10 + i) for i in range(6)]
    snapshot = Snapshot(queued, active, {"heavy": TenantView(TenantStatus.ACTIVE)})
    assert plan_dispatch(settings, snapshot).admissions == []


def test_a_tenant_below_its_cap_in_another_plan_gets_the_global_slot_before_a_borrower() -> None:
    settings = make_settings(2, {"basic": (2, 1, 1), "standard": (2, 1, 0)})
    active = [run("heavy", "basic", 0, RunStatus.RUNNING)]
    queued = [run("heavy", "basic", 10), run("light", "standard", 11)]
    views = {t: TenantView(TenantStatus.ACTIVE) for t in ("heavy", "light")}
    decision = plan_dispatch(settings, Snapshot(queued, active, views))
    assert [r.tenant_id for r in decision.admissions] == ["light"]
    assert decision.borrowed == set()


def test_the_admission_enforces_the_borrowing_limit_in_its_transaction() -> None:
    settings = make_settings(10, {"basic": (6, 1, 2), "standard": (2, 1, 0)})
    runs, tenants, clock, pipeline = (
        InMemoryRunRepository(),
        InMemoryTenantRepository(),
        VirtualClock(),
        FakePipeline(),
    )
    service = SchedulerService(settings, runs, tenants, pipeline, clock=clock)
    tenant = make_tenant("heavy", "basic")
    tenants.create(tenant)
    assert tenant.data_bucket is not None
    started = []
    for i in range(5):  # one QUEUED run at a time: upload, dispatch, repeat
        service.handle_upload(tenant.data_bucket, f"{tenant.data_prefix}{i}.csv", f"e{i}", 1, None)
        started += service.dispatch().started
        clock.advance(1)
    # cap 1 + borrowing 2: three run, the fourth upload waits queued.
    assert len(started) == 3
    holding = [r for r in runs.active_runs("basic") if r.tenant_id == "heavy"]
    assert len(holding) == 3
    # A stale scheduler borrowing once more is refused by the transaction.
    waiting = runs.queued_runs("basic")[0]
    assert runs.admit(waiting, Caps(10, 6, 3), "2026-01-01T00:00:00.000Z", "x") == (
        AdmitOutcome.CAP_REACHED
    )
    # A borrowed slot comes back when a run ends; the waiting run then borrows it.
    arn = holding[0].execution_arn
    assert arn is not None
    pipeline.set_status(arn, "Succeeded")
    service.handle_status(arn, "Succeeded")
    assert len(service.dispatch().started) == 1
    assert len([r for r in runs.active_runs("basic") if r.tenant_id == "heavy"]) == 3
