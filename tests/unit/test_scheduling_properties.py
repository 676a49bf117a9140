"""Scheduler invariants over random interleavings (in-memory store, virtual clock).

Operations: uploads (with S3 redeliveries), dispatches, completions (with
duplicate and lost events), throttled starts, suspensions, reconciles, clock
jumps, and a *stale* scheduler that admits from an outdated snapshot after
another one already dispatched (what two concurrent Lambdas would do).
"""

from __future__ import annotations

import contextlib
from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trainyard_core.clock import VirtualClock
from trainyard_core.config import resolve_settings
from trainyard_core.models import RunStatus, TenantStatus
from trainyard_core.scheduling.policy import plan_dispatch
from trainyard_core.scheduling.service import SchedulerService
from trainyard_core.store.runs_memory import InMemoryRunRepository
from trainyard_core.store.tenants import InMemoryTenantRepository

from trainyard.testing.scheduling import FakePipeline, SchedulerCrash, make_tenant

SETTINGS = resolve_settings(
    {
        "globalMaxConcurrentRuns": 3,
        "maxStartAttempts": 3,
        "plans": {
            "basic": {"maxConcurrentRuns": 2, "maxConcurrentRunsPerTenant": 1},
            "standard": {"maxConcurrentRuns": 2, "maxConcurrentRunsPerTenant": 2},
            "premium": {"maxConcurrentRuns": 3, "maxConcurrentRunsPerTenant": 2},
        },
    }
)
TENANTS = {"b1": "basic", "b2": "basic", "s1": "standard", "p1": "premium", "p2": "premium"}
RANK = {
    RunStatus.QUEUED: 0,
    RunStatus.STARTING: 1,
    RunStatus.RUNNING: 2,
    RunStatus.SUCCEEDED: 3,
    RunStatus.FAILED: 3,
    RunStatus.STOPPED: 3,
}

tenant_ids = st.sampled_from(sorted(TENANTS))
uploads = st.tuples(st.just("upload"), tenant_ids, st.integers(0, 3), st.booleans())
operations = st.one_of(
    uploads,
    uploads,  # twice: uploads are the most common event
    st.tuples(st.just("dispatch")),
    st.tuples(
        st.just("complete"),
        st.integers(0, 5),
        st.sampled_from(["Succeeded", "Failed", "Stopped"]),
        st.booleans(),
    ),
    st.tuples(st.just("lose_event"), st.integers(0, 5)),
    st.tuples(st.just("executing"), st.integers(0, 5)),
    st.tuples(st.just("stale_admit"), tenant_ids, st.integers(0, 3)),
    st.tuples(st.just("stale_admit"), tenant_ids, st.integers(0, 3)),
    st.tuples(st.just("throttle"), st.integers(1, 4)),
    # The scheduler dies mid-dispatch: before SageMaker saw the start, or after it
    # started the execution but before the run recorded it.
    st.tuples(st.just("crash"), st.sampled_from(["before", "after"])),
    st.tuples(st.just("toggle_suspend"), tenant_ids),
    st.tuples(st.just("reconcile")),
    st.tuples(st.just("advance"), st.sampled_from([1, 30, 90, 200])),
)


