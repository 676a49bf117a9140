"""The pure scheduling policy: fairness, caps, weights, borrowing, waiting reasons."""

from __future__ import annotations

from collections import Counter

from trainyard_core.config import Settings, resolve_settings
from trainyard_core.models import Run, RunStatus, TenantStatus, Trigger
from trainyard_core.scheduling.policy import (
    WAIT_PREFIX,
    Snapshot,
    TenantView,
    backoff_seconds,
    plan_dispatch,
    queue_positions,
)

ACTIVE = TenantView(TenantStatus.ACTIVE)


def settings(global_cap: int = 20, **plans: dict) -> Settings:
    return resolve_settings({"globalMaxConcurrentRuns": global_cap, "plans": plans})


def run(tenant: str, plan: str, n: int, status: RunStatus = RunStatus.QUEUED) -> Run:
    return Run(
        run_id=f"{n:032x}",
        tenant_id=tenant,
        plan=plan,
        status=status,
        trigger=Trigger(type="s3"),
        queued_at=f"2026-01-01T00:{n // 60:02d}:{n % 60:02d}.000Z",
    )


def queued(plan: str, tenants: int, start: int = 0, prefix: str | None = None) -> list[Run]:
    prefix = prefix or plan
    return [run(f"{prefix}-{i}", plan, start + i) for i in range(tenants)]


def views(runs: list[Run], view: TenantView = ACTIVE) -> dict[str, TenantView]:
    return {r.tenant_id: view for r in runs}


def admitted_per_plan(snapshot: Snapshot, s: Settings) -> Counter[str]:
    return Counter(r.plan for r in plan_dispatch(s, snapshot).admissions)


def test_when_the_global_cap_binds_plans_share_it_by_weight() -> None:
    s = settings(10)  # basic w1 cap4, standard w2 cap8, premium w4 cap12 (defaults)
    backlog = queued("basic", 10) + queued("standard", 10, 100) + queued("premium", 10, 200)
    got = admitted_per_plan(Snapshot(backlog, [], views(backlog)), s)
    # 10 slots in proportion 1:2:4 -> roughly 1.4 : 2.9 : 5.7
    assert sum(got.values()) == 10
    assert got["premium"] > got["standard"] > got["basic"] >= 1


def test_a_plan_without_backlog_lends_its_share_but_no_plan_exceeds_its_own_cap() -> None:
    s = settings(20)
    backlog = queued("basic", 10) + queued("premium", 1, 100)
    got = admitted_per_plan(Snapshot(backlog, [], views(backlog)), s)
    assert got == {"basic": 4, "premium": 1}  # basic borrowed idle capacity up to its cap of 4


def test_running_runs_count_against_the_weighted_share() -> None:
    s = settings(6)
    active = [run(f"p{i}", "premium", 500 + i, RunStatus.RUNNING) for i in range(5)]
    backlog = queued("basic", 3) + queued("premium", 3, 100)
    got = admitted_per_plan(Snapshot(backlog, active, views(backlog)), s)
    # premium already holds 5 of 6: the one free slot goes to the starved plan.
    assert got == {"basic": 1}


def test_global_plan_and_tenant_caps_are_never_exceeded() -> None:
    s = settings(
        7,
        standard={"maxConcurrentRuns": 3, "maxConcurrentRunsPerTenant": 2},
    )
    backlog = [run("noisy", "standard", i) for i in range(6)] + queued("basic", 6, 100)
    active = [run("noisy", "standard", 900, RunStatus.RUNNING)]
    decision = plan_dispatch(s, Snapshot(backlog, active, views(backlog)))
    per_plan = Counter(r.plan for r in [*decision.admissions, *active])
    per_tenant = Counter(r.tenant_id for r in [*decision.admissions, *active])
    assert len(decision.admissions) + len(active) <= 7
    assert per_plan["standard"] <= 3 and per_plan["basic"] <= 4
    assert per_tenant["noisy"] <= 2
    assert all(per_tenant[t] <= 1 for t in per_tenant if t.startswith("basic"))


def test_a_noisy_tenant_does_not_starve_the_others_in_its_plan() -> None:
    s = settings(20, standard={"maxConcurrentRuns": 2, "maxConcurrentRunsPerTenant": 2})
    # noisy queued first (oldest) and already runs one; two quiet tenants queued later.
    backlog = [
        run("noisy", "standard", 0),
        run("quiet-a", "standard", 5),
        run("quiet-b", "standard", 6),
    ]
    active = [run("noisy", "standard", 900, RunStatus.RUNNING)]
    decision = plan_dispatch(s, Snapshot(backlog, active, views(backlog)))
    assert [r.tenant_id for r in decision.admissions] == ["quiet-a"]


