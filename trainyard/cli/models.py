"""`trainyard models list|approve|reject`: a tenant's model registry."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from trainyard.cli import common
from trainyard.cli.common import _opts, _print_json, app, handles_errors
from trainyard.cli.render import short_id, short_time

models_app = typer.Typer(
    help="A tenant's model versions: list, approve, reject.", no_args_is_help=True
)
app.add_typer(models_app, name="models")

_STYLE = {"Approved": "green", "Rejected": "red", "PendingManualApproval": "yellow"}


def models_table(tenant_id: str, models: list[dict[str, Any]]) -> Table:
    table = Table(title=f"Models of {tenant_id}")
    for column in ("version", "status", "auc", "run", "created", "decided by", "reason"):
        table.add_column(column)
    for model in models:
        status = str(model.get("status") or "?")
        auc = (model.get("metrics") or {}).get("auc")
        table.add_row(
            str(model.get("version", "?")),
            f"[{_STYLE.get(status, 'white')}]{status}[/]",
            f"{auc:.3f}" if isinstance(auc, int | float) else "-",
            short_id(model.get("runId")),
            short_time(model.get("createdAt")),
            str(model.get("decidedBy") or "-"),
            str(model.get("reason") or "-"),
        )
    return table


@models_app.command("list")
@handles_errors
def models_list(
    ctx: typer.Context,
    tenant: str = typer.Argument(..., help="Tenant id."),
    all_pages: bool = typer.Option(False, "--all", help="Follow nextToken to the oldest."),
) -> None:
    """The tenant's model versions, newest first."""
    opts = _opts(ctx)
    api = opts.api()
    page = api.list_models(tenant)
    models = list(page.get("models", []))
    while all_pages and page.get("nextToken"):
        page = api.list_models(tenant, next_token=page["nextToken"])
        models.extend(page.get("models", []))
    if opts.json_output:
        _print_json(
            {
                "models": models,
                **(
                    {"nextToken": page["nextToken"]}
                    if page.get("nextToken") and not all_pages
                    else {}
                ),
            }
        )
    elif models:
        common.console.print(models_table(tenant, models))
        if page.get("nextToken") and not all_pages:
            common.console.print("older versions exist: add --all")
    else:
        common.console.print(f"{tenant} has no registered model yet")


def _decide(
    ctx: typer.Context, tenant: str, version: int, reason: str | None, approve: bool
) -> None:
    opts = _opts(ctx)
    api = opts.api()
    model = (api.approve_model if approve else api.reject_model)(tenant, version, reason=reason)
    if opts.json_output:
        _print_json(model)
    else:
        common.console.print(models_table(tenant, [model]))


@models_app.command("approve")
@handles_errors
def models_approve(
    ctx: typer.Context,
    tenant: str = typer.Argument(..., help="Tenant id."),
    version: int = typer.Argument(..., min=1, help="Model version (see `trainyard models list`)."),
    reason: str | None = typer.Option(None, "--reason", help="Why (kept on the model package)."),
) -> None:
    """Approve a model version (a deployment stack's rule on approval fires)."""
    _decide(ctx, tenant, version, reason, approve=True)


@models_app.command("reject")
@handles_errors
def models_reject(
    ctx: typer.Context,
    tenant: str = typer.Argument(..., help="Tenant id."),
    version: int = typer.Argument(..., min=1, help="Model version (see `trainyard models list`)."),
    reason: str | None = typer.Option(None, "--reason", help="Why (kept on the model package)."),
) -> None:
    """Reject a model version (also revokes an approval)."""
    _decide(ctx, tenant, version, reason, approve=False)
