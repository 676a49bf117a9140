"""CPU per scheduler invocation as the backlog grows (1,000 -> 100,000 QUEUED runs).

The production ``SchedulerService`` on the in-memory stores: N tenants with one
QUEUED run each (coalescing keeps a tenant at one), the global cap full. One
invocation = what the Lambda does for a completion event: ``handle_status``
(Succeeded) then ``dispatch()`` (which admits and starts one run). Timed with
``time.process_time``; the median of ``repeats`` invocations is reported,
and one ``reconcile()`` per size.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

from trainyard_core.clock import VirtualClock
from trainyard_core.scheduling.service import SchedulerService
from trainyard_core.store.runs_memory import InMemoryRunRepository
from trainyard_core.store.tenants import InMemoryTenantRepository

from bench.scenarios import PLANS, bench_settings
from bench.sim import _QuietLogger
from trainyard.testing.scheduling import FakePipeline, make_tenant

SIZES = (1_000, 3_000, 10_000, 30_000, 100_000)


@dataclass
class CpuPoint:
    queued: int
    invocation_ms: float  # handle_status + dispatch, median
    reconcile_ms: float
    per_queued_run_us: float


def measure(queued: int, repeats: int = 3) -> CpuPoint:
    settings = bench_settings()
    runs, tenants, clock, pipeline = (
        InMemoryRunRepository(),
        InMemoryTenantRepository(),
        VirtualClock(),
        FakePipeline(),
    )
    service = SchedulerService(
        settings, runs, tenants, pipeline, clock=clock, logger=_QuietLogger()
    )
    objs = []
    # +global cap tenants: the first dispatch fills every slot, `queued` remain.
    for i in range(queued + settings.global_max_concurrent_runs):
        tenant = make_tenant(f"cpu-{i:06d}", PLANS[i % len(PLANS)])
        tenants.create(tenant)
        objs.append(tenant)
    for tenant in objs:
        # The intake path (an S3 upload), which is what builds a backlog; the API's
        # manual run would also compute the run's queue position on every call.
        assert tenant.data_bucket is not None
        service.handle_upload(tenant.data_bucket, f"{tenant.data_prefix}a.csv", "e", 1, None)
        clock.advance(0.001)
    service.dispatch()
    samples = []
    for _ in range(repeats):
        clock.advance(600)
        arn = next(a for a, ex in pipeline.executions.items() if ex.status == "Executing")
        pipeline.set_status(arn, "Succeeded")
        start = time.process_time()
        service.handle_status(arn, "Succeeded")
        service.dispatch()
        samples.append(time.process_time() - start)
    clock.advance(600)
    start = time.process_time()
    service.reconcile()
    reconcile = time.process_time() - start
    median = statistics.median(samples)
    return CpuPoint(queued, median * 1000, reconcile * 1000, median / queued * 1e6)


def cpu_curve(sizes: tuple[int, ...] = SIZES) -> list[CpuPoint]:
    return [measure(n, repeats=3 if n <= 10_000 else 2) for n in sizes]


if __name__ == "__main__":
    for point in cpu_curve():
        print(point)
