"""Tenant lifecycle over the HTTP API on the embedded stack: suspend/resume and a
provisioning failure that ends FAILED with a reason and heals on retry."""

from __future__ import annotations

from typing import Any

import pytest

from trainyard.data import tenant_csv
from trainyard.local.stack import EmbeddedStack

from .conftest import Api, wait_for

pytestmark = pytest.mark.integration


def _only_run(api: Api, tenant_id: str) -> dict[str, Any] | None:
    runs = api.get(f"/tenants/{tenant_id}/runs").json()["runs"]
    return runs[0] if runs else None


def test_a_suspended_tenants_upload_waits_and_starts_on_resume(
    stack: EmbeddedStack, api: Api, onboard: Any
) -> None:
    tenant = onboard("lc-suspend", "premium")
    resp = api.call("PATCH", "/tenants/lc-suspend", json={"status": "SUSPENDED"})
    assert resp.status_code == 200 and resp.json()["status"] == "SUSPENDED"

    stack.client("s3").put_object(
        Bucket=tenant["dataBucket"],
        Key=f"{tenant['dataPrefix']}train.csv",
        Body=tenant_csv("lc-suspend"),
    )
    waiting = wait_for(
        lambda: (
            (r := _only_run(api, "lc-suspend"))
            and (r["waitingFor"] or {}).get("code") == "SUSPENDED"
            and r
        ),
        timeout=30,
        what="a run waiting because the tenant is suspended",
    )
    assert waiting["status"] == "QUEUED" and waiting["queuePosition"] >= 1
    assert waiting["failureReason"] is None and waiting["estimatedStartAt"] is None

    assert api.call("PATCH", "/tenants/lc-suspend", json={"status": "ACTIVE"}).status_code == 200
    done = wait_for(
        lambda: (r := _only_run(api, "lc-suspend")) and r["status"] == "SUCCEEDED" and r,
        timeout=120,
        interval=1,
        what="the resumed tenant's run to succeed",
    )
    assert done["failureReason"] is None and done["waitingFor"] is None


def test_a_run_waiting_during_a_plan_change_runs_under_the_new_plan(
    stack: EmbeddedStack, api: Api, onboard: Any
) -> None:
    tenant = onboard("lc-upgrade", "basic")
    assert api.call("PATCH", "/tenants/lc-upgrade", json={"status": "SUSPENDED"}).status_code == 200
    stack.client("s3").put_object(
        Bucket=tenant["dataBucket"],
        Key=f"{tenant['dataPrefix']}train.csv",
        Body=tenant_csv("lc-upgrade"),
    )
    waiting = wait_for(
        lambda: (r := _only_run(api, "lc-upgrade")) and r["status"] == "QUEUED" and r,
        timeout=30,
        what="the suspended tenant's run to wait",
    )
    assert waiting["plan"] == "basic"

    resp = api.call("PATCH", "/tenants/lc-upgrade", json={"plan": "standard"})
    assert resp.status_code == 200 and resp.json()["plan"] == "standard"
    moved = _only_run(api, "lc-upgrade")
    assert moved is not None and moved["runId"] == waiting["runId"]
    assert moved["plan"] == "standard" and moved["status"] == "QUEUED"
    queue = api.get("/queue").json()
    assert waiting["runId"] in [r["runId"] for r in queue["standard"]["runs"]]
    assert waiting["runId"] not in [r["runId"] for r in queue["basic"]["runs"]]

    assert api.call("PATCH", "/tenants/lc-upgrade", json={"status": "ACTIVE"}).status_code == 200
    done = wait_for(
        lambda: (r := _only_run(api, "lc-upgrade")) and r["status"] == "SUCCEEDED" and r,
        timeout=120,
        interval=1,
        what="the run to succeed under the new plan",
    )
    assert done["plan"] == "standard" and done["instanceType"] == "ml.m5.xlarge"


def test_an_offboarded_tenants_id_with_history_is_not_given_to_a_new_tenant(
    stack: EmbeddedStack, api: Api, onboard: Any
) -> None:
    onboard("lc-reuse", "basic")
    assert api.call("PATCH", "/tenants/lc-reuse", json={"status": "SUSPENDED"}).status_code == 200
    assert api.call("POST", "/tenants/lc-reuse/runs").status_code == 202  # history
    assert api.call("DELETE", "/tenants/lc-reuse").status_code == 202
    wait_for(
        lambda: api.get("/tenants/lc-reuse").status_code == 404,
        timeout=60,
        what="the tenant to be offboarded",
    )
    again = api.call("POST", "/tenants", json={"tenantId": "lc-reuse", "plan": "basic"})
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "TenantIdRetired"
    # An id that never ran anything is free again after offboarding.
    onboard("lc-fresh", "basic")
    assert api.call("DELETE", "/tenants/lc-fresh").status_code == 202
    wait_for(
        lambda: api.get("/tenants/lc-fresh").status_code == 404,
        timeout=60,
        what="the unused tenant to be offboarded",
    )
    assert onboard("lc-fresh", "basic")["status"] == "ACTIVE"


def test_a_failed_provisioning_is_reported_and_a_retry_succeeds(
    stack: EmbeddedStack, api: Api
) -> None:
    from botocore.exceptions import ClientError
    from trainyard_handlers import dependencies

    # Fault: CloudFormation throttles the onboarding Lambda's CreateStack call.
    cfn = dependencies.tenant_service().provisioner._cfn

    def throttled(**_: Any) -> None:
        raise ClientError(
            {"Error": {"Code": "Throttling", "Message": "Rate exceeded"}}, "CreateStack"
        )

    cfn.meta.events.register_first(
        "before-call.cloudformation.CreateStack", throttled, unique_id="lc-throttle"
    )
    try:
        first = api.post("/tenants", json={"tenantId": "lc-retry", "plan": "premium"})
    finally:
        cfn.meta.events.unregister(
            "before-call.cloudformation.CreateStack", unique_id="lc-throttle"
        )
    assert first.status_code == 202, first.text
    failed = api.get("/tenants/lc-retry").json()
    assert failed["status"] == "FAILED"
    assert "Rate exceeded" in failed["failureReason"]

    retry = api.post("/tenants", json={"tenantId": "lc-retry", "plan": "premium"})
    assert retry.status_code in (200, 201, 202), retry.text
    healed = wait_for(
        lambda: (t := api.get("/tenants/lc-retry").json())["status"] == "ACTIVE" and t,
        timeout=30,
        what="the retried tenant to be ACTIVE",
    )
    assert healed["failureReason"] is None
    assert healed["dataBucket"] == f"{stack.names.prefix}-lc-retry-{stack.account_id}"
