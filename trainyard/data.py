"""Deterministic demo/test training data, one distinct dataset per tenant.

Every tenant gets a binary classification problem from
``sklearn.datasets.make_classification`` (ships with scikit-learn: no downloads),
seeded by the tenant id so the same tenant always gets the same bytes while
different tenants get different shapes (feature count, separability, rows).
The CSV contract matches docs/architecture.md §5: a header row, numeric feature columns
``f0..fN`` and a 0/1 ``label`` column. ``problem_type="regression"`` gives the same
shape with a numeric ``label`` target (``make_regression``) instead.

Also generators of *bad* files, so tests and demos can show how a run fails
with a clear reason instead of a crash.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.datasets import make_classification, make_regression

LABEL = "label"


@dataclass(frozen=True)
class DatasetProfile:
    """The shape of one tenant's dataset, derived from its id."""

    tenant_id: str
    seed: int
    rows: int
    features: int
    informative: int
    class_sep: float
    # Fraction of labels flipped at random: keeps the problem imperfect but learnable.
    flip_y: float


def _seed(tenant_id: str) -> int:
    # hashlib, not hash(): Python's str hash is randomised per process.
    return int.from_bytes(hashlib.sha256(tenant_id.encode()).digest()[:4], "big")


def tenant_profile(tenant_id: str) -> DatasetProfile:
    seed = _seed(tenant_id)
    rng = np.random.default_rng(seed)
    features = int(rng.integers(5, 17))
    informative = int(rng.integers(3, min(features, 8) + 1))
    return DatasetProfile(
        tenant_id=tenant_id,
        seed=seed,
        rows=int(rng.integers(40, 121)) * 10,  # 400..1200
        features=features,
        informative=informative,
        # >= 0.9 keeps XGBoost AUC well above the default 0.6 registration threshold.
        class_sep=round(float(rng.uniform(0.9, 1.6)), 3),
        flip_y=round(float(rng.uniform(0.0, 0.04)), 3),
    )


def tenant_arrays(tenant_id: str) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) of the tenant's dataset; y is 0/1."""
    p = tenant_profile(tenant_id)
    x, y = make_classification(
        n_samples=p.rows,
        n_features=p.features,
        n_informative=p.informative,
        n_redundant=min(2, p.features - p.informative),
        n_classes=2,
        class_sep=p.class_sep,
        flip_y=p.flip_y,
        random_state=p.seed % (2**32),
    )
    return x, y.astype(int)


def tenant_regression_arrays(tenant_id: str) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) of the tenant's regression dataset: the profile's rows and features, a
    numeric target that a linear model or trees fit well (R² far above 0.5)."""
    p = tenant_profile(tenant_id)
    x, y = make_regression(
        n_samples=p.rows,
        n_features=p.features,
        n_informative=p.informative,
        noise=5.0,
        random_state=p.seed % (2**32),
    )
    return x, y


def feature_names(count: int) -> list[str]:
    return [f"f{i}" for i in range(count)]


def _to_csv(header: list[str], rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    out.write(",".join(header) + "\n")
    for row in rows:
        out.write(",".join(row) + "\n")
    return out.getvalue().encode()


def _rows(x: np.ndarray, y: np.ndarray, *, numeric_label: bool = False) -> list[list[str]]:
    # Fixed precision: byte-identical output on every platform.
    return [
        [f"{v:.6f}" for v in features] + [f"{label:.6f}" if numeric_label else str(int(label))]
        for features, label in zip(x, y, strict=True)
    ]


def tenant_csv(
    tenant_id: str, *, part: int = 0, parts: int = 1, problem_type: str = "binary"
) -> bytes:
    """The tenant's dataset as CSV bytes; ``parts`` > 1 splits it into that many
    files with the same schema (upload several, a run trains on all of them).
    ``problem_type``: "binary" (0/1 label) or "regression" (numeric label)."""
    if not 0 <= part < parts:
        raise ValueError(f"part must be in [0, {parts})")
    if problem_type not in ("binary", "regression"):
        raise ValueError(f"no generator for problem type {problem_type!r}")
    regression = problem_type == "regression"
    x, y = tenant_regression_arrays(tenant_id) if regression else tenant_arrays(tenant_id)
    chunk = slice(part * len(y) // parts, (part + 1) * len(y) // parts)
    return _to_csv(
        [*feature_names(x.shape[1]), LABEL],
        _rows(x[chunk], y[chunk], numeric_label=regression),
    )


# --- bad files (each one a different reason the pipeline must reject)


def empty_csv() -> bytes:
    return b""


def not_csv() -> bytes:
    # A PNG signature followed by binary noise: what a wrong upload looks like.
    return b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def missing_label_csv(tenant_id: str) -> bytes:
    x, _ = tenant_arrays(tenant_id)
    return _to_csv(feature_names(x.shape[1]), [[f"{v:.6f}" for v in row] for row in x])


def non_numeric_csv(tenant_id: str) -> bytes:
    x, y = tenant_arrays(tenant_id)
    rows = _rows(x, y)
    rows[len(rows) // 2][0] = "high"
    return _to_csv([*feature_names(x.shape[1]), LABEL], rows)


def single_class_csv(tenant_id: str) -> bytes:
    x, _ = tenant_arrays(tenant_id)
    return _to_csv([*feature_names(x.shape[1]), LABEL], _rows(x, np.zeros(len(x), dtype=int)))


BAD_FILES: dict[str, Callable[[str], bytes]] = {
    "empty": lambda _tenant: empty_csv(),
    "not-csv": lambda _tenant: not_csv(),
    "missing-label": missing_label_csv,
    "non-numeric": non_numeric_csv,
    "single-class": single_class_csv,
}
