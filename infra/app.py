"""The CDK app factory: `python app.py`, `npx cdk synth` and the tests all build
the app through `build_app`, so what is tested is what is deployed."""

from __future__ import annotations

import json
import os
from typing import Any

from aws_cdk import App, Environment
from trainyard_core.config import CONTEXT_KEY, Settings, load_project_settings, read_cdk_context

from infra.cdk_context import PROJECT_ROOT, cdk_json_context
from infra.nag import NAG_CONTEXT_KEY, NAG_ENV, apply_aws_solutions
from infra.platform_stack import PlatformStack
from infra.tenant_stack import TenantStack
from infra.tenant_template import TENANT_STACK_IDS
from pipeline.images import with_image_uris


def context_override(app: App) -> dict[str, Any] | None:
    """`-c trainyard='{"plans": ...}'` arrives as a JSON string; cdk.json gives a dict.

    The app's context always holds cdk.json's own block (the CLI passes it, and
    build_app merges it); that block is the *first* source of settings, not an
    override, or it would win over TRAINYARD_CONFIG here but not in the local
    runtime. Only a value that differs from it is an override."""
    raw = app.node.try_get_context(CONTEXT_KEY)
    if raw is None or raw == "":
        return None
    value = json.loads(raw) if isinstance(raw, str) else raw
    if not isinstance(value, dict):
        raise ValueError(f"context {CONTEXT_KEY!r} must be a JSON object, got {value!r}")
    if value == read_cdk_context(PROJECT_ROOT):
        return None
    return value


def nag_enabled(app: App) -> bool:
    """cdk-nag is on unless `-c trainyard:nag=false` or TRAINYARD_NAG=0."""
    raw = app.node.try_get_context(NAG_CONTEXT_KEY)
    if raw is None:
        raw = os.environ.get(NAG_ENV, "true")
    return str(raw).strip().lower() not in ("0", "false", "no", "off")


def build_app(
    settings: Settings | None = None,
    *,
    outdir: str | None = None,
    context: dict[str, Any] | None = None,
    nag: bool | None = None,
    include_tenant_stack: bool = False,
) -> App:
    """The Trainyard CDK app (not yet synthesized).

    ``settings`` None: resolved like the CLI does (cdk.json, TRAINYARD_CONFIG, then
    the ``trainyard`` context). ``include_tenant_stack`` adds the tenant stacks (silo
    and pool) as extra stacks for inspection and checks (tests); they are never
    deployed that way.
    """
    app = App(outdir=outdir, context={**cdk_json_context(), **(context or {})})
    if settings is None:
        settings = load_project_settings(PROJECT_ROOT, context_override(app))
    # The catalog's image URIs of the region, in the settings the Lambdas get.
    settings = with_image_uris(settings)
    PlatformStack(
        app,
        settings.stack_name,
        stack_name=settings.stack_name,
        settings=settings,
        # The account is a token (synth needs no credentials) unless the CLI knows it
        # (cdk deploy sets CDK_DEFAULT_ACCOUNT): then retained resources get literal
        # names, which `cdk deploy --import-existing-resources` can adopt.
        env=Environment(account=os.environ.get("CDK_DEFAULT_ACCOUNT"), region=settings.region),
    )
    if include_tenant_stack:
        for isolation, stack_id in TENANT_STACK_IDS.items():
            TenantStack(app, stack_id, settings=settings, isolation=isolation)
    if nag if nag is not None else nag_enabled(app):
        apply_aws_solutions(app)
    return app
