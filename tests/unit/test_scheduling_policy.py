"""The pure scheduling policy: fairness, caps, weights, borrowing, waiting reasons."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import settings as settings_
from hypothesis import strategies as st
from trainyard_core.config import Settings, resolve_settings
from trainyard_core.models import (
    Run,
    RunStatus,
    TenantStatus,
    Trigger,
    WaitingCode,
    WaitingFor,
)
from trainyard_core.scheduling.policy import (
    Snapshot,
    TenantView,
    backoff_seconds,
    fair_tag,
    order_within_plan,
    plan_dispatch,
)
from trainyard_core.scheduling.waiting import queue_positions

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


def test_a_tenant_served_moments_ago_goes_behind_those_that_were_not() -> None:
    # "busy" queued its next run first (it queues one behind every start) but was
    # admitted 50 s ago; "old" was served long ago, "fresh" never: seniority among
    # those two, and busy after them, although it queued first.
    s = settings(20, standard={"maxConcurrentRuns": 2, "maxConcurrentRunsPerTenant": 2})
    backlog = [run("busy", "standard", 1), run("old", "standard", 5), run("fresh", "standard", 9)]
    tenants = {
        "busy": TenantView(TenantStatus.ACTIVE, last_admitted_at="2026-01-01T00:00:00.000Z"),
        "old": TenantView(TenantStatus.ACTIVE, last_admitted_at="2025-12-31T23:00:00.000Z"),
        "fresh": ACTIVE,
    }
    decision = plan_dispatch(s, Snapshot(backlog, [], tenants))
    assert [r.tenant_id for r in decision.admissions] == ["old", "fresh"]
    positions = queue_positions(s, Snapshot(backlog, [], tenants))
    assert [positions[r.run_id] for r in backlog] == [3, 1, 2]


def test_a_tenant_served_recently_waits_at_most_one_quantum_behind_newcomers() -> None:
    # A stream of never-served tenants must not starve a tenant that was served:
    # newcomers that asked after its last admission + the quantum queue behind it.
    s = settings(20, basic={"maxConcurrentRuns": 1})
    served_at = "2026-01-01T00:00:00.000Z"
    returning = run("returning", "basic", 1)  # queued 00:00:01
    newcomer = Run(
        **{**run("newcomer", "basic", 2).model_dump(), "queued_at": "2026-01-01T00:10:01.000Z"}
    )
    tenants = {
        "returning": TenantView(TenantStatus.ACTIVE, last_admitted_at=served_at),
        "newcomer": ACTIVE,
    }
    decision = plan_dispatch(s, Snapshot([returning, newcomer], [], tenants))
    assert [r.tenant_id for r in decision.admissions] == ["returning"]
    assert fair_tag(returning, tenants["returning"]) == "2026-01-01T00:10:00.000Z"


def test_a_suspended_tenant_waits_with_a_visible_reason() -> None:
    s = settings()
    backlog = [run("sleepy", "basic", 1)]
    decision = plan_dispatch(
        s, Snapshot(backlog, [], {"sleepy": TenantView(TenantStatus.SUSPENDED)})
    )
    assert decision.admissions == []
    _, reason = decision.waiting[backlog[0].run_id]
    assert reason is not None and reason.code == WaitingCode.SUSPENDED
    assert "reactivated" in reason.message
    assert backlog[0].failure_reason is None  # a wait is not a failure


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
    assert reason is not None and reason.code == WaitingCode.BUDGET
    assert "10.50 of 10 hours" in reason.message


def test_an_unchanged_waiting_reason_is_not_written_again() -> None:
    s = settings()
    sleepy = run("sleepy", "basic", 1)
    tenants = {"sleepy": TenantView(TenantStatus.SUSPENDED)}
    first = plan_dispatch(s, Snapshot([sleepy], [], tenants)).waiting[sleepy.run_id][1]
    stored = sleepy.model_copy(update={"waiting_for": first})
    assert plan_dispatch(s, Snapshot([stored], [], tenants)).waiting == {}


def test_a_waiting_reason_is_cleared_once_the_run_may_start() -> None:
    s = settings()
    reason = WaitingFor(code=WaitingCode.SUSPENDED, message="x")
    waiting = run("back", "basic", 1).model_copy(update={"waiting_for": reason})
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


@given(
    st.lists(st.tuples(st.sampled_from("abcdef"), st.integers(0, 59)), max_size=30),
    st.dictionaries(st.sampled_from("abcdef"), st.integers(0, 3)),
    st.dictionaries(st.sampled_from("abcdef"), st.integers(0, 59)),
)
@settings_(max_examples=200, derandomize=True)
def test_fair_order_is_repeatedly_the_least_served_whatever_the_backlog(
    queued_runs: list[tuple[str, int]], running: dict[str, int], served: dict[str, int]
) -> None:
    runs = [run(tenant, "basic", n) for tenant, n in queued_runs]
    views = {
        t: TenantView(TenantStatus.ACTIVE, last_admitted_at=f"2025-12-31T23:{m:02d}:00.000Z")
        for t, m in served.items()
    }
    # The definition, written the slow way: repeatedly the minimum by the fair key.
    pending, counts, expected = list(runs), dict(running), []
    while pending:
        nxt = min(
            pending,
            key=lambda r: (
                counts.get(r.tenant_id, 0),
                fair_tag(r, views.get(r.tenant_id)),
                r.run_id,
            ),
        )
        pending.remove(nxt)
        expected.append(nxt)
        counts[nxt.tenant_id] = counts.get(nxt.tenant_id, 0) + 1
    assert order_within_plan(runs, running, views) == expected
