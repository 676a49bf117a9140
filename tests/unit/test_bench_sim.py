"""The benchmark's simulation bookkeeping and metrics (tiny scenario, both policies)."""

from __future__ import annotations

import math

import pytest

from bench.metrics import (
    Limits,
    dispatch_delays,
    jain,
    max_min_fair,
    percentile,
    summarise,
    sweep,
)
from bench.model import ApiCalls, ModelConfig
from bench.scenarios import bench_settings
from bench.sim import Outcome, Request, Scenario, run_baseline, run_trainyard


def _tiny() -> Scenario:
    settings = bench_settings()
    tenants = {"tiny-a": "basic", "tiny-b": "basic", "tiny-c": "premium", "tiny-d": "standard"}
    requests = []
    for i in range(24):
        tenant = list(tenants)[i % 4]
        requests.append(Request(i, tenant, tenants[tenant], at=5.0 * i, duration=300.0 + i))
    return Scenario("tiny", "tiny", settings, tenants, requests, ModelConfig(quota=20))


@pytest.mark.parametrize("policy", ["b1", "b1-list", "b2", "b3", "fs", "trainyard"])
def test_every_request_starts_exactly_once_and_ends(policy: str) -> None:
    sc = _tiny()
    out = run_baseline(sc, policy=policy) if policy != "trainyard" else run_trainyard(sc)
    assert out.unstarted == 0
    assert len(out.start) == len(out.end) == len(sc.requests)
    # One execution per request: nothing coalesced, nothing started twice.
    assert out.runs_started == len(sc.requests)
    assert len(set(out.run_of.values())) == len(sc.requests)
    assert out.calls.start - out.calls.start_throttled - out.calls.start_refused == len(sc.requests)
    for req in sc.requests:
        assert req.at <= out.start[req.rid] < out.end[req.rid]


def test_trainyard_never_exceeds_a_cap_and_beats_the_poller() -> None:
    sc = _tiny()
    ty = summarise(run_trainyard(sc), sc.settings, sc.model.quota)
    base = summarise(run_baseline(sc), sc.settings, sc.model.quota)
    assert ty.violations == {"global": 0, "plan": 0, "tenant": 0}
    assert ty.delay_p99 < base.delay_p99
    assert ty.invocations > 0 and ty.cpu_p50_ms >= 0


def test_coalescing_mode_maps_every_request_to_a_run() -> None:
    sc = _tiny()
    out = run_trainyard(sc, mode="upload")
    assert len(out.run_of) == len(sc.requests)
    assert out.runs_started <= len(sc.requests)


def _outcome(rows: list[tuple[str, str, float, float, float]]) -> Outcome:
    """(tenant, plan, arrival, start, end) -> an Outcome, one execution each."""
    requests = [Request(i, t, p, a, e - s) for i, (t, p, a, s, e) in enumerate(rows)]
    return Outcome(
        policy="hand",
        scenario="hand",
        requests=requests,
        start={i: r[3] for i, r in enumerate(rows)},
        end={i: r[4] for i, r in enumerate(rows)},
        run_of={i: f"run-{i}" for i in range(len(rows))},
        executions=[(t, p, s, e) for t, p, _, s, e in rows],
        calls=ApiCalls(start=len(rows)),
    )


def test_dispatch_delay_counts_from_the_slot_becoming_free() -> None:
    limits = Limits(global_cap=1, plan_caps={"basic": 1}, tenant_caps={"basic": 1})
    out = _outcome(
        [
            ("a", "basic", 0.0, 2.0, 100.0),  # free slot at arrival: delay 2
            ("b", "basic", 10.0, 130.0, 200.0),  # slot freed at 100: delay 30
            ("a", "basic", 150.0, 201.0, 300.0),  # freed at 200: delay 1
        ]
    )
    assert dispatch_delays(out, limits) == pytest.approx([2.0, 30.0, 1.0])


def test_dispatch_delay_counts_from_the_request_reaching_the_queue_for_every_policy() -> None:
    limits = Limits(global_cap=1, plan_caps={"basic": 1}, tenant_caps={"basic": 1})
    rows = [
        ("a", "basic", 0.0, 4.5, 100.0),  # slot free, reached the queue at 4: 0.5
        ("b", "basic", 10.0, 100.5, 200.0),  # queued behind "a": slot freed at 100, 0.5
    ]
    out = _outcome(rows)
    out.delivered = {0: 4.0, 1: 12.0}
    # The S3 path (4 s) would be in the first figure only, because its slot was free.
    assert dispatch_delays(out, limits) == pytest.approx([0.5, 0.5])
    assert dispatch_delays(out, limits, since="request") == pytest.approx([4.5, 0.5])
    for policy in ("trainyard", "b2"):
        tiny = _tiny()
        run = run_trainyard(tiny) if policy == "trainyard" else run_baseline(tiny, policy="b2")
        assert set(run.delivered) == {r.rid for r in tiny.requests}
        assert all(run.delivered[r.rid] > r.at for r in tiny.requests)


