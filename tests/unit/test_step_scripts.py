"""The pipeline step scripts, run as the processing container runs them."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from sklearn.datasets import make_classification

from pipeline.scripts import STEPS_DIR

PREPROCESS = STEPS_DIR / "preprocess.py"
EVALUATE = STEPS_DIR / "evaluate.py"


def dataset(rows: int = 200, features: int = 5, seed: int = 0) -> pd.DataFrame:
    x, y = make_classification(
        n_samples=rows, n_features=features, n_informative=2, n_redundant=0, random_state=seed
    )
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(features)])
    frame["label"] = y
    return frame


def run_script(script: Path, *args: str | Path, ml_root: Path | None = None):
    env = {"PATH": "/usr/bin:/bin"}
    if ml_root is not None:
        env["TRAINYARD_ML_ROOT"] = str(ml_root)
    return subprocess.run(
        [sys.executable, str(script), *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def preprocess(input_dir: Path, output_dir: Path, ml_root: Path | None = None):
    return run_script(
        PREPROCESS, "--input-dir", input_dir, "--output-dir", output_dir, ml_root=ml_root
    )


def read_split(output_dir: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(output_dir / name / f"{name}.csv", header=None)


# ------------------------------------------------------------------ preprocess


def test_preprocess_splits_70_15_15_with_label_first_and_no_header(tmp_path: Path) -> None:
    data = dataset(rows=200)
    (tmp_path / "in").mkdir()
    # Label in the middle of the upload: the output must still put it first.
    data[["f0", "f1", "label", "f2", "f3", "f4"]].to_csv(tmp_path / "in" / "a.csv", index=False)

    result = preprocess(tmp_path / "in", tmp_path / "out")

    assert result.returncode == 0, result.stderr
    splits = {name: read_split(tmp_path / "out", name) for name in ("train", "validation", "test")}
    assert [len(splits[n]) for n in ("train", "validation", "test")] == [140, 30, 30]
    for frame in splits.values():
        assert frame.shape[1] == 6
        assert set(frame[0].unique()) == {0, 1}  # label column first, both classes
        assert not frame.map(lambda v: isinstance(v, str)).any().any()  # no header row
    # Every input row lands in exactly one split, unchanged.
    combined = pd.concat(splits.values()).to_numpy()
    expected = data[["label", "f0", "f1", "f2", "f3", "f4"]].to_numpy()
    assert sorted(map(tuple, np.round(combined, 6))) == sorted(map(tuple, np.round(expected, 6)))


def test_preprocess_split_is_deterministic(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    dataset(rows=120).to_csv(tmp_path / "in" / "a.csv", index=False)

    preprocess(tmp_path / "in", tmp_path / "one")
    preprocess(tmp_path / "in", tmp_path / "two")

    for name in ("train", "validation", "test"):
        first = (tmp_path / "one" / name / f"{name}.csv").read_bytes()
        assert first == (tmp_path / "two" / name / f"{name}.csv").read_bytes()


def test_preprocess_reads_every_csv_recursively_and_ignores_other_files(tmp_path: Path) -> None:
    data = dataset(rows=90)
    (tmp_path / "in" / "2024" / "05").mkdir(parents=True)
    data.iloc[:40].to_csv(tmp_path / "in" / "a.csv", index=False)
    data.iloc[40:].to_csv(tmp_path / "in" / "2024" / "05" / "b.csv", index=False)
    (tmp_path / "in" / "notes.txt").write_text("not data")

    result = preprocess(tmp_path / "in", tmp_path / "out")

    assert result.returncode == 0, result.stderr
    total = sum(len(read_split(tmp_path / "out", n)) for n in ("train", "validation", "test"))
    assert total == 90


def _write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def _csv_with_cell(row: int, column: str, value: str) -> str:
    frame = dataset(rows=30).astype(object)
    frame.loc[row, column] = value
    return frame.to_csv(index=False)


GOOD = dataset(rows=30).to_csv(index=False)
BAD_DATA = {
    "no_csv_files": ({"readme.txt": "hello"}, "no CSV files"),
    "empty_file": ({"a.csv": ""}, "a.csv is empty"),
    "header_only": ({"a.csv": "f0,f1,label\n"}, "no data rows"),
    "no_label_column": (
        {"a.csv": dataset(rows=30).rename(columns={"label": "target"}).to_csv(index=False)},
        "no 'label' column",
    ),
    "non_numeric_value": (
        {"a.csv": _csv_with_cell(4, "f2", "abc")},
        "column 'f2' has a non-numeric value 'abc' (data row 5)",
    ),
    "missing_value": (
        {"a.csv": _csv_with_cell(1, "f0", "")},
        "column 'f0' has 1 missing value(s), the first in data row 2",
    ),
    "label_not_binary": (
        {"a.csv": _csv_with_cell(0, "label", "2")},
        "'label' must be 0 or 1 for a binary problem, found ['2']",
    ),
    "single_class": (
        {"a.csv": dataset(rows=30).assign(label=1).to_csv(index=False)},
        "single class",
    ),
    "mismatched_headers": (
        {"a.csv": GOOD, "b.csv": dataset(rows=30, features=4).to_csv(index=False)},
        "all files must share one header",
    ),
    "too_few_rows": ({"a.csv": dataset(rows=12).to_csv(index=False)}, "at least 20"),
    # pandas reads "f0,f0" as f0 and f0.1: the header is checked as written.
    "duplicate_columns": (
        {"a.csv": dataset(rows=30).to_csv(index=False).replace("f1", "f0", 1)},
        "a.csv has duplicate column names: ['f0']",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_DATA))
def test_preprocess_rejects_bad_data_with_one_clear_error_line(tmp_path: Path, case: str) -> None:
    files, expected = BAD_DATA[case]
    ml_root = tmp_path / "ml"
    ml_root.mkdir()

    result = preprocess(_write(tmp_path / "in", files), tmp_path / "out", ml_root=ml_root)

    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR: ")]
    assert len(errors) == 1, result.stderr
    assert expected in errors[0]
    # What SageMaker shows as FailureReason (the runner maps /opt/ml to ml_root).
    assert (ml_root / "output" / "message").read_text() == errors[0][len("ERROR: ") :]
    assert not (tmp_path / "out").exists()


BOUNDLESS = {
    "megabyte_cell": (lambda: _csv_with_cell(3, "f1", "x" * 1_000_000), "non-numeric value"),
    "sixty_thousand_columns_without_label": (
        lambda: ",".join(f"c{i}" for i in range(60_000)) + "\n" + ",".join(["1"] * 60_000),
        "no 'label' column in header ['c0', 'c1',",
    ),
}


@pytest.mark.parametrize("case", sorted(BOUNDLESS))
def test_preprocess_failure_reasons_fit_sagemakers_failure_reason_limit(
    tmp_path: Path, case: str
) -> None:
    make, expected = BOUNDLESS[case]
    ml_root = tmp_path / "ml"
    ml_root.mkdir()
    result = preprocess(_write(tmp_path / "in", {"a.csv": make()}), tmp_path / "out", ml_root)
    assert result.returncode == 1
    message = (ml_root / "output" / "message").read_text()
    assert expected in message
    assert len(message) <= 1024  # DescribeProcessingJob's FailureReason: max 1,024


# -------------------------------------------------------------------- evaluate


def write_model(model_dir: Path, train: pd.DataFrame) -> None:
    """What the built-in XGBoost container leaves behind: model.tar.gz/xgboost-model."""
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 3},
        xgb.DMatrix(train.drop(columns="label").to_numpy(), label=train["label"].to_numpy()),
        num_boost_round=20,
    )
    model_dir.mkdir(parents=True)
    with warnings.catch_warnings():  # extension-less name -> UBJSON, as the container
        warnings.simplefilter("ignore", UserWarning)
        booster.save_model(str(model_dir / "xgboost-model"))
    with tarfile.open(model_dir / "model.tar.gz", "w:gz") as tar:
        tar.add(model_dir / "xgboost-model", arcname="xgboost-model")
    (model_dir / "xgboost-model").unlink()


def write_test(test_dir: Path, test: pd.DataFrame) -> None:
    test_dir.mkdir(parents=True)
    columns = ["label", *[c for c in test.columns if c != "label"]]
    test[columns].to_csv(test_dir / "test.csv", header=False, index=False)


def evaluate(tmp_path: Path, ml_root: Path | None = None):
    return run_script(
        EVALUATE,
        "--model-dir",
        tmp_path / "model",
        "--test-dir",
        tmp_path / "test",
        "--output-dir",
        tmp_path / "evaluation",
        ml_root=ml_root,
    )


def test_evaluate_writes_the_report_the_pipeline_condition_reads(tmp_path: Path) -> None:
    data = dataset(rows=400, seed=3)
    write_model(tmp_path / "model", data.iloc[:300])
    write_test(tmp_path / "test", data.iloc[300:])

    result = evaluate(tmp_path)

    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "evaluation" / "evaluation.json").read_text())
    auc = report["metrics"]["auc"]["value"]
    accuracy = report["metrics"]["accuracy"]["value"]
    assert auc > 0.8 and 0.5 < accuracy <= 1.0  # separable data, learned model
    assert report["binary_classification_metrics"] == {
        "auc": {"value": auc, "standard_deviation": 0.0},
        "accuracy": {"value": accuracy, "standard_deviation": 0.0},
    }
    assert report["test_rows"] == 100


def test_evaluate_scores_the_model_against_the_test_labels(tmp_path: Path) -> None:
    data = dataset(rows=400, seed=3)
    write_model(tmp_path / "model", data.iloc[:300])
    flipped = data.iloc[300:].assign(label=lambda f: 1 - f["label"])
    write_test(tmp_path / "test", flipped)

    result = evaluate(tmp_path)

    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "evaluation" / "evaluation.json").read_text())
    assert report["metrics"]["auc"]["value"] < 0.2  # same model, inverted truth


def test_evaluate_reports_a_single_class_test_split_clearly(tmp_path: Path) -> None:
    data = dataset(rows=400, seed=3)
    write_model(tmp_path / "model", data.iloc[:300])
    write_test(tmp_path / "test", data.iloc[300:].assign(label=0))
    ml_root = tmp_path / "ml"
    ml_root.mkdir()

    result = evaluate(tmp_path, ml_root=ml_root)

    assert result.returncode == 1
    assert "ERROR: the test split has a single label class (0)" in result.stderr
    assert "AUC is undefined" in (ml_root / "output" / "message").read_text()
    assert not (tmp_path / "evaluation" / "evaluation.json").exists()


def test_evaluate_reports_a_missing_model_clearly(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    write_test(tmp_path / "test", dataset(rows=50))

    result = evaluate(tmp_path)

    assert result.returncode == 1
    assert "ERROR: no 'xgboost-model' file in the model artifact" in result.stderr
