"""`trainyard aws ...`: commands against a real account (the caller's credentials)."""

from __future__ import annotations

import boto3
import typer
from rich.console import Console
from trainyard_core.config import load_project_settings

from trainyard.aws.leftovers import Deployment, delete_leftovers, find_leftovers

aws_app = typer.Typer(
    help="A deployed Trainyard in a real account: what is left, the end-to-end check.",
    no_args_is_help=True,
)
console = Console()


@aws_app.command("leftovers")
def leftovers(
    delete: bool = typer.Option(
        False, "--delete", help="Delete them too (data included: tables, buckets, models)."
    ),
    yes: bool = typer.Option(False, "--yes", help="Do not ask before deleting."),
    region: str | None = typer.Option(None, help="Default: the settings' region."),
    prefix: str | None = typer.Option(
        None, help="Another deployment's resource prefix (e.g. an interrupted e2e run's)."
    ),
    stack_name: str | None = typer.Option(None, help="That deployment's platform stack name."),
) -> None:
    """List everything named for this deployment (its prefix and stack name) that is
    still in the account; after `cdk destroy` that is what was retained on purpose."""
    from infra.cdk_context import PROJECT_ROOT

    override = {
        key: value
        for key, value in (("resourcePrefix", prefix), ("stackName", stack_name))
        if value
    }
    settings = load_project_settings(PROJECT_ROOT, override or None)
    session = boto3.session.Session(region_name=region or settings.region)
    account = session.client("sts").get_caller_identity()["Account"]
    deployment = Deployment.of(settings, account)
    items = find_leftovers(session.client, deployment)
    for item in items:
        console.print(f"  {item}", highlight=False)
    console.print(f"{len(items)} left in {account} {session.region_name}")
    if not delete or not items:
        return
    if not yes and not typer.confirm(f"Delete these {len(items)} resources and their data?"):
        raise typer.Exit(1)
    failed = delete_leftovers(
        session.client,
        items,
        lambda item, error: console.print(
            f"  {'FAILED ' + error if error else 'deleted'} {item}", highlight=False
        ),
    )
    if failed:
        raise typer.Exit(1)


@aws_app.command("destroy")
def destroy(
    delete_retained: bool = typer.Option(
        False, "--delete-retained", help="Then delete what the destroy kept, data included."
    ),
    region: str | None = typer.Option(None, help="Default: the settings' region."),
) -> None:
    """`cdk destroy` the platform stack, refusing while tenant stacks exist (deleting
    one needs the platform's CloudFormation service role), then list what it kept."""
    import subprocess

    from infra.cdk_context import PROJECT_ROOT
    from trainyard.aws.leftovers import tenant_stacks

    settings = load_project_settings(PROJECT_ROOT)
    session = boto3.session.Session(region_name=region or settings.region)
    account = session.client("sts").get_caller_identity()["Account"]
    deployment = Deployment.of(settings, account)
    left = tenant_stacks(session.client, deployment)
    if left:
        console.print(
            f"{len(left)} tenant stack(s) still exist: {', '.join(left)}. Offboard them first "
            "(DELETE /tenants/<id>, ?purge=true to remove their data and models): a tenant "
            "stack cannot be deleted once the platform's service role is gone."
        )
        raise typer.Exit(1)
    result = subprocess.run(
        ["npx", "cdk", "destroy", settings.stack_name, "--force"], cwd=PROJECT_ROOT, check=False
    )
    if result.returncode != 0:
        raise typer.Exit(result.returncode)
    leftovers(delete=delete_retained, yes=True, region=region, prefix=None, stack_name=None)


@aws_app.command("e2e")
def e2e(
    cleanup: bool = typer.Option(
        False, "--cleanup", help="Also delete what the destroy retained (a throwaway account)."
    ),
) -> None:
    """Deploy, onboard a silo and a pool tenant, train, check, offboard, destroy."""
    from trainyard.aws.e2e import run_e2e
    from trainyard.aws.targets import AwsTarget

    report = run_e2e(AwsTarget(), delete_leftovers_after=cleanup, log=console.print)
    for check in report.checks:
        mark = "[green]ok[/green]  " if check.ok else "[red]FAIL[/red]"
        console.print(f"{mark} {check.seconds:7.1f}s {check.name}: {check.detail}")
    raise typer.Exit(0 if report.ok else 1)
