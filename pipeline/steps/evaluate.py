"""Evaluate step: score the trained model on the held-out test split.

Runs unchanged in the algorithm's training image (the SageMaker XGBoost image has
python3 + xgboost/sklearn/pandas, the scikit-learn image the same without xgboost)
as a processing job, and locally under trainyard's pipeline runner.

    python3 evaluate.py --model-dir DIR --test-dir DIR --output-dir DIR
        [--algorithm xgboost|linear|random-forest] [--problem-type binary|multiclass|regression]

Input: <model-dir>/model.tar.gz holding ``xgboost-model`` (xgboost) or
``model.joblib`` (scikit-learn), <test-dir>/test.csv (label first, no header).
Output: <output-dir>/evaluation.json, e.g. for binary::

    {"problem_type": "binary",
     "metrics": {"auc": {"value": f}, "accuracy": {"value": f}},
     "primary_metric": {"name": "auc", "value": f},
     "metrics_json": "{\"accuracy\":f,\"auc\":f}",
     "binary_classification_metrics": {"auc": {"value": f, "standard_deviation": 0.0}, ...},
     "test_rows": n}

Metrics: binary AUC and accuracy, multiclass accuracy and macro-F1, regression
RMSE and R². ``primary_metric`` (AUC, macro-F1, R²: higher is better for all three)
is what the pipeline's condition compares with MetricThreshold (JsonGet);
``metrics_json`` is what the recorder writes on the run; the ``*_metrics`` block is
the shape SageMaker Model Registry shows for ModelQuality statistics.
Problems: ``ERROR: <reason>`` on stderr, reason in <ml-root>/output/message, exit 1
(<ml-root> = /opt/ml, or $TRAINYARD_ML_ROOT under the local runner).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import tarfile
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score, mean_squared_error, r2_score, roc_auc_score

MODEL_FILE = "xgboost-model"  # what train.py and the built-in XGBoost container write
SKLEARN_MODEL_FILE = "model.joblib"  # train.py's scikit-learn models
SKLEARN_ALGORITHMS = ("linear", "random-forest")
PRIMARY_METRICS = {"binary": "auc", "multiclass": "macro_f1", "regression": "r2"}


class EvaluationError(Exception):
    pass


def _ml_root() -> Path:
    return Path(os.environ.get("TRAINYARD_ML_ROOT", "/opt/ml"))


def fail(reason: str) -> None:
    reason = " ".join(reason.split())
    print(f"ERROR: {reason}", file=sys.stderr, flush=True)
    root = _ml_root()
    if root.is_dir():  # only in a container or the local runner's mapped root
        try:
            (root / "output").mkdir(parents=True, exist_ok=True)
            (root / "output" / "message").write_text(reason)
        except OSError:
            pass
    sys.exit(1)


def _safe_extract(tar: tarfile.TarFile, dest: Path) -> None:
    # The container's Python may predate tarfile extraction filters (3.12+/backports).
    if hasattr(tarfile, "data_filter"):
        tar.extractall(dest, filter="data")
        return
    root = dest.resolve()
    for member in tar.getmembers():
        target = (dest / member.name).resolve()
        if root not in target.parents and target != root:
            raise EvaluationError(f"unsafe path {member.name!r} in the model artifact")
    tar.extractall(dest)


def _extracted(model_dir: Path, scratch: Path) -> Path:
    archives = sorted(model_dir.rglob("*.tar.gz"))
    if archives:
        with tarfile.open(archives[0]) as tar:
            _safe_extract(tar, scratch)
        return scratch
    return model_dir  # an already-extracted model directory works too


def load_booster(model_dir: Path, scratch: Path) -> Any:
    import xgboost as xgb  # only the XGBoost image has it (scikit-learn models need none)

    candidates = sorted(_extracted(model_dir, scratch).rglob(MODEL_FILE))
    if not candidates:
        raise EvaluationError(f"no '{MODEL_FILE}' file in the model artifact")
    path = candidates[0]
    booster = xgb.Booster()
    try:
        with warnings.catch_warnings():
            # Newer xgboost guesses the format of an extension-less file, noisily.
            warnings.simplefilter("ignore", UserWarning)
            booster.load_model(str(path))
    except xgb.core.XGBoostError:
        # Container versions before 1.3 pickled the Booster instead of saving it.
        with path.open("rb") as handle:
            booster = pickle.load(handle)
        if not isinstance(booster, xgb.Booster):
            raise EvaluationError(f"'{MODEL_FILE}' is not an XGBoost model") from None
    return booster


def load_model(model_dir: Path, scratch: Path, algorithm: str) -> Callable[[np.ndarray], Any]:
    """The trained model as a predict function: class-1 scores (binary), class
    probabilities (multiclass) or values (regression), by how ``algorithm`` saved it."""
    if algorithm == "xgboost":
        import xgboost as xgb

        booster = load_booster(model_dir, scratch)
        return lambda features: booster.predict(xgb.DMatrix(features))
    if algorithm not in SKLEARN_ALGORITHMS:
        raise EvaluationError(f"unknown algorithm {algorithm!r}")
    import joblib

    candidates = sorted(_extracted(model_dir, scratch).rglob(SKLEARN_MODEL_FILE))
    if not candidates:
        raise EvaluationError(f"no '{SKLEARN_MODEL_FILE}' file in the model artifact")
    model = joblib.load(candidates[0])
    if hasattr(model, "predict_proba"):
        return model.predict_proba
    return model.predict


def load_test(test_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    path = test_dir / "test.csv"
    if not path.is_file():
        found = sorted(test_dir.rglob("*.csv"))
        if not found:
            raise EvaluationError("no test.csv in the test input")
        path = found[0]
    try:
        frame = pd.read_csv(path, header=None)
    except pd.errors.EmptyDataError:
        raise EvaluationError("the test split is empty") from None
    if frame.empty or frame.shape[1] < 2:
        raise EvaluationError("the test split has no rows or no feature columns")
    values = frame.to_numpy(dtype=float)
    return values[:, 1:], values[:, 0]


def _classes(scores: np.ndarray) -> np.ndarray:
    return np.asarray(scores).argmax(axis=1)


def evaluate(
    predict: Callable[[np.ndarray], Any],
    features: np.ndarray,
    labels: np.ndarray,
    problem_type: str = "binary",
) -> dict:
    """The problem type's metrics; ``primary_metric`` is what the condition compares
    with the threshold (higher is better for each: AUC, macro-F1, R²)."""
    scores = np.asarray(predict(features))
    if problem_type == "binary":
        classes = np.unique(labels)
        if len(classes) < 2:
            raise EvaluationError(
                f"the test split has a single label class ({int(classes[0])}) across "
                f"{len(labels)} rows, so AUC is undefined; upload more rows of both classes"
            )
        if scores.ndim > 1:  # class probabilities -> probability of class 1
            scores = scores[:, 1]
        metrics = {
            "auc": float(roc_auc_score(labels, scores)),
            "accuracy": float(accuracy_score(labels, (scores >= 0.5).astype(int))),
        }
        block = "binary_classification_metrics"
    elif problem_type == "multiclass":
        predicted = _classes(scores) if scores.ndim > 1 else scores.round().astype(int)
        metrics = {
            "accuracy": float(accuracy_score(labels.astype(int), predicted)),
            "macro_f1": float(
                f1_score(labels.astype(int), predicted, average="macro", zero_division=0)
            ),
        }
        block = "multiclass_classification_metrics"
    elif problem_type == "regression":
        if len(labels) < 2:
            raise EvaluationError("the test split has fewer than 2 rows, so R² is undefined")
        values = scores.reshape(len(labels), -1)[:, 0]
        metrics = {
            "rmse": float(np.sqrt(mean_squared_error(labels, values))),
            "r2": float(r2_score(labels, values)),
        }
        block = "regression_metrics"
    else:
        raise EvaluationError(f"unknown problem type {problem_type!r}")
    if not all(np.isfinite(v) for v in metrics.values()):
        raise EvaluationError(f"the metrics are not finite numbers: {metrics}")
    primary = PRIMARY_METRICS[problem_type]
    return {
        "problem_type": problem_type,
        "metrics": {name: {"value": value} for name, value in metrics.items()},
        "primary_metric": {"name": primary, "value": metrics[primary]},
        "metrics_json": json.dumps(metrics, sort_keys=True, separators=(",", ":")),
        block: {
            name: {"value": value, "standard_deviation": 0.0} for name, value in metrics.items()
        },
        "test_rows": len(labels),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True, type=Path)
    parser.add_argument("--test-dir", required=True, type=Path)
    parser.add_argument("--output-dir", required=True, type=Path)
    parser.add_argument("--algorithm", default="xgboost")
    parser.add_argument("--problem-type", default="binary")
    args = parser.parse_args(argv)
    try:
        with tempfile.TemporaryDirectory() as scratch:
            predict = load_model(args.model_dir, Path(scratch), args.algorithm)
            features, labels = load_test(args.test_dir)
            report = evaluate(predict, features, labels, args.problem_type)
    except EvaluationError as exc:
        fail(str(exc))
    except Exception as exc:  # a model that cannot score the split (XGBoostError, ...)
        fail(f"evaluation failed: {type(exc).__name__}: {exc}")
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "evaluation.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report["metrics"]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
