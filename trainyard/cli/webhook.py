"""`trainyard webhook set|show|deliveries|delete`: a tenant's webhook."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from trainyard.cli import common
from trainyard.cli.common import _opts, _print_json, app, handles_errors

webhook_app = typer.Typer(
    help="A tenant's webhook: signed deliveries of Trainyard's events.", no_args_is_help=True
)
app.add_typer(webhook_app, name="webhook")


def _webhook_table(body: dict[str, Any], title: str) -> Table:
    table = Table(show_header=False, title=title)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key in ("url", "events", "createdAt", "updatedAt", "secret"):
        if key in body:
            value = body[key]
            table.add_row(key, ", ".join(value) if isinstance(value, list) else str(value))
    return table


@webhook_app.command("set")
@handles_errors
def set_webhook(
    ctx: typer.Context,
    tenant_id: str = typer.Argument(..., help="Tenant id."),
    url: str = typer.Argument(..., help="https:// URL on port 443 (public addresses only)."),
    event: list[str] = typer.Option(
        None, "--event", "-e", help="An event to receive (repeat); all when omitted."
    ),
) -> None:
    """Set the webhook; prints its new signing secret (shown only this once)."""
    opts = _opts(ctx)
    body = opts.api().put_webhook(tenant_id, url, list(event) if event else None)
    if opts.json_output:
        _print_json(body)
        return
    common.console.print(_webhook_table(body, f"Webhook of {tenant_id}"))
    common.console.print(
        "Keep the secret: it is shown only now (a new `webhook set` rotates it).",
        style="bold yellow",
    )


@webhook_app.command("show")
@handles_errors
def show_webhook(ctx: typer.Context, tenant_id: str = typer.Argument(...)) -> None:
    """The webhook (never its secret)."""
    opts = _opts(ctx)
    body = opts.api().get_webhook(tenant_id)
    if opts.json_output:
        _print_json(body)
    else:
        common.console.print(_webhook_table(body, f"Webhook of {tenant_id}"))


@webhook_app.command("delete")
@handles_errors
def delete_webhook(ctx: typer.Context, tenant_id: str = typer.Argument(...)) -> None:
    """Remove the webhook and its signing secret."""
    opts = _opts(ctx)
    body = opts.api().delete_webhook(tenant_id)
    if opts.json_output:
        _print_json(body)
    else:
        common.console.print(f"webhook of {tenant_id} removed ({body.get('url')})")


@webhook_app.command("deliveries")
@handles_errors
def deliveries(
    ctx: typer.Context,
    tenant_id: str = typer.Argument(...),
    limit: int = typer.Option(20, "--limit", min=1, max=100),
) -> None:
    """The webhook's deliveries, newest first."""
    opts = _opts(ctx)
    body = opts.api().webhook_deliveries(tenant_id, limit=limit)
    if opts.json_output:
        _print_json(body)
        return
    table = Table(title=f"Webhook deliveries of {tenant_id}")
    for column in ("delivery", "event", "run", "status", "attempts", "last", "created"):
        table.add_column(column, overflow="fold")
    for d in body.get("deliveries", []):
        last = d.get("lastError") or (str(d["lastStatusCode"]) if "lastStatusCode" in d else "-")
        table.add_row(
            d["deliveryId"],
            d["event"],
            d.get("runId") or "-",
            d["status"],
            str(d["attempts"]),
            last,
            d["createdAt"],
        )
    common.console.print(table)
