"""`trainyard`: the command line for people (DESIGN §4).

Talks to the onboarding API (local by default, or a deployed one with
``--api-url``, signed with SigV4) and, for uploads, to S3 through plain boto3
(the embedded AWS endpoint locally, real AWS otherwise). Never prompts: CI runs
it with no standard input.
"""

from __future__ import annotations

import functools
import json
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from trainyard.api_client import DEFAULT_LOCAL_API_URL, ApiError, TrainyardApi, is_local_url
from trainyard.aws.cli import aws_app

DEFAULT_LOCAL_AWS_ENDPOINT = "http://127.0.0.1:4566"
LOCAL_REGION = "us-east-1"
TERMINAL_RUN_STATUSES = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})
TENANT_STATUSES = ("ACTIVE", "SUSPENDED")

app = typer.Typer(
    name="trainyard",
    help="Multi-tenant ML training triggers: onboard tenants, upload data, follow runs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
tenants_app = typer.Typer(
    help="Onboard, inspect, change and offboard tenants.", no_args_is_help=True
)
local_app = typer.Typer(
    help="The embedded local stack (no AWS account, no Docker).", no_args_is_help=True
)
app.add_typer(tenants_app, name="tenants")
app.add_typer(local_app, name="local")
app.add_typer(aws_app, name="aws")

console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class Options:
    api_url: str
    aws_endpoint_url: str | None
    json_output: bool

    @property
    def local(self) -> bool:
        return is_local_url(self.api_url)

    def api(self) -> TrainyardApi:
        # A deployed API Gateway uses IAM auth; only loopback URLs go unsigned.
        return TrainyardApi(self.api_url, sigv4=not self.local)

    def local_aws_endpoint(self, api: TrainyardApi) -> str:
        """The embedded AWS endpoint: as given, else as the local API announces it on
        /health (so `local up` on other ports needs no extra flag), else the default."""
        if self.aws_endpoint_url:
            return self.aws_endpoint_url
        try:
            announced = api.health().get("awsEndpointUrl")
        except ApiError:
            announced = None
        return str(announced) if announced else DEFAULT_LOCAL_AWS_ENDPOINT

    def s3(self, api: TrainyardApi) -> Any:
        import boto3

        if not self.local:
            # Real AWS: the default credential chain and region; endpoint only if asked.
            return boto3.client("s3", endpoint_url=self.aws_endpoint_url)
        session = boto3.Session()
        kwargs: dict[str, Any] = {}
        if session.get_credentials() is None:
            # The embedded stack accepts any credentials; don't make people invent some.
            kwargs = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}
        return boto3.client(
            "s3",
            endpoint_url=self.local_aws_endpoint(api),
            region_name=LOCAL_REGION,
            **kwargs,
        )


