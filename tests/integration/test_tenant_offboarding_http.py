"""Offboarding over the HTTP API on the embedded stack leaves nothing for anyone:
a purge while a run is RUNNING stops it first (nothing is written after the purge),
an id whose files were retained is refused, and a FAILED tenant can always be
removed. No answer here is a 500."""

from __future__ import annotations

from typing import Any

import pytest

from trainyard.data import tenant_csv
from trainyard.local.stack import EmbeddedStack

from .conftest import Api, wait_for

pytestmark = pytest.mark.integration


def _runs(api: Api, tenant_id: str) -> list[dict[str, Any]]:
    return api.get(f"/tenants/{tenant_id}/runs").json()["runs"]


def _keys(stack: EmbeddedStack, bucket: str, prefix: str) -> list[str]:
    s3 = stack.client("s3")
    pages = s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix)
    return [v["Key"] for page in pages for v in page.get("Versions", [])]


def test_a_purge_while_a_run_is_running_stops_it_and_nothing_is_written_after(
    stack: EmbeddedStack, api: Api, onboard: Any
) -> None:
    tid = "off-running"
    tenant = onboard(tid, "basic")  # pool: the purge must empty its prefix of a shared bucket
    # RUNNING for a while, artifacts to come: the first step waits, so the DELETE (which
    # deletes the tenant's stack, and its role, at once) comes before any job needs the role.
    stack.faults.slow_step(tid, "Preprocess", 30)  # a stop cuts the wait short
    stack.client("s3").put_object(
        Bucket=tenant["dataBucket"], Key=f"{tenant['dataPrefix']}a.csv", Body=tenant_csv(tid)
    )
    run = wait_for(
        lambda: (r := _runs(api, tid)) and r[0]["status"] == "RUNNING" and r[0],
        timeout=60,
        what="a running run",
    )
    resp = api.call("DELETE", f"/tenants/{tid}?purge=true")
    assert resp.status_code == 202, resp.text

    def gone() -> bool:
        stack.advance_tenants_now()
        return api.get(f"/tenants/{tid}").status_code == 404

    wait_for(gone, timeout=90, interval=1, what="the purged tenant to be gone")
    assert stack.wait_idle(timeout=60)
    sm = stack.client("sagemaker")
    execution = sm.describe_pipeline_execution(PipelineExecutionArn=run["executionArn"])
    assert execution["PipelineExecutionStatus"] == "Stopped"
    # Nothing of the tenant is left, nor written later by its pipeline.
    assert _keys(stack, tenant["dataBucket"], f"tenants/{tid}/") == []
    packages = sm.list_model_packages(ModelPackageGroupName=tenant["modelPackageGroupName"])
    assert packages["ModelPackageSummaryList"] == []
    groups = sm.list_model_package_groups(NameContains=tenant["modelPackageGroupName"])
    assert groups["ModelPackageGroupSummaryList"] == []
    # Its run history stays (the tenant's API is gone with it): the run ended STOPPED.
    from trainyard_handlers import dependencies

    stack.reconcile_now()
    final = dependencies.run_service().runs.get_run(tid, run["runId"])
    assert final is not None and final.status.value == "STOPPED"


def test_a_pool_id_whose_files_never_started_a_run_is_not_given_to_a_new_tenant(
    stack: EmbeddedStack, api: Api, onboard: Any
) -> None:
    tid = "off-files"
    tenant = onboard(tid, "basic")
    s3 = stack.client("s3")
    for name in ("customer-list.xlsx", "train.CSV"):  # neither starts a run
        s3.put_object(Bucket=tenant["dataBucket"], Key=f"{tenant['dataPrefix']}{name}", Body=b"x")
    assert api.call("DELETE", f"/tenants/{tid}").status_code == 202
    wait_for(lambda: api.get(f"/tenants/{tid}").status_code == 404, timeout=60, what="offboarded")
    # No run history needed: the files alone tie the id to its owner.
    for plan in ("basic", "premium"):  # pool again, or silo: both would read them
        again = api.post("/tenants", json={"tenantId": tid, "plan": plan})
        assert again.status_code == 409, again.text
        assert again.json()["error"]["code"] == "TenantIdRetired"
        assert f"tenants/{tid}/" in again.json()["error"]["message"]


def test_an_id_being_offboarded_is_refused_with_a_409_not_handed_back(
    stack: EmbeddedStack, api: Api, onboard: Any
) -> None:
    tid = "off-during"
    onboard(tid, "premium")
    stack.faults.slow_step(tid, "Train", 30)
    tenant = api.get(f"/tenants/{tid}").json()
    stack.client("s3").put_object(
        Bucket=tenant["dataBucket"], Key=f"{tenant['dataPrefix']}a.csv", Body=tenant_csv(tid)
    )
    wait_for(
        lambda: (r := _runs(api, tid)) and r[0]["status"] == "RUNNING",
        timeout=60,
        what="a running run",
    )
    assert api.call("DELETE", f"/tenants/{tid}?purge=true").status_code == 202
    again = api.post("/tenants", json={"tenantId": tid, "plan": "premium"})
    assert again.status_code == 409, again.text
    assert again.json()["error"]["code"] == "TenantOffboarding"

    def gone() -> bool:
        stack.advance_tenants_now()
        return api.get(f"/tenants/{tid}").status_code == 404

    wait_for(gone, timeout=90, interval=1, what="the purged tenant to be gone")


def test_a_failed_silo_tenant_whose_bucket_name_is_taken_can_be_removed(
    stack: EmbeddedStack, api: Api
) -> None:
    from trainyard_handlers import dependencies

    tid = "off-failed"
    bucket = f"{stack.names.prefix}-{tid}-{stack.account_id}"
    s3 = stack.client("s3")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="data/old.csv", Body=b"kept")
    # Up front, a create is refused: the bucket of that name holds data.
    refused = api.post("/tenants", json={"tenantId": tid, "plan": "premium"})
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "TenantIdRetired"

    # The bucket appears after the check (a race, or a name taken elsewhere): the
    # stack fails with AlreadyExists and the tenant ends FAILED with that reason.
    service = dependencies.tenant_service()
    check, settings = service.retained, service.settings
    service.retained = lambda tenant_id: []
    service.settings = settings.model_copy(update={"provisioning_attempts": 1})
    try:
        created = api.post("/tenants", json={"tenantId": tid, "plan": "premium"})
    finally:
        service.retained, service.settings = check, settings
    assert created.status_code == 202, created.text
    failed = api.get(f"/tenants/{tid}")
    assert failed.status_code == 200 and failed.json()["status"] == "FAILED"
    assert "already exists" in failed.json()["failureReason"]
    # Retrying is refused with the reason (not a 500), and DELETE works.
    retry = api.post("/tenants", json={"tenantId": tid, "plan": "premium"})
    assert retry.status_code == 409, retry.text
    assert api.get("/tenants").status_code == 200
    deleted = api.call("DELETE", f"/tenants/{tid}?purge=true")
    assert deleted.status_code == 202, deleted.text

    def gone() -> bool:
        stack.advance_tenants_now()
        return api.get(f"/tenants/{tid}").status_code == 404

    wait_for(gone, timeout=60, interval=1, what="the failed tenant to be removed")
    # It never owned the bucket: a purge of the FAILED tenant leaves it alone.
    assert _keys(stack, bucket, "") == ["data/old.csv"]
