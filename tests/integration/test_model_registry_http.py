"""A tenant's model registry and Trainyard's events on the embedded stack, over the
HTTP API and plain boto3: trained models are listed, approved and rejected through
the API and SageMaker shows the decision; each decision and each step of a run's
lifecycle is on the default bus exactly once (captured by an EventBridge rule into
an SQS queue, as a deployment stack's rule would see them)."""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import pytest

from trainyard.data import tenant_csv
from trainyard.local.stack import EmbeddedStack

from .conftest import Api, bus_probe, wait_for

pytestmark = pytest.mark.integration

TENANTS = {"mdl-acme": "premium", "mdl-globex": "basic"}


class Bus:
    """Everything with source ``trainyard`` on the default bus, via a rule -> SQS."""

    def __init__(self, stack: EmbeddedStack, name: str) -> None:
        self.sqs = stack.client("sqs")
        self.url = bus_probe(stack, name, {"source": ["trainyard"]})
        self.seen: list[dict[str, Any]] = []

    def drain(self) -> list[dict[str, Any]]:
        while True:
            batch = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10).get(
                "Messages", []
            )
            if not batch:
                return self.seen
            for message in batch:
                self.seen.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])

    def of(self, tenant_id: str) -> list[dict[str, Any]]:
        return [e for e in self.drain() if e["detail"]["tenantId"] == tenant_id]


@pytest.fixture(scope="module")
def bus(stack: EmbeddedStack) -> Bus:
    return Bus(stack, "test-trainyard-events")


@pytest.fixture(scope="module")
def trained(stack: EmbeddedStack, api: Api, onboard: Any, bus: Bus) -> dict[str, dict[str, Any]]:
    """Each tenant's one run, SUCCEEDED with a registered model (trained side by side)."""
    tenants = {tenant_id: onboard(tenant_id, plan) for tenant_id, plan in TENANTS.items()}
    s3 = stack.client("s3")
    for tenant_id, tenant in tenants.items():
        s3.put_object(
            Bucket=tenant["dataBucket"],
            Key=f"{tenant['dataPrefix']}customers.csv",
            Body=tenant_csv(tenant_id),
        )

    def ended(tenant_id: str) -> dict[str, Any] | None:
        runs = api.get(f"/tenants/{tenant_id}/runs").json()["runs"]
        done = [r for r in runs if r["status"] in ("SUCCEEDED", "FAILED", "STOPPED")]
        return done[0] if done else None

    runs = {
        t: wait_for(lambda t=t: ended(t), timeout=300, interval=1, what=f"{t} run") for t in tenants
    }
    for run in runs.values():
        assert run["status"] == "SUCCEEDED", run
    return runs


def _events_of(bus: Bus, tenant_id: str, name: str, count: int = 1) -> list[dict[str, Any]]:
    def found() -> list[dict[str, Any]] | None:
        hits = [e for e in bus.of(tenant_id) if e["detail"]["event"] == name]
        return hits if len(hits) >= count else None

    return wait_for(found, timeout=30, interval=0.5, what=f"{name} of {tenant_id}")


def test_a_trained_model_is_listed_with_its_run_and_metrics(
    api: Api, trained: dict[str, dict[str, Any]]
) -> None:
    run = trained["mdl-acme"]
    body = api.get("/tenants/mdl-acme/models").json()
    [model] = body["models"]
    assert "nextToken" not in body
    assert model["version"] == 1 and model["status"] == "PendingManualApproval"
    assert model["modelPackageArn"] == run["modelPackageArn"]
    assert model["runId"] == run["runId"]
    assert model["metrics"]["auc"] == pytest.approx(run["metrics"]["auc"], abs=1e-6)
    assert model["createdAt"].endswith("Z")
    assert (
        api.get("/tenants/mdl-globex/models").json()["models"][0]["runId"]
        == (trained["mdl-globex"]["runId"])
    )


def test_an_approved_model_is_approved_in_sagemaker_and_announced_on_the_bus(
    stack: EmbeddedStack, api: Api, trained: dict[str, dict[str, Any]], bus: Bus
) -> None:
    resp = api.post("/tenants/mdl-acme/models/1/approve", json={"reason": "beats production"})
    assert resp.status_code == 200, resp.text
    model = resp.json()
    assert model["status"] == "Approved" and model["reason"] == "beats production"
    caller = f"arn:aws:iam::{stack.account_id}:root"  # the local API's caller
    assert model["decidedBy"] == caller

    described = stack.client("sagemaker").describe_model_package(
        ModelPackageName=model["modelPackageArn"]
    )
    assert described["ModelApprovalStatus"] == "Approved"
    assert described["ApprovalDescription"] == "beats production"
    assert described["CustomerMetadataProperties"]["trainyard:decidedBy"] == caller
    assert described["CustomerMetadataProperties"]["trainyard:tenantId"] == "mdl-acme"

    [event] = _events_of(bus, "mdl-acme", "model.approved")
    assert event["source"] == "trainyard" and event["detail-type"] == "Trainyard Model Approved"
    detail = event["detail"]
    assert detail["version"] == "1" and detail["modelVersion"] == 1
    assert detail["modelPackageArn"] == model["modelPackageArn"]
    assert detail["approvedBy"] == caller and detail["reason"] == "beats production"
    assert detail["runId"] == trained["mdl-acme"]["runId"] and detail["metrics"]["auc"] > 0.6
    assert detail["status"] == "Approved"

    # A repeated approval is answered with the model and announces nothing new.
    again = api.post("/tenants/mdl-acme/models/1/approve")
    assert again.status_code == 200 and again.json()["reason"] == "beats production"
    time.sleep(1)
    assert len([e for e in bus.of("mdl-acme") if e["detail"]["event"] == "model.approved"]) == 1


