"""A run's primary metric as the API's run JSON carries it: the one rule the CLI,
the demo and the console read (the names come from trainyard_core.lineage)."""

from __future__ import annotations

from typing import Any

from pipeline.contract import PRIMARY_METRICS

# How people name the metrics the evaluation writes.
LABELS = {"auc": "AUC", "macro_f1": "macro-F1", "accuracy": "accuracy", "r2": "R²", "rmse": "RMSE"}
# The metric shown next to the primary one (the pairs: macro-F1/accuracy, R²/RMSE).
SECONDARY = {"multiclass": "accuracy", "regression": "rmse"}


def problem_type_of(run: dict[str, Any]) -> str:
    # Runs recorded before per-tenant training settings were all binary.
    return str((run.get("training") or {}).get("problemType") or "binary")


def primary_metric(run: dict[str, Any]) -> tuple[str, float | None]:
    """The run's primary metric for its problem type (AUC, macro-F1, R²: what the
    pipeline's condition compared) by name, and its value if the run has one."""
    name = PRIMARY_METRICS.get(problem_type_of(run), "auc")
    value = (run.get("metrics") or {}).get(name)
    return name, float(value) if isinstance(value, int | float) else None


def metric_of(run: dict[str, Any]) -> str:
    """ "auc=0.931", "r2=0.874", "macro_f1=-" (no value yet)."""
    name, value = primary_metric(run)
    return f"{name}={'-' if value is None else f'{value:.3f}'}"


def metric_label(run: dict[str, Any]) -> str:
    """For people: "AUC 0.931", "R² 0.874 (RMSE 1.204)", "macro-F1 —" (no value yet)."""
    name, value = primary_metric(run)
    text = f"{LABELS.get(name, name)} {'—' if value is None else f'{value:.3f}'}"
    extra = SECONDARY.get(problem_type_of(run))
    other = (run.get("metrics") or {}).get(extra) if extra else None
    if isinstance(other, int | float):
        text += f" ({LABELS.get(str(extra), extra)} {other:.3f})"
    return text
