"""Synthesis and template helpers shared by the infra tests."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aws_cdk import assertions
from trainyard_core import wiring
from trainyard_core.config import Settings

from infra.app import build_app
from infra.nag import VALIDATION_REPORT
from infra.tenant_template import TENANT_STACK_ID
from pipeline.images import with_image_uris


@dataclass
class Synth:
    settings: Settings
    outdir: Path
    # Raised by app.synth() (cdk-nag findings fail synthesis); templates are
    # written before validation runs, so the other tests still get them.
    error: str | None
    templates: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def names(self) -> wiring.Names:
        return wiring.Names.from_settings(self.settings)

    @property
    def platform_json(self) -> dict[str, Any]:
        return self.templates[self.settings.stack_name]

    @property
    def tenant_json(self) -> dict[str, Any]:
        return self.templates[TENANT_STACK_ID]

    @property
    def platform(self) -> assertions.Template:
        return assertions.Template.from_json(self.platform_json)

    @property
    def tenant(self) -> assertions.Template:
        return assertions.Template.from_json(self.tenant_json)

    def validation_report(self) -> dict[str, Any]:
        path = self.outdir / VALIDATION_REPORT
        return json.loads(path.read_text()) if path.exists() else {"pluginReports": []}


def synthesize(settings: Settings, outdir: Path, *, nag: bool = True) -> Synth:
    # What build_app ships: the settings with the catalog's image URIs resolved.
    settings = with_image_uris(settings)
    app = build_app(settings, outdir=str(outdir), nag=nag, include_tenant_stack=True)
    error = None
    try:
        app.synth()
    except RuntimeError as exc:  # jsii surfaces ValidationFailed as RuntimeError
        error = str(exc)
    templates = {
        path.name.removesuffix(".template.json"): json.loads(path.read_text())
        for path in outdir.glob("*.template.json")
    }
    return Synth(settings=settings, outdir=outdir, error=error, templates=templates)


def resources(template: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == type_}


def resolve_ref(template: dict[str, Any], value: Any) -> Any:
    """Fn::GetAtt/Ref to the logical id they point at (for matching resources)."""
    if isinstance(value, dict):
        if "Ref" in value:
            return value["Ref"]
        if "Fn::GetAtt" in value:
            return value["Fn::GetAtt"][0]
    return value