def test_within_a_plan_the_oldest_queued_goes_first_among_equals() -> None:
    s = settings(20, basic={"maxConcurrentRuns": 2})
    backlog = [run("late", "basic", 9), run("early", "basic", 1), run("middle", "basic", 4)]
    decision = plan_dispatch(s, Snapshot(backlog, [], views(backlog)))
    assert [r.tenant_id for r in decision.admissions] == ["early", "middle"]


def test_among_tenants_running_as_many_the_one_served_longest_ago_goes_first() -> None:
    # "busy" queued its next run first (it queues one behind every start), but it
    # was just served; "fresh" was never served and "old" long ago: round robin,
    # not seniority, decides who gets the freed slots.
    s = settings(20, standard={"maxConcurrentRuns": 2, "maxConcurrentRunsPerTenant": 2})
    backlog = [run("busy", "standard", 1), run("old", "standard", 5), run("fresh", "standard", 9)]
    tenants = {
        "busy": TenantView(TenantStatus.ACTIVE, last_admitted_at="2026-01-01T00:00:50.000Z"),
        "old": TenantView(TenantStatus.ACTIVE, last_admitted_at="2025-12-31T23:00:00.000Z"),
        "fresh": ACTIVE,
    }
    decision = plan_dispatch(s, Snapshot(backlog, [], tenants))
    assert [r.tenant_id for r in decision.admissions] == ["fresh", "old"]
    positions = queue_positions(s, Snapshot(backlog, [], tenants))
    assert [positions[r.run_id] for r in backlog] == [3, 2, 1]


def test_a_suspended_tenant_waits_with_a_visible_reason() -> None:
    s = settings()
    backlog = [run("sleepy", "basic", 1)]
    decision = plan_dispatch(
        s, Snapshot(backlog, [], {"sleepy": TenantView(TenantStatus.SUSPENDED)})
    )
    assert decision.admissions == []
    _, reason = decision.waiting[backlog[0].run_id]
    assert reason is not None and "SUSPENDED" in reason


def test_a_tenant_over_its_monthly_budget_waits_with_the_numbers_in_the_reason() -> None:
    s = settings()
    backlog = [run("spender", "basic", 1), run("thrifty", "basic", 2)]
    tenants = {
        "spender": TenantView(
            TenantStatus.ACTIVE, used_hours=10.5, budget_hours=10, month="2026-01"
        ),
        "thrifty": TenantView(
            TenantStatus.ACTIVE, used_hours=1.0, budget_hours=10, month="2026-01"
        ),
    }
    decision = plan_dispatch(s, Snapshot(backlog, [], tenants))
    assert [r.tenant_id for r in decision.admissions] == ["thrifty"]
    _, reason = decision.waiting[backlog[0].run_id]
    assert reason is not None and "budget" in reason and "10.50 of 10 hours" in reason


def test_a_waiting_reason_is_cleared_once_the_run_may_start() -> None:
    s = settings()
    waiting = run("back", "basic", 1).model_copy(update={"failure_reason": f"{WAIT_PREFIX}x"})
    decision = plan_dispatch(s, Snapshot([waiting], [], views([waiting])))
    assert decision.admissions == [waiting]
    assert decision.waiting[waiting.run_id] == (waiting, None)


def test_runs_of_a_tenant_that_no_longer_exists_are_cancelled() -> None:
    s = settings()
    orphan = run("gone", "basic", 1)
    decision = plan_dispatch(s, Snapshot([orphan], [], {"gone": TenantView(None)}))
    assert decision.admissions == []
    assert decision.cancellations == [(orphan, "tenant no longer exists")]


def test_queue_positions_follow_dispatch_order_per_plan() -> None:
    s = settings()
    backlog = [
        run("busy", "standard", 0),
        run("idle", "standard", 3),
        run("blocked", "standard", 1),
        run("other-plan", "basic", 2),
    ]
    active = [run("busy", "standard", 900, RunStatus.RUNNING)]
    tenants = {
        **views(backlog),
        "blocked": TenantView(TenantStatus.SUSPENDED),
    }
    positions = queue_positions(s, Snapshot(backlog, active, tenants))
    by_tenant = {r.tenant_id: positions[r.run_id] for r in backlog}
    assert by_tenant == {"idle": 1, "busy": 2, "blocked": 3, "other-plan": 1}


def test_start_backoff_grows_with_attempts_and_stays_capped() -> None:
    delays = [backoff_seconds(a, jitter=1.0) for a in range(1, 10)]
    assert delays == sorted(delays)
    assert delays[0] == 2.0 and delays[-1] == 60.0
    assert backoff_seconds(3, jitter=0.0) == backoff_seconds(3, jitter=1.0) / 2
