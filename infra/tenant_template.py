"""Synthesize the tenant stack to a plain CloudFormation template.

Used by the platform stack (shipped as an S3 asset for the onboarding Lambda's
CreateStack) and by the local runtime (deployed into moto). Deterministic: the
same settings give byte-identical JSON, so the asset hash only changes when the
tenant stack does.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from aws_cdk import App
from aws_cdk import aws_iam as iam
from constructs import Construct
from trainyard_core import wiring
from trainyard_core.config import Isolation, Settings

from infra.cdk_context import cdk_json_context
from infra.cfn_permissions import service_role_statements
from infra.nag import acknowledge_findings
from infra.platform_files import PlatformFiles
from infra.tenant_stack import TenantStack

TENANT_STACK_ID = "TrainyardTenant"
# Stack ids of the shipped templates, one per isolation model (the silo one keeps
# the original id so its published template and tests stay where they were).
TENANT_STACK_IDS: dict[Isolation, str] = {"silo": TENANT_STACK_ID, "pool": "TrainyardTenantPool"}
ISOLATIONS: tuple[Isolation, ...] = ("silo", "pool")

# Keep the published template free of CDK-internal metadata.
_APP_CONTEXT = {
    "aws:cdk:enable-path-metadata": False,
    "aws:cdk:disable-version-reporting": True,
}
# Construct-path metadata still appears when the CDK CLI runs the app (its
# context, inherited through the environment, turns it on): always drop it.
_DROPPED_METADATA = ("aws:cdk:path",)


def synth_tenant_template(settings: Settings, isolation: Isolation = "silo") -> dict[str, Any]:
    """A tenant stack template as a dict, synthesized in its own throwaway App."""
    with tempfile.TemporaryDirectory(prefix="trainyard-tenant-") as outdir:
        # cdk.json's feature flags explicitly: same template with or without the CLI.
        app = App(outdir=outdir, context={**cdk_json_context(), **_APP_CONTEXT})
        stack = TenantStack(
            app, TENANT_STACK_IDS[isolation], settings=settings, isolation=isolation
        )
        assembly = app.synth()
        template = assembly.get_stack_artifact(stack.artifact_id).template
    return _without_cdk_metadata(json.loads(json.dumps(template)))


def _without_cdk_metadata(template: dict[str, Any]) -> dict[str, Any]:
    for resource in template.get("Resources", {}).values():
        metadata = resource.get("Metadata")
        if isinstance(metadata, dict):
            for key in _DROPPED_METADATA:
                metadata.pop(key, None)
            if not metadata:
                del resource["Metadata"]
    return template


def template_text(template: dict[str, Any]) -> str:
    """The published form of a template (what the platform bucket holds)."""
    return json.dumps(template, indent=1, sort_keys=True) + "\n"


def render_tenant_template(settings: Settings, isolation: Isolation = "silo") -> str:
    return template_text(synth_tenant_template(settings, isolation))


def write_tenant_template(settings: Settings, path: Path, isolation: Isolation = "silo") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_tenant_template(settings, isolation))
    return path


def templates_version(rendered: dict[Isolation, str]) -> str:
    """Content hash of both templates: each version gets its own templates/ prefix,
    so an UpdateStack with UsePreviousTemplate never depends on a replaced object."""
    digest = hashlib.sha256()
    for isolation in sorted(rendered):
        digest.update(isolation.encode() + b"\0" + rendered[isolation].encode())
    return digest.hexdigest()[:16]


def template_files(settings: Settings, names: wiring.Names, staging: Path) -> dict[str, Path]:
    """Object key in the platform bucket -> rendered template, for both isolations."""
    rendered = {isolation: render_tenant_template(settings, isolation) for isolation in ISOLATIONS}
    version = templates_version(rendered)
    files: dict[str, Path] = {}
    for isolation, text in rendered.items():
        path = staging / f"tenant-stack-{isolation}.template.json"
        path.write_text(text)
        files[names.tenant_template_key(isolation, version)] = path
    return files


class TenantProvisioning(Construct):
    """What the onboarding Lambda needs to create tenant stacks: both templates
    (silo and pool), shipped into the platform bucket by `PlatformFiles` (see why
    there), and the CloudFormation service role it passes.

    The service role can manage tenant resources only (names from `wiring.Names`),
    so the onboarding Lambda itself holds no IAM/S3/EventBridge create rights.
    """

    def __init__(
        self, scope: Construct, construct_id: str, *, settings: Settings, names: wiring.Names
    ) -> None:
        super().__init__(scope, construct_id)
        staging = Path(tempfile.mkdtemp(prefix="trainyard-tenant-template-"))
        # CDK copies assets into the cloud assembly; the staging dir is only a source.
        atexit.register(shutil.rmtree, staging, ignore_errors=True)
        # Both templates always ship: a plan's isolation is config, and a plan change
        # across isolation models swaps the tenant's template with UpdateStack.
        self.files = template_files(settings, names, staging)
        self._keys: dict[Isolation, str] = {
            isolation: key
            for key in self.files
            for isolation in ISOLATIONS
            if key.endswith(f"tenant-stack-{isolation}.template.json")
        }
        self.template_urls: dict[Isolation, str] = {}
        self.template_object_arns: list[str] = []

        # What CloudFormation's resource handlers call, derived from AWS's registry
        # schemas for exactly the resources both templates declare (see cfn_permissions).
        template_resources = [
            resource
            for path in self.files.values()
            for resource in json.loads(path.read_text())["Resources"].values()
        ]
        policy = iam.PolicyDocument(statements=service_role_statements(names, template_resources))
        self.service_role = iam.Role(
            self,
            "StackRole",
            description="CloudFormation service role for Trainyard tenant stacks",
            # No condition: CloudFormation's service-role docs and the CDK bootstrap's
            # execution role trust the bare principal, and no AWS document says which
            # condition keys CloudFormation sets when it assumes a stack role. What
            # keeps this role to tenant stacks is that only the onboarding Lambda may
            # iam:PassRole it (infra/api.py, PassTenantStackRole).
            assumed_by=iam.ServicePrincipal("cloudformation.amazonaws.com"),
            inline_policies={"TenantResourcesOnly": policy},
        )
        acknowledge_findings(
            self.service_role,
            "IAM5",
            {
                f"Resource::arn:<AWS::Partition>:s3:::{names.prefix}-*-<AWS::AccountId>": (
                    "Tenant silo buckets, named <prefix>-<tenant>-<account> at onboarding; "
                    "the platform and pool buckets are denied explicitly."
                ),
                "Resource::arn:<AWS::Partition>:iam::<AWS::AccountId>:role"
                f"{names.tenant_role_path}*": "Tenant job roles, only under the tenant path.",
                "Resource::arn:<AWS::Partition>:events:<AWS::Region>:<AWS::AccountId>:rule/"
                f"{names.tenant_rule_prefix}*": "Tenant upload rules, named per tenant.",
                "Resource::arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>:"
                f"model-package-group/{names.prefix}-*": "Tenant model package groups.",
            },
        )

    def serve_from(self, files: PlatformFiles) -> None:
        """Where the templates are, once `PlatformFiles` deploys them."""
        self.template_urls = {iso: files.url(key) for iso, key in self._keys.items()}
        self.template_object_arns = [files.object_arn(key) for key in self._keys.values()]

    @property
    def template_url(self) -> str:
        return self.template_urls["silo"]
