"""Preprocess step: validate a tenant's CSV uploads and split them for training.

Runs unchanged in a SageMaker processing container (python3 + pandas/numpy) and
locally under trainyard's pipeline runner.

    python3 preprocess.py --input-dir DIR --output-dir DIR [--seed N]
        [--problem-type binary|multiclass|regression] [--report-dir DIR]
        [--baseline-dir DIR] [--schema-drift warn|fail]

Input: every ``*.csv`` under --input-dir (recursively), each with the same header
row, a ``label`` column (the target: 0/1 for binary, integer classes 0..99 for
multiclass, a number for regression) and numeric feature columns; no empty cell.
Data report: <report-dir>/data-report.json (rows, columns, class balance or target
range, missing values, schema drift; ``summary`` holds the same as one JSON string)
and <report-dir>/schema.json (every column, in order: the next run's baseline).
Schema drift: --baseline-dir holds the schema.json of the tenant's previous successful
run, or only the platform's no-baseline marker (``{"columns": null}``: SageMaker fails
a job whose input prefix is empty, so "no baseline" is an object too). Columns added,
removed or reordered since then are reported; with --schema-drift fail the job fails.
Output: <output-dir>/{train,validation,test}/{train,validation,test}.csv, 70/15/15,
label FIRST and NO header (the built-in XGBoost container's CSV contract).

Bad data: one line ``ERROR: <reason>`` on stderr, the reason also written to
<ml-root>/output/message (SageMaker shows that file as the job's FailureReason),
exit status 1. <ml-root> is /opt/ml, or $TRAINYARD_ML_ROOT when the local runner
maps /opt/ml to a temporary directory.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

LABEL = "label"
MIN_ROWS = 20
PROBLEM_TYPES = ("binary", "multiclass", "regression")
MAX_CLASSES = 100  # multiclass labels 0..99
MAX_REPORTED_CLASSES = 20  # the data report's class balance lists at most these
SPLITS = (("train", 0.70), ("validation", 0.15), ("test", 0.15))
# SageMaker's FailureReason is at most 1,024 characters; names and values quoted in
# a reason are cut so that the reason stays readable (a cell can be megabytes).
MAX_REASON_CHARS = 1024
MAX_QUOTED_CHARS = 80
MAX_QUOTED_COLUMNS = 10
SCHEMA_FILE = "schema.json"
# The data report's summary reaches the recorder through a PropertyFile; the recorder
# and the run store take at most 4,096 characters (contract.DATA_REPORT_MAX_CHARS).
MAX_SUMMARY_CHARS = 4000
DRIFT_MODES = ("warn", "fail")


class DataError(Exception):
    """The tenant's data cannot be trained on; the message is shown to the tenant."""


def _ml_root() -> Path:
    return Path(os.environ.get("TRAINYARD_ML_ROOT", "/opt/ml"))