def _fail(code: str, message: str) -> NoReturn:
    err_console.print(f"error {code}: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def handles_errors(func: F) -> F:
    """Every failure a user can cause becomes ``error <code>: <message>`` and exit 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return func(*args, **kwargs)
        except ApiError as exc:
            _fail(exc.code, exc.message)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            _fail(str(error.get("Code", "AwsError")), str(error.get("Message", exc)))
        except BotoCoreError as exc:
            _fail(type(exc).__name__, str(exc))
        except OSError as exc:
            _fail(type(exc).__name__, str(exc))
        except KeyboardInterrupt:
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _opts(ctx: typer.Context) -> Options:
    return ctx.find_root().obj


def _print_json(data: Any) -> None:
    # Plain print, not rich: machine-readable output must not be wrapped or coloured.
    print(json.dumps(data, indent=2, sort_keys=True))


@app.callback()
def _global(
    ctx: typer.Context,
    api_url: str = typer.Option(
        DEFAULT_LOCAL_API_URL,
        "--api-url",
        envvar="TRAINYARD_API_URL",
        help="Onboarding API. Loopback = the local stack; anything else is signed with SigV4.",
    ),
    aws_endpoint_url: str | None = typer.Option(
        None,
        "--aws-endpoint-url",
        envvar="AWS_ENDPOINT_URL",
        help=f"AWS endpoint for uploads. Default: {DEFAULT_LOCAL_AWS_ENDPOINT} with a local "
        "API, real AWS otherwise.",
    ),
    json_output: bool = typer.Option(False, "--json", help="Machine-readable JSON output."),
) -> None:
    ctx.obj = Options(api_url=api_url, aws_endpoint_url=aws_endpoint_url, json_output=json_output)


# --- rendering helpers


def short_id(run_id: str | None) -> str:
    return (run_id or "")[-12:]


def short_time(value: str | None) -> str:
    # "2024-05-01T12:03:04.567Z" -> "12:03:04"; full timestamps stay in --json.
    if not value:
        return "-"
    return value[11:19] if len(value) >= 19 else value


def auc_of(run: dict[str, Any]) -> str:
    auc = (run.get("metrics") or {}).get("auc")
    return f"{auc:.3f}" if isinstance(auc, int | float) else "-"


STATUS_STYLE = {
    "SUCCEEDED": "green",
    "FAILED": "red",
    "STOPPED": "yellow",
    "RUNNING": "cyan",
    "STARTING": "cyan",
    "QUEUED": "magenta",
    "ACTIVE": "green",
    "PROVISIONING": "cyan",
    "SUSPENDED": "yellow",
    "OFFBOARDING": "yellow",
}


def styled(status: str | None) -> str:
    status = status or "-"
    style = STATUS_STYLE.get(status)
    return f"[{style}]{status}[/{style}]" if style else status


def tenant_table(tenants: list[dict[str, Any]]) -> Table:
    table = Table(title="Tenants")
    for column in ("tenant", "plan", "status", "isolation", "data location", "created"):
        table.add_column(column, overflow="fold")
    for t in tenants:
        location = (
            f"s3://{t['dataBucket']}/{t.get('dataPrefix') or ''}" if t.get("dataBucket") else "-"
        )
        table.add_row(
            t.get("tenantId", "?"),
            t.get("plan", "?"),
            styled(t.get("status")),
            t.get("isolation") or "-",
            location,
            t.get("createdAt") or "-",
        )
    return table


def tenant_details(tenant: dict[str, Any]) -> Table:
    table = Table(show_header=False, title=f"Tenant {tenant.get('tenantId', '?')}")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in tenant.items():
        shown = styled(value) if key == "status" else ("-" if value is None else str(value))
        table.add_row(key, shown)
    return table


def runs_table(tenant_id: str, runs: list[dict[str, Any]]) -> Table:
    table = Table(title=f"Runs of {tenant_id}")
    for column in ("run", "status", "trigger", "queued", "started", "ended", "AUC", "detail"):
        table.add_column(column, overflow="fold")
    for run in runs:
        trigger = run.get("trigger") or {}
        objects = trigger.get("objects") or []
        detail = (
            run.get("failureReason")
            or run.get("modelPackageArn")
            or (f"queue position {run['queuePosition']}" if run.get("queuePosition") else "")
        )
        table.add_row(
            short_id(run.get("runId")),
            styled(run.get("status")),
            f"{trigger.get('type', '?')} ({len(objects)} file{'s' if len(objects) != 1 else ''})",
            short_time(run.get("queuedAt")),
            short_time(run.get("startedAt")),
            short_time(run.get("endedAt")),
            auc_of(run),
            detail or "-",
        )
    return table


def plans_table(body: dict[str, Any]) -> Table:
    table = Table(
        title=f"Plans (global max concurrent runs: {body.get('globalMaxConcurrentRuns', '?')})"
    )
    for column in (
        "plan",
        "max runs",
        "/tenant",
        "weight",
        "isolation",
        "instance",
        "hours/mo",
    ):
        table.add_column(column)
    for p in body.get("plans", []):
        hours = p.get("monthlyTrainingHours")
        table.add_row(
            p.get("name", "?"),
            str(p.get("maxConcurrentRuns", "-")),
            str(p.get("maxConcurrentRunsPerTenant", "-")),
            str(p.get("weight", "-")),
            p.get("isolation", "-"),
            p.get("trainingInstanceType", "-")
            + (f" x{p['trainingInstanceCount']}" if p.get("trainingInstanceCount", 1) > 1 else ""),
            "unlimited" if hours is None else f"{hours:g}",
        )
    return table


def _plan_entries(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Plans of a /queue answer, whichever of the shapes the API uses:
    {"basic": {...}}, {"plans": {"basic": {...}}} or {"plans": [{"plan": "basic", ...}]}."""
    plans: Any = body.get("plans", body)
    if isinstance(plans, dict):
        return [{"plan": name, **value} for name, value in plans.items() if isinstance(value, dict)]
    return [p for p in plans if isinstance(p, dict)] if isinstance(plans, list) else []


def queue_tables(body: dict[str, Any]) -> list[Table]:
    entries = _plan_entries(body)
    summary = Table(title="Backlog per plan")
    scalar_keys: list[str] = []
    for entry in entries:
        for key, value in entry.items():
            if key not in scalar_keys and not isinstance(value, list | dict):
                scalar_keys.append(key)
    for key in scalar_keys:
        summary.add_column(key)
    for entry in entries:
        summary.add_row(*("-" if entry.get(k) is None else str(entry.get(k)) for k in scalar_keys))

    queued = Table(title="Queued runs")
    for column in ("plan", "position", "tenant", "run", "queued"):
        queued.add_column(column)
    count = 0
    for entry in entries:
        plan = str(entry.get("plan") or entry.get("name") or "?")
        for run in entry.get("runs") or entry.get("queued_runs") or entry.get("queuedRuns") or []:
            count += 1
            queued.add_row(
                plan,
                str(run.get("queuePosition", "-")),
                str(run.get("tenantId", "?")),
                short_id(run.get("runId")),
                short_time(run.get("queuedAt")),
            )
    return [summary, queued] if count else [summary]


# --- tenants


@tenants_app.command("create")
@handles_errors
def tenants_create(
    ctx: typer.Context,
    tenant: str = typer.Argument(..., help="Tenant id: 3-32 of a-z, 0-9 and single hyphens."),
    plan: str = typer.Option(..., "--plan", help="Usage plan (see `trainyard plans`)."),
) -> None:
    """Onboard a tenant (provisions its storage, role, rule and model package group)."""
    opts = _opts(ctx)
    created = opts.api().create_tenant(tenant, plan)
    if opts.json_output:
        _print_json(created)
        return
    console.print(tenant_details(created))
    if created.get("status") == "PROVISIONING":
        console.print(f"provisioning; follow with: trainyard tenants show {tenant}")


@tenants_app.command("list")
@handles_errors
def tenants_list(ctx: typer.Context) -> None:
    """List every tenant."""
    opts = _opts(ctx)
    tenants = opts.api().all_tenants()
    if opts.json_output:
        _print_json({"tenants": tenants})
    elif tenants:
        console.print(tenant_table(tenants))
    else:
        console.print("no tenants yet; onboard one with: trainyard tenants create NAME --plan PLAN")


@tenants_app.command("show")
@handles_errors
def tenants_show(ctx: typer.Context, tenant: str = typer.Argument(...)) -> None:
    """Show one tenant."""
    opts = _opts(ctx)
    body = opts.api().get_tenant(tenant)
    if opts.json_output:
        _print_json(body)
    else:
        console.print(tenant_details(body))


@tenants_app.command("update")
@handles_errors
def tenants_update(
    ctx: typer.Context,
    tenant: str = typer.Argument(...),
    plan: str | None = typer.Option(None, "--plan", help="Move to another plan (data is kept)."),
    status: str | None = typer.Option(None, "--status", help="ACTIVE or SUSPENDED."),
) -> None:
    """Change a tenant's plan or suspend/reactivate it."""
    if plan is None and status is None:
        _fail("NothingToUpdate", "give --plan and/or --status")
    if status is not None:
        status = status.upper()
        if status not in TENANT_STATUSES:
            _fail("InvalidStatus", f"--status must be one of {', '.join(TENANT_STATUSES)}")
    opts = _opts(ctx)
    body = opts.api().update_tenant(tenant, plan=plan, status=status)
    if opts.json_output:
        _print_json(body)
    else:
        console.print(tenant_details(body))


@tenants_app.command("delete")
@handles_errors
def tenants_delete(
    ctx: typer.Context,
    tenant: str = typer.Argument(...),
    purge: bool = typer.Option(False, "--purge", help="Also delete the tenant's data."),
) -> None:
    """Offboard a tenant. Its data is retained unless --purge is given."""
    opts = _opts(ctx)
    body = opts.api().delete_tenant(tenant, purge=purge)
    if opts.json_output:
        _print_json(body)
        return
    status = body.get("status") if isinstance(body, dict) else None
    kept = "data purged" if purge else "data retained"
    console.print(f"offboarding {tenant} ({kept})" + (f": {status}" if status else ""))


# --- data and runs


def s3_key(tenant: dict[str, Any], path: Path) -> str:
    """Where an uploaded file goes: ``<dataPrefix><basename>`` (DESIGN §5)."""
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
) -> None:
    """Upload training data; every *.csv upload triggers a training run."""
    opts = _opts(ctx)
    api = opts.api()
    record = api.get_tenant(tenant)
    bucket = record.get("dataBucket")
    if not bucket:
        _fail(
            "TenantNotReady",
            f"tenant {tenant} has no data location yet (status {record.get('status')})",
        )
    if record.get("status") != "ACTIVE":
        err_console.print(
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
            console.print(f"uploaded s3://{bucket}/{key} ({item['size']} bytes){note}")
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
    tenant: str = typer.Argument(...),
    watch: bool = typer.Option(False, "--watch", "-w", help="Refresh until every run ended."),
    limit: int = typer.Option(20, "--limit", "-n", min=1, max=100, help="Newest N runs."),
    interval: float = typer.Option(2.0, "--interval", min=0.1, help="Seconds between refreshes."),
) -> None:
    """A tenant's runs, newest first."""
    opts = _opts(ctx)
    api = opts.api()

    def fetch() -> list[dict[str, Any]]:
        return list(api.list_runs(tenant, limit=limit).get("runs", []))

    if not watch:
        items = fetch()
        if opts.json_output:
            _print_json({"runs": items})
        elif items:
            console.print(runs_table(tenant, items))
        else:
            console.print(
                f"no runs for {tenant} yet; upload data with: trainyard upload {tenant} FILE"
            )
        return

    if console.is_terminal and not opts.json_output:
        with Live(runs_table(tenant, []), console=console, refresh_per_second=4) as live:
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
            state = f"{run.get('status')}|{auc_of(run)}"
            if seen.get(run.get("runId", "")) == state:
                continue
            seen[run.get("runId", "")] = state
            if opts.json_output:
                print(json.dumps(run, sort_keys=True), flush=True)
            else:
                extra = run.get("failureReason") or run.get("modelPackageArn") or ""
                print(
                    f"{tenant} run {short_id(run.get('runId'))} {run.get('status')}"
                    f" auc={auc_of(run)} {extra}".rstrip(),
                    flush=True,
                )
        if _all_terminal(items):
            return


