"""Train step: the provider training script every algorithm runs in SageMaker script mode.

The training job's image is the algorithm's (the SageMaker XGBoost image for
``xgboost``, the SageMaker scikit-learn image for ``linear`` and ``random-forest``);
both run a user script when the job's hyperparameters name it
(``sagemaker_program`` / ``sagemaker_submit_directory``), with SageMaker's
framework-container environment:

  SM_MODEL_DIR          where the model goes (/opt/ml/model; SageMaker tars it to
                        <S3OutputPath>/<job>/output/model.tar.gz)
  SM_CHANNEL_TRAIN      the train split (CSV, label first, no header)
  SM_CHANNEL_VALIDATION the validation split (optional)
  SM_HPS                the hyperparameters as one JSON object (sagemaker_* left out)
  SM_OUTPUT_DIR         /opt/ml/output: a failure reason goes to <it>/failure

and the hyperparameters as ``--name value`` arguments. Hyperparameters:
``algorithm`` (xgboost | linear | random-forest), ``problem_type`` (binary |
multiclass | regression), ``hyperparameters`` (a JSON object: the algorithm's
settings, validated by the control plane; unknown names fail the job here too) and,
for xgboost, ``num_round`` / ``max_depth`` / ``eta`` and the other defaults.

Writes <model dir>/xgboost-model (xgboost: Booster.save_model, what the built-in
container writes) or <model dir>/model.joblib (scikit-learn estimator), and
<model dir>/trainyard-model.json ({"algorithm", "problem_type", "classes"}) so the
evaluation loads the model the way it was written.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

XGBOOST_MODEL_FILE = "xgboost-model"
SKLEARN_MODEL_FILE = "model.joblib"
MODEL_INFO_FILE = "trainyard-model.json"
PROBLEM_TYPES = ("binary", "multiclass", "regression")

# The settings each algorithm takes and their defaults (the control plane's catalog
# validates ranges; this is what the script itself accepts).
XGBOOST_DEFAULTS: dict[str, Any] = {
    "num_round": 50,
    "max_depth": 4,
    "eta": 0.2,
    "subsample": 0.9,
    "min_child_weight": 1.0,
    "gamma": 0.0,
    "lambda": 1.0,
    "alpha": 0.0,
    "colsample_bytree": 1.0,
}
LINEAR_DEFAULTS: dict[str, Any] = {"C": 1.0, "alpha": 1.0, "max_iter": 1000}
FOREST_DEFAULTS: dict[str, Any] = {"n_estimators": 100, "max_depth": 0, "min_samples_leaf": 1}
DEFAULTS = {
    "xgboost": XGBOOST_DEFAULTS,
    "linear": LINEAR_DEFAULTS,
    "random-forest": FOREST_DEFAULTS,
}
XGBOOST_OBJECTIVES = {
    "binary": ("binary:logistic", "auc"),
    "multiclass": ("multi:softprob", "mlogloss"),
    "regression": ("reg:squarederror", "rmse"),
}


class TrainingError(Exception):
    """The job cannot train; the message is the job's FailureReason."""