def test_sweep_utilisation_violations_and_jain_on_a_hand_made_trace() -> None:
    limits = Limits(global_cap=2, plan_caps={"basic": 2}, tenant_caps={"basic": 1})
    out = _outcome(
        [
            ("a", "basic", 0.0, 0.0, 100.0),
            ("b", "basic", 0.0, 50.0, 150.0),  # waits 50 s while one slot idles
            ("a", "basic", 0.0, 100.0, 200.0),
            ("a", "basic", 0.0, 100.0, 200.0),  # second run of "a": over its cap of 1
        ]
    )
    sw = sweep(out, limits, limits, focus_plan="basic", min_backlogged_s=0.0)
    # Waiting during [0, 100): attainable 2; running 1 for 50 s then 2 for 50 s.
    assert sw.utilisation == pytest.approx(150.0 / 200.0)
    assert sw.backlogged_seconds == pytest.approx(100.0)
    assert sw.violations == {"global": 1, "plan": 1, "tenant": 1}
    # a: backlogged 100 s holding 1 slot -> rate 1; b: 50 s holding 0 -> rate 0.
    assert sw.jain_mean == pytest.approx(jain([1.0, 0.0]))


def test_fair_share_jain_does_not_count_a_tenant_alone_at_its_cap_as_over_served() -> None:
    limits = Limits(global_cap=3, plan_caps={"basic": 3}, tenant_caps={"basic": 2})
    out = _outcome(
        [
            ("a", "basic", 0.0, 0.0, 1000.0),
            ("a", "basic", 0.0, 0.0, 1000.0),
            ("a", "basic", 0.0, 1000.0, 2000.0),  # a waits [0, 1000) holding its cap of 2
            ("b", "basic", 500.0, 500.0, 1500.0),
            ("b", "basic", 500.0, 1000.0, 2000.0),  # b waits [500, 1000) holding 1
        ]
    )
    sw = sweep(out, limits, limits, focus_plan="basic", min_backlogged_s=0.0)
    # Raw rates: a 2 slots, b 1 slot -> a looks over-served.
    assert sw.jain_mean == pytest.approx(jain([2.0, 1.0]))
    # Fair share: a alone is owed its cap (2 x 500 s), then 1.5 each of the plan's 3
    # running slots (500 s): a got 2000 of 1750, b 500 of 750.
    assert sw.jain_fair_mean == pytest.approx(jain([2000.0 / 1750.0, 500.0 / 750.0]))
    assert sw.jain_fair_mean > sw.jain_mean


def test_max_min_fair_share_fills_small_demands_first() -> None:
    assert max_min_fair(5, {"a": 1, "b": 3, "c": 3}) == {"a": 1, "b": 2, "c": 2}
    assert max_min_fair(10, {"a": 1, "b": 2}) == {"a": 1, "b": 2}
    assert max_min_fair(0, {"a": 1}) == {"a": 0}


def test_jain_index_formula() -> None:
    assert jain([1, 1, 1, 1]) == pytest.approx(1.0)
    assert jain([1, 0, 0, 0]) == pytest.approx(0.25)
    assert jain([2, 1]) == pytest.approx(9 / 10)
    assert math.isnan(jain([0, 0]))


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert math.isnan(percentile([], 50))


def test_the_report_marks_each_target_met_or_missed_from_the_figures() -> None:
    from bench.cpu import CpuPoint
    from bench.run import verdicts

    sc = _tiny()
    rows = [
        summarise(run_baseline(sc, policy="b2"), sc.settings, 20),
        summarise(run_trainyard(sc), sc.settings, 20),
    ]
    for row in rows:
        row.scenario = "steady"
    flat = [
        CpuPoint(1_000, 10.0, 1.0, 10.0, 1_020, 300.0),
        CpuPoint(100_000, 20.0, 5.0, 0.2, 100_020, 310.0),
    ]
    steep = [
        CpuPoint(1_000, 10.0, 1.0, 10.0, 1_020, 30.0),
        CpuPoint(100_000, 9.0, 5.0, 9.0, 100_020, 300.0),
    ]
    met = verdicts(rows, flat, flat, 60.0)
    assert met[0].startswith("- **MET**") and "x1.03" in met[0]
    assert verdicts(rows, steep, steep, 60.0)[0].startswith("- **MISSED**")
    assert any(v.startswith("- **MET** zero cap violations") for v in met)
    rows[1].violations = {"global": 1, "plan": 0, "tenant": 0}
    assert any(
        v.startswith("- **MISSED** zero cap violations") for v in verdicts(rows, flat, flat, 60.0)
    )


def test_a_verdict_that_needs_a_cell_not_run_says_incomplete() -> None:
    from bench.cpu import CpuPoint
    from bench.run import verdicts

    sc = _tiny()
    rows = [
        summarise(run_baseline(sc, policy="b2"), sc.settings, 20),
        summarise(run_trainyard(sc), sc.settings, 20),
    ]
    for row in rows:
        row.scenario = "steady"
    flat = [CpuPoint(1_000, 10.0, 1.0, 10.0, 1_020, 300.0)] * 2
    out = verdicts(rows, flat, flat, 60.0, rows, seeds=10, jobs_total=600)
    p99 = next(v for v in out if "dispatch delay p99" in v)
    assert p99.startswith("- **INCOMPLETE**") and "not run: burst, noisy, mixed, scale" in p99
    assert "[1 of 10 seeds]" in p99
    bench = next(v for v in out if "`make bench`" in v)
    assert bench.startswith("- **INCOMPLETE**") and "2 of 600 cells" in bench
    # Every cell there: read from CPU.
    assert verdicts(rows, flat, flat, 4000.0, rows, jobs_total=2)[-1].startswith("- **MET**")
