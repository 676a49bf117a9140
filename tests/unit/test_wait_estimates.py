"""When and why a queued run waits: the pure estimator (virtual times), and the
read model over the in-memory stores, a fake pipeline and a virtual clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from trainyard_core.clock import VirtualClock
from trainyard_core.config import Settings, resolve_settings
from trainyard_core.models import Run, RunStatus, TenantStatus, Trigger, WaitingCode, parse_iso
from trainyard_core.scheduling.policy import Snapshot, TenantView
from trainyard_core.scheduling.service import SchedulerService
from trainyard_core.scheduling.waiting import (
    MIN_REMAINING_FRACTION,
    start_offsets,
    typical_duration,
    wait_view,
)
from trainyard_core.store.run_items import DURATION_SAMPLES
from trainyard_core.store.runs_memory import InMemoryRunRepository
from trainyard_core.store.tenants import InMemoryTenantRepository

from trainyard.testing.scheduling import FakePipeline, make_tenant

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
ACTIVE = TenantView(TenantStatus.ACTIVE)


def at(seconds: float) -> str:
    moment = NOW + timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def run(tenant: str, plan: str, queued: float, status=RunStatus.QUEUED, started=None) -> Run:
    return Run(
        run_id=f"{tenant}-{plan}-{int(queued) + 10_000:05d}".ljust(32, "0"),
        tenant_id=tenant,
        plan=plan,
        status=status,
        trigger=Trigger(type="manual"),
        queued_at=at(queued),
        started_at=None if started is None else at(started),
    )


def settings(global_cap: int = 20, **plans: dict[str, Any]) -> Settings:
    return resolve_settings({"globalMaxConcurrentRuns": global_cap, "plans": plans})


def offset_of(info: Any) -> float | None:
    moment = parse_iso(info.estimated_start_at)
    return None if moment is None else (moment - NOW).total_seconds()


def view(
    s: Settings, queued: list[Run], active: list[Run], samples: dict[str, list[float]], **tenants
):
    views = {r.tenant_id: tenants.get(r.tenant_id, ACTIVE) for r in queued + active}
    return wait_view(s, Snapshot(queued, active, views), samples, NOW)


def test_runs_behind_a_full_plan_start_as_its_slots_free_in_queue_order() -> None:
    s = settings(basic={"maxConcurrentRuns": 2})
    active = [
        run("r1", "basic", -400, RunStatus.RUNNING, started=-300),
        run("r2", "basic", -200, RunStatus.RUNNING, started=-100),
    ]
    queued = [run("a", "basic", -50), run("b", "basic", -40), run("c", "basic", -30)]
    info = view(s, queued, active, {"basic": [500.0, 700.0]})  # typical: 600 s
    assert [info[r.run_id].position for r in queued] == [1, 2, 3]
    assert {info[r.run_id].waiting_for.code for r in queued} == {WaitingCode.PLAN_CAP}
    # r1 ends in 300 s, r2 in 500 s; c takes r1's slot again after a's 600 s.
    assert [offset_of(info[r.run_id]) for r in queued] == [300, 500, 900]
    assert "2 of its 2" in info[queued[0].run_id].waiting_for.message


def test_no_duration_history_means_no_estimate_but_still_a_reason() -> None:
    s = settings(basic={"maxConcurrentRuns": 1})
    active = [run("r1", "basic", -100, RunStatus.RUNNING, started=-90)]
    queued = [run("a", "basic", -5)]
    info = view(s, queued, active, {})
    assert info[queued[0].run_id].estimated_start_at is None
    assert info[queued[0].run_id].waiting_for.code == WaitingCode.PLAN_CAP


def test_a_run_with_a_free_slot_waits_only_for_the_next_dispatch() -> None:
    s = settings(basic={"maxConcurrentRuns": 2})
    queued = [run("a", "basic", -5), run("b", "basic", -4), run("c", "basic", -3)]
    info = view(s, queued, [], {"basic": [60.0]})
    codes = [info[r.run_id].waiting_for.code for r in queued]
    assert codes == [
        WaitingCode.DISPATCH_PENDING,
        WaitingCode.DISPATCH_PENDING,
        WaitingCode.PLAN_CAP,
    ]
    assert [offset_of(info[r.run_id]) for r in queued] == [0, 0, 60]


def test_a_tenant_at_its_cap_waits_for_its_own_run_even_with_the_plan_free() -> None:
    s = settings(basic={"maxConcurrentRuns": 4, "maxConcurrentRunsPerTenant": 1})
    active = [run("busy", "basic", -700, RunStatus.RUNNING, started=-500)]
    queued = [run("busy", "basic", -10), run("other", "basic", -5)]
    info = view(s, queued, active, {"basic": [600.0]})
    busy, other = (info[r.run_id] for r in queued)
    assert busy.waiting_for.code == WaitingCode.TENANT_CAP
    assert offset_of(busy) == 100  # when its running run is expected to end
    assert other.waiting_for.code == WaitingCode.DISPATCH_PENDING
    assert (other.position, busy.position) == (1, 2)  # the policy admits "other" first


def test_a_plan_below_its_cap_waits_for_other_plans_when_the_global_cap_binds() -> None:
    s = settings(2, basic={"maxConcurrentRuns": 4})
    active = [
        run("p1", "premium", -900, RunStatus.RUNNING, started=-900),
        run("p2", "premium", -100, RunStatus.RUNNING, started=-100),
    ]
    queued = [run("a", "basic", -5)]
    info = view(s, queued, active, {"basic": [60.0], "premium": [1000.0]})
    assert info[queued[0].run_id].waiting_for.code == WaitingCode.GLOBAL_CAP
    assert offset_of(info[queued[0].run_id]) == 100  # p1: 1000 s typical, 900 s in


def test_a_run_past_its_typical_duration_is_expected_to_end_soon_not_now() -> None:
    s = settings(basic={"maxConcurrentRuns": 1})
    active = [run("slow", "basic", -5000, RunStatus.RUNNING, started=-4000)]
    queued = [run("a", "basic", -5)]
    info = view(s, queued, active, {"basic": [600.0]})
    assert offset_of(info[queued[0].run_id]) == MIN_REMAINING_FRACTION * 600


def test_held_back_runs_have_a_reason_no_estimate_and_come_after_the_others() -> None:
    s = settings(basic={"maxConcurrentRuns": 1})
    active = [run("r1", "basic", -100, RunStatus.RUNNING, started=-100)]
    queued = [run("sleepy", "basic", -50), run("spender", "basic", -40), run("ok", "basic", -1)]
    info = view(
        s,
        queued,
        active,
        {"basic": [600.0]},
        sleepy=TenantView(TenantStatus.SUSPENDED),
        spender=TenantView(TenantStatus.ACTIVE, used_hours=11, budget_hours=10, month="2026-03"),
    )
    sleepy, spender, ok = (info[r.run_id] for r in queued)
    assert (sleepy.waiting_for.code, spender.waiting_for.code) == (
        WaitingCode.SUSPENDED,
        WaitingCode.BUDGET,
    )
    assert sleepy.estimated_start_at is None and spender.estimated_start_at is None
    assert (ok.position, sleepy.position, spender.position) == (1, 2, 3)
    assert offset_of(ok) == 500


def test_the_typical_duration_is_the_mean_of_the_samples_and_slots_are_reused() -> None:
    assert typical_duration([]) is None
    assert typical_duration([0.0]) is None  # runs that never ran say nothing
    assert typical_duration([100.0, 300.0]) == 200.0
    assert start_offsets([0.0, 50.0], 100.0, 5) == [0.0, 50.0, 100.0, 150.0, 200.0]


# --- the read model over the stores --------------------------------------------


class World:
    def __init__(self, settings: Settings) -> None:
        self.clock = VirtualClock(NOW)
        self.runs = InMemoryRunRepository()
        self.tenants = InMemoryTenantRepository()
        self.pipeline = FakePipeline()
        self.service = SchedulerService(
            settings, self.runs, self.tenants, self.pipeline, clock=self.clock
        )

    def queue(self, tenant_id: str) -> Run:
        if self.tenants.get(tenant_id) is None:
            self.tenants.create(make_tenant(tenant_id, "basic", TenantStatus.ACTIVE))
        tenant = self.tenants.get(tenant_id)
        assert tenant is not None and tenant.data_bucket
        key = f"data/{self.clock.now().timestamp()}.csv"
        result = self.service.handle_upload(tenant.data_bucket, key, etag=key, size=1)
        assert result.run is not None
        self.service.dispatch()
        return result.run

    def finish(self, run: Run, status: str = "Succeeded") -> None:
        current = self.runs.get_run(run.tenant_id, run.run_id)
        assert current is not None and current.execution_arn
        self.pipeline.set_status(current.execution_arn, status)
        self.service.handle_status(current.execution_arn, status)
        self.service.dispatch()


def test_a_queued_runs_estimate_comes_from_the_plans_finished_runs() -> None:
    world = World(resolve_settings({"plans": {"basic": {"maxConcurrentRuns": 1}}}))
    first = world.queue("t1")
    second = world.queue("t2")
    shown = world.service.get_run("t2", second.run_id)
    assert shown is not None and shown.status == RunStatus.QUEUED
    assert shown.queue_position == 1 and shown.estimated_start_at is None  # no history yet
    assert shown.waiting_for is not None and shown.waiting_for.code == WaitingCode.PLAN_CAP
    assert shown.failure_reason is None

    world.clock.advance(600)
    world.finish(first)  # 600 s: the plan's history; t2 starts now
    third = world.queue("t3")
    world.clock.advance(200)
    listed, _ = world.service.list_runs("t3")
    (queued,) = [r for r in listed if r.run_id == third.run_id]
    assert queued.waiting_for is not None and queued.waiting_for.code == WaitingCode.PLAN_CAP
    assert parse_iso(queued.estimated_start_at) == world.clock.now() + timedelta(seconds=400)
    overview = world.service.queue_overview()["basic"]["runs"]
    assert overview[0]["estimatedStartAt"] == queued.estimated_start_at
    assert overview[0]["waitingFor"]["code"] == "PLAN_CAP"
    # Nothing of it is stored: the item has no position or estimate, and no reason
    # the dispatch had to write (capacity reasons are the read model's).
    stored = world.runs.get_run("t3", third.run_id)
    assert stored is not None
    assert (stored.queue_position, stored.estimated_start_at, stored.waiting_for) == (None,) * 3


def test_durations_are_a_bounded_sample_of_succeeded_and_failed_runs_only() -> None:
    world = World(resolve_settings({"plans": {"basic": {"maxConcurrentRuns": 1}}}))
    for i in range(3 * DURATION_SAMPLES):
        current = world.queue(f"t{i}")
        world.clock.advance(100 + i)
        world.finish(current, "Failed" if i % 2 else "Succeeded")
    samples = world.runs.duration_samples(["basic"])["basic"]
    assert 0 < len(samples) <= DURATION_SAMPLES
    assert all(100 <= s < 100 + 3 * DURATION_SAMPLES for s in samples)
    stopped = world.queue("stopper")
    world.clock.advance(99_999)
    world.finish(stopped, "Stopped")
    assert 99_999 not in world.runs.duration_samples(["basic"])["basic"]
