"""The step scripts per problem type: preprocess's data checks and data report, the
provider training script (train.py) for every algorithm, evaluate's metrics."""

from __future__ import annotations

import importlib.util
import json
import tarfile
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification, make_regression

from pipeline.scripts import STEPS_DIR
from tests.unit.test_step_scripts import preprocess, read_split, run_script


def _module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"step_{name}", STEPS_DIR / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TRAIN = _module("train")
EVALUATE = _module("evaluate")


def classification(rows: int, classes: int, seed: int = 0) -> pd.DataFrame:
    x, y = make_classification(
        n_samples=rows,
        n_features=6,
        n_informative=4,
        n_redundant=0,
        n_classes=classes,
        n_clusters_per_class=1,
        class_sep=2.0,
        random_state=seed,
    )
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(6)])
    frame["label"] = y
    return frame


def regression(rows: int, seed: int = 0) -> pd.DataFrame:
    x, y = make_regression(n_samples=rows, n_features=5, noise=5.0, random_state=seed)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(5)])
    frame["label"] = y
    return frame


DATA = {
    "binary": lambda rows=300: classification(rows, 2),
    "multiclass": lambda rows=300: classification(rows, 4),
    "regression": lambda rows=300: regression(rows),
}


def _preprocess(tmp_path: Path, frame: pd.DataFrame, problem_type: str, ml_root: Path | None):
    (tmp_path / "in").mkdir(parents=True, exist_ok=True)
    frame.to_csv(tmp_path / "in" / "data.csv", index=False)
    return run_script(
        STEPS_DIR / "preprocess.py",
        "--input-dir",
        tmp_path / "in",
        "--output-dir",
        tmp_path / "out",
        "--problem-type",
        problem_type,
        "--report-dir",
        tmp_path / "report",
        ml_root=ml_root,
    )


# ------------------------------------------------------------ preprocess data checks


def _with(frame: pd.DataFrame, row: int, value: str) -> pd.DataFrame:
    frame = frame.astype(object)
    frame.loc[row, "label"] = value
    return frame


BAD = {
    "binary_labels_not_0_1": (
        "binary",
        lambda: _with(DATA["binary"](60), 3, "3"),
        "'label' must be 0 or 1 for a binary problem, found ['3']",
    ),
    "multiclass_non_integer_class": (
        "multiclass",
        lambda: _with(DATA["multiclass"](60), 5, "1.5"),
        "'label' must be an integer class from 0 to 99 for a multiclass problem, found ['1.5']",
    ),
    "multiclass_negative_class": (
        "multiclass",
        lambda: _with(DATA["multiclass"](60), 5, "-1"),
        "found ['-1']",
    ),
    "multiclass_single_class": (
        "multiclass",
        lambda: DATA["multiclass"](60).assign(label=2),
        "'label' has a single class (2); a multiclass problem needs at least two",
    ),
    "regression_non_numeric_target": (
        "regression",
        lambda: _with(DATA["regression"](60), 7, "high"),
        "target 'label' has a non-numeric value 'high' (data row 8)",
    ),
    "regression_constant_target": (
        "regression",
        lambda: DATA["regression"](60).assign(label=4.5),
        "'label' has the same value (4.5) in every row; a regression target must vary",
    ),
    "missing_target_values": (
        "regression",
        lambda: _with(_with(DATA["regression"](60), 2, ""), 9, ""),
        "target 'label' has 2 missing value(s), the first in data row 3",
    ),
    "missing_target_column": (
        "multiclass",
        lambda: DATA["multiclass"](60).rename(columns={"label": "y"}),
        "no 'label' column in header",
    ),
    "too_few_rows": ("regression", lambda: DATA["regression"](15), "only 15 data rows"),
    "unknown_problem_type": ("ranking", lambda: DATA["binary"](60), "unknown problem type"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_preprocess_fails_each_bad_dataset_with_its_reason_before_training(
    tmp_path: Path, case: str
) -> None:
    problem_type, make, expected = BAD[case]
    ml_root = tmp_path / "ml"
    ml_root.mkdir()

    result = _preprocess(tmp_path, make(), problem_type, ml_root)

    assert result.returncode == 1
    message = (ml_root / "output" / "message").read_text()
    assert expected in message, message
    assert not (tmp_path / "out").exists() and not (tmp_path / "report").exists()


def test_preprocess_reports_class_balance_for_classification(tmp_path: Path) -> None:
    frame = DATA["multiclass"](200)
    result = _preprocess(tmp_path, frame, "multiclass", None)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "report" / "data-report.json").read_text())
    counts = frame["label"].value_counts()
    assert report["classBalance"] == {str(k): int(counts[k]) for k in sorted(counts.index)}
    assert report["rows"] == 200 and report["columns"] == 7 and report["missingValues"] == 0
    assert report["problemType"] == "multiclass"
    assert json.loads(report["summary"]) == {k: v for k, v in report.items() if k != "summary"}
    # Every class reaches every split (stratified), as labels 0..3.
    for split in ("train", "validation", "test"):
        assert set(read_split(tmp_path / "out", split)[0]) == {0, 1, 2, 3}


