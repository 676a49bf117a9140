"""Problem types on the embedded stack: a regression tenant and a multiclass tenant train
to registered models carrying their problem type's metric, and a dataset that does not
fit its problem type fails in preprocess, before any training job. What each tenant
trains is its training setting (``PATCH /tenants/{id}``), which the scheduler turns into
the pipeline's ProblemType / Algorithm / Hyperparameters / TrainingImageUri /
MetricThreshold at the start."""

from __future__ import annotations

import io
import json
import re
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification, make_regression

from trainyard.local.stack import EmbeddedStack

from .conftest import Api, wait_for

pytestmark = pytest.mark.integration

TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
SKLEARN_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
TRAINING = {
    "pt-forecast": {
        "problemType": "regression",
        "algorithm": "xgboost",
        "hyperparameters": {"max_depth": 3},
    },
    "pt-segments": {
        "problemType": "multiclass",
        "algorithm": "random-forest",
        "hyperparameters": {"n_estimators": 40},
    },
    "pt-badtarget": {"problemType": "regression", "algorithm": "linear"},
    "pt-badclass": {"problemType": "multiclass", "algorithm": "xgboost"},
    # A target unrelated to the features: R² below the regression threshold (0.0).
    "pt-noise": {"problemType": "regression", "algorithm": "linear"},
}


def regression_csv() -> bytes:
    x, y = make_regression(n_samples=300, n_features=5, noise=5.0, random_state=1)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(5)])
    frame["label"] = y
    return frame.to_csv(index=False).encode()


def multiclass_csv() -> bytes:
    x, y = make_classification(
        n_samples=300,
        n_features=6,
        n_informative=4,
        n_redundant=0,
        n_classes=3,
        n_clusters_per_class=1,
        class_sep=2.0,
        random_state=2,
    )
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(6)])
    frame["label"] = y
    return frame.to_csv(index=False).encode()


def noise_csv() -> bytes:
    frame = pd.read_csv(io.BytesIO(regression_csv()))
    rng = np.random.default_rng(3)
    frame["label"] = rng.normal(size=len(frame)) * 100.0  # unrelated to the features
    return frame.to_csv(index=False).encode()


def bad_classes_csv() -> bytes:
    frame = pd.read_csv(io.BytesIO(multiclass_csv())).astype(object)
    frame.loc[4, "label"] = "2.5"  # not an integer class
    return frame.to_csv(index=False).encode()


def bad_target_csv() -> bytes:
    frame = pd.read_csv(io.BytesIO(regression_csv())).astype(object)
    frame.loc[10, "label"] = "n/a"
    return frame.to_csv(index=False).encode()


def _terminal(api: Api, tenant_id: str) -> dict[str, Any] | None:
    runs = api.get(f"/tenants/{tenant_id}/runs").json()["runs"]
    return next((r for r in runs if r["status"] in TERMINAL), None)


def test_regression_and_multiclass_tenants_train_to_models_with_their_metric(
    stack: EmbeddedStack, api: Api, onboard: Any
) -> None:
    # random-forest is a premium plan's algorithm (the catalog's plans).
    plans = {"pt-segments": "premium"}
    tenants = {name: onboard(name, plans.get(name, "basic")) for name in TRAINING}
    for name, training in TRAINING.items():
        resp = api.call("PATCH", f"/tenants/{name}", json={"training": training})
        assert resp.status_code == 200, resp.text
    s3 = stack.client("s3")
    for name, body in (
        ("pt-forecast", regression_csv()),
        ("pt-segments", multiclass_csv()),
        ("pt-badtarget", bad_target_csv()),
        ("pt-badclass", bad_classes_csv()),
        ("pt-noise", noise_csv()),
    ):
        tenant = tenants[name]
        s3.put_object(Bucket=tenant["dataBucket"], Key=f"{tenant['dataPrefix']}data.csv", Body=body)

    runs = {
        name: wait_for(
            lambda name=name: _terminal(api, name),
            timeout=420,
            interval=2,
            what=f"a terminal run of {name}",
        )
        for name in TRAINING
    }

    sm = stack.client("sagemaker")
    expected = {
        "pt-forecast": ("r2", {"rmse", "r2"}, "regression_metrics", "regression"),
        "pt-segments": (
            "macro_f1",
            {"accuracy", "macro_f1"},
            "multiclass_classification_metrics",
            "multiclass",
        ),
    }
    for name, (primary, names, block, problem_type) in expected.items():
        run = runs[name]
        assert run["status"] == "SUCCEEDED", run
        assert run["training"]["problemType"] == problem_type
        assert run["training"]["metricThreshold"] == stack.settings.metric_threshold_for(
            problem_type
        )
        assert set(run["metrics"]) == names
        assert run["dataReport"]["problemType"] == problem_type
        assert run["dataReport"]["rows"] == 300
        package = sm.describe_model_package(ModelPackageName=run["modelPackageArn"])
        metadata = package["CustomerMetadataProperties"]
        assert metadata["trainyard:primaryMetric"] == primary
        assert float(metadata["trainyard:primaryMetricValue"]) == pytest.approx(
            run["metrics"][primary], abs=1e-6
        )
        assert metadata["trainyard:problemType"] == problem_type
        # ModelMetrics: the evaluation report, in the registry's shape for the type.
        uri = package["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"]
        bucket, key = uri.removeprefix("s3://").split("/", 1)
        report = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        assert set(report[block]) == names
        [model] = api.get(f"/tenants/{name}/models").json()["models"]
        assert model["metrics"][primary] == pytest.approx(run["metrics"][primary], abs=1e-6)

    assert runs["pt-forecast"]["dataReport"]["targetRange"]["max"] > 0
    assert set(runs["pt-segments"]["dataReport"]["classBalance"]) == {"0", "1", "2"}
    container = sm.describe_model_package(ModelPackageName=runs["pt-segments"]["modelPackageArn"])
    image = container["InferenceSpecification"]["Containers"][0]["Image"]
    assert image == SKLEARN_IMAGE

    reasons = {
        "pt-badtarget": "target 'label' has a non-numeric value 'n/a' (data row 11)",
        "pt-badclass": "'label' must be an integer class from 0 to 99 for a multiclass "
        "problem, found ['2.5']",
    }
    # The condition compares R² (higher is better) with the regression threshold: a
    # model that explains nothing ends at the fail step, unregistered.
    noise = runs["pt-noise"]
    assert noise["status"] == "FAILED", noise
    threshold = stack.settings.metric_threshold_for("regression")
    assert (
        "Model r2" in noise["failureReason"]
        and "is below the threshold" in (noise["failureReason"])
    )
    # The run records no metrics (RecordRun follows Register); the reason has R².
    found = re.search(r"Model r2 (\S+) is below the threshold (\S+)", noise["failureReason"])
    assert found, noise["failureReason"]
    assert float(found[1]) < float(found[2]) == threshold
    assert noise["modelPackageArn"] is None
    steps = [s.name for s in stack.engine.result(noise["executionArn"]).steps]
    assert "MetricBelowThreshold" in steps and "Register" not in steps
    for name, reason in reasons.items():
        bad = runs[name]
        assert bad["status"] == "FAILED"
        assert reason in bad["failureReason"]
        result = stack.engine.result(bad["executionArn"])
        # Failed in preprocess: no training job was started (or paid for).
        assert [(s.name, s.status) for s in result.steps] == [("Preprocess", "Failed")]