def short(text: str, limit: int = MAX_QUOTED_CHARS) -> str:
    """``text``, cut to ``limit`` characters with an ellipsis (for reasons)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def columns_text(columns: list[str]) -> str:
    """A header for a reason: the first few names, each cut, and how many there are."""
    shown = [short(c, 40) for c in columns[:MAX_QUOTED_COLUMNS]]
    more = len(columns) - len(shown)
    return str(shown) + (f" and {more} more columns" if more > 0 else "")


def fail(reason: str) -> None:
    """Report a data problem the way SageMaker surfaces it, then exit 1."""
    reason = short(" ".join(reason.split()), MAX_REASON_CHARS)  # one bounded line
    print(f"ERROR: {reason}", file=sys.stderr, flush=True)
    root = _ml_root()
    # Only inside a container (or the local runner's mapped root): never create
    # /opt/ml on a developer machine.
    if root.is_dir():
        try:
            (root / "output").mkdir(parents=True, exist_ok=True)
            (root / "output" / "message").write_text(reason)
        except OSError:
            pass
    sys.exit(1)


def header_as_written(path: Path) -> list[str]:
    """The first non-blank row as in the file (pandas renames a repeated name)."""
    csv.field_size_limit(sys.maxsize)
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as handle:
        for row in csv.reader(handle):
            if any(cell.strip() for cell in row):
                return [cell.strip() for cell in row]
    return []


def read_inputs(input_dir: Path) -> pd.DataFrame:
    # The extension is case-insensitive, as intake's (train.CSV is a training file).
    files = sorted(p for p in input_dir.rglob("*") if p.is_file() and p.suffix.lower() == ".csv")
    if not files:
        raise DataError(f"no CSV files found under {input_dir.name or input_dir}/")
    frames: list[pd.DataFrame] = []
    header: list[str] | None = None
    for path in files:
        name = short(path.relative_to(input_dir).as_posix())
        try:
            # Read as text first so non-numeric cells are reported, not guessed.
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        except pd.errors.EmptyDataError:
            raise DataError(f"{name} is empty") from None
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise DataError(f"{name} is not a readable CSV file: {short(str(exc))}") from None
        columns = [str(c).strip() for c in frame.columns]
        frame.columns = columns
        try:
            written = header_as_written(path)
        except csv.Error as exc:
            raise DataError(f"{name} is not a readable CSV file: {short(str(exc))}") from None
        repeated = [c for c, n in Counter(written).items() if n > 1]
        if repeated or len(set(columns)) != len(columns):
            raise DataError(
                f"{name} has duplicate column names: {columns_text(repeated or columns)}"
            )
        if header is None:
            header = columns
        elif columns != header:
            first = short(files[0].relative_to(input_dir).as_posix())
            raise DataError(
                f"{name} has header {columns_text(columns)} but {first} has "
                f"{columns_text(header)}; all files must share one header"
            )
        frames.append(frame)
    assert header is not None
    if LABEL not in header:
        raise DataError(f"no '{LABEL}' column in header {columns_text(header)}")
    if len(header) < 2:
        raise DataError("no feature columns besides 'label'")
    return pd.concat(frames, ignore_index=True)


def _numeric(raw: pd.DataFrame) -> pd.DataFrame:
    """Every cell a finite number; a missing or non-numeric cell fails with its place."""
    numeric = pd.DataFrame(index=raw.index)
    for column in raw.columns:
        text = raw[column].astype(str).str.strip()
        missing = text == ""
        if missing.any():
            row = int(missing.idxmax()) + 1
            what = "target" if column == LABEL else "column"
            raise DataError(
                f"{what} '{short(column)}' has {int(missing.sum())} missing value(s), the first "
                f"in data row {row}; every cell needs a value (fill or drop those rows)"
            )
        values = pd.to_numeric(text, errors="coerce")
        bad = values.isna() | ~np.isfinite(values.astype(float))
        if bad.any():
            row = int(bad.idxmax())
            what = "target" if column == LABEL else "column"
            raise DataError(
                f"{what} '{short(column)}' has a non-numeric value {short(text[row])!r} "
                f"(data row {row + 1})"
            )
        numeric[column] = values.astype(float)
    return numeric


def _shown_labels(raw: pd.DataFrame, invalid: pd.Series) -> list[str]:
    return sorted({short(str(raw[LABEL][i]).strip()) for i in raw.index[invalid]})[:5]


def validate(raw: pd.DataFrame, problem_type: str = "binary") -> pd.DataFrame:
    """Numeric features and a target that fits ``problem_type``, enough rows:
    binary 0/1 with both classes, multiclass integer classes 0..MAX_CLASSES-1 (at
    least two), regression a numeric target that is not constant."""
    if problem_type not in PROBLEM_TYPES:
        raise DataError(f"unknown problem type {short(problem_type)!r}; one of {PROBLEM_TYPES}")
    if raw.empty:
        raise DataError("the CSV files contain a header but no data rows")
    numeric = _numeric(raw)
    labels = numeric[LABEL]
    if problem_type == "binary":
        invalid = ~labels.isin([0.0, 1.0])
        if invalid.any():
            raise DataError(
                f"'{LABEL}' must be 0 or 1 for a binary problem, found "
                f"{_shown_labels(raw, invalid)}"
            )
        if labels.nunique() < 2:
            raise DataError(
                f"'{LABEL}' has a single class ({int(labels.iloc[0])}); both 0 and 1 are needed"
            )
    elif problem_type == "multiclass":
        invalid = (labels != labels.round()) | (labels < 0) | (labels >= MAX_CLASSES)
        if invalid.any():
            raise DataError(
                f"'{LABEL}' must be an integer class from 0 to {MAX_CLASSES - 1} for a "
                f"multiclass problem, found {_shown_labels(raw, invalid)}"
            )
        if labels.nunique() < 2:
            raise DataError(
                f"'{LABEL}' has a single class ({int(labels.iloc[0])}); a multiclass "
                "problem needs at least two"
            )
    elif labels.nunique() < 2:
        raise DataError(
            f"'{LABEL}' has the same value ({labels.iloc[0]:g}) in every row; a regression "
            "target must vary"
        )
    if len(numeric) < MIN_ROWS:
        raise DataError(f"only {len(numeric)} data rows; at least {MIN_ROWS} are needed")
    if problem_type != "regression":
        numeric[LABEL] = labels.astype(int)
    features = [c for c in numeric.columns if c != LABEL]
    return numeric[[LABEL, *features]]  # label first: the XGBoost CSV contract


def data_report(data: pd.DataFrame, problem_type: str) -> dict:
    """What the run shows about its data: rows, columns, class balance or target
    range, missing values (none: validate() refuses them). Bounded in size."""
    features = [c for c in data.columns if c != LABEL]
    report: dict = {
        "problemType": problem_type,
        "rows": len(data),
        "columns": len(features) + 1,
        "featureColumns": [short(c, 40) for c in features[:MAX_QUOTED_COLUMNS]],
        "missingValues": 0,
    }
    if len(features) > MAX_QUOTED_COLUMNS:
        report["featureColumnsOmitted"] = len(features) - MAX_QUOTED_COLUMNS
    labels = data[LABEL]
    if problem_type == "regression":
        report["targetRange"] = {
            "min": float(labels.min()),
            "max": float(labels.max()),
            "mean": round(float(labels.mean()), 6),
        }
    else:
        counts = labels.value_counts().sort_index()
        report["classBalance"] = {
            str(int(k)): int(v) for k, v in list(counts.items())[:MAX_REPORTED_CLASSES]
        }
        if len(counts) > MAX_REPORTED_CLASSES:
            report["classesOmitted"] = len(counts) - MAX_REPORTED_CLASSES
    return report


# --- schema drift ---------------------------------------------------------------------
# Every column is numeric (validate() refuses anything else), so a schema is the
# header: the column names in order, the target among them.


def schema_of(header: list[str]) -> dict:
    return {"version": 1, "target": LABEL, "columns": list(header)}


def read_baseline(baseline_dir: Path | None) -> tuple[list[str] | None, str | None, bool]:
    """(the baseline's columns, the run it came from, whether a schema was there but
    unreadable). No columns: no baseline (the marker, no directory, no schema.json)."""
    path = baseline_dir / SCHEMA_FILE if baseline_dir is not None else None
    if path is None or not path.is_file():
        return None, None, False
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        schema = None
    columns = schema.get("columns") if isinstance(schema, dict) else None
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        # Reported, never a failed run: the same baseline would be chosen again and
        # again, so failing would lock the tenant out.
        return None, None, True
    run_id = schema.get("runId")
    return columns, run_id if isinstance(run_id, str) else None, False


def _names(columns: list[str], limit: int = MAX_QUOTED_COLUMNS) -> list[str]:
    return [short(c, 40) for c in columns[:limit]]


def schema_drift(header: list[str], baseline: list[str] | None, mode: str) -> dict:
    """What changed against the baseline's columns, bounded (names cut, at most
    MAX_QUOTED_COLUMNS of each kind listed, the rest counted). The target's place
    is no drift: preprocess moves it first anyway."""
    if baseline is None:
        return {"mode": mode, "baseline": False, "drifted": False}
    now, before = set(header), set(baseline)
    added = [c for c in header if c not in before]
    removed = [c for c in baseline if c not in now]
    order_now = [c for c in header if c in before and c != LABEL]
    order_before = [c for c in baseline if c in now and c != LABEL]
    drift: dict = {
        "mode": mode,
        "baseline": True,
        "drifted": bool(added or removed or order_now != order_before),
        "added": _names(added),
        "removed": _names(removed),
        "reordered": order_now != order_before,
    }
    if len(added) > MAX_QUOTED_COLUMNS:
        drift["addedOmitted"] = len(added) - MAX_QUOTED_COLUMNS
    if len(removed) > MAX_QUOTED_COLUMNS:
        drift["removedOmitted"] = len(removed) - MAX_QUOTED_COLUMNS
    return drift


def drift_reason(drift: dict, baseline_run: str | None) -> str:
    """The failure reason: what to do first (it must survive the 1,024-character cut),
    then what changed, with as many names as fit."""
    since = f"run {short(baseline_run, 64)}" if baseline_run else "its last successful run"
    head = (
        f"the columns changed since the tenant's last successful run ({since}); upload "
        "data with that run's columns, or accept the new ones with training.schemaDrift "
        "'warn' (for one run: POST /tenants/{id}/runs) -"
    )
    for limit in range(MAX_QUOTED_COLUMNS, -1, -1):
        parts = []
        for kind in ("added", "removed"):
            names = drift.get(kind) or []
            if names:
                more = len(names) - min(limit, len(names)) + drift.get(f"{kind}Omitted", 0)
                shown = f" {names[:limit]}" if limit else ""
                parts.append(f"{kind}{shown}" + (f" and {more} more" if more else ""))
        if drift.get("reordered"):
            parts.append("columns reordered")
        reason = f"{head} {'; '.join(parts)}"
        if len(reason) <= MAX_REASON_CHARS:
            return reason
    return reason


def bounded_summary(report: dict, limit: int) -> str:
    """The report as one compact JSON string of at most ``limit`` characters: names
    are listed fewer until it fits (non-ASCII names count once, not as escapes)."""
    report = json.loads(json.dumps(report))
    lists = [("featureColumns", report)]
    if isinstance(report.get("schemaDrift"), dict):
        lists += [("added", report["schemaDrift"]), ("removed", report["schemaDrift"])]
    while True:
        summary = json.dumps(report, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
        longest = max(lists, key=lambda item: len(item[1].get(item[0]) or []))
        names = longest[1].get(longest[0]) or []
        if len(summary) <= limit or not names:
            return summary
        owner, key = longest[1], longest[0]
        omitted = "featureColumnsOmitted" if key == "featureColumns" else f"{key}Omitted"
        owner[key] = names[:-1]
        owner[omitted] = owner.get(omitted, 0) + 1


def split(data: pd.DataFrame, seed: int, problem_type: str = "binary") -> dict[str, pd.DataFrame]:
    """Deterministic 70/15/15 split; classification splits are stratified by label
    so every split sees each class whenever the data allows it (a regression
    target is continuous: one shuffled group)."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {name: [] for name, _ in SPLITS}
    groups = (
        [data] if problem_type == "regression" else [g for _, g in data.groupby(LABEL, sort=True)]
    )
    for group in groups:
        index = rng.permutation(group.index.to_numpy())
        n = len(index)
        n_train = round(n * SPLITS[0][1])
        n_val = round(n * SPLITS[1][1])
        parts["train"].append(index[:n_train])
        parts["validation"].append(index[n_train : n_train + n_val])
        parts["test"].append(index[n_train + n_val :])
    return {
        name: data.loc[rng.permutation(np.concatenate(chunks))] for name, chunks in parts.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input-dir", required=True, type=Path)
    parser.add_argument("--output-dir", required=True, type=Path)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--problem-type", default="binary")
    parser.add_argument("--report-dir", type=Path, default=None)
    parser.add_argument("--baseline-dir", type=Path, default=None)
    parser.add_argument("--schema-drift", default="warn")
    parser.add_argument("--run-id", default=None)
    args = parser.parse_args(argv)
    try:
        if args.schema_drift not in DRIFT_MODES:
            raise DataError(f"unknown schema drift mode {short(args.schema_drift)!r}")
        raw = read_inputs(args.input_dir)
        header = list(raw.columns)
        data = validate(raw, args.problem_type)
        baseline, baseline_run, unreadable = read_baseline(args.baseline_dir)
        drift = schema_drift(header, baseline, args.schema_drift)
        if baseline_run:
            drift["baselineRunId"] = short(baseline_run, 64)
        if unreadable:
            drift["baselineUnreadable"] = True
        if drift["drifted"] and args.schema_drift == "fail":
            raise DataError(drift_reason(drift, baseline_run))
    except DataError as exc:
        fail(str(exc))
    if drift["drifted"]:
        print(f"WARNING: {drift_reason(drift, baseline_run)}", file=sys.stderr, flush=True)
    if args.report_dir is not None:
        report = {**data_report(data, args.problem_type), "schemaDrift": drift}
        schema = {**schema_of(header), **({"runId": args.run_id} if args.run_id else {})}
        summary = bounded_summary(report, MAX_SUMMARY_CHARS)
        args.report_dir.mkdir(parents=True, exist_ok=True)
        # ``summary``: the report as one string, what the pipeline hands the recorder.
        (args.report_dir / "data-report.json").write_text(
            json.dumps({**report, "summary": summary}, indent=2)
        )
        (args.report_dir / SCHEMA_FILE).write_text(json.dumps(schema))
    for name, frame in split(data, args.seed, args.problem_type).items():
        out = args.output_dir / name
        out.mkdir(parents=True, exist_ok=True)
        frame.to_csv(out / f"{name}.csv", header=False, index=False)
        print(f"{name}: {len(frame)} rows", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