def test_preprocess_reports_the_target_range_for_regression(tmp_path: Path) -> None:
    frame = DATA["regression"](200)
    result = _preprocess(tmp_path, frame, "regression", None)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "report" / "data-report.json").read_text())
    assert report["targetRange"]["min"] == pytest.approx(frame["label"].min())
    assert report["targetRange"]["max"] == pytest.approx(frame["label"].max())
    assert "classBalance" not in report
    sizes = {s: len(read_split(tmp_path / "out", s)) for s in ("train", "validation", "test")}
    assert sizes == {"train": 140, "validation": 30, "test": 30}
    # The target is kept as a number (not cast to a class).
    assert not np.allclose(read_split(tmp_path / "out", "train")[0] % 1, 0)


def test_preprocess_without_a_problem_type_is_binary_as_before(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    DATA["multiclass"](60).to_csv(tmp_path / "in" / "a.csv", index=False)
    ml_root = tmp_path / "ml"
    ml_root.mkdir()
    result = preprocess(tmp_path / "in", tmp_path / "out", ml_root)
    assert result.returncode == 1
    assert "must be 0 or 1" in (ml_root / "output" / "message").read_text()


# ------------------------------------------------------------ train.py and evaluate.py


_SPLITS: dict[str, Path] = {}


def _splits(tmp_path: Path, problem_type: str) -> Path:
    """Preprocess's splits of a 400-row dataset, made once per problem type (read only)."""
    if problem_type not in _SPLITS:
        frame = DATA[problem_type](400)
        result = _preprocess(tmp_path, frame, problem_type, None)
        assert result.returncode == 0, result.stderr
        _SPLITS[problem_type] = tmp_path / "out"
    return _SPLITS[problem_type]


def _train(tmp_path: Path, out: Path, hps: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> int:
    """train.py as the framework toolkit runs it: SM_* environment, SM_HPS."""
    (tmp_path / "ml" / "output").mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("SM_MODEL_DIR", str(tmp_path / "ml" / "model"))
    monkeypatch.setenv("SM_OUTPUT_DIR", str(tmp_path / "ml" / "output"))
    monkeypatch.setenv("SM_CHANNEL_TRAIN", str(out / "train"))
    monkeypatch.setenv("SM_CHANNEL_VALIDATION", str(out / "validation"))
    monkeypatch.setenv("SM_HPS", json.dumps(hps))
    return TRAIN.main([])


def _pack(model_dir: Path, archive: Path) -> None:
    archive.parent.mkdir(parents=True)
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(model_dir.iterdir()):
            tar.add(path, arcname=path.name)


# (algorithm, problem type) -> the primary metric's minimum on separable data.
COMBINATIONS = [
    (algorithm, problem_type)
    for algorithm in ("xgboost", "linear", "random-forest")
    for problem_type in ("binary", "multiclass", "regression")
]
EXPECTED = {
    "binary": ("auc", {"auc", "accuracy"}, "binary_classification_metrics"),
    "multiclass": ("macro_f1", {"accuracy", "macro_f1"}, "multiclass_classification_metrics"),
    "regression": ("r2", {"rmse", "r2"}, "regression_metrics"),
}


@pytest.mark.parametrize(("algorithm", "problem_type"), COMBINATIONS)
def test_each_algorithm_trains_a_model_evaluate_scores_with_the_problem_types_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, algorithm: str, problem_type: str
) -> None:
    out = _splits(tmp_path, problem_type)
    hps = {"algorithm": algorithm, "problem_type": problem_type, "hyperparameters": {}}
    if algorithm == "xgboost":
        hps.update(num_round="30", max_depth="3", eta="0.3")

    assert _train(tmp_path, out, hps, monkeypatch) == 0
    model_dir = tmp_path / "ml" / "model"
    info = json.loads((model_dir / "trainyard-model.json").read_text())
    assert info["algorithm"] == algorithm and info["problem_type"] == problem_type
    expected_file = "xgboost-model" if algorithm == "xgboost" else "model.joblib"
    assert (model_dir / expected_file).is_file()
    _pack(model_dir, tmp_path / "artifact" / "model.tar.gz")

    result = run_script(
        STEPS_DIR / "evaluate.py",
        *("--model-dir", tmp_path / "artifact", "--test-dir", out / "test"),
        *("--output-dir", tmp_path / "evaluation", "--algorithm", algorithm),
        *("--problem-type", problem_type),
    )

    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "evaluation" / "evaluation.json").read_text())
    primary, names, block = EXPECTED[problem_type]
    assert set(report["metrics"]) == names
    assert report["primary_metric"] == {
        "name": primary,
        "value": report["metrics"][primary]["value"],
    }
    assert json.loads(report["metrics_json"]) == {
        name: report["metrics"][name]["value"] for name in names
    }
    assert set(report[block]) == names
    assert report["primary_metric"]["value"] > 0.6  # separable data, a learned model


