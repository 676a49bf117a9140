"""End-to-end benchmark on the embedded local stack, over its real interfaces.

Onboards N tenants through the HTTP API (round-robin over the plans), uploads
M CSV files with plain boto3 (round-robin over the tenants, back to back, so a
tenant's second upload may join its still-queued run: that is what a user
sees, and the run count is reported), follows the runs through
``GET /tenants/{id}/runs`` and reports onboarding time per tenant,
upload-to-start and upload-to-model latency and runs per minute, with the
machine's details. Wall-clock numbers: they measure this laptop-sized stack
(moto + local runner + xgboost), not AWS.

    .venv/bin/python -m bench.local_stack --tenants 6 --uploads 12
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import requests

from trainyard.data import tenant_csv

TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
PLANS = ("basic", "standard", "premium")


@dataclass
class Upload:
    tenant_id: str
    key: str
    at: float  # wall clock (epoch seconds) just before put_object returned
    run: dict[str, Any] = field(default_factory=dict)


@dataclass
class LocalStackResult:
    machine: dict[str, str]
    tenants: int
    uploads: int
    onboarding_seconds: list[float]
    upload_to_start: list[float]
    upload_to_model: list[float]
    runs: int
    succeeded: int
    runs_per_minute: float
    wall_seconds: float
    stack_start_seconds: float
    problems: list[str]


def machine_details() -> dict[str, str]:
    model = platform.processor() or ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpus": str(os.cpu_count()),
        "cpu_model": model or "unknown",
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }


def _epoch(iso: str | None) -> float | None:
    if not iso:
        return None
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _wait(predicate: Any, timeout: float, what: str, interval: float = 0.25) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(interval)


def run_local_stack(
    tenants: int = 6, uploads: int = 12, timeout: float = 600.0, prefix: str = "bench"
) -> LocalStackResult:
    from trainyard.local.stack import EmbeddedStack

    t0 = time.monotonic()
    with EmbeddedStack(aws_port=0, api_port=0) as stack:
        started = time.monotonic() - t0
        api = stack.api_url
        s3 = stack.client("s3")
        http = requests.Session()
        records: dict[str, dict[str, Any]] = {}
        onboarding: list[float] = []
        for i in range(tenants):
            tenant_id = f"{prefix}-{i:02d}"
            plan = PLANS[i % len(PLANS)]
            begin = time.monotonic()
            resp = http.post(
                f"{api}/tenants", json={"tenantId": tenant_id, "plan": plan}, timeout=120
            )
            resp.raise_for_status()
            record = resp.json()

            def active(tid: str = tenant_id) -> bool:
                nonlocal record
                if record.get("status") != "ACTIVE":
                    record = http.get(f"{api}/tenants/{tid}", timeout=30).json()
                if record.get("status") == "FAILED":
                    raise RuntimeError(f"{tid} failed to onboard: {record.get('failureReason')}")
                return record.get("status") == "ACTIVE"

            _wait(active, 120, f"{tenant_id} ACTIVE")
            onboarding.append(time.monotonic() - begin)
            records[tenant_id] = record

        ids = list(records)
        sent: list[Upload] = []
        first_upload = time.time()
        for j in range(uploads):
            tenant_id = ids[j % len(ids)]
            rec = records[tenant_id]
            key = f"{rec['dataPrefix']}{tenant_id}-part{j:03d}.csv"
            s3.put_object(Bucket=rec["dataBucket"], Key=key, Body=tenant_csv(tenant_id))
            sent.append(Upload(tenant_id, key, time.time()))

        runs_by_tenant: dict[str, list[dict[str, Any]]] = {}

        def covered() -> bool:
            for tenant_id in ids:
                body = http.get(f"{api}/tenants/{tenant_id}/runs", timeout=30).json()
                runs_by_tenant[tenant_id] = body.get("runs", [])
            done = True
            for up in sent:
                up.run = next(
                    (
                        r
                        for r in runs_by_tenant.get(up.tenant_id, [])
                        if up.key
                        in {o.get("key") for o in (r.get("trigger") or {}).get("objects") or []}
                    ),
                    {},
                )
                done = done and up.run.get("status") in TERMINAL
            return done

        _wait(covered, timeout, "every upload's run to end", interval=1.0)
        wall = time.time() - first_upload

    problems = [
        f"{u.tenant_id}: {u.key} ended {u.run.get('status')}: {u.run.get('failureReason')}"
        for u in sent
        if u.run.get("status") != "SUCCEEDED"
    ]
    to_start = [max(0.0, (_epoch(u.run.get("startedAt")) or u.at) - u.at) for u in sent if u.run]
    to_model = [
        max(0.0, (_epoch(u.run.get("endedAt")) or u.at) - u.at)
        for u in sent
        if u.run.get("modelPackageArn")
    ]
    all_runs = {r["runId"]: r for rs in runs_by_tenant.values() for r in rs}
    ended = [_epoch(r.get("endedAt")) for r in all_runs.values() if r.get("status") in TERMINAL]
    span = (max(e for e in ended if e) - first_upload) if ended else wall
    return LocalStackResult(
        machine=machine_details(),
        tenants=tenants,
        uploads=uploads,
        onboarding_seconds=onboarding,
        upload_to_start=to_start,
        upload_to_model=to_model,
        runs=len(all_runs),
        succeeded=sum(1 for r in all_runs.values() if r.get("status") == "SUCCEEDED"),
        runs_per_minute=len(ended) / (span / 60.0) if span > 0 else 0.0,
        wall_seconds=wall,
        stack_start_seconds=started,
        problems=problems,
    )


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def format_result(r: LocalStackResult) -> str:
    m = r.machine
    lines = [
        f"machine: {m['cpus']} CPUs, {m['cpu_model']}, Python {m['python']}, {m['platform']}",
        f"stack start: {r.stack_start_seconds:.1f} s; {r.tenants} tenants, {r.uploads} uploads "
        f"-> {r.runs} runs ({r.succeeded} succeeded; uploads coalesce while a run is queued)",
        f"onboarding per tenant: mean {statistics.mean(r.onboarding_seconds):.2f} s, "
        f"max {max(r.onboarding_seconds):.2f} s",
        f"upload -> start: p50 {_pct(r.upload_to_start, 0.5):.1f} s, "
        f"max {max(r.upload_to_start, default=float('nan')):.1f} s",
        f"upload -> model: p50 {_pct(r.upload_to_model, 0.5):.1f} s, "
        f"max {max(r.upload_to_model, default=float('nan')):.1f} s",
        f"throughput: {r.runs_per_minute:.2f} runs/min over {r.wall_seconds:.0f} s",
    ]
    lines += [f"PROBLEM: {p}" for p in r.problems]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tenants", type=int, default=6)
    parser.add_argument("--uploads", type=int, default=12)
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args(argv)
    result = run_local_stack(args.tenants, args.uploads, args.timeout)
    print(format_result(result))
    return 1 if result.problems else 0


if __name__ == "__main__":
    sys.exit(main())