class Sim:
    def __init__(self) -> None:
        self.clock = VirtualClock()
        self.runs = InMemoryRunRepository()
        self.tenants = InMemoryTenantRepository()
        for tenant_id, plan in TENANTS.items():
            self.tenants.create(make_tenant(tenant_id, plan))
        self.pipeline = FakePipeline()
        self.service = SchedulerService(
            SETTINGS, self.runs, self.tenants, self.pipeline, clock=self.clock
        )
        self.accepted: set[tuple[str, str, str]] = set()
        self.generation: Counter[tuple[str, int]] = Counter()
        self.last_status: dict[str, RunStatus] = {}

    def running(self) -> list:
        runs = [r for r in self.runs.all_runs() if r.status == RunStatus.RUNNING]
        return sorted(runs, key=lambda r: r.run_id)

    def apply(self, op: tuple) -> None:
        kind = op[0]
        if kind == "upload":
            _, tenant_id, file_no, redeliver = op
            if not redeliver:
                self.generation[(tenant_id, file_no)] += 1
            version = str(self.generation[(tenant_id, file_no)])
            tenant = self.tenants.get(tenant_id)
            assert tenant and tenant.data_bucket
            key = f"data/{file_no}.csv"
            result = self.service.handle_upload(
                tenant.data_bucket, key, etag=f"etag-{version}", size=1, version_id=version
            )
            if result.outcome in ("created", "joined"):
                ident = (tenant.data_bucket, key, version)
                assert ident not in self.accepted, "a redelivered upload was accepted twice"
                self.accepted.add(ident)
            else:
                assert result.outcome == "duplicate"
        elif kind == "dispatch":
            self.service.dispatch()
        elif kind == "crash":
            self.pipeline.crash_next = op[1]
            with contextlib.suppress(SchedulerCrash):  # the invocation died mid-dispatch
                self.service.dispatch()
            self.pipeline.crash_next = None
        elif kind in ("complete", "lose_event", "executing"):
            running = self.running()
            if not running:
                return
            run = running[op[1] % len(running)]
            assert run.execution_arn
            if kind == "executing":
                self.service.handle_status(run.execution_arn, "Executing")
                return
            status = op[2] if kind == "complete" else "Succeeded"
            self.pipeline.set_status(run.execution_arn, status)
            if kind == "complete":
                for _ in range(2 if op[3] else 1):  # maybe a duplicate delivery
                    self.service.handle_status(run.execution_arn, status)
                self.service.handle_status(run.execution_arn, "Executing")  # out of order
                self.service.dispatch()
        elif kind == "stale_admit":
            stale = plan_dispatch(SETTINGS, self.service._snapshot())
            # Meanwhile an upload arrives and another scheduler dispatches it...
            self.apply(("upload", op[1], op[2], False))
            self.service.dispatch()
            # ...then the first one acts on its outdated decision.
            for run in stale.admissions:
                self.service._admit(run, self.clock.now())
        elif kind == "throttle":
            self.pipeline.throttle_next = op[1]
        elif kind == "toggle_suspend":
            tenant = self.tenants.get(op[1])
            assert tenant
            flipped = (
                TenantStatus.ACTIVE
                if tenant.status == TenantStatus.SUSPENDED
                else TenantStatus.SUSPENDED
            )
            self.tenants.save(tenant.model_copy(update={"status": flipped}))
        elif kind == "reconcile":
            self.service.reconcile()
        elif kind == "advance":
            self.clock.advance(op[1])

    def check(self) -> None:
        runs = self.runs.all_runs()
        active = [r for r in runs if r.status.holds_slot]
        assert len(active) <= SETTINGS.global_max_concurrent_runs
        per_plan = Counter(r.plan for r in active)
        per_tenant = Counter(r.tenant_id for r in active)
        for name, plan in SETTINGS.plans.items():
            assert per_plan[name] <= plan.max_concurrent_runs
        for tenant_id, count in per_tenant.items():
            assert count <= SETTINGS.plans[TENANTS[tenant_id]].max_concurrent_runs_per_tenant
        # The transactional guard agrees with reality (no drift without crashes).
        counters = self.runs.counters()
        assert counters.global_running == len(active)
        assert {p: n for p, n in counters.plans.items() if n} == dict(per_plan)
        # Every accepted upload is in exactly one run.
        objects = Counter((o.bucket, o.key, o.version_id) for r in runs for o in r.trigger.objects)
        assert set(objects) == self.accepted
        assert all(n == 1 for n in objects.values())
        # Coalescing: at most one QUEUED run per tenant.
        queued = Counter(r.tenant_id for r in runs if r.status == RunStatus.QUEUED)
        assert all(n == 1 for n in queued.values())
        # No run started twice; every execution belongs to its run's token.
        assert len(self.pipeline.executions) == len(self.pipeline.by_token)
        for run in runs:
            if run.execution_arn:
                assert self.pipeline.by_token[run.run_id] == run.execution_arn
            # Status only moves forward; a terminal run never changes again.
            before = self.last_status.get(run.run_id)
            if before is not None:
                assert RANK[run.status] >= RANK[before]
                if before.terminal:
                    assert run.status == before
            self.last_status[run.run_id] = run.status

    def drain(self) -> None:
        """Liveness: with tenants active and SageMaker healthy, everything finishes."""
        self.pipeline.throttle_next = 0
        for tenant_id in TENANTS:
            tenant = self.tenants.get(tenant_id)
            assert tenant
            if tenant.status != TenantStatus.ACTIVE:
                self.tenants.save(tenant.model_copy(update={"status": TenantStatus.ACTIVE}))
        for _ in range(60):
            self.clock.advance(120)
            self.service.reconcile()
            for run in self.running():
                assert run.execution_arn
                self.pipeline.set_status(run.execution_arn, "Succeeded")
                self.service.handle_status(run.execution_arn, "Succeeded")
            self.check()
            if all(r.status.terminal for r in self.runs.all_runs()):
                return
        raise AssertionError("runs never drained")


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
@given(st.lists(operations, min_size=10, max_size=50))
def test_caps_uploads_and_starts_hold_under_any_interleaving(ops: list[tuple]) -> None:
    sim = Sim()
    for op in ops:
        sim.apply(op)
        sim.check()
    sim.drain()
