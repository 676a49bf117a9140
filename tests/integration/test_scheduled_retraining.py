"""Scheduled retraining on the embedded stack: a due tenant whose data changed is
retrained once; an unchanged one is not. Over HTTP and S3 only, with the
lifecycle schedule fired instead of waited for (schedules of seconds: TEST_SETTINGS)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from trainyard.data import tenant_csv
from trainyard.local.stack import EmbeddedStack

from .conftest import Api, wait_for

pytestmark = pytest.mark.integration

TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
EVERY_SECONDS = 2


def _runs(api: Api, tenant_id: str) -> list[dict[str, Any]]:
    resp = api.get(f"/tenants/{tenant_id}/runs")
    assert resp.status_code == 200, resp.text
    return resp.json()["runs"]


def _all_done(api: Api, tenant_id: str, count: int) -> list[dict[str, Any]] | None:
    runs = _runs(api, tenant_id)
    done = [r for r in runs if r["status"] in TERMINAL]
    return runs if len(runs) >= count and len(done) == len(runs) else None


def _due_check(stack: EmbeddedStack) -> None:
    time.sleep(EVERY_SECONDS + 0.2)  # both schedules are due again
    stack.advance_tenants_now()


def test_a_due_tenant_is_retrained_once_when_its_data_changed_and_an_unchanged_one_is_not(
    stack: EmbeddedStack, api: Api, onboard: Any
) -> None:
    changing, calm = onboard("retrain-a", "basic"), onboard("retrain-b", "basic")
    # Its data changes too, but its schedule is not due for a day: not retrained.
    later = onboard("retrain-c", "basic")
    s3 = stack.client("s3")
    for tenant in (changing, calm, later):
        for name in ("part-1.csv", "part-2.csv"):
            s3.put_object(
                Bucket=tenant["dataBucket"],
                Key=f"{tenant['dataPrefix']}{name}",
                Body=tenant_csv(tenant["tenantId"]),
            )
    first = {
        t["tenantId"]: wait_for(
            lambda t=t: _all_done(api, t["tenantId"], 1),
            timeout=300,
            interval=1,
            what=f"{t['tenantId']}'s upload runs",
        )
        for t in (changing, calm, later)
    }
    for runs in first.values():
        assert runs[0]["status"] == "SUCCEEDED", runs[0]

    for tenant in (changing, calm):
        resp = api.call(
            "PATCH", f"/tenants/{tenant['tenantId']}", json={"retrain": {"every": "PT2S"}}
        )
        assert resp.status_code == 200, resp.text
        assert resp.json()["retrain"]["every"] == "PT2S"
        assert "retrainFingerprint" not in resp.json()
    resp = api.call("PATCH", "/tenants/retrain-c", json={"retrain": {"every": "P1D"}})
    assert resp.status_code == 200, resp.text

    # Due, and nothing changed since the runs that just succeeded: no run.
    _due_check(stack)
    for tenant in (changing, calm):
        body = api.get(f"/tenants/{tenant['tenantId']}").json()
        assert body["retrain"]["lastOutcome"] == "unchanged since the last successful run", body
        assert len(_runs(api, tenant["tenantId"])) == len(first[tenant["tenantId"]])

    # A file removed (no upload, so nothing else starts a run): a change.
    for tenant in (changing, later):
        s3.delete_object(Bucket=tenant["dataBucket"], Key=f"{tenant['dataPrefix']}part-2.csv")
    _due_check(stack)
    assert len(_runs(api, "retrain-c")) == len(first["retrain-c"])
    assert api.get("/tenants/retrain-c").json()["retrain"].get("lastCheckedAt") is None
    runs = _runs(api, "retrain-a")
    scheduled = [r for r in runs if r["trigger"]["type"] == "schedule"]
    assert len(scheduled) == 1, (
        api.get("/tenants/retrain-a").json()["retrain"],
        [(r["runId"], r["status"], r["startedAt"]) for r in runs],
    )
    assert api.get("/tenants/retrain-a").json()["retrain"]["lastRunId"] == scheduled[0]["runId"]
    done = wait_for(
        lambda: next(
            (
                r
                for r in _runs(api, "retrain-a")
                if r["runId"] == scheduled[0]["runId"] and r["status"] in TERMINAL
            ),
            None,
        ),
        timeout=240,
        interval=1,
        what="the scheduled run's end",
    )
    assert done["status"] == "SUCCEEDED", done

    # Due again: both unchanged since their last successful runs.
    _due_check(stack)
    again = [r for r in _runs(api, "retrain-a") if r["trigger"]["type"] == "schedule"]
    assert [r["runId"] for r in again] == [scheduled[0]["runId"]]
    assert not [r for r in _runs(api, "retrain-b") if r["trigger"]["type"] == "schedule"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"retrain": {"every": "weekly"}}, "InvalidRetrainSchedule"),
        ({"retrain": {"every": "P999D"}}, "InvalidRetrainSchedule"),
        ({"retrain": {"every": "P1D", "at": "03:00"}}, "InvalidBody"),
    ],
)
def test_a_retrain_schedule_that_is_not_a_period_is_a_400_with_its_code(
    api: Api, onboard: Any, body: dict[str, Any], code: str
) -> None:
    onboard("retrain-bad", "basic")
    resp = api.call("PATCH", "/tenants/retrain-bad", json=body)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["code"] == code and error["message"], resp.text


def test_a_retrain_schedule_is_removed_with_null(api: Api, onboard: Any) -> None:
    onboard("retrain-off", "basic")
    set_ = api.call("PATCH", "/tenants/retrain-off", json={"retrain": {"every": "P7D"}})
    assert set_.status_code == 200 and set_.json()["retrain"]["every"] == "P7D"
    off = api.call("PATCH", "/tenants/retrain-off", json={"retrain": None})
    assert off.status_code == 200, off.text
    assert off.json()["retrain"] is None
