"""Uploads and runs: `trainyard upload`, `runs`, `train`, `usage`."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from rich.live import Live
from rich.table import Table

from trainyard.cli import common
from trainyard.cli.common import (
    TERMINAL_RUN_STATUSES,
    _fail,
    _opts,
    _print_json,
    app,
    handles_errors,
)
from trainyard.cli.render import (
    metric_of,
    runs_table,
    short_id,
    wait_summary,
)


def s3_key(tenant: dict[str, Any], path: Path) -> str:
    """Where an uploaded file goes: ``<dataPrefix><basename>`` (docs/architecture.md §5)."""
    prefix = tenant.get("dataPrefix") or ""
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return f"{prefix}{path.name}"


@app.command()
@handles_errors
def upload(
    ctx: typer.Context,
    tenant: str = typer.Argument(...),
    files: list[Path] = typer.Argument(
        ..., exists=True, dir_okay=False, readable=True, help="CSV files to upload."
    ),
    direct: bool = typer.Option(
        False,
        "--direct",
        help="Operators only: put_object with your own AWS credentials instead of the "
        "API's presigned upload.",
    ),
) -> None:
    """Upload training data through the API (presigned, no AWS credentials needed);
    every *.csv upload triggers a training run."""
    opts = _opts(ctx)
    api = opts.api()
    if not direct:
        _upload_through_api(opts, api, tenant, files)
        return
    record = api.get_tenant(tenant)
    bucket = record.get("dataBucket")
    if not bucket:
        _fail(
            "TenantNotReady",
            f"tenant {tenant} has no data location yet (status {record.get('status')})",
        )
    if record.get("status") != "ACTIVE":
        common.err_console.print(
            f"warning: tenant {tenant} is {record.get('status')}; uploads may not start runs"
        )
    s3 = opts.s3(api)
    uploaded: list[dict[str, Any]] = []
    for path in files:
        key = s3_key(record, path)
        answer = s3.put_object(
            Bucket=bucket, Key=key, Body=path.read_bytes(), ContentType="text/csv"
        )
        item = {
            "bucket": bucket,
            "key": key,
            "etag": str(answer.get("ETag", "")).strip('"'),
            "size": path.stat().st_size,
        }
        uploaded.append(item)
        if not opts.json_output:
            note = "" if path.suffix.lower() == ".csv" else " (not *.csv: will not trigger a run)"
            common.console.print(f"uploaded s3://{bucket}/{key} ({item['size']} bytes){note}")
    if opts.json_output:
        _print_json({"tenantId": tenant, "uploaded": uploaded})


def _upload_through_api(opts: Any, api: Any, tenant: str, files: list[Path]) -> None:
    from trainyard.uploads import upload_file

    uploaded: list[dict[str, Any]] = []
    for path in files:
        item = upload_file(api, tenant, path)
        uploaded.append(item)
        if not opts.json_output:
            common.console.print(
                f"uploaded {item['key']} ({item['size']} bytes, {item['method'].lower()})"
            )
    if opts.json_output:
        _print_json({"tenantId": tenant, "uploaded": uploaded})


def _all_terminal(runs: list[dict[str, Any]]) -> bool:
    return bool(runs) and all(r.get("status") in TERMINAL_RUN_STATUSES for r in runs)


def _poll(interval: float) -> Iterator[None]:
    while True:
        yield
        time.sleep(interval)


@app.command()
@handles_errors
def runs(
    ctx: typer.Context,
    tenant: str = typer.Argument(..., metavar="TENANT | retry TENANT RUN_ID"),
    more: list[str] | None = typer.Argument(None, hidden=True),
    watch: bool = typer.Option(False, "--watch", "-w", help="Refresh until every run ended."),
    limit: int = typer.Option(20, "--limit", "-n", min=1, max=100, help="Newest N runs."),
    interval: float = typer.Option(2.0, "--interval", min=0.1, help="Seconds between refreshes."),
    reason: str | None = typer.Option(None, "--reason", help="retry: why (recorded on the run)."),
) -> None:
    """A tenant's runs, newest first. `trainyard runs retry TENANT RUN_ID [--reason R]`
    retries a FAILED run (it resumes from the failed step where SageMaker can)."""
    opts = _opts(ctx)
    api = opts.api()
    if more:
        if tenant != "retry" or len(more) != 2:
            _fail("Usage", "trainyard runs TENANT [--watch] | trainyard runs retry TENANT RUN_ID")
        _retry(opts, api, more[0], more[1], reason)
        return

    def fetch() -> list[dict[str, Any]]:
        return list(api.list_runs(tenant, limit=limit).get("runs", []))

    if not watch:
        items = fetch()
        if opts.json_output:
            _print_json({"runs": items})
        elif items:
            common.console.print(runs_table(tenant, items))
        else:
            common.console.print(
                f"no runs for {tenant} yet; upload data with: trainyard upload {tenant} FILE"
            )
        return

    if common.console.is_terminal and not opts.json_output:
        with Live(runs_table(tenant, []), console=common.console, refresh_per_second=4) as live:
            for _ in _poll(interval):
                items = fetch()
                live.update(runs_table(tenant, items))
                if _all_terminal(items):
                    return
    # Not a TTY (CI, pipes): one plain line per change, no cursor tricks.
    seen: dict[str, str] = {}
    waiting_said = False
    for _ in _poll(interval):
        items = fetch()
        if not items and not waiting_said and not opts.json_output:
            print(f"no runs for {tenant} yet; waiting for one (Ctrl-C to stop)", flush=True)
            waiting_said = True
        for run in reversed(items):  # oldest first reads naturally in a log
            # A new line when the run moves in the queue or waits for something
            # else; not for every tick of its estimate.
            waiting = (run.get("waitingFor") or {}).get("code")
            state = f"{run.get('status')}|{metric_of(run)}|{run.get('queuePosition')}|{waiting}"
            if seen.get(run.get("runId", "")) == state:
                continue
            seen[run.get("runId", "")] = state
            if opts.json_output:
                print(json.dumps(run, sort_keys=True), flush=True)
            else:
                extra = (
                    run.get("failureReason")
                    or run.get("modelPackageArn")
                    or (wait_summary(run) if run.get("status") in ("QUEUED", "STARTING") else "")
                )
                print(
                    f"{tenant} run {short_id(run.get('runId'))} {run.get('status')}"
                    f" {metric_of(run)} {extra}".rstrip(),
                    flush=True,
                )
        if _all_terminal(items):
            return


def _retry(opts: Any, api: Any, tenant: str, run_id: str, reason: str | None) -> None:
    run = api.retry_run(tenant, run_id, reason)
    if opts.json_output:
        _print_json(run)
        return
    line = f"{tenant} run {short_id(run.get('runId'))} {run.get('status')} (retry"
    line += f" {len(run.get('retries') or [])})"
    if run.get("queuePosition") or run.get("waitingFor"):
        line += f" ({wait_summary(run)})"
    common.console.print(line)
    common.console.print(f"follow it with: trainyard runs {tenant} --watch")


@app.command()
@handles_errors
def train(
    ctx: typer.Context,
    tenant: str = typer.Argument(...),
    algorithm: str | None = typer.Option(None, "--algorithm", help=common.ALGORITHM_HELP),
    problem_type: str | None = typer.Option(None, "--problem-type", help=common.PROBLEM_TYPE_HELP),
    hyperparameter: list[str] | None = typer.Option(
        None, "--hyperparameter", help=common.HYPERPARAMETER_HELP
    ),
    schema_drift: str | None = typer.Option(None, "--schema-drift", help=common.SCHEMA_DRIFT_HELP),
) -> None:
    """Start a training run on the tenant's current data (joins a run already waiting).
    The training options apply to this run only, over the tenant's settings."""
    opts = _opts(ctx)
    training = common.training_body(algorithm, problem_type, hyperparameter, schema_drift)
    run = opts.api().trigger_run(tenant, training=training)
    if opts.json_output:
        _print_json(run)
        return
    line = f"{tenant} run {short_id(run.get('runId'))} {run.get('status')}"
    if run.get("queuePosition") or run.get("waitingFor"):
        line += f" ({wait_summary(run)})"
    if run.get("failureReason"):
        line += f" ({run['failureReason']})"
    common.console.print(line)
    common.console.print(f"follow it with: trainyard runs {tenant} --watch")


@app.command()
@handles_errors
def usage(
    ctx: typer.Context,
    tenant: str = typer.Argument(...),
    month: str | None = typer.Option(None, "--month", help="YYYY-MM (default: this month)."),
) -> None:
    """Training used in a month: runs, hours against the plan's budget, cost estimate."""
    opts = _opts(ctx)
    body = opts.api().usage(tenant, month=month)
    if opts.json_output:
        _print_json(body)
        return
    budget = body.get("budgetHours")
    table = Table(title=f"Usage of {tenant} in {body.get('month')}")
    for column in ("runs", "training hours", "budget hours", "cost estimate (USD)"):
        table.add_column(column, justify="right")
    table.add_row(
        str(body.get("runs")),
        f"{body.get('trainingHours', 0):.2f}",
        "unlimited" if budget is None else f"{budget:g}",
        f"{body.get('costEstimateUsd', 0):.2f}",
    )
    common.console.print(table)