@app.command()
@handles_errors
def train(ctx: typer.Context, tenant: str = typer.Argument(...)) -> None:
    """Start a training run on the tenant's current data (joins a run already waiting)."""
    opts = _opts(ctx)
    run = opts.api().trigger_run(tenant)
    if opts.json_output:
        _print_json(run)
        return
    line = f"{tenant} run {short_id(run.get('runId'))} {run.get('status')}"
    if run.get("queuePosition"):
        line += f", position {run['queuePosition']} in the {run.get('plan')} queue"
    if run.get("failureReason"):
        line += f" ({run['failureReason']})"
    console.print(line)
    console.print(f"follow it with: trainyard runs {tenant} --watch")


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
    console.print(table)


def _backlog(body: dict[str, Any]) -> int:
    return sum(int(e.get("queued") or 0) + int(e.get("running") or 0) for e in _plan_entries(body))


@app.command()
@handles_errors
def queue(
    ctx: typer.Context,
    watch: bool = typer.Option(
        False, "--watch", "-w", help="Refresh until nothing is queued or running."
    ),
    interval: float = typer.Option(2.0, "--interval", min=0.1, help="Seconds between refreshes."),
) -> None:
    """The backlog per plan and queue positions."""
    opts = _opts(ctx)
    api = opts.api()
    if not watch:
        body = api.queue()
        if opts.json_output:
            _print_json(body)
            return
        for table in queue_tables(body):
            console.print(table)
        return
    if console.is_terminal and not opts.json_output:
        with Live(Group(*queue_tables(api.queue())), console=console, refresh_per_second=4) as live:
            for _ in _poll(interval):
                body = api.queue()
                live.update(Group(*queue_tables(body)))
                if _backlog(body) == 0:
                    return
    # Not a TTY: one line per plan whenever its numbers change.
    seen: dict[str, str] = {}
    for _ in _poll(interval):
        body = api.queue()
        for entry in _plan_entries(body):
            plan = str(entry.get("plan") or "?")
            running = f"{entry.get('running')}/{entry.get('cap')}"
            line = f"{plan}: queued={entry.get('queued')} running={running}"
            if seen.get(plan) != line:
                seen[plan] = line
                if opts.json_output:
                    print(json.dumps(entry, sort_keys=True), flush=True)
                else:
                    print(line, flush=True)
        if _backlog(body) == 0:
            return


