"""Evaluate step: score the trained XGBoost model on the held-out test split.

Runs unchanged in the SageMaker XGBoost container (python3 + xgboost/sklearn/
pandas) as a processing job, and locally under trainyard's pipeline runner.

    python3 evaluate.py --model-dir DIR --test-dir DIR --output-dir DIR

Input: <model-dir>/model.tar.gz holding ``xgboost-model`` (what the built-in
XGBoost training container writes), <test-dir>/test.csv (label first, no header).
Output: <output-dir>/evaluation.json::

    {"metrics": {"auc": {"value": f}, "accuracy": {"value": f}},
     "binary_classification_metrics": {"auc": {"value": f, "standard_deviation": 0.0},
                                       "accuracy": {"value": f, "standard_deviation": 0.0}},
     "test_rows": n}

``metrics`` is what the pipeline's condition reads (JsonGet); the second block is
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
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.metrics import accuracy_score, roc_auc_score

MODEL_FILE = "xgboost-model"


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


def load_booster(model_dir: Path, scratch: Path) -> xgb.Booster:
    archives = sorted(model_dir.rglob("*.tar.gz"))
    if archives:
        with tarfile.open(archives[0]) as tar:
            _safe_extract(tar, scratch)
        search = scratch
    else:
        search = model_dir  # an already-extracted model directory works too
    candidates = sorted(search.rglob(MODEL_FILE))
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


def evaluate(booster: xgb.Booster, features: np.ndarray, labels: np.ndarray) -> dict:
    classes = np.unique(labels)
    if len(classes) < 2:
        raise EvaluationError(
            f"the test split has a single label class ({int(classes[0])}) across "
            f"{len(labels)} rows, so AUC is undefined; upload more rows of both classes"
        )
    scores = booster.predict(xgb.DMatrix(features))
    if scores.ndim > 1:  # multi:softprob -> probability of class 1
        scores = scores[:, 1]
    auc = float(roc_auc_score(labels, scores))
    accuracy = float(accuracy_score(labels, (scores >= 0.5).astype(int)))
    return {
        "metrics": {"auc": {"value": auc}, "accuracy": {"value": accuracy}},
        "binary_classification_metrics": {
            "auc": {"value": auc, "standard_deviation": 0.0},
            "accuracy": {"value": accuracy, "standard_deviation": 0.0},
        },
        "test_rows": len(labels),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True, type=Path)
    parser.add_argument("--test-dir", required=True, type=Path)
    parser.add_argument("--output-dir", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        with tempfile.TemporaryDirectory() as scratch:
            booster = load_booster(args.model_dir, Path(scratch))
            features, labels = load_test(args.test_dir)
            report = evaluate(booster, features, labels)
    except EvaluationError as exc:
        fail(str(exc))
    except (ValueError, xgb.core.XGBoostError, tarfile.TarError) as exc:
        fail(f"evaluation failed: {exc}")
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "evaluation.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report["metrics"]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