def test_evaluate_regression_metrics_are_rmse_and_r2_of_the_predictions() -> None:
    truth = np.array([1.0, 2.0, 3.0, 4.0])
    predicted = np.array([1.5, 2.0, 2.5, 4.0])
    report = EVALUATE.evaluate(lambda _: predicted, np.zeros((4, 1)), truth, "regression")
    assert report["metrics"]["rmse"]["value"] == pytest.approx(np.sqrt(0.125))
    assert report["metrics"]["r2"]["value"] == pytest.approx(1 - 0.5 / 5.0)


def test_evaluate_multiclass_metrics_are_accuracy_and_macro_f1() -> None:
    truth = np.array([0, 1, 2, 2])
    probabilities = np.eye(3)[[0, 1, 1, 2]]  # one class-2 row predicted as 1
    report = EVALUATE.evaluate(lambda _: probabilities, np.zeros((4, 1)), truth, "multiclass")
    assert report["metrics"]["accuracy"]["value"] == pytest.approx(0.75)
    # per-class F1: 1, 2/3, 2/3 -> macro 7/9
    assert report["metrics"]["macro_f1"]["value"] == pytest.approx(7 / 9)


def test_train_fails_an_unknown_hyperparameter_with_its_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = _splits(tmp_path, "binary")
    hps = {"algorithm": "random-forest", "problem_type": "binary", "hyperparameters": '{"eta": 1}'}

    assert _train(tmp_path, out, hps, monkeypatch) == 1
    failure = (tmp_path / "ml" / "output" / "failure").read_text()
    assert failure.startswith("ClientError: unknown hyperparameters ['eta'] for random-forest")


def test_train_applies_the_hyperparameters_object_over_the_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _splits(tmp_path, "regression")
    hps = {
        "algorithm": "random-forest",
        "problem_type": "regression",
        "hyperparameters": '{"n_estimators": 7, "max_depth": 2}',
    }
    assert _train(tmp_path, out, hps, monkeypatch) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["settings"] == {"n_estimators": 7, "max_depth": 2, "min_samples_leaf": 1}
    import joblib

    forest = joblib.load(tmp_path / "ml" / "model" / "model.joblib")
    assert len(forest.estimators_) == 7 and forest.max_depth == 2