@app.command()
@handles_errors
def plans(ctx: typer.Context) -> None:
    """Usage plans: limits, weights, isolation, instance types, budgets."""
    opts = _opts(ctx)
    body = opts.api().plans()
    if opts.json_output:
        _print_json(body)
    else:
        console.print(plans_table(body))


@app.command()
def demo(
    timeout: float = typer.Option(600, "--timeout", help="Give up after this many seconds."),
) -> None:
    """Run the scripted multi-tenant scenario on a fresh embedded stack."""
    from trainyard.demo import run_demo

    try:
        # run_demo sizes its own console (wide when not a TTY, so CI logs stay readable).
        code = run_demo(timeout=timeout)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    raise typer.Exit(code)


# --- local stack


def port_is_free(port: int) -> bool:
    """Checked up front: a busy port would otherwise surface as a vague start-up timeout."""
    with socket.socket() as probe:
        # Like the servers themselves: connections of a stopped stack lingering in
        # TIME_WAIT must not block an immediate restart on the same port.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@local_app.command("up")
def local_up(
    ctx: typer.Context,
    aws_port: int = typer.Option(4566, "--aws-port", min=0, max=65535, help="AWS endpoint port."),
    api_port: int = typer.Option(8787, "--api-port", min=0, max=65535, help="Onboarding API port."),
    workdir: Path | None = typer.Option(
        None, "--workdir", file_okay=False, help="Keep pipeline files here (default: temp dir)."
    ),
) -> None:
    """Run the embedded stack in the foreground until Ctrl-C / SIGTERM."""
    from trainyard.local.stack import EmbeddedStack

    opts = _opts(ctx)
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_signal)
    stack = EmbeddedStack(aws_port=aws_port, api_port=api_port, workdir=workdir, quiet=True)
    try:
        for name, port in (("--aws-port", aws_port), ("--api-port", api_port)):
            if port and not port_is_free(port):
                _fail("PortInUse", f"{name} {port}: 127.0.0.1:{port} is already in use")
        try:
            stack.start()
        except Exception as exc:  # one line for people; the cause is in the message
            _fail("StartFailed", f"cannot start the embedded stack: {type(exc).__name__}: {exc}")
        endpoints = {
            "awsEndpointUrl": stack.aws_endpoint_url,
            "apiUrl": stack.api_url,
            "region": stack.region,
            "accountId": stack.account_id,
        }
        if opts.json_output:
            print(json.dumps(endpoints), flush=True)
        else:
            # Plain print: endpoint lines must never be wrapped (people and scripts copy them).
            print(
                f"AWS endpoint  {stack.aws_endpoint_url}  (region {stack.region}, any credentials)"
            )
            print(f"API           {stack.api_url}  (GET /health)")
            print(
                f"use it:       export AWS_ENDPOINT_URL={stack.aws_endpoint_url} "
                f"TRAINYARD_API_URL={stack.api_url}"
            )
            print("ready; Ctrl-C to stop", flush=True)
        sys.stdout.flush()
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        try:
            stack.stop()
        except Exception as exc:  # still one line, not a traceback, and a failing exit code
            _fail("StopFailed", f"stopping the embedded stack failed: {type(exc).__name__}: {exc}")
    if not opts.json_output:
        console.print("stopped")


def main() -> None:
    # Never let Python print a traceback for Ctrl-C at the top level.
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
