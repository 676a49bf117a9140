"""Schema drift in preprocess: the columns of a run against the tenant's last successful
run's schema.json, reported in the data report (warn) or failing the job before any
training is paid for (fail); run as the processing container runs the script."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from sklearn.datasets import make_classification

from pipeline.contract import NO_SCHEMA_BASELINE_FILE, SCHEMA_FILE
from pipeline.scripts import STEPS_DIR

from .test_step_scripts import PREPROCESS, run_script


def frame(columns: list[str], rows: int = 120) -> pd.DataFrame:
    features = [c for c in columns if c != "label"]
    x, y = make_classification(
        n_samples=rows, n_features=len(features), n_informative=2, n_redundant=0, random_state=3
    )
    data = pd.DataFrame(x, columns=features)
    data["label"] = y
    return data[columns]


def preprocess(tmp_path: Path, columns: list[str], baseline: Path | None, mode: str = "warn"):
    """Runs preprocess on data with ``columns`` against ``baseline`` (a directory as the
    processing input lands it); returns (process, data report or None, schema or None)."""
    data_dir = tmp_path / "data"
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir()
    frame(columns).to_csv(data_dir / "train.csv", index=False)
    for name in ("out", "report", "ml"):
        shutil.rmtree(tmp_path / name, ignore_errors=True)
    (tmp_path / "ml").mkdir()
    args: list[str | Path] = [
        "--input-dir", data_dir, "--output-dir", tmp_path / "out",
        "--report-dir", tmp_path / "report", "--schema-drift", mode, "--run-id", "run-2",
    ]  # fmt: skip
    if baseline is not None:
        args += ["--baseline-dir", baseline]
    process = run_script(PREPROCESS, *args, ml_root=tmp_path / "ml")
    report_file = tmp_path / "report" / "data-report.json"
    schema_file = tmp_path / "report" / SCHEMA_FILE
    report = json.loads(report_file.read_text()) if report_file.exists() else None
    schema = json.loads(schema_file.read_text()) if schema_file.exists() else None
    return process, report, schema


def baseline_of(tmp_path: Path, columns: list[str], run_id: str = "run-1") -> Path:
    """A previous successful run's data-report prefix, as the baseline input lands it."""
    directory = tmp_path / f"baseline-{run_id}"
    directory.mkdir(exist_ok=True)
    schema = {"version": 1, "target": "label", "columns": columns, "runId": run_id}
    (directory / SCHEMA_FILE).write_text(json.dumps(schema))
    (directory / "data-report.json").write_text("{}")
    return directory


def marker_only(tmp_path: Path) -> Path:
    directory = tmp_path / "no-baseline"
    directory.mkdir(exist_ok=True)
    shutil.copy(STEPS_DIR / NO_SCHEMA_BASELINE_FILE, directory)
    return directory


BEFORE = ["f0", "f1", "f2", "label"]


def test_every_run_writes_its_columns_as_the_next_runs_baseline(tmp_path: Path) -> None:
    process, report, schema = preprocess(tmp_path, BEFORE, marker_only(tmp_path))
    assert process.returncode == 0, process.stderr
    assert schema == {"version": 1, "target": "label", "columns": BEFORE, "runId": "run-2"}
    assert report is not None
    assert report["schemaDrift"] == {"mode": "warn", "baseline": False, "drifted": False}
    assert json.loads(report["summary"])["schemaDrift"] == report["schemaDrift"]


def test_the_same_columns_are_no_drift(tmp_path: Path) -> None:
    process, report, _ = preprocess(tmp_path, BEFORE, baseline_of(tmp_path, BEFORE), "fail")
    assert process.returncode == 0, process.stderr
    assert report is not None
    drift = report["schemaDrift"]
    assert drift["baseline"] is True and drift["drifted"] is False
    assert drift["baselineRunId"] == "run-1" and drift["added"] == drift["removed"] == []


