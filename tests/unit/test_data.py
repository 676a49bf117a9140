"""Demo training data: deterministic, distinct per tenant, in the §5 CSV shape, learnable."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from trainyard import data

TENANTS = ["acme", "globex", "initech", "umbrella"]


def _frame(payload: bytes) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(payload))


def test_same_tenant_always_gets_identical_bytes() -> None:
    assert data.tenant_csv("acme") == data.tenant_csv("acme")


def test_each_tenant_gets_a_different_dataset_shape() -> None:
    profiles = {t: data.tenant_profile(t) for t in TENANTS}
    shapes = {(p.rows, p.features, p.class_sep) for p in profiles.values()}
    assert len(shapes) == len(TENANTS)
    assert len({data.tenant_csv(t) for t in TENANTS}) == len(TENANTS)


@pytest.mark.parametrize("tenant", TENANTS)
def test_csv_has_header_numeric_features_and_binary_label(tenant: str) -> None:
    frame = _frame(data.tenant_csv(tenant))
    profile = data.tenant_profile(tenant)
    assert list(frame.columns) == [f"f{i}" for i in range(profile.features)] + ["label"]
    assert len(frame) == profile.rows
    assert all(pd.api.types.is_float_dtype(frame[c]) for c in frame.columns[:-1])
    assert set(frame["label"].unique()) == {0, 1}


@pytest.mark.parametrize("tenant", TENANTS)
def test_regression_csv_has_the_same_shape_with_a_numeric_learnable_label(tenant: str) -> None:
    from sklearn.linear_model import Ridge
    from sklearn.metrics import r2_score

    frame = _frame(data.tenant_csv(tenant, problem_type="regression"))
    profile = data.tenant_profile(tenant)
    assert list(frame.columns) == [f"f{i}" for i in range(profile.features)] + ["label"]
    assert len(frame) == profile.rows
    assert pd.api.types.is_float_dtype(frame["label"])
    assert frame["label"].nunique() > len(frame) // 2  # a target, not classes
    x, y = frame.drop(columns="label"), frame["label"]
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0)
    assert r2_score(y_test, Ridge().fit(x_train, y_train).predict(x_test)) > 0.8


def test_no_generator_for_an_unknown_problem_type() -> None:
    with pytest.raises(ValueError, match="multiclass"):
        data.tenant_csv("acme", problem_type="multiclass")


def test_parts_split_the_dataset_without_losing_rows() -> None:
    whole = _frame(data.tenant_csv("globex"))
    parts = [_frame(data.tenant_csv("globex", part=i, parts=3)) for i in range(3)]
    assert all(list(p.columns) == list(whole.columns) for p in parts)
    pd.testing.assert_frame_equal(pd.concat(parts, ignore_index=True), whole)


def test_part_out_of_range_is_rejected() -> None:
    with pytest.raises(ValueError):
        data.tenant_csv("acme", part=2, parts=2)


@pytest.mark.parametrize("tenant", TENANTS)
def test_xgboost_learns_each_tenant_dataset(tenant: str) -> None:
    xgboost = pytest.importorskip("xgboost")
    frame = _frame(data.tenant_csv(tenant))
    x, y = frame.drop(columns="label"), frame["label"]
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.3, random_state=0, stratify=y
    )
    # The same hyperparameters the platform's default XGBoost settings use.
    model = xgboost.XGBClassifier(n_estimators=50, max_depth=4, learning_rate=0.2, subsample=0.9)
    model.fit(x_train, y_train)
    auc = roc_auc_score(y_test, model.predict_proba(x_test)[:, 1])
    assert auc > 0.7, f"{tenant}: AUC {auc:.3f}"


def test_bad_files_are_each_broken_in_their_own_way() -> None:
    assert data.empty_csv() == b""
    with pytest.raises(UnicodeDecodeError):
        data.not_csv().decode("utf-8")
    assert "label" not in _frame(data.missing_label_csv("acme")).columns
    non_numeric = _frame(data.non_numeric_csv("acme"))
    assert not pd.api.types.is_numeric_dtype(non_numeric["f0"])
    assert "high" in set(non_numeric["f0"])
    assert set(_frame(data.single_class_csv("acme"))["label"]) == {0}
    assert set(data.BAD_FILES) == {
        "empty",
        "not-csv",
        "missing-label",
        "non-numeric",
        "single-class",
    }


@pytest.mark.parametrize("kind", sorted(data.BAD_FILES))
def test_every_bad_file_is_rejected_by_the_pipeline_preprocess_step(
    kind: str, tmp_path: Path
) -> None:
    # The point of the bad files: the real preprocess step turns each into a clear error.
    preprocess = pytest.importorskip("pipeline.steps.preprocess")
    (tmp_path / "upload.csv").write_bytes(data.BAD_FILES[kind]("acme"))
    with pytest.raises(preprocess.DataError):
        preprocess.validate(preprocess.read_inputs(tmp_path))


def test_good_file_passes_the_pipeline_preprocess_step(tmp_path: Path) -> None:
    preprocess = pytest.importorskip("pipeline.steps.preprocess")
    (tmp_path / "upload.csv").write_bytes(data.tenant_csv("acme"))
    validated = preprocess.validate(preprocess.read_inputs(tmp_path))
    assert len(validated) == data.tenant_profile("acme").rows
