"""Pool tenants and plan changes across isolation models, end to end on the
embedded stack: S3 -> EventBridge (tenant rule) -> SQS -> scheduler -> pipeline."""

from __future__ import annotations

from typing import Any

import pytest

from trainyard.data import tenant_csv
from trainyard.local.stack import EmbeddedStack

from .conftest import Api, wait_for

pytestmark = pytest.mark.integration

TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


def _runs(api: Api, tenant_id: str) -> list[dict[str, Any]]:
    resp = api.get(f"/tenants/{tenant_id}/runs")
    assert resp.status_code == 200, resp.text
    return resp.json()["runs"]


def _finished_runs(api: Api, tenant_id: str, count: int) -> list[dict[str, Any]]:
    def done() -> list[dict[str, Any]] | None:
        runs = _runs(api, tenant_id)
        finished = [r for r in runs if r["status"] in TERMINAL]
        return finished if len(finished) >= count else None

    return wait_for(done, timeout=240, interval=1, what=f"{count} finished run(s) of {tenant_id}")


def _keys(stack: EmbeddedStack, bucket: str, prefix: str = "") -> list[str]:
    pages = stack.client("s3").get_paginator("list_objects_v2")
    return sorted(
        o["Key"]
        for page in pages.paginate(Bucket=bucket, Prefix=prefix)
        for o in page.get("Contents", [])
    )


def _models(stack: EmbeddedStack, group: str) -> list[str]:
    packages = stack.client("sagemaker").list_model_packages(ModelPackageGroupName=group)
    return [p["ModelPackageArn"] for p in packages["ModelPackageSummaryList"]]


def test_a_basic_tenant_upsold_to_premium_keeps_its_data_and_models_and_trains_in_its_own_bucket(
    stack: EmbeddedStack, api: Api, onboard: Any
) -> None:
    tenant_id = "mig-acme"
    tenant = onboard(tenant_id, "basic")
    # basic = pool: a prefix of the shared pool bucket, not a bucket of its own.
    pool = stack.names.pool_bucket(stack.account_id)
    assert tenant["isolation"] == "pool"
    assert tenant["dataBucket"] == pool
    assert tenant["dataPrefix"] == f"tenants/{tenant_id}/data/"

    stack.client("s3").put_object(
        Bucket=pool, Key=f"tenants/{tenant_id}/data/first.csv", Body=tenant_csv(tenant_id)
    )
    [first] = _finished_runs(api, tenant_id, 1)
    assert first["status"] == "SUCCEEDED", first
    assert [o["key"] for o in first["trigger"]["objects"]] == [
        f"tenants/{tenant_id}/data/first.csv"
    ]
    group = tenant["modelPackageGroupName"]
    assert _models(stack, group) == [first["modelPackageArn"]]
    pool_keys = _keys(stack, pool, f"tenants/{tenant_id}/")
    assert f"tenants/{tenant_id}/data/first.csv" in pool_keys
    assert any("/artifacts/" in k for k in pool_keys)  # the run's output stayed in the prefix

    patched = api.call("PATCH", f"/tenants/{tenant_id}", json={"plan": "premium"})
    assert patched.status_code == 200, patched.text
    assert patched.json()["status"] == "MIGRATING"
    assert patched.json()["migratingTo"] == "silo"

    # The lifecycle schedule moves the data (an API request never does).
    moved = wait_for(
        lambda: (
            stack.advance_tenants_now() is not None
            and (body := api.get(f"/tenants/{tenant_id}").json())["status"] == "ACTIVE"
            and body
        ),
        timeout=60,
        what="the migration to finish",
    )
    silo = stack.names.silo_bucket(tenant_id, stack.account_id)
    assert moved["plan"] == "premium" and moved["isolation"] == "silo"
    assert (moved["dataBucket"], moved["dataPrefix"]) == (silo, "data/")
    assert moved["outputUri"] == f"s3://{silo}/artifacts/"
    assert moved["modelPackageGroupName"] == group and moved["roleArn"] == tenant["roleArn"]
    # Every object moved under the same relative key, and left the pool prefix.
    assert _keys(stack, silo) == sorted(k.removeprefix(f"tenants/{tenant_id}/") for k in pool_keys)
    assert _keys(stack, pool, f"tenants/{tenant_id}/") == []
    assert _models(stack, group) == [first["modelPackageArn"]]

    stack.client("s3").put_object(Bucket=silo, Key="data/second.csv", Body=tenant_csv(tenant_id))
    finished = _finished_runs(api, tenant_id, 2)
    second = finished[0]  # newest first
    assert second["status"] == "SUCCEEDED", second
    assert second["instanceType"] == "ml.m5.2xlarge"  # premium now
    # The migration's copies started no run: only the new upload triggered one.
    assert [o["key"] for o in second["trigger"]["objects"]] == ["data/second.csv"]
    assert len(_runs(api, tenant_id)) == 2
    assert sorted(_models(stack, group)) == sorted(
        [first["modelPackageArn"], second["modelPackageArn"]]
    )


def test_a_plan_change_completes_on_the_lifecycle_schedule_without_anyone_reading_the_tenant(
    stack: EmbeddedStack, api: Api, onboard: Any
) -> None:
    tenant_id = "mig-quiet"
    onboard(tenant_id, "basic")
    pool = stack.names.pool_bucket(stack.account_id)
    # Outside the data prefix: history to carry over, not an upload that starts a run.
    stack.client("s3").put_object(
        Bucket=pool, Key=f"tenants/{tenant_id}/artifacts/old/model.tar.gz", Body=b"model"
    )
    patched = api.call("PATCH", f"/tenants/{tenant_id}", json={"plan": "premium"})
    assert patched.status_code == 200 and patched.json()["status"] == "MIGRATING", patched.text

    # No GET from here on: the schedule's event, through the real handler, finishes it.
    stack.advance_tenants_now()
    item = stack.client("dynamodb").get_item(
        TableName=stack.names.tenants_table, Key={"tenantId": {"S": tenant_id}}
    )["Item"]
    assert item["status"]["S"] == "ACTIVE"
    assert item["isolation"]["S"] == "silo"
    assert "lifecycleStatus" not in item  # out of the lifecycle index again
    silo = item["dataBucket"]["S"]
    assert _keys(stack, silo) == ["artifacts/old/model.tar.gz"]
    assert _keys(stack, pool, f"tenants/{tenant_id}/") == []
