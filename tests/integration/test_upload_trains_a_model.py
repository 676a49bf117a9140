"""End to end on the embedded stack, over its real interfaces only:
HTTP onboarding API + a plain boto3 upload → a registered model in the tenant's group."""

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


def test_an_upload_trains_and_registers_a_model_for_that_tenant_only(
    stack: EmbeddedStack, api: Api, onboard: Any
) -> None:
    tenant = onboard("e2e-acme", "premium")
    other = onboard("e2e-globex", "basic")
    assert tenant["dataBucket"] != other["dataBucket"]
    assert tenant["dataPrefix"].endswith("/")

    s3 = stack.client("s3")
    put = s3.put_object(
        Bucket=tenant["dataBucket"],
        Key=f"{tenant['dataPrefix']}customers.csv",
        Body=tenant_csv("e2e-acme"),
    )

    run = wait_for(
        lambda: next((r for r in _runs(api, "e2e-acme") if r["status"] in TERMINAL), None),
        timeout=240,
        interval=1,
        what="a terminal run",
    )
    assert run["status"] == "SUCCEEDED", run
    assert run["trigger"]["type"] == "s3"
    assert [o["key"] for o in run["trigger"]["objects"]] == ["data/customers.csv"]
    assert run["metrics"]["auc"] > 0.6
    assert run["instanceType"] == "ml.m5.2xlarge"  # the premium plan's instance type
    for stamp in ("queuedAt", "startedAt", "endedAt"):
        assert run[stamp].endswith("Z") and "." in run[stamp]
    assert run["queuedAt"] <= run["startedAt"] <= run["endedAt"]

    # The model package is in this tenant's own group, and nowhere else.
    sm = stack.client("sagemaker")
    packages = sm.list_model_packages(ModelPackageGroupName=tenant["modelPackageGroupName"])
    arns = [p["ModelPackageArn"] for p in packages["ModelPackageSummaryList"]]
    assert run["modelPackageArn"] in arns
    others = sm.list_model_packages(ModelPackageGroupName=other["modelPackageGroupName"])
    assert others["ModelPackageSummaryList"] == []
    assert _runs(api, "e2e-globex") == []

    detail = api.get(f"/tenants/e2e-acme/runs/{run['runId']}")
    assert detail.status_code == 200 and detail.json()["runId"] == run["runId"]

    # Lineage: the object it trained from (by ETag and version), the definition version.
    lineage = detail.json()["lineage"]
    assert lineage["inputs"] == [
        {
            "key": "customers.csv",
            "etag": put["ETag"],
            "size": len(tenant_csv("e2e-acme")),
            "versionId": put["VersionId"],
        }
    ]
    assert lineage["inputsOmitted"] == 0
    assert lineage["definitionVersion"] == stack.platform.definition_version
    assert lineage["definitionVersion"].startswith("sha256:")
    assert lineage["problemType"] == run["training"]["problemType"]
    assert lineage["metric"] == "auc"
    # The package itself says whose model it is, from which run, and how good.
    metadata = sm.describe_model_package(ModelPackageName=run["modelPackageArn"])[
        "CustomerMetadataProperties"
    ]
    assert metadata["trainyard:tenantId"] == "e2e-acme"
    assert metadata["trainyard:runId"] == run["runId"]
    assert metadata["trainyard:primaryMetric"] == "auc"
    assert float(metadata["trainyard:primaryMetricValue"]) == pytest.approx(run["metrics"]["auc"])
    assert {name: float(metadata[f"trainyard:metric:{name}"]) for name in run["metrics"]} == run[
        "metrics"
    ]

    # The execution ran with the tenant's parameters (its role, its data).
    execution = sm.describe_pipeline_execution(PipelineExecutionArn=run["executionArn"])
    assert execution["PipelineExecutionStatus"] == "Succeeded"
    params = {
        p["Name"]: p["Value"]
        for p in sm.list_pipeline_parameters_for_execution(
            PipelineExecutionArn=run["executionArn"]
        )["PipelineParameters"]
    }
    assert params["ExecutionRoleArn"] == tenant["roleArn"]
    assert params["InputDataUri"] == f"s3://{tenant['dataBucket']}/{tenant['dataPrefix']}"
    assert params["TenantId"] == "e2e-acme"


def test_bad_training_data_ends_in_a_failed_run_with_the_reason(
    stack: EmbeddedStack, api: Api, onboard: Any
) -> None:
    tenant = onboard("e2e-badcsv", "standard")
    stack.client("s3").put_object(
        Bucket=tenant["dataBucket"],
        Key=f"{tenant['dataPrefix']}broken.csv",
        Body=b"f0,f1\n1,2\n3,4\n",
    )
    run = wait_for(
        lambda: next((r for r in _runs(api, "e2e-badcsv") if r["status"] in TERMINAL), None),
        timeout=120,
        interval=1,
        what="a terminal run",
    )
    assert run["status"] == "FAILED"
    assert "label" in (run["failureReason"] or "")


def test_the_api_describes_plans_and_refuses_bad_input_with_a_code(api: Api) -> None:
    plans = api.get("/plans").json()
    assert {p["name"] for p in plans["plans"]} == {"basic", "standard", "premium"}
    assert plans["globalMaxConcurrentRuns"] == 20
    bad = api.post("/tenants", json={"tenantId": "Not_Valid", "plan": "basic"})
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "InvalidTenantId"
    malformed = api.post(
        "/tenants", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert malformed.status_code == 400
    assert malformed.json()["error"]["code"] == "MalformedJson"
    missing = api.get("/tenants/nobody-here")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "TenantNotFound"
    health = api.get("/health").json()
    assert health["status"] == "ok" and health["awsEndpointUrl"].startswith("http://127.0.0.1:")
