"""`make bench`: the scheduler simulation, the CPU curve and the local-stack run.

Prints a table and writes ``bench/results.md`` and PNG plots into ``bench/``.

    .venv/bin/python -m bench.run                 # everything (a few minutes)
    .venv/bin/python -m bench.run --skip-local    # simulation + CPU curve only
    .venv/bin/python -m bench.run --quick         # small CPU curve, no local stack
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

from bench import scenarios
from bench.cpu import SIZES, CpuPoint, cpu_curve
from bench.local_stack import LocalStackResult, format_result, run_local_stack
from bench.metrics import Limits, Summary, dispatch_delays, percentile, summarise
from bench.sim import Outcome, Scenario, run_baseline, run_trainyard

OUT = Path(__file__).resolve().parent

TARGETS = [
    "dispatch delay p99 >= 20x lower than the baseline",
    "utilisation while backlogged >= 99% of what the caps allow",
    "Jain's index >= 0.95 in the noisy-neighbour case",
    "zero limit violations",
    "AWS API calls per dispatched run <= 4",
    "scheduler CPU per invocation flat from 1,000 to 100,000 queued runs",
]


# "Flat" CPU: a 100x larger backlog may cost at most this factor per invocation.
FLAT_CPU_FACTOR = 3.0


def verdicts(rows: list[Summary], points: list[CpuPoint]) -> list[str]:
    """Each target with the measured figure and MET / MISSED (reported, not asserted)."""
    ours = {r.scenario: r for r in rows if r.policy == "trainyard"}
    base = {r.scenario: r for r in rows if r.policy == "baseline"}
    ratios = {n: base[n].delay_p99 / ours[n].delay_p99 for n in ours if n in base}
    util = min(r.utilisation for r in ours.values())
    noisy = ours["noisy"].jain_fair if "noisy" in ours else math.nan
    noisy_raw = ours["noisy"].jain if "noisy" in ours else math.nan
    violations = sum(sum(r.violations.values()) for r in ours.values())
    api = {n: r.api_per_run for n, r in ours.items()}
    growth = points[-1].invocation_ms / points[0].invocation_ms if len(points) > 1 else math.nan

    def line(met: bool, target: str, figure: str) -> str:
        return f"- **{'MET' if met else 'MISSED'}** {target}: {figure}"

    return [
        line(
            all(v >= 20 for v in ratios.values()),
            TARGETS[0],
            ", ".join(f"{n} {v:.0f}x" for n, v in ratios.items()),
        ),
        line(util >= 0.99, TARGETS[1], f"lowest {util:.1%}"),
        line(
            noisy >= 0.95,
            TARGETS[2],
            f"{noisy:.2f} normalised to the max-min fair share, {noisy_raw:.2f} on raw rates "
            "(see docs/benchmarks.md, findings)",
        ),
        line(violations == 0, TARGETS[3], f"{violations} starts above a cap"),
        line(
            all(v <= 4 for v in api.values()),
            TARGETS[4],
            ", ".join(f"{n} {v:.2f}" for n, v in api.items()),
        ),
        line(
            growth <= FLAT_CPU_FACTOR,
            TARGETS[5],
            f"{points[0].invocation_ms:.1f} ms at {points[0].queued:,} -> "
            f"{points[-1].invocation_ms:.1f} ms at {points[-1].queued:,} "
            f"(x{growth:.1f}; flat = under x{FLAT_CPU_FACTOR:g})",
        ),
    ]


def _f(value: float, digits: int = 1) -> str:
    return (
        "-"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else (f"{value:,.{digits}f}")
    )


def table(rows: list[Summary]) -> str:
    head = (
        "| scenario | policy | requests | runs | delay p50 s | p99 s | max s | util. | "
        "Jain fair-share / raw | worst tenant mean wait s | violations g/p/t | API calls/run | "
        "throttled/refused starts | CPU/invocation p50/p99 ms |"
    )
    lines = [head, "|" + "---|" * 14]
    for s in rows:
        v = s.violations
        lines.append(
            f"| {s.scenario} | {s.policy} | {s.requests:,} | {s.runs:,} | {_f(s.delay_p50)} | "
            f"{_f(s.delay_p99)} | {_f(s.delay_max)} | {_f(100 * s.utilisation)}% | "
            f"{_f(s.jain_fair, 2)} / {_f(s.jain, 2)} | {_f(s.worst_wait, 0)} | "
            f"{v['global']}/{v['plan']}/{v['tenant']} | "
            f"{_f(s.api_per_run, 2)} | {s.starts_throttled}/{s.starts_refused} | "
            + (
                f"{_f(s.cpu_p50_ms, 2)}/{_f(s.cpu_p99_ms, 2)} |"
                if s.policy != "baseline"
                else "- |"
            )
        )
    return "\n".join(lines)


def cpu_table(points: list[CpuPoint]) -> str:
    lines = [
        "| QUEUED runs | CPU per invocation (status + dispatch) ms | per queued run µs | "
        "reconcile ms |",
        "|---|---|---|---|",
    ]
    for p in points:
        lines.append(
            f"| {p.queued:,} | {_f(p.invocation_ms)} | {_f(p.per_queued_run_us)} | "
            f"{_f(p.reconcile_ms)} |"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- plots


def plot_delay_cdfs(pairs: list[tuple[Scenario, Outcome, Outcome]], path: Path) -> None:
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.2 * len(pairs), 3.8), sharey=True)
    for ax, (sc, base, ty) in zip(axes, pairs, strict=True):
        for out, limits, colour in (
            (base, Limits.baseline(sc.settings, sc.model.quota), "tab:red"),
            (ty, Limits.trainyard(sc.settings), "tab:blue"),
        ):
            delays = sorted(max(d, 0.01) for d in dispatch_delays(out, limits))
            ys = [(i + 1) / len(delays) for i in range(len(delays))]
            ax.step(delays, ys, where="post", color=colour, label=out.policy)
        ax.set_xscale("log")
        ax.set_xlim(0.1, 2000)
        ax.set_title(sc.name)
        ax.set_xlabel("dispatch delay (s, log)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("fraction of runs")
    axes[0].legend(loc="upper left")
    fig.suptitle("Dispatch delay CDF: event-driven Trainyard vs one-minute polling baseline")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _running_series(out: Outcome, tenants: list[str]) -> tuple[list[float], dict[str, list[int]]]:
    events: list[tuple[float, int, str]] = []
    for req in out.requests:
        if req.tenant in tenants and req.rid in out.start:
            events.append((out.start[req.rid], 1, req.tenant))
            events.append((out.end.get(req.rid, math.inf), -1, req.tenant))
    events.sort()
    end = max((t for t, _, _ in events if t != math.inf), default=0.0)
    grid = [i * 60.0 for i in range(int(end // 60) + 2)]
    series: dict[str, list[int]] = {t: [] for t in tenants}
    running: dict[str, int] = defaultdict(int)
    i = 0
    for t in grid:
        while i < len(events) and events[i][0] <= t:
            running[events[i][2]] += events[i][1]
            i += 1
        for tenant in tenants:
            series[tenant].append(running[tenant])
    return [t / 60 for t in grid], series


def plot_noisy(sc: Scenario, base: Outcome, ty: Outcome, path: Path) -> None:
    tenants = sorted(sc.tenants)
    fig, axes = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True, sharey=True)
    for ax, out in zip(axes, (base, ty), strict=True):
        minutes, series = _running_series(out, tenants)
        others = [t for t in tenants if t != sc.heavy_tenant]
        ax.stackplot(
            minutes,
            [series[sc.heavy_tenant or tenants[0]]] + [series[t] for t in others],
            labels=[f"{sc.heavy_tenant} (50x requests)"] + others,
            colors=["tab:red"] + [plt.cm.Set2(i % 8) for i in range(len(others))],
        )
        ax.set_title(f"{out.policy}: executions held per tenant (plan cap 8, tenant cap 2)")
        ax.set_ylabel("running executions")
        ax.grid(True, alpha=0.3)
    axes[1].set_xlabel("minutes")
    axes[1].set_xlim(0, 120)
    axes[0].legend(loc="upper right", fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_cpu(points: list[CpuPoint], in_sim: list[tuple[int, float]], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    if in_sim:
        xs = [max(b, 0.8) for b, _ in in_sim]
        ax.scatter(
            xs,
            [c for _, c in in_sim],
            s=4,
            alpha=0.25,
            color="tab:gray",
            label="simulation invocations (QUEUED runs at the time)",
        )
    ax.plot(
        [p.queued for p in points],
        [p.invocation_ms for p in points],
        "o-",
        color="tab:blue",
        label="status event + dispatch (median)",
    )
    ax.plot(
        [p.queued for p in points],
        [p.reconcile_ms for p in points],
        "s--",
        color="tab:orange",
        label="reconcile",
    )
    if points:
        ref = points[0]
        ax.plot(
            [p.queued for p in points],
            [ref.invocation_ms] * len(points),
            ":",
            color="tab:green",
            label="flat (the target)",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("QUEUED runs in the store")
    ax.set_ylabel("CPU per invocation (ms, process_time)")
    ax.set_title("Scheduler CPU per invocation vs backlog (in-memory stores)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Trainyard benchmarks")
    parser.add_argument("--skip-local", action="store_true", help="skip the local-stack run")
    parser.add_argument("--quick", action="store_true", help="small CPU curve, no local stack")
    parser.add_argument("--tenants", type=int, default=6, help="local stack: tenants")
    parser.add_argument("--uploads", type=int, default=12, help="local stack: uploads")
    args = parser.parse_args(argv)
    began = time.perf_counter()

    rows: list[Summary] = []
    pairs: list[tuple[Scenario, Outcome, Outcome]] = []
    notes: list[str] = []
    in_sim_cpu: list[tuple[int, float]] = []
    for sc in scenarios.all_scenarios():
        t = time.perf_counter()
        base = run_baseline(sc)
        ty = run_trainyard(sc)
        pairs.append((sc, base, ty))
        for out in (base, ty):
            rows.append(summarise(out, sc.settings, sc.model.quota, sc.focus_plan, sc.heavy_tenant))
        in_sim_cpu += [(b, c * 1000) for _, b, c in ty.invocations]
        print(f"{sc.title}: simulated in {time.perf_counter() - t:.1f} s", flush=True)
        if sc.trainyard_window_s is not None:
            full = run_baseline(sc, window_only=False)
            s = summarise(full, sc.settings, sc.model.quota)
            rows.append(s)
            s.scenario = "scale (full trace)"
            cpu = [c for _, _, c in ty.invocations] + [c for _, c in ty.reconcile_cpu]
            per_request = sum(cpu) / max(1, len(ty.requests))
            notes.append(
                f"Scale: Trainyard simulated on the first {sc.trainyard_window_s / 3600:.0f} h "
                f"of arrivals ({len(ty.requests):,} of {len(sc.requests):,} requests, "
                f"{len(ty.invocations):,} invocations, {sum(cpu):.1f} s CPU in the scheduler, "
                f"{ty.wall_seconds:.1f} s wall); the baseline on the same window and on the "
                f"full trace ({len(sc.requests):,} requests over "
                f"{sc.requests[-1].at / 3600:.0f} h). At the measured "
                f"{per_request * 1000:.1f} ms of scheduler CPU per request, the full trace "
                f"would need about {per_request * len(sc.requests) / 60:.0f} CPU-minutes "
                "(more, as the in-memory store grows: it scans every stored run)."
            )

    # Coalescing effect: the burst again, as S3 uploads that Trainyard may coalesce.
    sc = scenarios.burst()
    coalesced = run_trainyard(sc, mode="upload")
    paced = next(ty for s, _, ty in pairs if s.name == "burst")
    waits = {
        label: [o.start[r.rid] - r.at for r in o.requests if r.rid in o.start]
        for label, o in (("paced", paced), ("coalesced", coalesced))
    }
    coalescing = (
        f"Coalescing (burst scenario, {len(sc.requests)} requests as S3 uploads with distinct "
        f"keys): {coalesced.runs_started} runs instead of {paced.runs_started}; request -> "
        f"start of the run that includes it p50 {_f(percentile(waits['coalesced'], 50))} s / "
        f"p99 {_f(percentile(waits['coalesced'], 99))} s (one run per request: "
        f"p50 {_f(percentile(waits['paced'], 50))} s / p99 {_f(percentile(waits['paced'], 99))} s);"
        f" last run ended at {max(coalesced.end.values()) / 60:.0f} min instead of "
        f"{max(paced.end.values()) / 60:.0f} min."
    )

    print("CPU per invocation vs backlog ...", flush=True)
    points = cpu_curve(SIZES[:3] if args.quick else SIZES)

    local: LocalStackResult | None = None
    if not (args.skip_local or args.quick):
        print("local stack ...", flush=True)
        local = run_local_stack(args.tenants, args.uploads)

    plot_delay_cdfs(pairs, OUT / "dispatch_delay_cdf.png")
    noisy = next(p for p in pairs if p[0].name == "noisy")
    plot_noisy(*noisy, OUT / "noisy_neighbour_service.png")
    plot_cpu(points, in_sim_cpu, OUT / "cpu_per_invocation.png")

    sim_table = table(rows)
    report = [
        "# Trainyard benchmark results",
        "",
        "Generated by `python -m bench.run` (method: `docs/benchmarks.md`). "
        "Requests are distinct training requests: Trainyard gets each as its own manual "
        "run (paced, nothing coalesces), the baseline as its own upload message.",
        "",
        "## Scheduler vs timer-polling baseline (simulation, virtual time)",
        "",
        sim_table,
        "",
        *[f"- {n}" for n in notes],
        f"- {coalescing}",
        "- violations g/p/t: starts above Trainyard's global/plan/tenant caps; the baseline "
        "has no tenant cap, so its tenant column counts how often it broke the plan's promise.",
        "- delay: from the moment a request could start (arrived, and a slot it may use free) "
        "to its start; util.: running executions / what the policy's caps allow given who waits.",
        "- Jain: over tenants of a plan backlogged at least 5 min; fair-share = each tenant's "
        "slot-seconds while backlogged over its max-min fair share of what its plan ran "
        "(Jain, Chiu & Hawe's x = T/O for unequal fair allocations; a tenant alone at its "
        "tenant cap is served fairly), raw = the slot-seconds per backlogged second.",
        "",
        "## CPU per scheduler invocation vs backlog",
        "",
        cpu_table(points),
        "",
        "## Local embedded stack (wall clock)",
        "",
        "```",
        format_result(local) if local else "skipped",
        "```",
        "",
        "## Targets (reported, not asserted)",
        "",
        *verdicts(rows, points),
        "",
        "Plots: `dispatch_delay_cdf.png`, `noisy_neighbour_service.png`, `cpu_per_invocation.png`.",
        "",
        f"Total benchmark wall time: {time.perf_counter() - began:.0f} s.",
        "",
    ]
    (OUT / "results.md").write_text("\n".join(report), encoding="utf-8")
    print()
    print(sim_table)
    for n in notes:
        print("-", n)
    print("-", coalescing)
    print()
    print(cpu_table(points))
    if local:
        print()
        print(format_result(local))
    print()
    for v in verdicts(rows, points):
        print(v)
    print(f"\nwrote {OUT / 'results.md'} and 3 PNGs in {time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
