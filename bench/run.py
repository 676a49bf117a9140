"""`make bench`: every policy on every scenario over seeds, the event-latency and
batching-window sweeps, the full 100,000-request scale trace, AWS requests vs
backlog and tenants, the local stack; targets reported.

Prints a table and writes ``bench/results.md`` and PNG plots into ``bench/``.

    .venv/bin/python -m bench.run                 # everything: 10 seeds, full trace, 2 jobs
    .venv/bin/python -m bench.run --quick         # 3 seeds, scale sampled to 1 h, no full
                                                  #   trace, no local stack
    .venv/bin/python -m bench.run --no-full-trace # skip the full traces (~8 CPU-min Trainyard)
    .venv/bin/python -m bench.run --jobs 1        # one process
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

from bench import scenarios
from bench.cpu import SIZES, TENANTS_EVER, CpuPoint, cpu_curve, tenants_curve
from bench.metrics import Summary, mean_ci, summarise
from bench.policies import POLICIES, run_policy
from bench.sim import INTAKE_WINDOW_S, STATUS_WINDOW_S, Scenario, _window, run_trainyard

OUT = Path(__file__).resolve().parent
POLICY_ORDER = ["b1", "b1-list", "b2", "b3", "fs", "trainyard", "trainyard-borrow"]
LABEL = {
    **{k: c.label for k, c in POLICIES.items()},
    "trainyard": "Trainyard",
    "trainyard-borrow": "Trainyard + borrowing (cap + borrow = plan cap)",
}
SWEEP_FACTORS = (1.0, 2.5, 5.0, 10.0)  # x the published event-path tails (p99 ~0.5 s -> ~4.9 s)
SWEEP_POLICIES = ("b2", "b3", "trainyard")
# Batching windows (intake, status) s swept beside the deployed ones (wiring.py).
WINDOW_SWEEP = ((1.0, 0.0), (2.0, 0.0), (0.0, 1.0), (1.0, 1.0))  # 1 / 1: the old setting
WINDOW_SCENARIOS = ("steady", "burst", "noisy", "mixed")

TARGETS = [
    "DynamoDB + SageMaker requests per dispatch within 1.5x from 1,000 to 100,000 queued "
    "and from 100 to 10,000 tenants ever admitted",
    "dispatch delay p99 no worse than B2's in every scenario under published latencies "
    "(95% intervals overlap or Trainyard's is lower)",
    "noisy neighbour: Jain >= 0.95 at the lower end of its 95% interval, and at least B3's",
    "noisy neighbour: absolute plan utilisation while work waits >= 90%",
    "noisy neighbour: heavy tenant's makespan within 1.5x of the work-conserving optimum",
    "zero cap violations with concurrent invocations",
    "`make bench` under 30 minutes on 2 cores",
]


def _factories(quick: bool) -> dict[str, Callable[[int], Scenario]]:
    return {
        "steady": lambda s: scenarios.steady(seed=11 + 100 * s, count=600 if quick else 1200),
        "burst": lambda s: scenarios.burst(seed=12 + 100 * s),
        "noisy": lambda s: scenarios.noisy_neighbour(seed=13 + 100 * s),
        "mixed": lambda s: scenarios.mixed_plans(seed=14 + 100 * s),
        "scale": lambda s: scenarios.scale(seed=15 + 100 * s, window_s=3600.0 if quick else 7200.0),
    }


def _with_event_factor(sc: Scenario, factor: float) -> Scenario:
    m = sc.model
    model = dataclasses.replace(
        m,
        event_delay_min_s=m.event_delay_min_s * factor,
        event_delay_mean_s=m.event_delay_mean_s * factor,
        sqs_delay_min_s=m.sqs_delay_min_s * factor,
        sqs_delay_mean_s=m.sqs_delay_mean_s * factor,
    )
    return dataclasses.replace(sc, model=model)


Job = tuple[str, int, str, bool, float, bool, tuple[float, float] | None]


def run_cell(job: Job) -> Summary:
    """One (scenario, seed, policy) simulation -> its Summary (picklable, for a pool).

    ``windows``: (intake, status) batching windows for Trainyard, None = deployed."""
    name, seed, policy, quick, factor, full, windows = job
    cpu = time.process_time()
    sc = _with_event_factor(_factories(quick)[name](seed), factor)
    if policy == "trainyard-borrow":
        sc = dataclasses.replace(sc, settings=scenarios.with_borrowing(sc.settings))
    if policy.startswith("trainyard"):
        intake, status = windows or (INTAKE_WINDOW_S, STATUS_WINDOW_S)
        out = run_trainyard(sc, full=full, intake_window_s=intake, status_window_s=status)
        out.policy = policy
    else:
        out = run_policy(sc, policy, requests=sc.requests if full else _window(sc))
    s = summarise(out, sc.settings, sc.model.quota, sc.focus_plan, sc.heavy_tenant)
    s.scenario = name + (" (full trace)" if full else "") + (f" x{factor:g}" if factor != 1 else "")
    if windows is not None:
        s.scenario += f" w{windows[0]:g}/{windows[1]:g}"
    s.seed = seed
    s.wall_seconds = out.wall_seconds
    s.cell_cpu_s = time.process_time() - cpu
    return s


def _key(job: Job) -> str:
    return json.dumps(job)


def _missing_summary(missing: list[Job]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for name, _seed, policy, _q, factor, full, windows in missing:
        what = name + (" full trace" if full else "") + (f" x{factor:g}" if factor != 1 else "")
        what += f" w{windows[0]:g}/{windows[1]:g}" if windows else ""
        counts[f"{what} {LABEL.get(policy, policy)}"] += 1
    return dict(counts)


def _run_all(
    jobs: list[Job], workers: int, cache: Path | None = None, run_missing: bool = True
) -> tuple[list[Summary], list[Job]]:
    """Every finished job's Summary, in job order, and the jobs not run. With
    ``cache`` (a JSON-lines file), each finished cell is appended as it completes
    and cells already there are not run again: an interrupted run resumes where
    it stopped."""
    done: dict[str, Summary] = {}
    if cache is not None and cache.exists():
        for line in cache.read_text(encoding="utf-8").splitlines():
            if line.strip():
                entry = json.loads(line)
                done[entry["job"]] = Summary(**entry["summary"])
    todo = [j for j in jobs if _key(j) not in done] if run_missing else []
    if done:
        print(f"{sum(_key(j) in done for j in jobs)} cells from {cache}", flush=True)

    def keep(job: Job, summary: Summary) -> None:
        done[_key(job)] = summary
        if cache is not None:
            entry = {"job": _key(job), "summary": dataclasses.asdict(summary)}
            with cache.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(entry) + "\n")

    if workers <= 1:
        for job in todo:
            keep(job, run_cell(job))
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            # Submitted in order, so the longest job (first) starts at once.
            futures = {pool.submit(run_cell, job): job for job in todo}
            for future in as_completed(futures):
                keep(futures[future], future.result())
    return [done[_key(j)] for j in jobs if _key(j) in done], [
        j for j in jobs if _key(j) not in done
    ]


# --------------------------------------------------------------------------- aggregation


def _ci(rows: list[Summary], attr: str) -> tuple[float, float, int]:
    return mean_ci(getattr(r, attr) for r in rows)


def _fmt(ci: tuple[float, float, int], digits: int = 1, pct: bool = False) -> str:
    mean, half, _ = ci
    if math.isnan(mean):
        return "-"
    k = 100.0 if pct else 1.0
    suffix = "%" if pct else ""
    if math.isnan(half):
        return f"{mean * k:,.{digits}f}{suffix}"
    return f"{mean * k:,.{digits}f} ± {half * k:,.{digits}f}{suffix}"


def group(rows: list[Summary]) -> dict[tuple[str, str], list[Summary]]:
    out: dict[tuple[str, str], list[Summary]] = defaultdict(list)
    for r in rows:
        out[(r.scenario, r.policy)].append(r)
    return out


COLUMNS = [
    ("delay p50 s", "delay_p50", 2, False),
    ("delay p99 s", "delay_p99", 2, False),
    ("p99 from request s", "delay_p99_request", 1, False),
    ("own-cap util.", "utilisation", 1, True),
    ("plan util. (abs)", "plan_util_abs", 1, True),
    ("global util. (abs)", "global_util_abs", 1, True),
    ("makespan h", "makespan_h", 2, False),
    ("Jain fair-share", "jain_fair", 2, False),
    ("worst tenant mean wait s", "worst_wait", 0, False),
    ("DynamoDB/run", "ddb_per_run", 1, False),
    ("SageMaker/run", "sm_per_run", 2, False),
    ("requests/invocation", "req_per_invocation", 1, False),
]


def table(rows: list[Summary]) -> str:
    head = "| scenario | policy | seeds | " + " | ".join(c[0] for c in COLUMNS)
    head += " | violations g/p/t | CAP_REACHED / admits |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 5)]
    for (scenario, policy), rs in group(rows).items():
        for r in rs:
            r.makespan_h = r.makespan_s / 3600.0  # type: ignore[attr-defined]
        cells = [_fmt(_ci(rs, a), d, p) for _, a, d, p in COLUMNS]
        v = {k: sum(r.violations[k] for r in rs) for k in ("global", "plan", "tenant")}
        cap = sum(r.cap_reached for r in rs)
        adm = sum(r.admitted for r in rs)
        lines.append(
            f"| {scenario} | {LABEL.get(policy, policy)} | {len(rs)} | "
            + " | ".join(cells)
            + f" | {v['global']}/{v['plan']}/{v['tenant']} | "
            + (f"{cap} / {adm} |" if policy.startswith("trainyard") else "- |")
        )
    return "\n".join(lines)


def window_table(rows: list[Summary]) -> str:
    """p99 (and requests per invocation) per batching-window pair and scenario, B2 beside."""
    g = group(rows)
    deployed = (INTAKE_WINDOW_S, STATUS_WINDOW_S)
    lines = [
        "| intake / status window s | "
        + " | ".join(f"{s} p99" for s in WINDOW_SCENARIOS)
        + " | requests / invocation (steady) |",
        "|---|" + "---|" * (len(WINDOW_SCENARIOS) + 1),
    ]
    for w in sorted({deployed, *WINDOW_SWEEP}):
        suffix = "" if w == deployed else f" w{w[0]:g}/{w[1]:g}"
        cells = [
            _fmt(_ci(g.get((s + suffix, "trainyard"), []), "delay_p99"), 2)
            for s in WINDOW_SCENARIOS
        ]
        req = _fmt(_ci(g.get(("steady" + suffix, "trainyard"), []), "req_per_invocation"))
        label = f"{w[0]:g} / {w[1]:g}" + (" (deployed)" if w == deployed else "")
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {req} |")
    b2 = [_fmt(_ci(g.get((s, "b2"), []), "delay_p99"), 2) for s in WINDOW_SCENARIOS]
    b2_req = _fmt(_ci(g.get(("steady", "b2"), []), "req_per_invocation"))
    lines.append("| B2 (no window) | " + " | ".join(b2) + f" | {b2_req} |")
    return "\n".join(lines)


def scaling_table(points: list[CpuPoint], by: str) -> str:
    lines = [
        f"| {by} | tenants ever admitted | DynamoDB + SageMaker requests per completion + "
        "dispatch | of which GetItem | reconcile requests | counter items reconcile reads | "
        "CPU per invocation ms | reconcile ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in points:
        lines.append(
            f"| {p.queued:,} | {p.tenants_ever:,} | {p.dispatch_requests:,.0f} | "
            f"{p.dispatch_get_items:,.0f} | {p.reconcile_requests:,.0f} | "
            f"{p.reconcile_items_read:,} | {p.invocation_ms:.1f} | {p.reconcile_ms:.1f} |"
        )
    return "\n".join(lines)


def _overlap_or_lower(a: tuple[float, float, int], b: tuple[float, float, int]) -> bool:
    (ma, ha, _), (mb, hb, _) = a, b
    ha, hb = (0.0 if math.isnan(ha) else ha), (0.0 if math.isnan(hb) else hb)
    return ma <= mb or ma - ha <= mb + hb


def verdicts(
    rows: list[Summary],
    backlog: list[CpuPoint],
    tenants: list[CpuPoint],
    wall_s: float,
    every_cell: list[Summary] | None = None,
    seeds: int = 0,
    other_cpu_s: float = 0.0,
    from_cache: int = 0,
    jobs_total: int = 0,
) -> list[str]:
    """Each target with the measured figure (mean ± 95% interval) and MET / MISSED,
    or INCOMPLETE where a cell it needs was not run (an interrupted run)."""
    g = group(rows)
    expected = list(_factories(True)) if seeds else []  # every scenario, once seeds are known

    def line(met: bool | None, i: int, figure: str) -> str:
        word = "INCOMPLETE" if met is None else ("MET" if met else "MISSED")
        return f"- **{word}** {TARGETS[i]}: {figure}"

    def n(key: tuple[str, str]) -> str:
        k = len(g.get(key, []))
        return f" [{k} of {seeds} seeds]" if seeds and k < seeds else ""

    out: list[str] = []
    growth = [
        pts[-1].dispatch_requests / pts[0].dispatch_requests
        for pts in (backlog, tenants)
        if len(pts) > 1 and pts[0].dispatch_requests
    ]
    out.append(
        line(
            bool(growth) and all(x <= 1.5 for x in growth),
            0,
            f"{backlog[0].dispatch_requests:.0f} -> {backlog[-1].dispatch_requests:.0f} "
            "per completion + dispatch "
            f"over {backlog[0].queued:,}-{backlog[-1].queued:,} queued (x{growth[0]:.2f})"
            + (
                f", {tenants[0].dispatch_requests:.0f} -> {tenants[-1].dispatch_requests:.0f} "
                f"over {tenants[0].tenants_ever:,}-{tenants[-1].tenants_ever:,} tenants ever "
                f"admitted (x{growth[-1]:.2f}); reconcile "
                f"{tenants[0].reconcile_requests:.0f} -> {tenants[-1].reconcile_requests:.0f} "
                f"requests, {tenants[-1].reconcile_items_read:,} counter items at most a tick"
                if tenants
                else ""
            ),
        )
        if backlog
        else "- (requests curve not measured)"
    )
    for policy in ("trainyard", "trainyard-borrow"):
        scen = sorted({s for s, p in g if p == policy and " " not in s})
        ok: bool | None = True
        figs = []
        for s in scen:
            if (s, "b2") not in g:
                continue
            a, b = _ci(g[(s, policy)], "delay_p99"), _ci(g[(s, "b2")], "delay_p99")
            met = _overlap_or_lower(a, b)
            ok &= met
            ra = _ci(g[(s, policy)], "delay_p99_request")
            rb = _ci(g[(s, "b2")], "delay_p99_request")
            figs.append(
                f"{s} {_fmt(a, 2)} vs {_fmt(b, 2)} s{n((s, policy))}{n((s, 'b2'))}"
                + ("" if met else " (apart)")
                + f" (from the request {_fmt(ra)} vs {_fmt(rb)})"
            )
        missing = [s for s in expected if (s, policy) not in g or (s, "b2") not in g]
        if missing:
            figs.append("not run: " + ", ".join(missing))
            ok = None if ok else ok
        if figs:
            out.append(line(ok, 1, f"{LABEL[policy]} vs B2: " + "; ".join(figs)))
    if ("noisy", "trainyard-borrow") in g:
        key, hard = ("noisy", "trainyard-borrow"), ("noisy", "trainyard")
        ty = _ci(g[key], "jain_fair")
        b3 = _ci(g[("noisy", "b3")], "jain_fair") if ("noisy", "b3") in g else (math.nan,) * 3
        low = ty[0] - (0.0 if math.isnan(ty[1]) else ty[1])
        out.append(
            line(
                low >= 0.95 and ty[0] >= b3[0],
                2,
                f"with borrowing{n(key)} {_fmt(ty, 2)} (lower end {low:.2f}), B3 {_fmt(b3, 2)}; "
                f"hard cap {_fmt(_ci(g.get(hard, []), 'jain_fair'), 2)}",
            )
        )
        pu = _ci(g[key], "plan_util_abs")
        out.append(
            line(
                pu[0] >= 0.90,
                3,
                f"with borrowing{n(key)} {_fmt(pu, 1, True)}; hard cap "
                f"{_fmt(_ci(g.get(hard, []), 'plan_util_abs'), 1, True)} (B2 "
                f"{_fmt(_ci(g.get(('noisy', 'b2'), []), 'plan_util_abs'), 1, True)})",
            )
        )

        def ratio(k: tuple[str, str]) -> tuple[float, float, int]:
            return mean_ci(r.heavy_makespan_s / r.heavy_bound_s for r in g.get(k, []))

        r = ratio(key)
        out.append(
            line(
                r[0] <= 1.5,
                4,
                f"with borrowing{n(key)} x{_fmt(r, 2)}; hard cap x{_fmt(ratio(hard), 2)} "
                f"(fair share: x{_fmt(ratio(('noisy', 'fs')), 2)})",
            )
        )
    else:
        out += [line(None, i, "noisy cells not run") for i in (2, 3, 4)]
    ty_rows = [r for (s, p), rs in g.items() if p.startswith("trainyard") for r in rs]
    viol = sum(sum(r.violations.values()) for r in ty_rows)
    cap = sum(r.cap_reached for r in ty_rows)
    conc = max((r.max_concurrency for r in ty_rows), default=0)
    out.append(
        line(
            viol == 0,
            5,
            f"{viol} starts above a cap; {cap} CAP_REACHED admissions; up to {conc} "
            "invocations in flight at once",
        )
    )
    # Read from CPU, not wall: the machine this runs on may be shared. On 2 idle
    # cores the cells take at least max(their CPU / 2, the longest cell); the
    # requests curves and the local stack run after them in one process.
    cpu = [r.cell_cpu_s for r in every_cell or rows if not math.isnan(r.cell_cpu_s)]
    spent = sum(cpu) / 60
    longest = max(cpu, default=0.0) / 60
    bound = max(spent / 2, longest) + other_cpu_s / 60
    done = len(every_cell or rows)
    complete = done >= jobs_total
    out.append(
        line(
            (bound < 30) if complete or bound >= 30 else None,
            6,
            f"{done} of {jobs_total or done} cells, their CPU {spent:.1f} min in all, the "
            f"longest cell {longest:.1f} min, + {other_cpu_s / 60:.1f} min for the requests "
            f"curves and the local stack: >= {bound:.1f} min on 2 idle cores; "
            f"{wall_s / 60:.1f} min wall in this invocation"
            + (f", {from_cache} cells reused from the cache" if from_cache else "")
            + " (wall depends on what else the machine runs)",
        )
    )
    return out


# --------------------------------------------------------------------------- plots


def plot_sweep(rows: list[Summary], p99_of: dict[float, float], path: Path) -> None:
    g = group(rows)
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for policy, colour in zip(SWEEP_POLICIES, ("tab:orange", "tab:green", "tab:blue"), strict=True):
        xs, ys, es = [], [], []
        for f, p99 in sorted(p99_of.items()):
            key = ("steady" + (f" x{f:g}" if f != 1 else ""), policy)
            if key in g:
                m, h, _ = _ci(g[key], "delay_p99")
                xs.append(p99)
                ys.append(m)
                es.append(0 if math.isnan(h) else h)
        ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, color=colour, label=LABEL[policy])
    ax.axvline(p99_of[1.0], ls=":", color="gray")
    ax.text(p99_of[1.0], ax.get_ylim()[1] * 0.95, " published", color="gray", fontsize=8)
    ax.set_xlabel("status-event path p99 (EventBridge + SQS -> Lambda), s")
    ax.set_ylabel("dispatch delay p99, s (mean ± 95% CI over seeds)")
    ax.set_title("Steady scenario: dispatch delay vs event-path latency")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_requests(backlog: list[CpuPoint], tenants: list[CpuPoint], path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, pts, xlabel, xs in (
        (axes[0], backlog, "QUEUED runs", [p.queued for p in backlog]),
        (axes[1], tenants, "tenants ever admitted", [p.tenants_ever for p in tenants]),
    ):
        ax.plot(xs, [p.dispatch_requests for p in pts], "o-", label="per completion + dispatch")
        ax.plot(xs, [p.dispatch_get_items for p in pts], "s--", label="of which GetItem")
        ax.plot(xs, [p.reconcile_requests for p in pts], "^-", label="per reconcile")
        ax.plot(
            xs,
            [p.reconcile_items_read / 100 for p in pts],
            ":",
            label="counter items read by reconcile / 100",
        )
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("DynamoDB + SageMaker requests")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Trainyard: AWS requests per invocation")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Trainyard benchmarks")
    parser.add_argument(
        "--quick", action="store_true", help="3 seeds, sampled scale, no local stack"
    )
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    parser.add_argument("--skip-local", action="store_true", help="skip the local-stack run")
    parser.add_argument(
        "--full-trace",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the 100,000-request scale trace for every policy (default: on, off with --quick)",
    )
    parser.add_argument(
        "--cache",
        default=None,
        help="JSON-lines file of finished cells: appended as they finish, reused on a rerun",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="with --cache: report the cells already there, run none (the seeds column "
        "says how many each row has)",
    )
    parser.add_argument("--tenants", type=int, default=6, help="local stack: tenants")
    parser.add_argument("--uploads", type=int, default=12, help="local stack: uploads")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    seeds = args.seeds or (3 if args.quick else 10)
    quick = args.quick

    full_trace = not quick if args.full_trace is None else args.full_trace
    # In the order the report needs them, so that an interrupted run (--cache)
    # has the main table first: every scenario (scale sampled), the event sweep,
    # the full traces (not Trainyard + borrowing: at scale a tenant has 10
    # requests over 87 h and rarely waits at its cap), then the window sweep,
    # whose many short cells keep the other worker busy while one runs
    # Trainyard's full trace (the longest job, ~8 CPU-minutes).
    main = [
        (name, s, policy, quick, 1.0, False, None)
        for name in _factories(quick)
        for s in range(seeds)
        for policy in POLICY_ORDER
    ]
    jobs: list[Job] = list(main)
    jobs += [
        ("steady", s, policy, quick, f, False, None)
        for f in SWEEP_FACTORS[1:]
        for s in range(seeds)
        for policy in SWEEP_POLICIES
    ]
    if full_trace:
        jobs += [
            ("scale", 0, p, False, 1.0, True, None) for p in POLICY_ORDER if p != "trainyard-borrow"
        ]
    jobs += [
        (name, s, "trainyard", quick, 1.0, False, w)
        for w in WINDOW_SWEEP
        for name in WINDOW_SCENARIOS
        for s in range(seeds)
    ]
    print(f"{len(jobs)} simulations, {args.jobs} job(s) ...", flush=True)
    cached = 0  # cells an earlier run left in the cache (their CPU counts, their wall not)
    if args.cache and Path(args.cache).exists():
        lines = Path(args.cache).read_text(encoding="utf-8").splitlines()
        cached = len({_key(j) for j in jobs} & {json.loads(x)["job"] for x in lines if x.strip()})
    rows, missing = _run_all(
        jobs, args.jobs, Path(args.cache) if args.cache else None, not args.report_only
    )
    print(f"simulations done in {time.perf_counter() - began:.0f} s", flush=True)

    other_cpu = time.process_time()
    # With --cache the curves are kept beside the cells (--report-only reuses them).
    curves = Path(f"{args.cache}.curves{'-quick' * quick}.json") if args.cache else None
    if args.report_only and curves is not None and curves.exists():
        saved = json.loads(curves.read_text(encoding="utf-8"))
        backlog = [CpuPoint(**p) for p in saved["backlog"]]
        tenants = [CpuPoint(**p) for p in saved["tenants"]]
        other_cpu -= saved["cpu_s"]  # their CPU when they were measured
    else:
        print("requests vs backlog and tenants ...", flush=True)
        backlog = cpu_curve(SIZES[:3] if quick else SIZES)
        tenants = tenants_curve(TENANTS_EVER[:2] if quick else TENANTS_EVER)
        if curves is not None:
            curves.write_text(
                json.dumps(
                    {
                        "backlog": [dataclasses.asdict(p) for p in backlog],
                        "tenants": [dataclasses.asdict(p) for p in tenants],
                        "cpu_s": time.process_time() - other_cpu,
                    }
                ),
                encoding="utf-8",
            )

    from bench.local_stack import format_result, run_local_stack

    local = "skipped"
    kept = Path(f"{args.cache}.local.txt") if args.cache else None  # beside the cells
    if args.report_only and kept is not None and kept.exists():
        local = kept.read_text(encoding="utf-8")
    elif not (args.skip_local or quick):
        print("local stack ...", flush=True)
        local = format_result(run_local_stack(args.tenants, args.uploads))
        if kept is not None:
            kept.write_text(local, encoding="utf-8")

    base_model = _factories(quick)["steady"](0).model
    p99_of = {
        f: _with_event_factor(scenarios.steady(count=1), f).model.event_p99_s()
        for f in SWEEP_FACTORS
    }
    other_cpu = time.process_time() - other_cpu
    plot_sweep(rows, p99_of, OUT / "delay_vs_event_latency.png")
    plot_requests(backlog, tenants, OUT / "requests_per_dispatch.png")
    wall = time.perf_counter() - began
    main_rows = [r for r in rows if " x" not in r.scenario and " w" not in r.scenario]
    sweep_rows = [r for r in rows if r.scenario.startswith("steady") and r.policy in SWEEP_POLICIES]
    from bench.local_stack import format_result

    flags = " --quick" * quick + (f" --seeds {args.seeds}" if args.seeds else "")
    report = [
        "# Trainyard benchmark results",
        "",
        *(
            [
                f"> **Incomplete**: {len(rows)} of {len(jobs)} cells have results (the run "
                "was stopped); rows show how many seeds each has, verdicts that need a "
                "missing cell say INCOMPLETE. Not run: "
                + "; ".join(
                    f"{k} ({v} seed{'s' * (v > 1)})" for k, v in _missing_summary(missing).items()
                )
                + ".",
                "",
            ]
            if missing
            else []
        ),
        f"Generated by `python -m bench.run{flags}` (method: "
        f"`docs/benchmarks.md`), {seeds} seeds per scenario; every figure is the mean ± the "
        "half-width of its 95% interval (Student t) over seeds. Event path: published figures "
        f"(status path p99 {base_model.event_p99_s():.2f} s), S3 -> queue 0.3 s + Exp(1 s) for "
        "every policy; DynamoDB 5 ms, SageMaker 100 ms, Lambda invocation 20 ms per call, "
        "for every policy. Dispatch delay: from a request's upload message reaching the "
        "policy's queue, or a slot it may use freeing if later, to its start, for every "
        'policy; "p99 from request" counts from the request instead (the S3 path and '
        "Trainyard's paced client's wait then count only where a slot was free at arrival).",
        "",
        "## Policies x scenarios (simulation, virtual time)",
        "",
        table(main_rows),
        "",
        "- own-cap util.: running / what the policy's own caps allow given who waits; plan util. "
        "(abs): running in the plan (the noisy plan in the noisy case, else every plan) / its "
        "cap while it has work waiting; global util. (abs): running / global cap while anything "
        "waits; makespan: first arrival -> last end.",
        "- violations g/p/t: starts above Trainyard's global/plan/tenant caps (B1, B2 and fair "
        "share have no tenant cap: their tenant column counts how often they broke the plan's "
        "promise; B1 has no global cap).",
        "- requests: DynamoDB + SageMaker, counted for every policy (`bench/counting.py`).",
        "",
        "## Dispatch delay p99 vs event-path latency (steady)",
        "",
        "| status-event path p99 s | " + " | ".join(LABEL[p] for p in SWEEP_POLICIES) + " |",
        "|---|" + "---|" * len(SWEEP_POLICIES),
        *[
            f"| {p99_of[f]:.2f}{' (published)' if f == 1 else ''} | "
            + " | ".join(
                _fmt(
                    _ci(
                        group(sweep_rows).get(("steady" + (f" x{f:g}" if f != 1 else ""), p), []),
                        "delay_p99",
                    ),
                    2,
                )
                for p in SWEEP_POLICIES
            )
            + " |"
            for f in SWEEP_FACTORS
        ],
        "",
        "## Batching windows: Trainyard's dispatch delay p99 s by intake / status window",
        "",
        window_table(rows),
        "",
        "## Trainyard: AWS requests per invocation vs backlog",
        "",
        scaling_table(backlog, "QUEUED runs"),
        "",
        "## Trainyard: AWS requests per invocation vs tenants ever admitted (1,000 queued)",
        "",
        scaling_table(tenants, "QUEUED runs"),
        "",
        "## Local embedded stack (wall clock)",
        "",
        "```",
        local,
        "```",
        "",
        "## Targets (reported, not asserted)",
        "",
        *verdicts(
            main_rows,
            backlog,
            tenants,
            wall,
            rows,
            seeds=seeds,
            other_cpu_s=other_cpu,
            from_cache=cached,
            jobs_total=len(jobs),
        ),
        "",
        "Plots: `delay_vs_event_latency.png`, `requests_per_dispatch.png`.",
        "",
        f"Wall time of this invocation: {wall:.0f} s ({args.jobs} job(s)"
        + (f"; {cached} cells came from the cache, run earlier" if cached else "")
        + ").",
        "",
    ]
    (OUT / "results.md").write_text("\n".join(report), encoding="utf-8")
    print("\n".join(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
