"""The benchmark's baselines, the request counting and the concurrent topology."""

from __future__ import annotations

from collections import Counter

import pytest
from trainyard_core.store.runs_memory import InMemoryRunRepository

from bench.counting import RUN_COSTS, CountingProxy, Ledger
from bench.metrics import Limits, sweep
from bench.model import ModelConfig
from bench.policies import POLICIES, SeedConfig, SeedSim, _Usage, run_policy
from bench.scenarios import bench_settings, noisy_neighbour, steady
from bench.sim import Request, Scenario, TrainyardSim


def _noisy_small() -> Scenario:
    sc = noisy_neighbour(light=1)  # 50 heavy requests, 7 light
    return sc


def test_b3_never_exceeds_a_tenant_cap_and_b2_does() -> None:
    sc = _noisy_small()
    limits = Limits.trainyard(sc.settings)
    b3 = sweep(run_policy(sc, "b3"), limits, limits, sc.focus_plan)
    b2 = sweep(run_policy(sc, "b2"), limits, limits, sc.focus_plan)
    assert b3.violations == {"global": 0, "plan": 0, "tenant": 0}
    assert b2.violations["tenant"] > 0 and b2.violations["global"] == 0


def test_fair_share_serves_the_least_used_share_first_and_usage_decays() -> None:
    usage = _Usage(half_life_s=600.0)
    usage.change("heavy", 0.0, +2)
    usage.change("heavy", 600.0, -2)  # 2 slots for 600 s
    at_end = usage.get("heavy", 600.0)
    assert 0 < at_end < 1200.0  # decayed while it accrued
    assert usage.get("heavy", 1200.0) == pytest.approx(at_end / 2, rel=1e-6)  # one half-life
    # A tenant that has used nothing goes first; a running run counts as usage.
    assert usage.key("light", 1200.0) < usage.key("heavy", 1200.0)
    usage.change("light", 1200.0, +1)
    assert usage.key("light", 1200.0) > usage.key("heavy", 1200.0)  # 600 > heavy's ~420


def test_fair_share_lets_light_tenants_ahead_of_the_heavy_one() -> None:
    sc = _noisy_small()
    out = run_policy(sc, "fs")
    light_waits = [out.start[r.rid] - r.at for r in sc.requests if r.tenant != sc.heavy_tenant]
    assert max(light_waits) < 1200.0  # they do not queue behind 50 heavy runs
    b2 = run_policy(sc, "b2")
    b2_waits = [b2.start[r.rid] - r.at for r in sc.requests if r.tenant != sc.heavy_tenant]
    assert max(light_waits) < max(b2_waits)


def test_counting_proxy_counts_every_call_and_pauses_for_its_latency() -> None:
    ledger = Ledger()
    paused: list[float] = []
    runs = CountingProxy(
        InMemoryRunRepository(), ledger, "dynamodb", RUN_COSTS, 0.005, paused.append
    )
    runs.counters(["a", "b"])  # 1 Query + 1 BatchGetItem
    runs.get_run("a", "r")  # 1 GetItem
    runs.queued_runs("basic", limit=10)  # 1 Query page
    assert ledger.ops == Counter(
        {"dynamodb:Query": 2, "dynamodb:BatchGetItem": 1, "dynamodb:GetItem": 1}
    )
    assert paused == pytest.approx([0.01, 0.005, 0.005])
    assert not ledger.unmapped


def test_every_policy_counts_dynamodb_and_sagemaker_requests() -> None:
    sc = _noisy_small()
    for name in ("b1", "b1-list", "b2", "b3", "fs"):
        out = run_policy(sc, name)
        starts = out.ledger.ops["sagemaker:StartPipelineExecution"]
        assert starts == out.calls.start >= len(sc.requests)
        assert out.ledger.dynamodb > 0
    b1 = run_policy(sc, "b1").ledger.ops
    assert b1["sagemaker:DescribePipelineExecution"] > 0
    assert run_policy(sc, "b1-list").ledger.ops["sagemaker:DescribePipelineExecution"] == 0


def test_a_baselines_listing_holds_live_and_recent_runs_not_every_run_ever() -> None:
    # 300 runs over hours, at most 20 at once: a CreatedAfter-bounded listing
    # (live + ended in the last 15 min, as Trainyard's) fits on one page a tick.
    sc = steady(count=300)
    for name in ("b1-list", "b2"):
        ledger = run_policy(sc, name).ledger
        ticks = sum(1 for kind, _, _ in ledger.per_invocation if kind == "tick")
        assert 0 < ledger.ops["sagemaker:ListPipelineExecutions"] <= ticks


def _contended() -> Scenario:
    """Many tenants in every plan upload at once; the global cap (6) < the plan caps."""
    base = bench_settings()
    settings = base.model_copy(update={"global_max_concurrent_runs": 6})
    tenants = {f"c-{p[:3]}-{i}": p for p in ("basic", "standard", "premium") for i in range(8)}
    requests = [
        Request(i, t, p, at=10.0 + 0.01 * i, duration=200.0)
        for i, (t, p) in enumerate(tenants.items())
    ]
    return Scenario("contended", "contended", settings, tenants, requests, ModelConfig(quota=6))


def test_concurrent_invocations_contend_for_the_global_counter_without_violations() -> None:
    sc = _contended()
    out = TrainyardSim(sc).run()
    assert out.unstarted == 0
    assert out.max_concurrency >= 2
    assert out.admit_outcomes.get("CAP_REACHED", 0) > 0
    limits = Limits.trainyard(sc.settings)
    assert sweep(out, limits, limits, None).violations == {"global": 0, "plan": 0, "tenant": 0}
    assert not out.ledger.unmapped


def test_seed_config_labels_are_unique() -> None:
    from bench.policies import POLICIES

    assert len({c.label for c in POLICIES.values()}) == len(POLICIES)
    assert isinstance(next(iter(POLICIES.values())), SeedConfig)


def test_a_deep_inbox_drains_one_invocation_after_another_without_recursing() -> None:
    # Every slot is taken and nothing else is due: each invocation ends without
    # waiting on anything, and the next starts at once, 600 times in a row.
    sc = steady(count=6000)
    sim = SeedSim(sc, POLICIES["b2"])
    sim.cpu = []
    sim.running = {
        f"busy-{i}": ("basic", "t") for i in range(sc.settings.global_max_concurrent_runs)
    }
    sim.inbox.extend(("arrival", str(r.rid)) for r in sc.requests)
    sim._kick()
    assert not sim.inbox and not sim.busy
    assert sum(len(q) for q in sim.queues.values()) == len(sc.requests)
    assert sim.ledger.ops["dynamodb:PutItem"] == len(sc.requests)
