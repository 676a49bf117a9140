"""Training choices over HTTP on the embedded stack: the catalog, a tenant's
algorithm and hyperparameters checked against it and the plan, ``auto`` and the
instance by data volume, recorded on the run when it starts."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest

from trainyard.local.stack import EmbeddedStack

from .conftest import SIZING_MIN_BYTES, Api, wait_for

pytestmark = pytest.mark.integration

TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


def _csv(rows: int, seed: int) -> bytes:
    """A separable binary dataset: three features and a 0/1 label."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 3)).round(4)
    y = (x @ np.array([1.5, -1.0, 0.5]) + rng.normal(scale=0.5, size=rows) > 0).astype(int)
    out = io.StringIO()
    out.write("f0,f1,f2,label\n")
    np.savetxt(out, np.column_stack([x, y]), fmt=["%.4f", "%.4f", "%.4f", "%d"], delimiter=",")
    return out.getvalue().encode()


def _training_job(stack: EmbeddedStack, execution_arn: str) -> dict[str, Any]:
    """The one training job of an execution, as SageMaker describes it."""
    sagemaker = stack.client("sagemaker")
    stem = f"pipelines-{execution_arn.rsplit('/', 1)[-1]}-Train-"
    (summary,) = sagemaker.list_training_jobs(NameContains=stem)["TrainingJobSummaries"]
    return sagemaker.describe_training_job(TrainingJobName=summary["TrainingJobName"])


def _patch(api: Api, tenant_id: str, training: dict[str, Any]) -> Any:
    return api.call("PATCH", f"/tenants/{tenant_id}", json={"training": training})


def test_the_catalog_lists_algorithms_with_their_hyperparameters_and_plans(api: Api) -> None:
    resp = api.get("/algorithms")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    by_name = {a["name"]: a for a in body["algorithms"]}
    assert set(by_name) == {"xgboost", "linear", "random-forest"}
    assert by_name["random-forest"]["plans"] == ["premium"]
    assert sorted(by_name["xgboost"]["plans"]) == ["basic", "premium", "standard"]
    assert by_name["xgboost"]["hyperparameters"]["eta"]["default"] == 0.2
    assert by_name["linear"]["framework"] == "sklearn"
    assert body["auto"]["rules"][0] == {"maxBytes": 1024**2, "algorithm": "linear"}


def test_a_bad_hyperparameter_or_an_algorithm_the_plan_lacks_is_a_400_naming_the_field(
    api: Api, onboard: Any
) -> None:
    onboard("tc-check", "standard")
    bad = _patch(api, "tc-check", {"algorithm": "xgboost", "hyperparameters": {"eta": 5}})
    assert bad.status_code == 400, bad.text
    assert bad.json()["error"]["code"] == "InvalidHyperparameter"
    assert bad.json()["error"]["field"] == "training.hyperparameters.eta"
    unknown = _patch(api, "tc-check", {"algorithm": "xgboost", "hyperparameters": {"C": 1}})
    assert unknown.status_code == 400
    assert unknown.json()["error"]["code"] == "UnknownHyperparameter"
    premium_only = _patch(api, "tc-check", {"algorithm": "random-forest"})
    assert premium_only.status_code == 400, premium_only.text
    assert premium_only.json()["error"] == {
        "code": "AlgorithmNotAllowed",
        "field": "training.algorithm",
        "message": premium_only.json()["error"]["message"],
    }
    assert "plan 'standard'" in premium_only.json()["error"]["message"]
    one_run = api.post(
        "/tenants/tc-check/runs", json={"training": {"algorithm": "linear", "problemType": "x"}}
    )
    assert one_run.status_code == 400 and one_run.json()["error"]["code"] == "InvalidBody"
    # Nothing of the refused requests was stored.
    assert api.get("/tenants/tc-check").json()["training"] is None

    ok = _patch(api, "tc-check", {"algorithm": "xgboost", "hyperparameters": {"eta": "0.3"}})
    assert ok.status_code == 200, ok.text
    assert ok.json()["training"] == {
        "algorithm": "xgboost",
        "problemType": None,
        "hyperparameters": {"eta": "0.3"},
        "schemaDrift": None,
    }
    assert api.get("/tenants/tc-check").json()["training"] == ok.json()["training"]


