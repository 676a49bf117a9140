"""A plan's auto-approval rule on an embedded stack of its own (`trainyard local up`
in a subprocess, configured through TRAINYARD_CONFIG as an operator would): a model
over the plan's threshold is approved by Trainyard, one under it waits for a person,
and the approval is on the default bus like a person's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
import requests

from trainyard.data import LABEL, _rows, _to_csv, feature_names, tenant_arrays, tenant_csv

from .conftest import Api, wait_for
from .test_model_registry_http import Bus

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
MIN_AUC = 0.85
CONFIG = {
    # Registration stays open to weak models (0.5) so the rule, not the pipeline's
    # threshold, is what tells them apart.
    "metricThreshold": 0.5,
    "plans": {"standard": {"autoApprove": {"metric": "auc", "min": MIN_AUC}}},
}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Remote:
    """The subprocess stack's AWS endpoint, as the in-process stack's ``client`` is."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Api, Remote]]:
    work = tmp_path_factory.mktemp("auto-approval")
    config = work / "trainyard.json"
    config.write_text(json.dumps(CONFIG))
    aws_port, api_port = _free_port(), _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "trainyard.cli",
            "local",
            "up",
            "--aws-port",
            str(aws_port),
            "--api-port",
            str(api_port),
            "--workdir",
            str(work / "stack"),
        ],
        cwd=REPO,
        env={**os.environ, "CI": "true", "TRAINYARD_CONFIG": str(config)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        api = Api(f"http://127.0.0.1:{api_port}")

        def healthy() -> bool:
            try:
                return api.get("/health").ok
            except requests.RequestException:
                return proc.poll() is not None  # ends the wait; asserted below

        wait_for(healthy, timeout=180, interval=0.5, what="the stack's /health")
        assert proc.poll() is None, "trainyard local up exited"
        yield api, Remote(f"http://127.0.0.1:{aws_port}")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def noisy_csv(tenant_id: str, flip: float) -> bytes:
    """The tenant's data with a share of its labels flipped: AUC ~0.65, not ~0.95."""
    x, y = tenant_arrays(tenant_id)
    flipped = np.random.default_rng(7).random(len(y)) < flip
    y = np.where(flipped, 1 - y, y)
    return _to_csv([*feature_names(x.shape[1]), LABEL], _rows(x, y))


def test_a_model_over_the_plans_threshold_is_approved_and_one_under_it_is_not(
    remote: tuple[Api, Remote],
) -> None:
    api, aws = remote
    plans = {p["name"]: p for p in api.get("/plans").json()["plans"]}
    assert plans["standard"]["autoApprove"] == {"metric": "auc", "min": MIN_AUC}
    assert plans["basic"]["autoApprove"] is None
    bus = Bus(aws, "test-auto-approval-events")  # type: ignore[arg-type]
    data = {"aa-good": tenant_csv("aa-good"), "aa-weak": noisy_csv("aa-weak", 0.25)}
    tenants = {}
    for tenant_id in data:
        assert api.post("/tenants", json={"tenantId": tenant_id, "plan": "standard"}).ok
    for tenant_id, body in data.items():
        tenants[tenant_id] = wait_for(
            lambda t=tenant_id: (lambda b: b if b["status"] == "ACTIVE" else None)(
                api.get(f"/tenants/{t}").json()
            ),
            timeout=60,
            what=f"{tenant_id} ACTIVE",
        )
        tenant = tenants[tenant_id]
        aws.client("s3").put_object(
            Bucket=tenant["dataBucket"], Key=f"{tenant['dataPrefix']}part.csv", Body=body
        )

    def registered(tenant_id: str) -> dict[str, Any] | None:
        runs = api.get(f"/tenants/{tenant_id}/runs").json()["runs"]
        if runs and runs[0]["status"] in ("FAILED", "STOPPED"):
            raise AssertionError(runs[0])
        models = api.get(f"/tenants/{tenant_id}/models").json()["models"]
        return models[0] if runs and runs[0]["status"] == "SUCCEEDED" and models else None

    good = wait_for(lambda: registered("aa-good"), timeout=400, interval=2, what="good model")
    weak = wait_for(lambda: registered("aa-weak"), timeout=400, interval=2, what="weak model")
    assert good["metrics"]["auc"] >= MIN_AUC > weak["metrics"]["auc"] >= 0.5

    sm = aws.client("sagemaker")
    assert good["status"] == "Approved" and good["decidedBy"] == "trainyard:auto-approval"
    assert f"auc {good['metrics']['auc']:.4f} >= {MIN_AUC:g}" in good["reason"]
    described = sm.describe_model_package(ModelPackageName=good["modelPackageArn"])
    assert described["ModelApprovalStatus"] == "Approved"
    assert weak["status"] == "PendingManualApproval" and weak["decidedBy"] is None
    described = sm.describe_model_package(ModelPackageName=weak["modelPackageArn"])
    assert described["ModelApprovalStatus"] == "PendingManualApproval"

    def approvals() -> list[dict[str, Any]] | None:
        found = [e["detail"] for e in bus.drain() if e["detail"]["event"] == "model.approved"]
        return found or None

    [approved] = wait_for(approvals, timeout=30, what="model.approved")
    assert approved["tenantId"] == "aa-good" and approved["approvedBy"] == "trainyard:auto-approval"
    assert approved["modelPackageArn"] == good["modelPackageArn"]
    time.sleep(1)
    names = [(e["detail"]["tenantId"], e["detail"]["event"]) for e in bus.drain()]
    assert ("aa-weak", "model.approved") not in names
