"""`trainyard queue`, `trainyard plans` and `trainyard algorithms`."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Group
from rich.live import Live

from trainyard.cli import common
from trainyard.cli.common import (
    _opts,
    _print_json,
    app,
    handles_errors,
)
from trainyard.cli.render import (
    _plan_entries,
    algorithms_table,
    plans_table,
    queue_tables,
)
from trainyard.cli.runs import _poll


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
            common.console.print(table)
        return
    if common.console.is_terminal and not opts.json_output:
        with Live(
            Group(*queue_tables(api.queue())), console=common.console, refresh_per_second=4
        ) as live:
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
        common.console.print(plans_table(body))


@app.command()
@handles_errors
def algorithms(ctx: typer.Context) -> None:
    """The training catalog: problem types, hyperparameters, plans; how auto picks."""
    opts = _opts(ctx)
    body = opts.api().algorithms()
    if opts.json_output:
        _print_json(body)
    else:
        common.console.print(algorithms_table(body))