def test_auto_and_sizing_follow_the_data_volume_and_each_run_records_them(
    stack: EmbeddedStack, api: Api, onboard: Any
) -> None:
    """200 rows train linear (the scikit-learn container's contract) on the plan's
    instance, 200,000 rows XGBoost on the sizing rule's larger one; both register a
    model, and the cost estimate is each run's own instance price."""
    s3 = stack.client("s3")
    sizes = {}
    for tenant_id, rows in (("tc-small", 200), ("tc-large", 200_000)):
        tenant = onboard(tenant_id, "standard")
        assert _patch(api, tenant_id, {"algorithm": "auto"}).status_code == 200
        body = _csv(rows, seed=rows)
        sizes[tenant_id] = len(body)
        s3.put_object(Bucket=tenant["dataBucket"], Key=f"{tenant['dataPrefix']}data.csv", Body=body)
    assert sizes["tc-small"] < SIZING_MIN_BYTES <= sizes["tc-large"]

    def recorded(tenant_id: str) -> dict[str, Any] | None:
        runs = api.get(f"/tenants/{tenant_id}/runs").json()["runs"]
        return next((r for r in runs if r["training"] is not None), None)

    small = wait_for(lambda: recorded("tc-small"), timeout=120, what="tc-small started")
    large = wait_for(lambda: recorded("tc-large"), timeout=120, what="tc-large started")
    assert small["training"]["algorithm"] == "linear"
    assert large["training"]["algorithm"] == "xgboost"
    for run, tenant_id in ((small, "tc-small"), (large, "tc-large")):
        assert run["training"]["chosenBy"]["mode"] == "auto"
        assert run["training"]["chosenBy"]["inputBytes"] == sizes[tenant_id]
        assert run["training"]["problemType"] == "binary"
    assert small["training"]["chosenBy"]["thresholdBytes"] == 1024**2
    assert small["training"]["hyperparameters"] == {"C": "1.0", "alpha": "1.0", "max_iter": "1000"}
    assert small["training"]["imageUri"].endswith("sagemaker-scikit-learn:1.2-1-cpu-py3")
    assert "sagemaker-xgboost" in large["training"]["imageUri"]
    assert (small["instanceType"], small["training"]["volumeSizeGb"]) == ("ml.m5.xlarge", 30)
    assert (large["instanceType"], large["training"]["volumeSizeGb"]) == ("ml.m5.2xlarge", 50)

    prices = {"ml.m5.xlarge": 0.23, "ml.m5.2xlarge": 0.461}
    for tenant_id in ("tc-small", "tc-large"):
        done = wait_for(
            lambda t=tenant_id: next(
                (
                    r
                    for r in api.get(f"/tenants/{t}/runs").json()["runs"]
                    if r["status"] in TERMINAL
                ),
                None,
            ),
            timeout=300,
            interval=1,
            what=f"{tenant_id} terminal",
        )
        assert done["status"] == "SUCCEEDED", done
        assert done["modelPackageArn"] and done["metrics"]["auc"] > 0.8
        # What the training job itself ran on, not only what dispatch recorded.
        job = _training_job(stack, done["executionArn"])
        resources = job["ResourceConfig"]
        assert (resources["InstanceType"], resources["InstanceCount"]) == (
            done["instanceType"],
            done["instanceCount"],
        )
        assert resources["VolumeSizeInGB"] == done["training"]["volumeSizeGb"]
        assert job["AlgorithmSpecification"]["TrainingImage"] == done["training"]["imageUri"]
        hours = done["trainingSeconds"] / 3600
        assert done["costEstimateUsd"] == pytest.approx(
            hours * prices[done["instanceType"]], rel=1e-3, abs=1e-6
        )
