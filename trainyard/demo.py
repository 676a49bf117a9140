"""The scripted multi-tenant scenario behind `trainyard demo` and `make demo`.

On a fresh embedded stack: onboard tenants on different plans through the HTTP
API, set each tenant's training choice (``PATCH /tenants/{id}``), upload each
tenant's own generated CSV with plain boto3 (exactly what a tenant does in AWS),
follow the runs until they end, print a summary and check what must hold: every
run succeeded with its problem type, has its problem type's primary metric (AUC,
macro-F1, R²), trained with the algorithm ``auto`` chose where the tenant asked
for ``auto``, and registered its model in that tenant's own model package group.

The default tenants: a small-data binary tenant on ``auto`` (a few hundred rows:
``auto`` picks ``linear``), one on the default (XGBoost, binary) and a regression
(forecasting) tenant on XGBoost; one per plan.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from trainyard.api_client import ApiError, TrainyardApi
from trainyard.data import tenant_csv, tenant_profile
from trainyard.run_metrics import metric_of, primary_metric, problem_type_of

if TYPE_CHECKING:
    from trainyard.local.stack import EmbeddedStack


@dataclass(frozen=True)
class DemoTenant:
    tenant_id: str
    plan: str
    # The tenant's training choice, PATCHed before its upload (None: the default).
    training: dict[str, Any] | None = None

    @property
    def problem_type(self) -> str:
        return str((self.training or {}).get("problemType") or "binary")

    @property
    def on_auto(self) -> bool:
        return (self.training or {}).get("algorithm") == "auto"


DEFAULT_TENANTS: list[DemoTenant] = [
    DemoTenant("acme", "basic", {"algorithm": "auto"}),
    DemoTenant("globex", "standard"),
    DemoTenant("initech", "premium", {"algorithm": "xgboost", "problemType": "regression"}),
]
TERMINAL = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})
POLL_SECONDS = 0.5


class DemoTimeout(Exception):
    pass


@dataclass
class TenantProgress:
    spec: DemoTenant
    record: dict[str, Any] = field(default_factory=dict)
    upload_key: str | None = None
    uploaded_at: float | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def tenant_id(self) -> str:
        return self.spec.tenant_id

    @property
    def plan(self) -> str:
        return self.spec.plan

    @property
    def covering_run(self) -> dict[str, Any] | None:
        """The run that took our upload: it lists the key among its trigger objects."""
        for run in self.runs:
            trigger = run.get("trigger") or {}
            keys = {o.get("key") for o in trigger.get("objects") or []}
            if self.upload_key in keys:
                return run
        return None

    @property
    def done(self) -> bool:
        run = self.covering_run
        return run is not None and run.get("status") in TERMINAL


def _plain(console: Console) -> bool:
    return not console.is_terminal or bool(os.environ.get("CI"))


def _wait_until(
    predicate: Callable[[], bool], deadline: float, what: str, interval: float = POLL_SECONDS
) -> None:
    while not predicate():
        if time.monotonic() > deadline:
            raise DemoTimeout(f"timed out waiting for {what}")
        time.sleep(interval)


def _onboard(api: TrainyardApi, progress: TenantProgress, deadline: float, say: Any) -> None:
    try:
        record = api.create_tenant(progress.tenant_id, progress.plan)
    except ApiError as exc:
        if exc.status != 409:
            raise
        record = api.get_tenant(progress.tenant_id)
    progress.record = record
    say(f"onboarding {progress.tenant_id} on plan {progress.plan}: {record.get('status')}")

    def active() -> bool:
        if progress.record.get("status") == "PROVISIONING":
            progress.record = api.get_tenant(progress.tenant_id)
        status = progress.record.get("status")
        if status not in ("PROVISIONING", "ACTIVE"):
            raise RuntimeError(
                f"tenant {progress.tenant_id} ended {status}: "
                f"{progress.record.get('failureReason') or 'no reason given'}"
            )
        return status == "ACTIVE"

    _wait_until(active, deadline, f"tenant {progress.tenant_id} to become ACTIVE")
    say(
        f"tenant {progress.tenant_id} ACTIVE: data at "
        f"s3://{progress.record.get('dataBucket')}/{progress.record.get('dataPrefix')}"
    )
    if progress.spec.training:
        # Before the upload: the run the upload starts trains with this choice.
        progress.record = api.update_tenant(progress.tenant_id, training=progress.spec.training)
        chosen = ", ".join(f"{k}={v}" for k, v in progress.spec.training.items())
        say(f"tenant {progress.tenant_id} trains with {chosen}")


def _upload(s3: Any, progress: TenantProgress, say: Any) -> None:
    record = progress.record
    key = f"{record.get('dataPrefix') or ''}{progress.tenant_id}-training.csv"
    body = tenant_csv(progress.tenant_id, problem_type=progress.spec.problem_type)
    s3.put_object(Bucket=record["dataBucket"], Key=key, Body=body, ContentType="text/csv")
    progress.upload_key = key
    progress.uploaded_at = time.monotonic()
    shape = tenant_profile(progress.tenant_id)
    say(
        f"uploaded s3://{record['dataBucket']}/{key} "
        f"({shape.rows} rows, {shape.features} features, {progress.spec.problem_type} "
        f"target, {len(body)} bytes)"
    )


def _progress_table(progress: list[TenantProgress], started: float) -> Table:
    table = Table(title=f"Trainyard demo: {time.monotonic() - started:5.1f}s")
    for column in ("tenant", "plan", "problem", "algorithm", "run", "status", "metric"):
        table.add_column(column)
    for p in progress:
        run = p.covering_run
        table.add_row(
            p.tenant_id,
            p.plan,
            p.spec.problem_type,
            _algorithm(p, run),
            (run or {}).get("runId", "")[-12:] or "-",
            (run or {}).get("status") or ("waiting for run" if p.upload_key else "-"),
            _metric(p, run),
        )
    return table


def _algorithm(p: TenantProgress, run: dict[str, Any] | None) -> str:
    """What the run trains with ("auto→linear" when auto chose it); before the run
    has recorded it, what the tenant asked for."""
    training = (run or {}).get("training") or {}
    name = training.get("algorithm")
    if not name:
        return (p.spec.training or {}).get("algorithm") or "default"
    mode = (training.get("chosenBy") or {}).get("mode")
    return f"auto→{name}" if mode == "auto" else str(name)


def _metric(p: TenantProgress, run: dict[str, Any] | None) -> str:
    # The problem type the tenant asked for until the run records its own.
    if not run or not (run.get("training") or {}).get("problemType"):
        run = {**(run or {}), "training": {"problemType": p.spec.problem_type}}
    return metric_of(run)


def _time(value: str | None) -> str:
    return value[11:23] if value and len(value) >= 23 else (value or "-")


def summary_table(progress: list[TenantProgress]) -> Table:
    table = Table(title="Trainyard demo: runs per tenant")
    for column in (
        "tenant",
        "plan",
        "problem",
        "algorithm",
        "run",
        "queued",
        "started",
        "ended",
        "status",
        "metric",
    ):
        table.add_column(column, no_wrap=True)
    table.add_column("model package", overflow="fold")
    for p in progress:
        run = p.covering_run or {}
        table.add_row(
            p.tenant_id,
            p.plan,
            p.spec.problem_type,
            _algorithm(p, run),
            (run.get("runId") or "-")[-12:],
            _time(run.get("queuedAt")),
            _time(run.get("startedAt")),
            _time(run.get("endedAt")),
            run.get("status") or "NO RUN",
            _metric(p, run),
            run.get("modelPackageArn") or run.get("failureReason") or "-",
        )
    return table


def check_expectations(progress: list[TenantProgress], sagemaker: Any) -> list[str]:
    """Everything that must hold after the scenario; an empty list means success."""
    problems: list[str] = []
    for p in progress:
        run = p.covering_run
        if run is None:
            problems.append(f"{p.tenant_id}: no run recorded the upload {p.upload_key}")
            continue
        rid = (run.get("runId") or "?")[-12:]
        if run.get("status") != "SUCCEEDED":
            problems.append(
                f"{p.tenant_id}: run {rid} ended {run.get('status')}: "
                f"{run.get('failureReason') or 'no reason given'}"
            )
        recorded = problem_type_of(run)
        if recorded != p.spec.problem_type:
            problems.append(
                f"{p.tenant_id}: run {rid} trained {recorded}, not {p.spec.problem_type}"
            )
        name, value = primary_metric(run)
        if value is None:
            problems.append(f"{p.tenant_id}: run {rid} has no metrics.{name}")
        chosen_by = ((run.get("training") or {}).get("chosenBy") or {}).get("mode")
        if p.spec.on_auto and chosen_by != "auto":
            problems.append(
                f"{p.tenant_id}: run {rid} is on auto but its algorithm was chosen by "
                f"{chosen_by or 'nothing recorded'}"
            )
        arn = run.get("modelPackageArn")
        group = p.record.get("modelPackageGroupName")
        if not arn:
            problems.append(f"{p.tenant_id}: run {rid} has no modelPackageArn")
            continue
        if not group:
            problems.append(f"{p.tenant_id}: tenant has no modelPackageGroupName")
            continue
        # Isolation: the model must be in this tenant's own group, as SageMaker sees it.
        arns: set[str] = set()
        for page in sagemaker.get_paginator("list_model_packages").paginate(
            ModelPackageGroupName=group
        ):
            arns.update(s["ModelPackageArn"] for s in page.get("ModelPackageSummaryList", []))
        if arn not in arns:
            problems.append(
                f"{p.tenant_id}: model package {arn} is not in the tenant's group {group}"
            )
    return problems


def run_demo(
    *,
    tenants: list[DemoTenant] | None = None,
    timeout: float = 600,
    console: Console | None = None,
    stack: EmbeddedStack | None = None,
) -> int:
    """Run the scenario on a fresh embedded stack; 0 only if every run ended as expected.

    ``stack``: an already running stack to use instead (a test session shares
    one, since a process holds one stack at a time); it is left running.
    """
    from trainyard.local.stack import EmbeddedStack

    tenants = tenants or DEFAULT_TENANTS
    if console is None:
        # CI logs are not 80 columns wide; keep summary rows on one line.
        console = Console() if Console().is_terminal else Console(width=200)
    plain = _plain(console)

    def say(message: str) -> None:
        console.print(message, markup=False, highlight=False)

    started = time.monotonic()
    deadline = started + timeout
    progress = [TenantProgress(spec=t) for t in tenants]
    owned = stack is None
    if stack is None:
        say("starting the embedded stack (moto + local Lambda runtime + pipeline runner)...")
        stack = EmbeddedStack(aws_port=0, api_port=0, quiet=True)
        try:
            stack.start()
        except Exception as exc:  # the stack's own error is the useful part, not our frames
            say(f"FAILED: could not start the embedded stack: {type(exc).__name__}: {exc}")
            return 1
    try:
        say(f"AWS endpoint {stack.aws_endpoint_url}, API {stack.api_url}")
        api = TrainyardApi(stack.api_url, timeout=30)
        s3 = stack.client("s3")
        try:
            for p in progress:
                _onboard(api, p, deadline, say)
            for p in progress:
                _upload(s3, p, say)
            _follow(api, progress, deadline, started, console, plain, say)
        except (DemoTimeout, ApiError, RuntimeError) as exc:
            console.print(summary_table(progress))
            say(f"FAILED: {exc}")
            for line in _unfinished(progress):
                say(f"  - {line}")
            return 1
        console.print(summary_table(progress))
        problems = check_expectations(progress, stack.client("sagemaker"))
    finally:
        if owned:
            try:
                stack.stop()
            except Exception as exc:  # the runs' verdict stands; say what went wrong
                say(f"warning: stopping the embedded stack failed: {type(exc).__name__}: {exc}")
    elapsed = time.monotonic() - started
    if problems:
        say(f"FAILED after {elapsed:.1f}s:")
        for problem in problems:
            say(f"  - {problem}")
        return 1
    problem_types = ", ".join(sorted({p.spec.problem_type for p in progress}))
    say(
        f"OK: {len(progress)} tenants on {len({p.plan for p in progress})} plans "
        f"({problem_types}), every run SUCCEEDED with its problem type's metric and a "
        f"model in its own package group ({elapsed:.1f}s)"
    )
    return 0


def _unfinished(progress: list[TenantProgress]) -> list[str]:
    lines = []
    for p in progress:
        if p.done:
            continue
        run = p.covering_run
        if not p.record:
            lines.append(f"{p.tenant_id}: not onboarded")
        elif p.upload_key is None:
            lines.append(f"{p.tenant_id}: {p.record.get('status')}, nothing uploaded")
        elif run is None:
            seen = ", ".join(f"{r.get('runId', '?')[-12:]} {r.get('status')}" for r in p.runs)
            lines.append(f"{p.tenant_id}: no run took {p.upload_key} (runs: {seen or 'none'})")
        else:
            lines.append(
                f"{p.tenant_id}: run {run.get('runId', '?')[-12:]} still {run.get('status')}"
            )
    return lines


def _follow(
    api: TrainyardApi,
    progress: list[TenantProgress],
    deadline: float,
    started: float,
    console: Console,
    plain: bool,
    say: Any,
) -> None:
    """Poll the runs API until every upload has a terminal run."""

    def refresh() -> None:
        for p in progress:
            if not p.done:
                p.runs = list(api.list_runs(p.tenant_id, limit=20).get("runs", []))

    if plain:
        last: dict[str, str] = {}

        def changed() -> bool:
            refresh()
            for p in progress:
                run = p.covering_run
                state = f"{(run or {}).get('runId', '')}|{(run or {}).get('status')}"
                if run is not None and last.get(p.tenant_id) != state:
                    last[p.tenant_id] = state
                    say(
                        f"[{time.monotonic() - started:6.1f}s] {p.tenant_id:<10} "
                        f"run {run.get('runId', '?')[-12:]} {run.get('status')} "
                        f"{_algorithm(p, run)} {_metric(p, run)}"
                    )
            return all(p.done for p in progress)

        _wait_until(changed, deadline, "every upload to produce a finished run")
        return

    with Live(_progress_table(progress, started), console=console, refresh_per_second=4) as live:

        def updated() -> bool:
            refresh()
            live.update(_progress_table(progress, started))
            return all(p.done for p in progress)

        _wait_until(updated, deadline, "every upload to produce a finished run")
