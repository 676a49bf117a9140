"""CPU and AWS requests per scheduler invocation vs backlog and vs tenants ever admitted.

In-memory stores behind the counting proxies (``bench.counting``: each port
call counted as the DynamoDB requests the DynamoDB repositories make for it).

- vs backlog: N tenants with one QUEUED run each (coalescing keeps a tenant at
  one), the global cap full. One invocation = a completion event
  (``handle_status`` Succeeded, then ``dispatch()``, which admits and starts
  one run); plus one ``reconcile()``.
- vs tenants ever admitted: 1,000 QUEUED runs, plus M tenants that have been
  admitted before (their slot counters exist, at 0), M = 100 -> 10,000.

CPU is ``time.process_time`` (median of ``repeats``); requests are exact.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Collection
from dataclasses import dataclass

from trainyard_core.clock import VirtualClock
from trainyard_core.ports.runs import Counters, tenant_counter
from trainyard_core.scheduling.service import SchedulerService
from trainyard_core.store.runs_memory import InMemoryRunRepository
from trainyard_core.store.tenants import InMemoryTenantRepository

from bench.counting import (
    PIPELINE_COSTS,
    RUN_COSTS,
    TENANT_COSTS,
    CountingProxy,
    Ledger,
)
from bench.scenarios import PLANS, bench_settings
from bench.sim import _QuietLogger
from trainyard.testing.scheduling import FakePipeline, make_tenant

SIZES = (1_000, 3_000, 10_000, 30_000, 100_000)
TENANTS_EVER = (100, 1_000, 10_000)


@dataclass
class CpuPoint:
    queued: int
    invocation_ms: float  # handle_status + dispatch, median
    reconcile_ms: float
    per_queued_run_us: float
    tenants_ever: int = 0
    dispatch_requests: float = 0.0  # DynamoDB + SageMaker, per completion + dispatch
    dispatch_get_items: float = 0.0
    reconcile_requests: float = 0.0
    reconcile_items_read: int = 0  # counter items heal_counters reads


def measure(queued: int, repeats: int = 3, tenants_ever: int = 0) -> CpuPoint:
    settings = bench_settings()
    raw_runs, raw_tenants, clock, fake = (
        InMemoryRunRepository(),
        InMemoryTenantRepository(),
        VirtualClock(),
        FakePipeline(),
    )
    ledger = Ledger()
    free = lambda _s: None  # noqa: E731 (no virtual time here: counts only)
    runs = CountingProxy(raw_runs, ledger, "dynamodb", RUN_COSTS, 0.0, free)
    tenants = CountingProxy(raw_tenants, ledger, "dynamodb", TENANT_COSTS, 0.0, free)
    pipeline = CountingProxy(fake, ledger, "sagemaker", PIPELINE_COSTS, 0.0, free)
    service = SchedulerService(
        settings,
        runs,
        tenants,
        pipeline,
        clock=clock,
        logger=_QuietLogger(),  # type: ignore[arg-type]
    )
    for i in range(tenants_ever):
        raw_runs.set_counter(tenant_counter(f"old-{i:06d}"), 0, None)
    objs = []
    # +global cap tenants: the first dispatch fills every slot, `queued` remain.
    for i in range(queued + settings.global_max_concurrent_runs):
        tenant = make_tenant(f"cpu-{i:06d}", PLANS[i % len(PLANS)])
        raw_tenants.create(tenant)
        objs.append(tenant)
    for tenant in objs:
        assert tenant.data_bucket is not None
        service.handle_upload(tenant.data_bucket, f"{tenant.data_prefix}a.csv", "e", 1, None)
        clock.advance(0.001)
    service.dispatch()
    samples, requests, gets = [], [], []
    for _ in range(repeats):
        clock.advance(600)
        arn = next(a for a, ex in fake.executions.items() if ex.status == "Executing")
        fake.set_status(arn, "Succeeded")
        before, before_get = ledger.total, ledger.ops["dynamodb:GetItem"]
        start = time.process_time()
        service.handle_status(arn, "Succeeded")
        service.dispatch()
        samples.append(time.process_time() - start)
        requests.append(ledger.total - before)
        gets.append(ledger.ops["dynamodb:GetItem"] - before_get)
    clock.advance(600)
    before = ledger.total
    read = _count_counter_reads(raw_runs)
    start = time.process_time()
    service.reconcile()
    reconcile = time.process_time() - start
    median = statistics.median(samples)
    return CpuPoint(
        queued,
        median * 1000,
        reconcile * 1000,
        median / queued * 1e6,
        tenants_ever=tenants_ever + queued + settings.global_max_concurrent_runs,
        dispatch_requests=statistics.mean(requests),
        dispatch_get_items=statistics.mean(gets),
        reconcile_requests=ledger.total - before,
        reconcile_items_read=read[0],
    )


def _count_counter_reads(runs: InMemoryRunRepository) -> list[int]:
    """Tenant counter items read from now on (the counters asked for, the slices)."""
    read = [0]
    counters, page = runs.counters, runs.tenant_counters

    def counted(tenant_ids: Collection[str] | None = None) -> Counters:
        found = counters(tenant_ids)
        read[0] += len(found.tenants)
        return found

    def counted_page(after: str | None, limit: int) -> tuple[dict[str, int], str | None]:
        values, cursor = page(after, limit)
        read[0] += len(values)
        return values, cursor

    runs.counters = counted  # type: ignore[method-assign]
    runs.tenant_counters = counted_page  # type: ignore[method-assign]
    return read


def cpu_curve(sizes: tuple[int, ...] = SIZES) -> list[CpuPoint]:
    return [measure(n, repeats=3 if n <= 10_000 else 2) for n in sizes]


def tenants_curve(counts: tuple[int, ...] = TENANTS_EVER, queued: int = 1_000) -> list[CpuPoint]:
    return [measure(queued, repeats=2, tenants_ever=m) for m in counts]


if __name__ == "__main__":
    for point in cpu_curve() + tenants_curve():
        print(point)
