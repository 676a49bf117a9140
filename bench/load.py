"""Load test on the embedded stack: many tenants, uploads in bursts, real pipelines.

    python -m bench.load                          # 100 tenants, 1,000 uploads
    python -m bench.load --tenants 20 --uploads 100

Tenants are spread over the three plans; uploads arrive in bursts to random
tenants (seeded). The script then waits until every upload is accounted for
(in a run, or rejected with a reason) and every run has ended, and reports:
uploads vs runs (most uploads coalesce into a tenant's QUEUED run), time to
drain, throughput, dispatch delay per plan, the peak concurrency seen from the
runs' own start/end times, and any cap exceeded (there must be none). Prints a
table and writes ``bench/load-results.md``. Too slow for CI (``make load``).

Local throughput is bounded by the pipeline engine's two workers (each run is
three Python jobs), not by the scheduler: the numbers measure correctness under
load and scheduler overhead, not SageMaker capacity.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from trainyard_core.store.runs_dynamodb import DynamoRunRepository

from trainyard.data import tenant_csv
from trainyard.local.observations import all_runs, cap_violations, iso_seconds, max_overlap
from trainyard.local.stack import EmbeddedStack

TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
PLANS = ("basic", "standard", "premium")
RESULTS = Path(__file__).resolve().parent / "load-results.md"


def _onboard(api: str, tenant_id: str, plan: str) -> dict[str, Any]:
    resp = requests.post(f"{api}/tenants", json={"tenantId": tenant_id, "plan": plan}, timeout=60)
    resp.raise_for_status()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        body = requests.get(f"{api}/tenants/{tenant_id}", timeout=60).json()
        if body["status"] == "ACTIVE":
            return body
        time.sleep(0.3)
    raise RuntimeError(f"{tenant_id} did not become ACTIVE")


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(tenants: int, uploads: int, bursts: int, gap: float, timeout: float, seed: int) -> int:
    rng = random.Random(seed)
    with EmbeddedStack() as stack:
        api = stack.api_url
        tag = datetime.now(UTC).strftime("%H%M%S")
        ids = [f"load-{tag}-{i:03d}" for i in range(tenants)]
        plans = {tid: PLANS[i % len(PLANS)] for i, tid in enumerate(ids)}
        print(f"onboarding {tenants} tenants ...", flush=True)
        t0 = time.monotonic()
        with ThreadPoolExecutor(max_workers=4) as pool:
            profiles = dict(
                zip(ids, pool.map(lambda t: _onboard(api, t, plans[t]), ids), strict=True)
            )
        onboard_seconds = time.monotonic() - t0
        bodies = {tid: tenant_csv(tid) for tid in ids}

        # Every upload: (tenant, key). Bursts of random tenants, a pause between.
        s3 = stack.client("s3")
        sent: list[tuple[str, str]] = []
        per_burst = [uploads // bursts + (1 if b < uploads % bursts else 0) for b in range(bursts)]
        print(f"uploading {uploads} files in {bursts} bursts ...", flush=True)
        first_upload = datetime.now(UTC).timestamp()
        started = time.monotonic()

        def put(item: tuple[str, str]) -> None:
            tid, key = item
            s3.put_object(Bucket=profiles[tid]["dataBucket"], Key=key, Body=bodies[tid])

        with ThreadPoolExecutor(max_workers=8) as pool:
            for b, count in enumerate(per_burst):
                batch = []
                for i in range(count):
                    tid = rng.choice(ids)
                    batch.append((tid, f"{profiles[tid]['dataPrefix']}b{b:02d}-{i:04d}.csv"))
                list(pool.map(put, batch))
                sent.extend(batch)
                if b < bursts - 1:
                    time.sleep(gap)
        upload_seconds = time.monotonic() - started

        print("draining ...", flush=True)
        mine = set(ids)
        repo = DynamoRunRepository(stack.names.runs_table, stack.names.state_table)
        deadline = time.monotonic() + timeout
        runs: list[dict[str, Any]] = []
        rejected: list[Any] = []
        while time.monotonic() < deadline:
            runs = [r for r in all_runs(stack) if r["tenantId"] in mine]
            rejected = [r for r in repo.list_rejections(1000) if r.tenant_id in mine]
            in_runs = sum(len(r["trigger"]["objects"]) for r in runs)
            done = all(r["status"] in TERMINAL for r in runs)
            if in_runs + len(rejected) >= len(sent) and done:
                break
            time.sleep(2)
        drained = time.monotonic() - started
        ok = stack.wait_idle(60)

        return _report(
            stack=stack,
            sent=sent,
            runs=runs,
            rejected=rejected,
            plans=plans,
            tenants=tenants,
            bursts=bursts,
            gap=gap,
            first_upload=first_upload,
            onboard_seconds=onboard_seconds,
            upload_seconds=upload_seconds,
            drained=drained,
            idle=ok,
            timed_out=time.monotonic() >= deadline,
        )


def _report(
    *,
    stack: EmbeddedStack,
    sent: list[tuple[str, str]],
    runs: list[dict[str, Any]],
    rejected: list[Any],
    plans: dict[str, str],
    tenants: int,
    bursts: int,
    gap: float,
    first_upload: float,
    onboard_seconds: float,
    upload_seconds: float,
    drained: float,
    idle: bool,
    timed_out: bool,
) -> int:
    placed = Counter((r["tenantId"], o["key"]) for r in runs for o in r["trigger"]["objects"])
    rejected_keys = {(r.tenant_id, r.key) for r in rejected}
    missing = [u for u in sent if u not in placed and u not in rejected_keys]
    twice = [u for u, n in placed.items() if n > 1]
    status = Counter(r["status"] for r in runs)
    violations = cap_violations(runs, stack.settings)
    delays: dict[str, list[float]] = defaultdict(list)
    spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for r in runs:
        if r.get("startedAt"):
            start = iso_seconds(r["startedAt"])
            delays[r["plan"]].append(start - iso_seconds(r["queuedAt"]))
            spans[r["plan"]].append((start, iso_seconds(r.get("endedAt") or r["startedAt"])))
    last_end = max((iso_seconds(r["endedAt"]) for r in runs if r.get("endedAt")), default=0)
    busy = max(1e-9, last_end - first_upload)
    failures = Counter(
        (r.get("failureReason") or "")[:80] for r in runs if r["status"] != "SUCCEEDED"
    )

    # A SUCCEEDED run must have trained: a model registered and its metric recorded
    # (a run marked finished early, e.g. from a stale listing, would lack both).
    hollow = [
        r["runId"]
        for r in runs
        if r["status"] == "SUCCEEDED" and not (r.get("modelPackageArn") and r.get("metrics"))
    ]
    errors = stack.runtime.errors if stack.runtime is not None else 0
    by_plan = "/".join(str(sum(1 for p in plans.values() if p == x)) for x in PLANS)
    in_runs = sum(placed.values())
    peak = max_overlap(s for v in spans.values() for s in v)
    cap = stack.settings.global_max_concurrent_runs
    rows = [
        ("tenants (basic/standard/premium)", f"{tenants} ({by_plan})"),
        ("uploads sent", f"{len(sent)} in {bursts} bursts, {gap:g}s apart ({upload_seconds:.1f}s)"),
        ("uploads in a run / rejected / missing", f"{in_runs} / {len(rejected)} / {len(missing)}"),
        ("uploads in more than one run", str(len(twice))),
        ("runs (uploads per run)", f"{len(runs)} ({len(sent) / max(1, len(runs)):.1f})"),
        ("runs by status", ", ".join(f"{k} {v}" for k, v in sorted(status.items()))),
        ("succeeded runs without a model or metric", str(len(hollow))),
        ("time to drain (first upload -> all ended)", f"{drained:.0f}s"),
        ("throughput", f"{len(runs) / busy * 60:.1f} runs/min, {len(sent) / busy * 60:.1f} "
                       "uploads/min"),
        ("peak concurrent runs (global cap)", f"{peak} ({cap})"),
        *[
            (f"  {p}: peak (cap), dispatch delay p50 / p95",
             f"{max_overlap(spans[p])} ({stack.settings.plans[p].max_concurrent_runs}), "
             f"{_percentile(delays[p], 0.5):.1f}s / {_percentile(delays[p], 0.95):.1f}s")
            for p in PLANS
        ],
        ("cap violations", "none" if not violations else "; ".join(violations)),
        ("queues drained / handler errors", f"{idle} / {errors}"),
        ("onboarding time", f"{onboard_seconds:.0f}s"),
    ]  # fmt: skip
    width = max(len(k) for k, _ in rows)
    print()
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    if failures:
        print("\nnon-succeeded runs by reason:")
        for reason, n in failures.most_common(5):
            print(f"  {n:>4}  {reason}")

    ok = not (missing or twice or violations or timed_out or hollow or errors)
    lines = [
        "# Load test on the embedded stack",
        "",
        f"`python -m bench.load --tenants {tenants} --uploads {len(sent)} --bursts {bursts}`, "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}, {sys.platform}, "
        "pipeline engine with 2 workers.",
        "",
        "| measure | value |",
        "|---|---|",
        *[f"| {k.strip()} | {v} |" for k, v in rows],
        "",
        f"Result: {'PASS' if ok else 'FAIL'} (every upload accounted for exactly once, "
        "every succeeded run with its model and metric, no cap exceeded, no handler error, "
        "drained before the timeout).",
        "",
    ]
    RESULTS.write_text("\n".join(lines))
    print(f"\n{'PASS' if ok else 'FAIL'}; wrote {RESULTS}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--uploads", type=int, default=1000)
    parser.add_argument("--bursts", type=int, default=10)
    parser.add_argument("--gap", type=float, default=5.0, help="seconds between bursts")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds to drain")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    return run(args.tenants, args.uploads, args.bursts, args.gap, args.timeout, args.seed)


if __name__ == "__main__":
    sys.exit(main())
