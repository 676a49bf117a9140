"""The benchmark's workloads: deterministic traces from a seed.

Every request carries its own pipeline duration (log-normal, median 8 min) and
whether it fails, so both policies execute exactly the same work. Plans and
caps are the shipped defaults (global 20; basic 4/1, standard 8/2, premium
12/4, weights 1/2/4) except that monthly training budgets are switched off
(a budget would make runs wait for reasons this benchmark does not measure)
and the scale scenario raises the account quota to 200, the other figure AWS
documents, with plan caps scaled to match.
"""

from __future__ import annotations

import math
import random

from trainyard_core.config import Settings, resolve_settings

from bench.model import ModelConfig
from bench.sim import Request, Scenario

PLANS = ("basic", "standard", "premium")
MEDIAN_DURATION_S = 480.0
DURATION_SIGMA = 0.5
FAILURE_RATE = 0.02
MEAN_DURATION_S = MEDIAN_DURATION_S * math.exp(DURATION_SIGMA**2 / 2)


def bench_settings(scale: int = 1) -> Settings:
    """Default plans without budgets; ``scale`` multiplies the global and plan caps."""
    base = Settings()
    return resolve_settings(
        {
            "globalMaxConcurrentRuns": base.global_max_concurrent_runs * scale,
            "plans": {
                name: {
                    "maxConcurrentRuns": plan.max_concurrent_runs * scale,
                    "monthlyTrainingHours": None,
                }
                for name, plan in base.plans.items()
            },
        }
    )


def with_borrowing(settings: Settings) -> Settings:
    """The same plans with work-conserving tenant caps: each plan lets a tenant at
    its cap borrow up to the plan cap (``maxBorrowedRunsPerTenant`` = plan cap -
    tenant cap), the loosest setting the plan validation allows."""
    raw = settings.model_dump(by_alias=True)
    for plan in raw["plans"].values():
        plan["maxBorrowedRunsPerTenant"] = (
            plan["maxConcurrentRuns"] - plan["maxConcurrentRunsPerTenant"]
        )
    return Settings.model_validate(raw)


class _Trace:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.requests: list[Request] = []

    def add(self, tenant: str, plan: str, at: float) -> None:
        self.requests.append(
            Request(
                rid=len(self.requests),
                tenant=tenant,
                plan=plan,
                at=round(at, 3),
                duration=self.rng.lognormvariate(math.log(MEDIAN_DURATION_S), DURATION_SIGMA),
                fails=self.rng.random() < FAILURE_RATE,
            )
        )

    def done(self) -> list[Request]:
        ordered = sorted(self.requests, key=lambda r: (r.at, r.rid))
        return [
            Request(i, r.tenant, r.plan, r.at, r.duration, r.fails) for i, r in enumerate(ordered)
        ]


def _tenants(per_plan: int, prefix: str = "t") -> dict[str, str]:
    return {f"{prefix}-{plan[:3]}-{i:05d}": plan for plan in PLANS for i in range(per_plan)}


def _poisson(
    trace: _Trace, tenants: dict[str, str], settings: Settings, load: float, count: int
) -> None:
    """Arrivals at ``load`` x the capacity each plan gets when all are busy."""
    caps = {n: p.max_concurrent_runs for n, p in settings.plans.items()}
    scale = min(1.0, settings.global_max_concurrent_runs / sum(caps.values()))
    cycle = MEAN_DURATION_S + ModelConfig().start_latency_s
    rates = {n: load * caps[n] * scale / cycle for n in caps}  # requests per second
    total = sum(rates.values())
    by_plan: dict[str, list[str]] = {n: [] for n in caps}
    for tenant, plan in tenants.items():
        by_plan[plan].append(tenant)
    t = 0.0
    names = list(rates)
    weights = [rates[n] for n in names]
    for _ in range(count):
        t += trace.rng.expovariate(total)
        plan = trace.rng.choices(names, weights)[0]
        trace.add(trace.rng.choice(by_plan[plan]), plan, t)


def steady(seed: int = 11, count: int = 1200) -> Scenario:
    settings = bench_settings()
    tenants = _tenants(20)
    trace = _Trace(seed)
    _poisson(trace, tenants, settings, load=0.85, count=count)
    return Scenario(
        "steady",
        f"steady: {len(tenants)} tenants, {count} requests, Poisson at 85% of capacity",
        settings,
        tenants,
        trace.done(),
        ModelConfig(quota=settings.global_max_concurrent_runs),
        seed=seed,
    )


def burst(seed: int = 12, per_plan: int = 30, each: int = 3) -> Scenario:
    settings = bench_settings()
    tenants = _tenants(per_plan)
    trace = _Trace(seed)
    for tenant, plan in tenants.items():
        for _ in range(each):
            trace.add(tenant, plan, 60.0 + trace.rng.uniform(0, 10))
    return Scenario(
        "burst",
        f"burst: {len(tenants)} tenants upload {each} each within 10 s",
        settings,
        tenants,
        trace.done(),
        ModelConfig(quota=settings.global_max_concurrent_runs),
        seed=seed,
    )


def noisy_neighbour(seed: int = 13, tenants_in_plan: int = 8, light: int = 4) -> Scenario:
    settings = bench_settings()
    plan = "standard"
    tenants = {f"nn-{i:02d}": plan for i in range(tenants_in_plan)}
    heavy = "nn-00"
    trace = _Trace(seed)
    for _ in range(50 * light):
        trace.add(heavy, plan, trace.rng.uniform(0, 60))
    for tenant in list(tenants)[1:]:
        for _ in range(light):
            trace.add(tenant, plan, trace.rng.uniform(30, 180))
    return Scenario(
        "noisy",
        f"noisy neighbour: {plan}, 1 tenant x {50 * light} requests, "
        f"{tenants_in_plan - 1} tenants x {light}",
        settings,
        tenants,
        trace.done(),
        ModelConfig(quota=settings.global_max_concurrent_runs),
        seed=seed,
        heavy_tenant=heavy,
        focus_plan=plan,
    )


def mixed_plans(seed: int = 14, per_plan: int = 8, each: int = 6) -> Scenario:
    settings = bench_settings()
    tenants = _tenants(per_plan, "mx")
    trace = _Trace(seed)
    for tenant, plan in tenants.items():
        for _ in range(each):
            trace.add(tenant, plan, trace.rng.uniform(0, 600))
    return Scenario(
        "mixed",
        f"mixed plans, global cap {settings.global_max_concurrent_runs} < sum of plan caps "
        f"{sum(p.max_concurrent_runs for p in settings.plans.values())}",
        settings,
        tenants,
        trace.done(),
        ModelConfig(quota=settings.global_max_concurrent_runs),
        seed=seed,
    )


def scale(
    seed: int = 15,
    tenants_total: int = 10_000,
    count: int = 100_000,
    window_s: float | None = 2 * 3600.0,
) -> Scenario:
    settings = bench_settings(scale=10)
    tenants = _tenants(math.ceil(tenants_total / len(PLANS)), "sc")
    tenants = dict(list(tenants.items())[:tenants_total])
    trace = _Trace(seed)
    _poisson(trace, tenants, settings, load=0.9, count=count)
    requests = trace.done()
    return Scenario(
        "scale",
        f"scale: {len(tenants):,} tenants, {count:,} requests at 90% of a 200-slot quota",
        settings,
        tenants,
        requests,
        ModelConfig(quota=settings.global_max_concurrent_runs),
        seed=seed,
        trainyard_window_s=window_s,
    )


def all_scenarios() -> list[Scenario]:
    return [steady(), burst(), noisy_neighbour(), mixed_plans(), scale()]