def _typed(value: Any) -> Any:
    """A hyperparameter as SageMaker hands it over (a string, maybe JSON) -> a value."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def settings_for(algorithm: str, hps: dict[str, Any]) -> dict[str, Any]:
    """The algorithm's settings: its defaults, for xgboost the top-level ones
    (num_round/max_depth/eta, subsample, ...), then the ``hyperparameters`` object."""
    if algorithm not in DEFAULTS:
        raise TrainingError(f"unknown algorithm {algorithm!r}; one of {sorted(DEFAULTS)}")
    settings = dict(DEFAULTS[algorithm])
    if algorithm == "xgboost":
        # The deployment's xgboost defaults and the NumRound/MaxDepth/Eta parameters
        # arrive as top-level hyperparameters.
        for name in XGBOOST_DEFAULTS:
            if name in hps:
                settings[name] = _typed(hps[name])
    extra = _typed(hps.get("hyperparameters", {}))
    if extra in ("", None):
        extra = {}
    if not isinstance(extra, dict):
        raise TrainingError("hyperparameters must be a JSON object")
    unknown = sorted(set(extra) - set(DEFAULTS[algorithm]))
    if unknown:
        raise TrainingError(
            f"unknown hyperparameters {unknown} for {algorithm}; allowed: "
            f"{sorted(DEFAULTS[algorithm])}"
        )
    for name, value in extra.items():
        # A tuple, not int | float: the images' Python may predate 3.10.
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TrainingError(f"hyperparameter {name!r} must be a number, got {value!r}")
        settings[name] = value
    return settings


def read_split(directory: str | None, channel: str) -> tuple[np.ndarray, np.ndarray] | None:
    if not directory:
        return None
    files = sorted(p for p in Path(directory).rglob("*") if p.is_file())
    frames = []
    for path in files:
        try:
            frames.append(pd.read_csv(path, header=None))
        except pd.errors.EmptyDataError:
            continue
    if not frames:
        if channel == "train":
            raise TrainingError("the train channel has no data")
        return None
    values = pd.concat(frames, ignore_index=True).to_numpy(dtype=float)
    if values.shape[1] < 2:
        raise TrainingError(f"the {channel} channel has no feature columns")
    return values[:, 1:], values[:, 0]


def _xgboost(problem_type: str, settings: dict[str, Any], train, validation, model_dir: Path):
    import xgboost as xgb  # only the XGBoost image has it

    objective, metric = XGBOOST_OBJECTIVES[problem_type]
    params: dict[str, Any] = {
        **{k: v for k, v in settings.items() if k != "num_round"},
        "objective": objective,
        "eval_metric": metric,
        "seed": 0,
    }
    classes = None
    if problem_type == "multiclass":
        labels = train[1] if validation is None else np.concatenate([train[1], validation[1]])
        classes = int(labels.max()) + 1
        params["num_class"] = classes
    matrices = [(xgb.DMatrix(train[0], label=train[1]), "train")]
    if validation is not None:
        matrices.append((xgb.DMatrix(validation[0], label=validation[1]), "validation"))
    try:
        booster = xgb.train(
            params, matrices[0][0], num_boost_round=int(settings["num_round"]), evals=matrices
        )
    except xgb.core.XGBoostError as exc:
        raise TrainingError(f"xgboost: {str(exc).splitlines()[0]}") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # extension-less name: UBJSON
        booster.save_model(str(model_dir / XGBOOST_MODEL_FILE))
    return classes


def _sklearn(algorithm: str, problem_type: str, settings: dict[str, Any], train, model_dir: Path):
    import joblib
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    regression = problem_type == "regression"
    if algorithm == "linear":
        estimator = (
            Ridge(alpha=float(settings["alpha"]))
            if regression
            else LogisticRegression(C=float(settings["C"]), max_iter=int(settings["max_iter"]))
        )
        model = make_pipeline(StandardScaler(), estimator)
    else:
        forest = RandomForestRegressor if regression else RandomForestClassifier
        depth = int(settings["max_depth"])
        model = forest(
            n_estimators=int(settings["n_estimators"]),
            max_depth=depth if depth > 0 else None,
            min_samples_leaf=int(settings["min_samples_leaf"]),
            random_state=0,
        )
    features, labels = train
    model.fit(features, labels if regression else labels.astype(int))
    joblib.dump(model, model_dir / SKLEARN_MODEL_FILE)
    return None if regression else int(labels.max()) + 1


def train(hps: dict[str, Any], model_dir: Path, train_dir: str | None, val_dir: str | None) -> dict:
    algorithm = str(_typed(hps.get("algorithm", "xgboost")))
    problem_type = str(_typed(hps.get("problem_type", "binary")))
    if problem_type not in PROBLEM_TYPES:
        raise TrainingError(f"unknown problem type {problem_type!r}; one of {PROBLEM_TYPES}")
    settings = settings_for(algorithm, hps)
    data = read_split(train_dir, "train")
    assert data is not None
    validation = read_split(val_dir, "validation")
    model_dir.mkdir(parents=True, exist_ok=True)
    if algorithm == "xgboost":
        classes = _xgboost(problem_type, settings, data, validation, model_dir)
    else:
        classes = _sklearn(algorithm, problem_type, settings, data, model_dir)
    info = {"algorithm": algorithm, "problem_type": problem_type, "classes": classes}
    (model_dir / MODEL_INFO_FILE).write_text(json.dumps(info))
    return {**info, "settings": settings, "train_rows": len(data[1])}


def _hyperparameters(argv: list[str] | None) -> dict[str, Any]:
    """SM_HPS (SageMaker's JSON of every hyperparameter) if set, else --name value args."""
    if os.environ.get("SM_HPS"):
        return dict(json.loads(os.environ["SM_HPS"]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _, rest = parser.parse_known_args(argv)
    hps: dict[str, Any] = {}
    for name, value in zip(rest[::2], rest[1::2]):  # noqa: B905 (no strict= before 3.10)
        hps[name.lstrip("-")] = value
    return hps


def main(argv: list[str] | None = None) -> int:
    output = Path(os.environ.get("SM_OUTPUT_DIR", "/opt/ml/output"))
    try:
        summary = train(
            _hyperparameters(sys.argv[1:] if argv is None else argv),
            Path(os.environ.get("SM_MODEL_DIR", "/opt/ml/model")),
            os.environ.get("SM_CHANNEL_TRAIN"),
            os.environ.get("SM_CHANNEL_VALIDATION"),
        )
    except (TrainingError, ValueError) as exc:
        kind = "ClientError" if isinstance(exc, TrainingError) else "AlgorithmError"
        reason = f"{kind}: {exc}"
        print(f"ERROR: {reason}", file=sys.stderr, flush=True)
        if output.is_dir():  # only inside a container or the local runner's mapped root
            (output / "failure").write_text(reason)
        return 1
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