def test_warn_trains_and_reports_added_removed_and_reordered_columns(tmp_path: Path) -> None:
    now = ["f2", "f0", "f9", "label"]  # f1 gone, f9 new, f0/f2 swapped
    process, report, schema = preprocess(tmp_path, now, baseline_of(tmp_path, BEFORE))
    assert process.returncode == 0, process.stderr
    assert "WARNING: the columns changed since the tenant's last successful run" in process.stderr
    assert report is not None and schema is not None
    assert report["schemaDrift"] == {
        "mode": "warn",
        "baseline": True,
        "baselineRunId": "run-1",
        "drifted": True,
        "added": ["f9"],
        "removed": ["f1"],
        "reordered": True,
    }
    assert schema["columns"] == now  # the next run compares with this one, if it succeeds
    assert (tmp_path / "out" / "train" / "train.csv").exists()


def test_fail_stops_before_any_split_with_a_reason_the_tenant_can_act_on(tmp_path: Path) -> None:
    process, report, schema = preprocess(
        tmp_path, ["f0", "f1", "f3", "label"], baseline_of(tmp_path, BEFORE), "fail"
    )
    assert process.returncode == 1
    message = (tmp_path / "ml" / "output" / "message").read_text()
    assert message.startswith(
        "the columns changed since the tenant's last successful run (run run-1)"
    )
    assert "added ['f3']" in message and "removed ['f2']" in message
    assert "training.schemaDrift" in message  # how to accept the new columns
    assert report is None and schema is None and not (tmp_path / "out").exists()


@pytest.mark.parametrize("mode", ["warn", "fail"])
def test_no_baseline_never_fails(tmp_path: Path, mode: str) -> None:
    """The marker (a tenant's first run), an older run without schema.json, no input."""
    older = tmp_path / "older"
    older.mkdir()
    (older / "data-report.json").write_text("{}")
    for baseline in (marker_only(tmp_path), older, None):
        process, report, _ = preprocess(tmp_path, BEFORE, baseline, mode)
        assert process.returncode == 0, process.stderr
        assert report is not None and report["schemaDrift"]["baseline"] is False


def test_a_wide_drift_stays_bounded_in_the_report_and_the_reason(tmp_path: Path) -> None:
    wide_before = [f"old_{i}_{'x' * 60}" for i in range(300)] + ["label"]
    now = [f"new_{i}_{'y' * 60}" for i in range(300)] + ["label"]
    baseline = baseline_of(tmp_path, wide_before)
    process, report, _ = preprocess(tmp_path, now, baseline)
    assert process.returncode == 0, process.stderr
    assert report is not None
    drift = report["schemaDrift"]
    assert len(drift["added"]) == len(drift["removed"]) == 10
    assert drift["addedOmitted"] == drift["removedOmitted"] == 290
    assert all(len(name) <= 40 for name in drift["added"] + drift["removed"])
    assert len(report["summary"]) < 4096  # contract.DATA_REPORT_MAX_CHARS
    process, _, _ = preprocess(tmp_path, now, baseline, "fail")
    message = (tmp_path / "ml" / "output" / "message").read_text()
    assert process.returncode == 1 and message.endswith("292 more")  # not cut off
    assert "training.schemaDrift 'warn'" in message  # what to do survives the cut


def test_non_ascii_column_names_keep_the_summary_within_what_the_recorder_takes(
    tmp_path: Path,
) -> None:
    before = [f"größe_{i}_" + "é" * 40 for i in range(30)] + ["label"]
    now = [f"höhe_{i}_" + "ü" * 40 for i in range(30)] + ["label"]
    process, report, _ = preprocess(tmp_path, now, baseline_of(tmp_path, before))
    assert process.returncode == 0, process.stderr
    assert report is not None
    summary = json.loads(report["summary"])
    assert len(report["summary"]) <= 4000
    assert summary["schemaDrift"]["drifted"] is True
    assert summary["schemaDrift"]["added"][0].startswith("höhe_0_")


def test_moving_only_the_label_column_is_no_drift(tmp_path: Path) -> None:
    process, report, _ = preprocess(
        tmp_path, ["label", "f0", "f1", "f2"], baseline_of(tmp_path, BEFORE), "fail"
    )
    assert process.returncode == 0, process.stderr
    assert report is not None and report["schemaDrift"]["drifted"] is False


