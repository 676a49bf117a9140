"""The synthesized platform template, as the embedded stack uses it.

The embedded stack creates the platform's resources from ``wiring`` (bootstrap),
but the *permissions* of its principals come from what ``cdk deploy`` would
deploy: the IAM roles and policies of the synthesized ``TrainyardPlatform``
template, rendered for the local account and region. So a permission missing
from the CDK code is missing locally too, and the embedded stack fails where AWS
would.

Synthesis takes ~15 s; the template is cached under ``.trainyard/cache`` by a
hash of everything that shapes it (settings, infra/, lambdas/, pipeline/,
cdk.json), and a file lock keeps two test workers from synthesizing at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainyard_core.config import Settings

PROJECT_ROOT = Path(__file__).resolve().parents[2]
_SOURCES = ("infra", "lambdas", "pipeline")


def _source_hash(settings: Settings) -> str:
    digest = hashlib.sha256(settings.to_json().encode())
    for top in _SOURCES:
        for path in sorted((PROJECT_ROOT / top).rglob("*.py")):
            digest.update(str(path.relative_to(PROJECT_ROOT)).encode() + b"\0")
            digest.update(path.read_bytes())
    digest.update((PROJECT_ROOT / "cdk.json").read_bytes())
    return digest.hexdigest()[:16]


def synthesize_platform(settings: Settings, cache_dir: Path, account: str) -> dict[str, Any]:
    """The platform stack's template for ``settings``, as `cdk deploy` into ``account``
    synthesizes it (the CLI sets CDK_DEFAULT_ACCOUNT)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    cached = cache_dir / f"platform-template-{account}-{_source_hash(settings)}.json"
    with (cache_dir / "platform-template.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another worker may be synthesizing it
        if cached.exists():
            return dict(json.loads(cached.read_text()))
        os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
        os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
        from infra.app import build_app

        previous = os.environ.get("CDK_DEFAULT_ACCOUNT")
        os.environ["CDK_DEFAULT_ACCOUNT"] = account
        try:
            with tempfile.TemporaryDirectory(prefix="trainyard-platform-") as outdir:
                app = build_app(settings, outdir=outdir, nag=False)
                app.synth()
                path = Path(outdir) / f"{settings.stack_name}.template.json"
                template = json.loads(path.read_text())
        finally:
            if previous is None:
                os.environ.pop("CDK_DEFAULT_ACCOUNT", None)
            else:
                os.environ["CDK_DEFAULT_ACCOUNT"] = previous
        tmp = cached.with_suffix(".tmp")
        tmp.write_text(json.dumps(template, sort_keys=True))
        tmp.replace(cached)
        return dict(template)


class UnresolvableReference(ValueError):
    """A policy refers to something the renderer cannot name (fail closed)."""


@dataclass(frozen=True)
class Pseudo:
    account: str
    region: str
    partition: str = "aws"
    stack_name: str = "TrainyardPlatform"

    def value(self, name: str) -> str:
        values = {
            "AWS::AccountId": self.account,
            "AWS::Region": self.region,
            "AWS::Partition": self.partition,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": self.stack_name,
        }
        if name not in values:
            raise UnresolvableReference(f"pseudo parameter {name}")
        return values[name]


class TemplateRenderer:
    """Resolves the intrinsics of a synthesized template to local physical values."""

    def __init__(
        self,
        template: Mapping[str, Any],
        pseudo: Pseudo,
        overrides: Mapping[str, str] | None = None,
    ) -> None:
        self.resources: Mapping[str, Any] = template.get("Resources", {})
        self.pseudo = pseudo
        # Logical id -> Ref value, for names only the local runtime knows (queue URLs).
        self.overrides = dict(overrides or {})

    # --- physical names
    def physical_name(self, logical_id: str) -> str:
        resource = self.resources.get(logical_id)
        if resource is None:
            raise UnresolvableReference(f"no resource {logical_id}")
        props = resource.get("Properties", {})
        key = {
            "AWS::DynamoDB::Table": "TableName",
            "AWS::SQS::Queue": "QueueName",
            "AWS::Lambda::Function": "FunctionName",
            "AWS::S3::Bucket": "BucketName",
            "AWS::Logs::LogGroup": "LogGroupName",
            "AWS::IAM::Role": "RoleName",
            "AWS::SNS::Topic": "TopicName",
            "AWS::Events::Rule": "Name",
            "AWS::SageMaker::Pipeline": "PipelineName",
            "AWS::IAM::Policy": "PolicyName",
        }.get(resource["Type"])
        if key and key in props:
            return str(self.render(props[key]))
        # CloudFormation's generated names: <stack>-<logical id>-<suffix>; locally
        # deterministic (no suffix), within IAM's 64-character role name limit.
        return f"{self.pseudo.stack_name}-{logical_id}"[:64]

    def arn(self, logical_id: str) -> str:
        resource = self.resources[logical_id]
        kind, name = resource["Type"], self.physical_name(logical_id)
        p, r, a = self.pseudo.partition, self.pseudo.region, self.pseudo.account
        if kind == "AWS::DynamoDB::Table":
            return f"arn:{p}:dynamodb:{r}:{a}:table/{name}"
        if kind == "AWS::SQS::Queue":
            return f"arn:{p}:sqs:{r}:{a}:{name}"
        if kind == "AWS::Lambda::Function":
            return f"arn:{p}:lambda:{r}:{a}:function:{name}"
        if kind == "AWS::S3::Bucket":
            return f"arn:{p}:s3:::{name}"
        if kind == "AWS::Logs::LogGroup":
            return f"arn:{p}:logs:{r}:{a}:log-group:{name}:*"
        if kind == "AWS::IAM::Role":
            path = resource.get("Properties", {}).get("Path", "/")
            return f"arn:{p}:iam::{a}:role{path}{name}"
        if kind == "AWS::SNS::Topic":
            return f"arn:{p}:sns:{r}:{a}:{name}"
        if kind == "AWS::KMS::Key":
            digest = hashlib.sha256(logical_id.encode()).hexdigest()
            uuid = f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"
            return f"arn:{p}:kms:{r}:{a}:key/{uuid}"
        if kind == "AWS::SageMaker::Pipeline":
            return f"arn:{p}:sagemaker:{r}:{a}:pipeline/{name}"
        if kind == "AWS::Events::Rule":
            return f"arn:{p}:events:{r}:{a}:rule/{name}"
        raise UnresolvableReference(f"ARN of {kind} {logical_id}")

    def ref(self, name: str) -> str:
        if name.startswith("AWS::"):
            return self.pseudo.value(name)
        if name in self.overrides:
            return self.overrides[name]
        kind = self.resources.get(name, {}).get("Type")
        if kind in ("AWS::SNS::Topic", "AWS::KMS::Key"):
            return self.arn(name) if kind == "AWS::SNS::Topic" else self.arn(name).rsplit("/")[-1]
        if kind is None:
            raise UnresolvableReference(f"Ref {name}")
        return self.physical_name(name)

    def get_att(self, logical_id: str, attribute: str) -> str:
        if attribute == "Arn":
            return self.arn(logical_id)
        if attribute == "RoleId":
            return f"AROA{hashlib.sha256(logical_id.encode()).hexdigest()[:17].upper()}"
        raise UnresolvableReference(f"{logical_id}.{attribute}")

    # --- intrinsics
    def render(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.render(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((fn, arg),) = value.items()
            if fn == "Ref":
                return self.ref(arg)
            if fn == "Fn::GetAtt":
                target, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.get_att(target, attribute)
            if fn == "Fn::Join":
                sep, parts = arg
                return str(sep).join(str(self.render(p)) for p in parts)
            if fn == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else arg
                rendered = {k: str(self.render(v)) for k, v in variables.items()}
                return re.sub(
                    r"\$\{([^}!]+)\}",
                    lambda m: rendered[m[1]] if m[1] in rendered else self._sub_ref(m[1]),
                    text,
                )
            if fn == "Fn::Select":
                index, items = arg
                return self.render(items)[int(index)]
            if fn == "Fn::Split":
                sep, text = arg
                return str(self.render(text)).split(sep)
            if fn.startswith("Fn::"):
                raise UnresolvableReference(fn)
        return {k: self.render(v) for k, v in value.items()}

    def _sub_ref(self, name: str) -> str:
        if "." in name:
            target, attribute = name.split(".", 1)
            return self.get_att(target, attribute)
        return self.ref(name)


@dataclass
class RoleSpec:
    """One role of the template, rendered: what moto's IAM gets."""

    logical_id: str
    name: str
    path: str
    arn: str
    trust: dict[str, Any]
    policies: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> document
    managed_policy_arns: list[str] = field(default_factory=list)


def platform_roles(template: Mapping[str, Any], renderer: TemplateRenderer) -> dict[str, RoleSpec]:
    """Every role with its inline policies and the AWS::IAM::Policy resources attached."""
    resources = template["Resources"]
    roles: dict[str, RoleSpec] = {}
    for lid, res in resources.items():
        if res["Type"] != "AWS::IAM::Role":
            continue
        props = res["Properties"]
        spec = RoleSpec(
            logical_id=lid,
            name=renderer.physical_name(lid),
            path=props.get("Path", "/"),
            arn=renderer.arn(lid),
            trust=renderer.render(props["AssumeRolePolicyDocument"]),
            managed_policy_arns=[
                str(renderer.render(a)) for a in props.get("ManagedPolicyArns", [])
            ],
        )
        for policy in props.get("Policies", []):
            spec.policies[policy["PolicyName"]] = renderer.render(policy["PolicyDocument"])
        roles[lid] = spec
    for lid, res in resources.items():
        if res["Type"] != "AWS::IAM::Policy":
            continue
        props = res["Properties"]
        for role in props.get("Roles", []):
            target = role.get("Ref") if isinstance(role, dict) else None
            if target not in roles:
                raise UnresolvableReference(f"{lid} is attached to {role!r}")
            roles[target].policies[str(renderer.render(props["PolicyName"]))] = renderer.render(
                props["PolicyDocument"]
            )
    return roles


def _target(value: Any) -> str | None:
    if isinstance(value, dict):
        if "Fn::GetAtt" in value:
            arg = value["Fn::GetAtt"]
            return str(arg[0] if isinstance(arg, list) else arg.split(".", 1)[0])
        if "Ref" in value:
            return str(value["Ref"])
    return None


@dataclass(frozen=True)
class PlatformPrincipals:
    """Which role each principal of the platform is (logical ids)."""

    functions: dict[str, str]  # function name -> role logical id
    pipeline: str
    tenant_stacks: str


def principals_of(template: Mapping[str, Any], env_key: str) -> PlatformPrincipals:
    """``env_key``: the Lambda environment key carrying the tenant-stack role ARN."""
    resources = template["Resources"]
    functions: dict[str, str] = {}
    pipeline = tenant_stacks = ""
    for res in resources.values():
        props = res.get("Properties", {})
        if res["Type"] == "AWS::Lambda::Function" and isinstance(props.get("FunctionName"), str):
            role = _target(props.get("Role"))
            if role:
                functions[props["FunctionName"]] = role
            env = props.get("Environment", {}).get("Variables", {})
            if env_key in env:
                tenant_stacks = _target(env[env_key]) or ""
        if res["Type"] == "AWS::SageMaker::Pipeline":
            pipeline = _target(props.get("RoleArn")) or ""
    if not pipeline or not tenant_stacks:
        raise UnresolvableReference("pipeline role or tenant-stack role not found in template")
    return PlatformPrincipals(functions=functions, pipeline=pipeline, tenant_stacks=tenant_stacks)


def bucket_policies(
    template: Mapping[str, Any], renderer: TemplateRenderer
) -> dict[str, dict[str, Any]]:
    """Bucket name -> rendered bucket policy."""
    out: dict[str, dict[str, Any]] = {}
    for res in template["Resources"].values():
        if res["Type"] == "AWS::S3::BucketPolicy":
            props = res["Properties"]
            out[str(renderer.render(props["Bucket"]))] = renderer.render(props["PolicyDocument"])
    return out


def queue_policies(
    template: Mapping[str, Any], renderer: TemplateRenderer
) -> dict[str, dict[str, Any]]:
    """Queue name -> rendered queue policy (a policy may name several queues)."""
    resources = template["Resources"]
    out: dict[str, dict[str, Any]] = {}
    for res in resources.values():
        if res["Type"] != "AWS::SQS::QueuePolicy":
            continue
        props = res["Properties"]
        for queue in props["Queues"]:
            target = _target(queue)
            if target is None:
                raise UnresolvableReference(f"queue policy on {queue!r}")
            out[renderer.physical_name(target)] = renderer.render(props["PolicyDocument"])
    return out
