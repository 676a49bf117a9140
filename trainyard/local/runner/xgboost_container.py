"""Emulation of the built-in SageMaker XGBoost training container (algorithm mode).

The local pipeline runner runs it as a child process with SageMaker's training
directory contract, mapped from /opt/ml to ``ml_root``::

    python -m trainyard.local.runner.xgboost_container --ml-root DIR

Reads (as the container does):
  <ml_root>/input/config/hyperparameters.json   {"num_round": "50", ...} (strings)
  <ml_root>/input/config/inputdataconfig.json   {"train": {"ContentType": "text/csv"}, ...}
  <ml_root>/input/data/<channel>/**             CSV, label first column, no header
Writes:
  <ml_root>/model/xgboost-model                 Booster.save_model (loadable by
                                                xgboost.Booster().load_model)
  <ml_root>/output/metrics.json                 {"train:auc": f, "validation:auc": f}
                                                (local stand-in for the metric regexes
                                                SageMaker applies to the job log)
  <ml_root>/output/failure                      on error, "ClientError: ..." (bad
                                                input/hyperparameters) or "AlgorithmError: ..."
Exit status 0 on success, 1 on failure.

Public: ``train(ml_root) -> dict[str, float]`` (raises ``TrainingError``), ``main``.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

MODEL_FILE = "xgboost-model"
CSV_CONTENT_TYPES = ("text/csv", "csv", "text/x-csv")

# Booster/learning parameters the container forwards to xgboost.train; anything
# else (SDK bookkeeping such as sagemaker_*) is ignored, as the container does.
BOOSTER_PARAMS = frozenset(
    {
        "alpha", "base_score", "booster", "colsample_bylevel", "colsample_bynode",
        "colsample_bytree", "deterministic_histogram", "eta", "eval_metric", "gamma",
        "grow_policy", "interaction_constraints", "lambda", "lambda_bias", "max_bin",
        "max_cat_to_onehot", "max_delta_step", "max_depth", "max_leaves",
        "min_child_weight", "monotone_constraints", "normalize_type", "nthread",
        "num_class", "num_parallel_tree", "objective", "one_drop", "process_type",
        "rate_drop", "refresh_leaf", "sample_type", "sampling_method",
        "scale_pos_weight", "seed", "single_precision_histogram", "sketch_eps",
        "skip_drop", "subsample", "tree_method", "tweedie_variance_power", "updater",
        "verbosity",
    }
)  # fmt: skip
# Parameters newer xgboost removed; the container accepted them, we drop them.
DROPPED_PARAMS = frozenset({"lambda_bias", "single_precision_histogram", "deterministic_histogram"})


class TrainingError(Exception):
    """A failed training job; ``str()`` is the SageMaker-style FailureReason."""


def _value(raw: Any) -> Any:
    """Hyperparameters arrive as strings (sometimes JSON-encoded); type them."""
    if not isinstance(raw, str):
        return raw
    text = raw.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1]
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_hyperparameters(raw: dict[str, Any]) -> tuple[dict[str, Any], int, int | None]:
    """-> (xgboost params, num_round, early_stopping_rounds)."""
    if "num_round" not in raw:
        raise TrainingError("ClientError: Missing required hyperparameter: num_round")
    num_round = _value(raw["num_round"])
    if not isinstance(num_round, int) or num_round < 1:
        raise TrainingError(
            f"ClientError: num_round must be a positive integer, got {raw['num_round']!r}"
        )
    early = _value(raw["early_stopping_rounds"]) if "early_stopping_rounds" in raw else None
    if early is not None and not isinstance(early, int):
        raise TrainingError("ClientError: early_stopping_rounds must be an integer")
    params: dict[str, Any] = {"objective": "reg:squarederror", "verbosity": 1}
    for key, value in raw.items():
        if key in BOOSTER_PARAMS and key not in DROPPED_PARAMS:
            params[key] = _value(value)
    if isinstance(params.get("eval_metric"), str) and "," in params["eval_metric"]:
        params["eval_metric"] = [m.strip() for m in params["eval_metric"].split(",") if m.strip()]
    if isinstance(params.get("eval_metric"), str):
        params["eval_metric"] = [params["eval_metric"]]
    return params, num_round, early


def read_channel(directory: Path, content_type: str, channel: str) -> tuple[np.ndarray, np.ndarray]:
    base = content_type.split(";")[0].strip().lower()
    if base not in CSV_CONTENT_TYPES:
        raise TrainingError(
            f"ClientError: content type {content_type!r} of channel {channel!r} is not "
            "supported by the local runner (text/csv only)"
        )
    files = sorted(p for p in directory.rglob("*") if p.is_file() and not p.name.startswith("."))
    frames = []
    for path in files:
        try:
            frames.append(pd.read_csv(path, header=None))
        except pd.errors.EmptyDataError:
            continue
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise TrainingError(
                f"ClientError: cannot read {path.name} in channel {channel}: {exc}"
            ) from None
    if not frames:
        raise TrainingError(f"ClientError: no data in channel {channel!r}")
    data = pd.concat(frames, ignore_index=True)
    if data.shape[1] < 2:
        raise TrainingError(f"ClientError: channel {channel!r} has no feature columns")
    try:
        values = data.to_numpy(dtype=float)
    except ValueError:
        raise TrainingError(
            f"ClientError: channel {channel!r} has non-numeric values (CSV must be numeric, "
            "label first, no header)"
        ) from None
    return values[:, 1:], values[:, 0]


def train(ml_root: Path) -> dict[str, float]:
    """Train like the container; returns the final metrics ("train:auc", ...)."""
    import xgboost as xgb  # heavy import, only in the job process

    config = ml_root / "input" / "config"
    try:
        hyperparameters = json.loads((config / "hyperparameters.json").read_text())
        channels = json.loads((config / "inputdataconfig.json").read_text())
    except (OSError, ValueError) as exc:
        raise TrainingError(f"ClientError: invalid job configuration: {exc}") from None
    if "train" not in channels:
        raise TrainingError("ClientError: the 'train' channel is required")
    params, num_round, early = parse_hyperparameters(hyperparameters)
    data_root = ml_root / "input" / "data"
    matrices: dict[str, Any] = {}
    for name in ("train", "validation"):
        if name in channels:
            content_type = channels[name].get("ContentType") or "text/csv"
            features, labels = read_channel(data_root / name, content_type, name)
            matrices[name] = xgb.DMatrix(features, label=labels)
    if "validation" in matrices and (
        matrices["validation"].num_col() != matrices["train"].num_col()
    ):
        raise TrainingError("ClientError: train and validation have different feature counts")
    evals = [(matrix, name) for name, matrix in matrices.items()]
    history: dict[str, dict[str, list[float]]] = {}
    try:
        booster = xgb.train(
            params,
            matrices["train"],
            num_boost_round=num_round,
            evals=evals,
            evals_result=history,
            early_stopping_rounds=early if "validation" in matrices else None,
            verbose_eval=True,
        )
    except xgb.core.XGBoostError as exc:
        # Invalid parameter values surface here, as they do in the container.
        raise TrainingError(f"ClientError: {str(exc).splitlines()[0]}") from None
    (ml_root / "model").mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # xgboost>=2 warns that an extension-less name means UBJSON; the container's
        # file name has no extension, and Booster.load_model reads it back fine.
        warnings.simplefilter("ignore", UserWarning)
        booster.save_model(str(ml_root / "model" / MODEL_FILE))
    metrics = {
        f"{channel}:{metric}": float(values[-1])
        for channel, per_metric in history.items()
        for metric, values in per_metric.items()
        if values
    }
    (ml_root / "output").mkdir(parents=True, exist_ok=True)
    (ml_root / "output" / "metrics.json").write_text(json.dumps(metrics))
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Emulated SageMaker XGBoost container")
    parser.add_argument("--ml-root", required=True, type=Path)
    args = parser.parse_args(argv)
    output = args.ml_root / "output"
    output.mkdir(parents=True, exist_ok=True)
    try:
        metrics = train(args.ml_root)
    except TrainingError as exc:
        reason = str(exc)
    except Exception as exc:  # an unexpected crash is an AlgorithmError in SageMaker
        reason = f"AlgorithmError: {type(exc).__name__}: {exc}"
    else:
        print(json.dumps(metrics), flush=True)
        return 0
    (output / "failure").write_text(reason)
    print(f"ERROR: {reason}", file=sys.stderr, flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main())