def test_an_unreadable_baseline_is_reported_and_never_fails_the_run(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / SCHEMA_FILE).write_text("{not json")
    process, report, _ = preprocess(tmp_path, BEFORE, broken, "fail")
    assert process.returncode == 0, process.stderr
    assert report is not None
    assert report["schemaDrift"]["baseline"] is False
    assert report["schemaDrift"]["baselineUnreadable"] is True


def test_an_unknown_mode_is_a_clear_failure(tmp_path: Path) -> None:
    process, _, _ = preprocess(tmp_path, BEFORE, None, "strict")
    assert process.returncode == 1 and "unknown schema drift mode 'strict'" in process.stderr


# --- at dispatch: which run is the baseline, and what the pipeline is given


def _record_report(world, run, with_schema: bool = True) -> None:
    """What the RecordRun step stores: the data report (with schemaDrift once
    preprocess writes schema.json)."""
    report = {"rows": 100, **({"schemaDrift": {"baseline": False}} if with_schema else {})}
    world.runs.record_results(
        run.tenant_id, run.run_id, {"auc": 0.9}, "arn:mp", "2026-03-10T12:05:00.000Z", report
    )


def _start_params(world, run) -> dict[str, str]:
    current = world.run(run)
    assert current.execution_arn
    return world.pipeline.executions[current.execution_arn].parameters


def test_the_baseline_is_the_tenants_latest_successful_run_and_warn_is_the_default() -> None:
    from trainyard_core.models import RunStatus

    from .test_scheduling_service import World

    world = World()
    first, _ = world.started("acme")
    params = _start_params(world, first)
    assert "SchemaBaselineUri" not in params  # the definition's no-baseline marker
    assert params["SchemaDrift"] == "warn"
    assert world.run(first).training.schema_baseline_run_id is None
    _record_report(world, first)
    world.finish(first, "Succeeded")

    second = world.upload("acme", etag="e2").run
    world.service.dispatch()
    world.finish(second, "Failed", failure_reason="AlgorithmError: boom")
    assert world.run(second).status == RunStatus.FAILED

    # A success without a schema (from before the check): its data-report prefix
    # may hold nothing, and an empty processing input would fail preprocess.
    older = world.upload("acme", etag="e2b").run
    world.service.dispatch()
    _record_report(world, older, with_schema=False)
    world.finish(older, "Succeeded")

    third = world.upload("acme", etag="e3").run
    world.service.dispatch()
    tenant = world.tenants.get("acme")
    params = _start_params(world, third)
    # Neither the failed run nor the schemaless one is the baseline: the last
    # successful run that wrote a schema is.
    assert params["SchemaBaselineUri"] == f"{tenant.output_uri}{first.run_id}/data-report/"
    assert world.run(third).training.schema_baseline_run_id == first.run_id


def test_a_tenants_schema_drift_setting_reaches_the_pipeline() -> None:
    from trainyard_core.training import TrainingChoice

    from .test_scheduling_service import World

    world = World()
    world.tenant("acme")
    tenant = world.tenants.get("acme")
    world.tenants.save(tenant.model_copy(update={"training": TrainingChoice(schema_drift="fail")}))
    run = world.upload("acme").run
    world.service.dispatch()
    assert _start_params(world, run)["SchemaDrift"] == "fail"
    assert world.run(run).training.schema_drift == "fail"


def test_the_baseline_outlasts_any_number_of_failed_runs_after_it() -> None:
    from .test_scheduling_service import World

    world = World()
    first, _ = world.started("acme")
    _record_report(world, first)
    world.finish(first, "Succeeded")
    for i in range(120):
        run = world.upload("acme", etag=f"f{i}").run
        world.service.dispatch()
        world.finish(run, "Failed", after=1, failure_reason="AlgorithmError: boom")
    late = world.upload("acme", etag="late").run
    world.service.dispatch()
    assert world.run(late).training.schema_baseline_run_id == first.run_id
    tenant = world.tenants.get("acme")
    assert _start_params(world, late)["SchemaBaselineUri"] == (
        f"{tenant.output_uri}{first.run_id}/data-report/"
    )
