"""When and why a queued run waits, on the embedded stack over plain HTTP: a plan
whose cap is taken queues the next runs with the right waiting reason (and no
failure reason), and, once the plan has run before, an estimated start that
lies within a factor of two of the actual one (waits measured from queue time)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from trainyard.data import tenant_csv
from trainyard.local.stack import EmbeddedStack

from .conftest import Api, wait_for

pytestmark = pytest.mark.integration

TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
PLAN = "basic"
HOLD_SECONDS = 20


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _runs(api: Api, tenant_id: str) -> list[dict[str, Any]]:
    resp = api.get(f"/tenants/{tenant_id}/runs")
    assert resp.status_code == 200, resp.text
    return resp.json()["runs"]


def _upload(stack: EmbeddedStack, tenant: dict[str, Any], name: str) -> None:
    stack.client("s3").put_object(
        Bucket=tenant["dataBucket"],
        Key=f"{tenant['dataPrefix']}{name}",
        Body=tenant_csv(tenant["tenantId"]),
    )


def _queued(api: Api, tenant_id: str) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        return next((r for r in _runs(api, tenant_id) if r["status"] == "QUEUED"), None)

    return wait_for(found, timeout=60, interval=0.3, what=f"a queued run of {tenant_id}")


def _all_ended(api: Api, tenants: list[str], count: int) -> list[dict[str, Any]]:
    def ended() -> list[dict[str, Any]] | None:
        runs = [r for t in tenants for r in _runs(api, t)]
        done = len(runs) >= count and all(r["status"] in TERMINAL for r in runs)
        return runs if done else None

    return wait_for(ended, timeout=600, interval=1, what=f"{count} runs of {tenants} ended")


def _over_budget(stack: EmbeddedStack, tenant_id: str) -> None:
    """The tenant used more than its plan's monthly hours (as if it had trained them)."""
    hours = stack.settings.plans[PLAN].monthly_training_hours
    assert hours is not None
    month = datetime.now(UTC).strftime("%Y-%m")
    stack.client("dynamodb").update_item(
        TableName=stack.names.state_table,
        Key={"pk": {"S": f"usage#{tenant_id}"}, "sk": {"S": month}},
        UpdateExpression="ADD trainingSeconds :s",
        ExpressionAttributeValues={":s": {"N": str(hours * 3600 + 60)}},
    )


def test_queued_runs_say_why_they_wait_and_when_they_will_start(
    stack: EmbeddedStack, api: Api, onboard: Any
) -> None:
    cap = stack.settings.plans[PLAN].max_concurrent_runs
    fillers = [onboard(f"ww-fill-{i}", PLAN) for i in range(cap)]
    late = onboard("ww-late", PLAN)
    sleepy = onboard("ww-sleepy", PLAN)
    spender = onboard("ww-spender", PLAN)
    names = [t["tenantId"] for t in fillers]
    # The plan's runs hold their slots mostly for a fixed time, so their durations do
    # not swing with the machine's load (on a busy CI worker, CPU-bound runs of the
    # same data took 9 s in one round and 21 s in the next).
    # Two rounds: the history and the one the late run waits behind; the third
    # (fillers[0]'s own queued run) need not hold its slot.
    for name in names:
        stack.faults.slow_step(name, "Train", HOLD_SECONDS, times=2)

    # A first run on another plan: a fresh stack's first pipeline run is slower
    # (cold caches), and the history below should be the plan's usual runs.
    warm = onboard("ww-warm", "standard")
    _upload(stack, warm, "warm.csv")
    _all_ended(api, ["ww-warm"], 1)

    # History: one round of the plan's runs, so it has durations to go by.
    for tenant in fillers:
        _upload(stack, tenant, "round-1.csv")
    _all_ended(api, names, cap)

    # The plan's cap is taken again; then more runs queue behind it.
    for tenant in fillers:
        _upload(stack, tenant, "round-2.csv")
    wait_for(
        lambda: (
            sum(r["status"] in ("STARTING", "RUNNING") for t in names for r in _runs(api, t)) == cap
        ),
        timeout=60,
        interval=0.3,
        what="the plan's cap taken",
    )
    _upload(stack, late, "late.csv")
    queued = _queued(api, "ww-late")
    assert queued["failureReason"] is None
    assert queued["waitingFor"]["code"] == "PLAN_CAP", queued
    assert f"plan {PLAN}" in queued["waitingFor"]["message"]
    assert queued["queuePosition"] == 1
    assert queued["estimatedStartAt"] is not None, queued
    estimated_wait = _ts(queued["estimatedStartAt"]) - _ts(queued["queuedAt"])
    shown = api.get(f"/tenants/ww-late/runs/{queued['runId']}").json()
    assert shown["waitingFor"]["code"] == "PLAN_CAP" and shown["estimatedStartAt"]

    # A tenant already at its per-tenant cap waits for its own run.
    _upload(stack, fillers[0], "round-2b.csv")
    own = _queued(api, names[0])
    assert own["waitingFor"]["code"] == "TENANT_CAP" and own["failureReason"] is None

    # A suspended tenant, and one over its monthly budget: held back, no estimate.
    assert api.call("PATCH", "/tenants/ww-sleepy", json={"status": "SUSPENDED"}).status_code == 200
    _upload(stack, sleepy, "zz.csv")
    _over_budget(stack, "ww-spender")
    _upload(stack, spender, "zz.csv")
    for tenant_id, code in (("ww-sleepy", "SUSPENDED"), ("ww-spender", "BUDGET")):
        held = wait_for(
            lambda t=tenant_id, c=code: (
                (r := _queued(api, t)) and (r["waitingFor"] or {}).get("code") == c and r
            ),
            timeout=60,
            interval=0.3,
            what=f"{tenant_id} waiting with {code}",
        )
        assert held["failureReason"] is None and held["estimatedStartAt"] is None

    # The queue shows the same, in dispatch order.
    plan_queue = api.get("/queue").json()[PLAN]
    codes = {r["tenantId"]: r["waitingFor"]["code"] for r in plan_queue["runs"]}
    assert codes["ww-late"] == "PLAN_CAP" and codes["ww-sleepy"] == "SUSPENDED"
    assert [r["queuePosition"] for r in plan_queue["runs"]] == sorted(
        r["queuePosition"] for r in plan_queue["runs"]
    )

    # The late run starts about when it was told (measured from when it queued).
    started = wait_for(
        lambda: next(
            (r for r in _runs(api, "ww-late") if r["startedAt"] is not None),
            None,
        ),
        timeout=600,
        interval=0.5,
        what="the late run started",
    )
    assert started["waitingFor"] is None  # cleared when it starts
    actual_wait = _ts(started["startedAt"]) - _ts(started["queuedAt"])
    # (seconds from queued to started, and to ended) of the plan's runs, if it fails
    spans = sorted(
        (round(_ts(r["startedAt"]) - _ts(r["queuedAt"])), round(r["trainingSeconds"] or -1))
        for t in names
        for r in _runs(api, t)
        if r["startedAt"]
    )
    assert actual_wait / 2 <= estimated_wait <= actual_wait * 2, (
        estimated_wait,
        actual_wait,
        spans,
    )

    # Leave nothing queued for the other tests: the held-back tenants go.
    for tenant_id in ("ww-sleepy", "ww-spender"):
        assert api.call("DELETE", f"/tenants/{tenant_id}").status_code in (200, 202)
    _all_ended(api, [*names, "ww-late"], 2 * cap + 2)
