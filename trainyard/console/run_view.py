"""The run page's model: what a run trained with, on what data, and what came of it
(``GET /tenants/{id}/runs/{runId}``: its training, data report, lineage and retries).
Every value is text the template escapes (keys, reasons and hyperparameters come
from tenants)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from trainyard import run_metrics
from trainyard.console import fmt, views

DASH = views.DASH
MAX_INPUTS_SHOWN = 20


def _pairs(items: list[tuple[str, Any]]) -> list[dict[str, str]]:
    return [{"label": label, "value": fmt.text(value)} for label, value in items]


def run_detail(run: dict[str, Any], now: datetime) -> dict[str, Any]:
    row = views.run_row(run, now)
    training = run.get("training") or {}
    chosen = training.get("chosenBy") or {}
    lineage = run.get("lineage") or {}
    report = run.get("dataReport") or {}
    drift = report.get("schemaDrift") or {}
    params = training.get("hyperparameters") or {}
    summary = [
        ("Status", row["status"]),
        ("Queued", row["queuedAt"]),
        ("Started", row["startedAt"]),
        ("Duration", row["duration"]),
        ("Cost estimate", row["cost"]),
        ("Primary metric", row["primaryMetric"]),
        ("Metrics", row["metrics"]),
        ("Model package", run.get("modelPackageArn") or DASH),
        ("Execution", run.get("executionArn") or DASH),
        ("Failure reason", row["failureReason"]),
    ]
    trained = [
        ("Algorithm", training.get("algorithm") or DASH),
        ("Chosen by", _chosen(chosen)),
        ("Problem type", training.get("problemType") or DASH),
        ("Hyperparameters", "; ".join(f"{k}={v}" for k, v in sorted(params.items())) or DASH),
        ("Image", training.get("imageUri") or DASH),
        ("Instances", row["instance"]),
        ("Volume", f"{training['volumeSizeGb']} GB" if training.get("volumeSizeGb") else DASH),
        ("Metric threshold", training.get("metricThreshold", DASH)),
        ("Schema drift", training.get("schemaDrift") or DASH),
        ("Schema baseline run", training.get("schemaBaselineRunId") or DASH),
    ]
    data = [
        ("Rows and columns", row["data"]),
        ("Class balance", _mapping(report.get("classBalance"))),
        ("Target range", _mapping(report.get("targetRange"))),
        ("Columns changed", _drift(drift)),
    ]
    inputs = lineage.get("inputs") or []
    return {
        "run": row,
        "summary": _pairs(summary),
        "training": _pairs(trained) if training else [],
        "data": _pairs(data) if report else [],
        "lineage": _pairs(
            [
                ("Pipeline definition version", lineage.get("definitionVersion") or DASH),
                ("Inputs digest", lineage.get("inputsDigest") or DASH),
                ("Inputs not listed", _omitted(lineage)),
            ]
        )
        if lineage
        else [],
        "inputs": [
            {
                "key": fmt.text(i.get("key")),
                "etag": fmt.text(i.get("etag")),
                "size": fmt.text(i.get("size")),
                "version": fmt.text(i.get("versionId") or DASH),
            }
            for i in inputs[:MAX_INPUTS_SHOWN]
            if isinstance(i, dict)
        ],
        "inputsMore": max(0, len(inputs) - MAX_INPUTS_SHOWN),
        "retries": [
            _pairs(
                [
                    ("Attempt", r.get("attempt")),
                    ("Asked", fmt.clock(r.get("requestedAt"))),
                    ("By", r.get("requestedBy") or DASH),
                    ("Reason", r.get("reason") or DASH),
                    ("How", r.get("mode") or "not started yet"),
                    ("Why a new execution", r.get("fallbackReason") or DASH),
                    ("The failure before", r.get("previousFailureReason") or DASH),
                ]
            )
            for r in run.get("retries") or []
            if isinstance(r, dict)
        ],
        "metricName": run_metrics.metric_label(run),
    }


def _chosen(chosen: dict[str, Any]) -> str:
    mode = chosen.get("mode")
    if mode != "auto":
        return fmt.text(mode)
    size = chosen.get("inputBytes")
    limit = chosen.get("thresholdBytes")
    return f"auto: {fmt.text(size)} bytes of input (rule up to {fmt.text(limit)} bytes)"


def _mapping(value: Any) -> str:
    if not isinstance(value, dict) or not value:
        return DASH
    return ", ".join(f"{k}: {v}" for k, v in value.items())


def _drift(drift: dict[str, Any]) -> str:
    if not drift:
        return DASH
    if not drift.get("baseline"):
        return "no earlier successful run to compare with"
    if not drift.get("drifted"):
        return f"none since run {fmt.text(drift.get('baselineRunId'))}"
    parts = []
    for kind in ("added", "removed"):
        names = drift.get(kind) or []
        more = int(drift.get(f"{kind}Omitted") or 0)
        if names or more:
            parts.append(
                f"{kind} {', '.join(map(str, names))}" + (f" and {more} more" if more else "")
            )
    if drift.get("reordered"):
        parts.append("reordered")
    since = f" since run {fmt.text(drift.get('baselineRunId'))}"
    return "; ".join(parts) + since + f" ({fmt.text(drift.get('mode'))})"


def _omitted(lineage: dict[str, Any]) -> str:
    omitted = int(lineage.get("inputsOmitted") or 0)
    text = str(omitted)
    if lineage.get("inputsTruncated"):
        text += " (the listing stopped at its bound)"
    return text