def test_a_rejected_model_is_rejected_in_sagemaker_and_announced_on_the_bus(
    stack: EmbeddedStack, api: Api, trained: dict[str, dict[str, Any]], bus: Bus
) -> None:
    resp = api.post("/tenants/mdl-globex/models/1/reject", json={"reason": "AUC too low"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "Rejected"
    described = stack.client("sagemaker").describe_model_package(
        ModelPackageName=resp.json()["modelPackageArn"]
    )
    assert described["ModelApprovalStatus"] == "Rejected"
    assert described["ApprovalDescription"] == "AUC too low"
    [event] = _events_of(bus, "mdl-globex", "model.rejected")
    assert event["detail-type"] == "Trainyard Model Rejected"
    assert event["detail"]["rejectedBy"] == f"arn:aws:iam::{stack.account_id}:root"
    assert event["detail"]["reason"] == "AUC too low"
    assert api.get("/tenants/mdl-globex/models").json()["models"][0]["status"] == "Rejected"


def test_a_runs_lifecycle_and_its_model_are_announced_once_per_step(
    trained: dict[str, dict[str, Any]], bus: Bus
) -> None:
    for tenant_id, run in trained.items():
        _events_of(bus, tenant_id, "model.registered")
        mine = [e for e in bus.of(tenant_id) if e["detail"].get("runId") == run["runId"]]
        steps = Counter(e["detail"]["event"] for e in mine)
        assert steps["run.queued"] == 1 and steps["run.started"] == 1, steps
        assert steps["run.succeeded"] == 1 and steps["model.registered"] == 1, steps
        assert steps["run.failed"] == 0, steps
        ended = next(e["detail"] for e in mine if e["detail"]["event"] == "run.succeeded")
        assert ended["status"] == "SUCCEEDED" and ended["plan"] == TENANTS[tenant_id]
        assert ended["modelPackageArn"] == run["modelPackageArn"]
        assert ended["metrics"]["auc"] == pytest.approx(run["metrics"]["auc"], abs=1e-6)
        assert ended["queuedAt"] == run["queuedAt"] and ended["startedAt"] == run["startedAt"]
        assert ended["endedAt"] and ended["failureReason"] is None
        registered = next(e["detail"] for e in mine if e["detail"]["event"] == "model.registered")
        assert registered["status"] == "PendingManualApproval"
        assert registered["modelVersion"] == 1


def test_every_model_refusal_is_a_4xx_with_a_code_and_a_message(
    stack: EmbeddedStack, api: Api, trained: dict[str, dict[str, Any]]
) -> None:
    # A package in acme's group that claims another tenant (never Trainyard's doing).
    sm = stack.client("sagemaker")
    group = api.get("/tenants/mdl-acme").json()["modelPackageGroupName"]
    sm.create_model_package(
        ModelPackageGroupName=group,
        ModelApprovalStatus="PendingManualApproval",
        CustomerMetadataProperties={"trainyard:tenantId": "mdl-globex"},
    )
    cases = [
        ("GET", "/tenants/nobody-here/models", None, 404, "TenantNotFound"),
        ("POST", "/tenants/nobody-here/models/1/approve", None, 404, "TenantNotFound"),
        ("POST", "/tenants/mdl-acme/models/99/approve", None, 404, "ModelNotFound"),
        ("POST", "/tenants/mdl-acme/models/abc/approve", None, 400, "InvalidModelVersion"),
        ("POST", "/tenants/mdl-acme/models/0/reject", None, 400, "InvalidModelVersion"),
        ("POST", "/tenants/mdl-acme/models/2/approve", None, 409, "ModelOfAnotherTenant"),
        ("POST", "/tenants/mdl-acme/models/1/reject", {"reason": "x" * 1025}, 400, "InvalidReason"),
        ("POST", "/tenants/mdl-acme/models/1/reject", {"reason": "a\nb"}, 400, "InvalidReason"),
        ("POST", "/tenants/mdl-acme/models/1/reject", {"why": "?"}, 400, "InvalidBody"),
        ("POST", "/tenants/mdl-acme/models/1/reject", {"reason": 5}, 400, "InvalidBody"),
        ("POST", "/tenants/mdl-acme/models/1/reject", b"{nope", 400, "MalformedJson"),
        ("POST", "/tenants/mdl-acme/models/1/reject", b"x" * 20000, 413, "PayloadTooLarge"),
        ("GET", "/tenants/mdl-acme/models?limit=0", None, 400, "InvalidLimit"),
        ("GET", "/tenants/mdl-acme/models?nextToken=forged", None, 400, "InvalidNextToken"),
    ]
    for method, path, body, status, code in cases:
        kwargs: dict[str, Any] = {}
        if isinstance(body, bytes):
            kwargs = {"data": body, "headers": {"Content-Type": "application/json"}}
        elif body is not None:
            kwargs = {"json": body}
        resp = api.call(method, path, **kwargs)
        assert resp.status_code == status, (path, body, resp.text)
        error = resp.json()["error"]
        assert error["code"] == code and error["message"], (path, error)
    # None of them changed the model.
    assert sm.describe_model_package(ModelPackageName=trained["mdl-acme"]["modelPackageArn"])[
        "ModelApprovalStatus"
    ] in ("Approved", "PendingManualApproval")
