"""`trainyard tenants ...`: onboard, inspect, change and offboard tenants."""

from __future__ import annotations

import typer

from trainyard.cli import common
from trainyard.cli.common import (
    TENANT_STATUSES,
    _fail,
    _opts,
    _print_json,
    handles_errors,
    tenants_app,
)
from trainyard.cli.render import (
    tenant_details,
    tenant_table,
)


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
    common.console.print(tenant_details(created))
    if created.get("status") == "PROVISIONING":
        common.console.print(f"provisioning; follow with: trainyard tenants show {tenant}")


@tenants_app.command("list")
@handles_errors
def tenants_list(ctx: typer.Context) -> None:
    """List every tenant."""
    opts = _opts(ctx)
    tenants = opts.api().all_tenants()
    if opts.json_output:
        _print_json({"tenants": tenants})
    elif tenants:
        common.console.print(tenant_table(tenants))
    else:
        common.console.print(
            "no tenants yet; onboard one with: trainyard tenants create NAME --plan PLAN"
        )


@tenants_app.command("show")
@handles_errors
def tenants_show(ctx: typer.Context, tenant: str = typer.Argument(...)) -> None:
    """Show one tenant."""
    opts = _opts(ctx)
    body = opts.api().get_tenant(tenant)
    if opts.json_output:
        _print_json(body)
    else:
        common.console.print(tenant_details(body))


@tenants_app.command("update")
@handles_errors
def tenants_update(
    ctx: typer.Context,
    tenant: str = typer.Argument(...),
    plan: str | None = typer.Option(None, "--plan", help="Move to another plan (data is kept)."),
    status: str | None = typer.Option(None, "--status", help="ACTIVE or SUSPENDED."),
    algorithm: str | None = typer.Option(None, "--algorithm", help=common.ALGORITHM_HELP),
    problem_type: str | None = typer.Option(None, "--problem-type", help=common.PROBLEM_TYPE_HELP),
    hyperparameter: list[str] | None = typer.Option(
        None, "--hyperparameter", help=common.HYPERPARAMETER_HELP
    ),
    schema_drift: str | None = typer.Option(None, "--schema-drift", help=common.SCHEMA_DRIFT_HELP),
    retrain: str | None = typer.Option(
        None,
        "--retrain",
        help="Retrain on the current data this often when it changed (ISO-8601, e.g. P7D); "
        "'off' removes the schedule.",
    ),
) -> None:
    """Change a tenant's plan, suspend/reactivate it, set what its runs train or its
    retrain schedule."""
    training = common.training_body(algorithm, problem_type, hyperparameter, schema_drift)
    if plan is None and status is None and training is None and retrain is None:
        _fail(
            "NothingToUpdate",
            "give --plan, --status, --algorithm, --problem-type, --hyperparameter, "
            "--schema-drift and/or --retrain",
        )
    if status is not None:
        status = status.upper()
        if status not in TENANT_STATUSES:
            _fail("InvalidStatus", f"--status must be one of {', '.join(TENANT_STATUSES)}")
    opts = _opts(ctx)
    off = retrain is not None and retrain.lower() == "off"
    body = opts.api().update_tenant(
        tenant,
        plan=plan,
        status=status,
        training=training,
        retrain_every=None if off else retrain,
        retrain_off=off,
    )
    if opts.json_output:
        _print_json(body)
    else:
        common.console.print(tenant_details(body))


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
    common.console.print(f"offboarding {tenant} ({kept})" + (f": {status}" if status else ""))


# --- data and runs
