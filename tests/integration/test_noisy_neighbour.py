"""Fair scheduling on the embedded stack: a tenant uploading 50 files cannot starve
two quiet tenants of the same plan, every upload lands in exactly one run, and no
cap is ever exceeded (checked from the runs' own start/end times)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import pytest

from trainyard.data import tenant_csv
from trainyard.local.stack import EmbeddedStack

from .conftest import Api, wait_for

pytestmark = pytest.mark.integration

TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


def _all_runs(api: Api, tenant_id: str) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    token = None
    while True:
        params = {"limit": "100", **({"nextToken": token} if token else {})}
        body = api.get(f"/tenants/{tenant_id}/runs", params=params).json()
        runs += body["runs"]
        token = body.get("nextToken")
        if not token:
            return runs


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    # Ends sort before starts at the same instant: a slot freed and reused is not an overlap.
    points = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    current = peak = 0
    for _, delta in points:
        current += delta
        peak = max(peak, current)
    return peak


def test_a_noisy_tenant_does_not_starve_quiet_tenants_and_caps_hold(
    stack: EmbeddedStack, api: Api, onboard: Any
) -> None:
    plan = "basic"
    noisy = onboard("nn-noisy", plan)
    quiet = [onboard("nn-quiet-a", plan), onboard("nn-quiet-b", plan)]
    s3 = stack.client("s3")
    body = tenant_csv("nn-noisy")

    def upload_noisy(i: int) -> None:
        s3.put_object(
            Bucket=noisy["dataBucket"], Key=f"{noisy['dataPrefix']}batch-{i:03d}.csv", Body=body
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(upload_noisy, range(50)))
    for tenant in quiet:
        s3.put_object(
            Bucket=tenant["dataBucket"],
            Key=f"{tenant['dataPrefix']}only.csv",
            Body=tenant_csv(tenant["tenantId"]),
        )

    tenants = ["nn-noisy", "nn-quiet-a", "nn-quiet-b"]

    def all_done() -> dict[str, list[dict[str, Any]]] | None:
        runs = {t: _all_runs(api, t) for t in tenants}
        uploads = sum(len(r["trigger"]["objects"]) for rs in runs.values() for r in rs)
        finished = all(r["status"] in TERMINAL for rs in runs.values() for r in rs)
        return runs if uploads == 52 and finished else None

    runs = wait_for(all_done, timeout=420, interval=2, what="every upload in a finished run")

    # Every accepted upload is in exactly one run.
    noisy_keys = [o["key"] for r in runs["nn-noisy"] for o in r["trigger"]["objects"]]
    assert sorted(noisy_keys) == [f"{noisy['dataPrefix']}batch-{i:03d}.csv" for i in range(50)]
    assert all(r["status"] == "SUCCEEDED" for rs in runs.values() for r in rs)

    # Quiet tenants start before the noisy tenant's backlog has drained, and without
    # waiting for a slot a noisy run held: each waits (from its own queue time, so
    # a slow upload path under load does not count) less than the shortest noisy run.
    # endedAt comes from SageMaker's status event, whole seconds, hence the +1.
    # (Its uploads coalesce into a few runs, so "drained" is when its last run ends:
    # a quiet upload that reaches intake after the noisy tenant's last start under
    # load still starts long before that.)
    drained = max(_ts(r["endedAt"]) for r in runs["nn-noisy"])
    shortest_noisy = min(_ts(r["endedAt"]) + 1.0 - _ts(r["startedAt"]) for r in runs["nn-noisy"])
    for tenant in ("nn-quiet-a", "nn-quiet-b"):
        (run,) = runs[tenant]
        assert _ts(run["startedAt"]) < drained
        waited = _ts(run["startedAt"]) - _ts(run["queuedAt"])
        assert waited < shortest_noisy, (tenant, waited, shortest_noisy)

    # Caps are never exceeded, not even for a moment.
    settings = stack.settings
    plan_cfg = settings.plans[plan]
    intervals = {
        t: [(_ts(r["startedAt"]), _ts(r["endedAt"])) for r in rs] for t, rs in runs.items()
    }
    for t, spans in intervals.items():
        assert _max_overlap(spans) <= plan_cfg.max_concurrent_runs_per_tenant, t
    everything = [span for spans in intervals.values() for span in spans]
    assert _max_overlap(everything) <= plan_cfg.max_concurrent_runs
    assert _max_overlap(everything) <= settings.global_max_concurrent_runs

    # Coalescing: 50 uploads did not become 50 pipeline executions.
    assert len(runs["nn-noisy"]) < 50
