"""Tenant isolation harness: an offline IAM evaluator, moto deployments of the
real tenant template, and a platform-template policy scanner.

Two evaluators, on purpose (docs/isolation.md explains the split):

- moto's identity-policy enforcement (`moto.core.enable_iam_authentication`):
  real boto3 calls, signed with credentials of the deployed tenant role. It
  matches actions and S3 resources well, but ignores every condition operator
  except StringEquals (and even that only for trust policies), checks non-S3/SQS/IAM
  services against resource "*", and signs CloudWatch as "monitoring:".
- `evaluate()` below: the project's own evaluator (`trainyard/local/iam/policy.py`,
  the one the embedded stack enforces) for the cases moto cannot express
  (s3:prefix, cloudwatch:namespace, logs/ECR ARNs, iam:PassRole). It fails
  closed: anything it does not model raises.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import boto3
from botocore.exceptions import ClientError

from trainyard.local.iam import policy
from trainyard.local.iam.policy import Request, UnsupportedPolicyError

__all__ = ["Request", "UnsupportedPolicyError", "evaluate", "grants_action"]

Decision = Literal["allow", "deny"]

# --------------------------------------------------------------------------- #
# Offline identity-policy evaluator: the project's one evaluator
# (trainyard/local/iam/policy.py, also enforced by the embedded stack)
# --------------------------------------------------------------------------- #


def evaluate(documents: Sequence[Mapping[str, Any]], request: Request) -> Decision:
    """Identity-policy decision for one request: an explicit Deny wins, then any
    Allow, else the implicit deny. (No SCPs, boundaries or session policies exist
    for tenant roles; resource policies are checked structurally.)"""
    return "allow" if policy.evaluate(documents, request).allowed else "deny"


def grants_action(statement: Mapping[str, Any], action: str) -> bool:
    """Does an Allow statement cover `action` (wildcards included), any resource?"""
    if statement.get("Effect") != "Allow":
        return False
    if "NotAction" in statement:
        return not any(
            policy.glob(a, action, case_sensitive=False) for a in _as_list(statement["NotAction"])
        )
    return any(policy.glob(a, action, case_sensitive=False) for a in _as_list(statement["Action"]))


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# --------------------------------------------------------------------------- #
# CloudFormation values -> strings (for structural checks of synthesized templates)
# --------------------------------------------------------------------------- #

ACCOUNT = "123456789012"  # moto's default account; also used to render templates


def render(value: Any, *, region: str, account: str = ACCOUNT) -> Any:
    """Resolve the intrinsics CDK emits in IAM policies into concrete strings.
    References to other resources render as `${LogicalId}` / `${LogicalId.Attr}`."""
    pseudo = {
        "AWS::Partition": "aws",
        "AWS::AccountId": account,
        "AWS::Region": region,
        "AWS::URLSuffix": "amazonaws.com",
    }
    if isinstance(value, list):
        return [render(v, region=region, account=account) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Ref"}:
        return pseudo.get(value["Ref"], "${" + value["Ref"] + "}")
    if set(value) == {"Fn::GetAtt"}:
        return "${" + ".".join(value["Fn::GetAtt"]) + "}"
    if set(value) == {"Fn::Join"}:
        sep, parts = value["Fn::Join"]
        return sep.join(str(render(p, region=region, account=account)) for p in parts)
    if set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
        return re.sub(r"\$\{([^}]+)\}", lambda m: pseudo.get(m[1], m[0]), value["Fn::Sub"])
    return {k: render(v, region=region, account=account) for k, v in value.items()}


def _ref_target(value: Any) -> str | None:
    if isinstance(value, dict):
        if "Ref" in value:
            return value["Ref"]
        if "Fn::GetAtt" in value:
            return value["Fn::GetAtt"][0]
    return None


def _references(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        target = _ref_target(value)
        if target:
            yield target
        for v in value.values():
            yield from _references(v)
    elif isinstance(value, list):
        for v in value:
            yield from _references(v)


@dataclass
class Principal:
    """One IAM role of a template, every statement that applies to it, and who uses it."""

    logical_id: str
    trust: list[dict[str, Any]]
    statements: list[dict[str, Any]] = field(default_factory=list)
    managed_policy_arns: list[Any] = field(default_factory=list)
    used_by: list[str] = field(default_factory=list)  # "<Type> <name or logical id>"


def principals(template: Mapping[str, Any]) -> dict[str, Principal]:
    """Every role of the template with the statements of its inline policies and of
    every AWS::IAM::Policy/ManagedPolicy attached to it. Raises on IAM users and
    groups, or a policy attached to something that is not a role of this template,
    so nothing escapes the scan."""
    resources = template["Resources"]
    out: dict[str, Principal] = {}
    for lid, res in resources.items():
        if res["Type"] in ("AWS::IAM::User", "AWS::IAM::Group", "AWS::IAM::AccessKey"):
            raise AssertionError(f"{lid}: {res['Type']} in the template escapes the role scan")
        if res["Type"] == "AWS::IAM::Role":
            props = res["Properties"]
            principal = Principal(lid, _as_list(props["AssumeRolePolicyDocument"]["Statement"]))
            for policy in props.get("Policies", []):
                principal.statements += _as_list(policy["PolicyDocument"]["Statement"])
            principal.managed_policy_arns = list(props.get("ManagedPolicyArns", []))
            out[lid] = principal
    for lid, res in resources.items():
        if res["Type"] not in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            continue
        props = res["Properties"]
        if props.get("Users") or props.get("Groups"):
            raise AssertionError(f"{lid} is attached to users or groups")
        roles = [_ref_target(r) for r in props.get("Roles", [])]
        if not roles or any(r not in out for r in roles):
            raise AssertionError(
                f"{lid} is attached to {props.get('Roles')!r}, not this template's roles"
            )
        for role in roles:
            out[role].statements += _as_list(props["PolicyDocument"]["Statement"])
    for lid, res in resources.items():
        if res["Type"] in ("AWS::IAM::Role", "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            continue
        props = res.get("Properties", {})
        name = props.get("FunctionName") or props.get("PipelineName") or lid
        for target in set(_references(props)) & set(out):
            out[target].used_by.append(f"{res['Type']} {name}")
    return out


def roles_granted(template: Mapping[str, Any], action: str) -> set[str]:
    """Logical ids of the roles with an Allow statement covering `action`."""
    return {
        lid
        for lid, principal in principals(template).items()
        if any(grants_action(s, action) for s in principal.statements)
    }


# --------------------------------------------------------------------------- #
# moto: the real tenant template, two tenants, credentials of their roles
# --------------------------------------------------------------------------- #

DENIED_CODES = {"AccessDenied", "AccessDeniedException"}
# 403s that mean "the harness signed wrong", never "IAM said no".
_AUTH_FAILURES = {
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "ExpiredToken",
    "InvalidToken",
}


@dataclass
class Observation:
    decision: Decision
    detail: str = ""


def observe(call: Callable[[], Any], action: str) -> Observation:
    """Run one AWS call with enforcement on; classify IAM's answer.

    moto answers a denied JSON-protocol call with an XML body and the HTTP status
    as error code; the IAM action it evaluated is in the message and must be the
    one the case names, otherwise the case tests something else than it claims."""
    from moto.core import enable_iam_authentication

    try:
        with enable_iam_authentication():
            call()
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        message = str(error)
        inner = re.search(r"<Code>([^<]+)</Code>", message)
        code = inner[1] if inner and code == "403" else code
        if code in _AUTH_FAILURES:
            raise AssertionError(f"credentials rejected, not an IAM decision: {message}") from error
        if code in DENIED_CODES:
            named = re.search(r"not authorized to perform: ([\w-]+:\w+)", message)
            if named and named[1].lower() != action.lower():
                raise AssertionError(
                    f"moto evaluated {named[1]}, the case says {action}"
                ) from error
            return Observation("deny", code)
        # Authorized, then failed on the resource itself (moto authorizes first).
        return Observation("allow", f"authorized, then {code}")
    return Observation("allow")


@dataclass
class DeployedTenant:
    tenant_id: str
    stack_name: str
    outputs: dict[str, str]
    role_name: str
    credentials: dict[str, str]
    region: str

    @property
    def bucket(self) -> str:
        return self.outputs["DataBucketName"]

    @property
    def role_arn(self) -> str:
        return self.outputs["RoleArn"]

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            region_name=self.region,
            aws_access_key_id=self.credentials["AccessKeyId"],
            aws_secret_access_key=self.credentials["SecretAccessKey"],
            aws_session_token=self.credentials["SessionToken"],
        )


def iam_backend() -> Any:
    from moto.iam.models import iam_backends

    return iam_backends[ACCOUNT]["aws"]


def inline_policies(role_name: str) -> dict[str, dict[str, Any]]:
    """The role's inline policies as moto holds them (intrinsics resolved by CFN)."""
    role = iam_backend().get_role(role_name)
    return {
        name: json.loads(doc) if isinstance(doc, str) else doc
        for name, doc in role.policies.items()
    }


def store_inline_policies(role_name: str, documents: Mapping[str, Mapping[str, Any]]) -> None:
    """(Re)store inline policies the way IAM's PutRolePolicy does.

    moto gap: a role created by moto's CloudFormation keeps its `Policies` as dicts,
    which its enforcement cannot read (KeyError 'policy_document'), and
    GetRolePolicy returns their Python repr. Re-putting the same, CFN-resolved
    documents through PutRolePolicy (which also validates them) fixes both."""
    iam = boto3.client("iam", region_name="us-east-1")  # IAM is global
    for name, document in documents.items():
        iam.put_role_policy(
            RoleName=role_name, PolicyName=name, PolicyDocument=json.dumps(document)
        )


def deploy_tenant(
    template: Mapping[str, Any], tenant_id: str, *, plan: str, queue_arn: str, region: str
) -> DeployedTenant:
    """CreateStack of the synthesized tenant template in moto, then the role's
    credentials (the test stands in for SageMaker assuming the role)."""
    cfn = boto3.client("cloudformation", region_name=region)
    # Not the "<prefix>-tenant-" stack names: the local runtime's CloudFormation shim
    # (trainyard/local/shims.py) may be installed in this process and acts on those.
    stack_name = f"isolation-{tenant_id}"
    cfn.create_stack(
        StackName=stack_name,
        TemplateBody=json.dumps(template),
        Parameters=[
            {"ParameterKey": "TenantId", "ParameterValue": tenant_id},
            {"ParameterKey": "PlanName", "ParameterValue": plan},
            {"ParameterKey": "IntakeQueueArn", "ParameterValue": queue_arn},
        ],
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )
    (stack,) = cfn.describe_stacks(StackName=stack_name)["Stacks"]
    if stack["StackStatus"] != "CREATE_COMPLETE":
        raise AssertionError(f"{stack_name}: {stack['StackStatus']}")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    role_name = outputs["RoleArn"].rsplit("/", 1)[1]
    store_inline_policies(role_name, inline_policies(role_name))
    # Assumed with enforcement off: moto cannot evaluate a Service principal in a
    # trust policy (the trust policy is proven structurally instead).
    credentials = boto3.client("sts", region_name=region).assume_role(
        RoleArn=outputs["RoleArn"], RoleSessionName=f"sagemaker-job-{tenant_id}"
    )["Credentials"]
    return DeployedTenant(
        tenant_id=tenant_id,
        stack_name=stack_name,
        outputs=outputs,
        role_name=role_name,
        credentials={k: credentials[k] for k in ("AccessKeyId", "SecretAccessKey", "SessionToken")},
        region=region,
    )


@contextmanager
def policy_replaced(role_name: str, documents: Mapping[str, Mapping[str, Any]]) -> Iterator[None]:
    """Temporarily give a deployed role other inline policies (mutation tests)."""
    original = inline_policies(role_name)
    store_inline_policies(role_name, documents)
    try:
        yield
    finally:
        iam = boto3.client("iam", region_name="us-east-1")
        for name in set(documents) - set(original):
            iam.delete_role_policy(RoleName=role_name, PolicyName=name)
        store_inline_policies(role_name, original)


# --------------------------------------------------------------------------- #
# Buckets and queues the platform stack owns (moto runs no platform stack)
# --------------------------------------------------------------------------- #


def create_bucket(name: str, *, region: str, eventbridge: bool = False) -> None:
    """A bucket the platform stack owns (created here, as moto has no platform stack).
    `eventbridge` turns on native S3 -> EventBridge delivery, as the pool bucket has."""
    s3 = boto3.client("s3", region_name=region)
    if region == "us-east-1":
        s3.create_bucket(Bucket=name)
    else:
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})
    if eventbridge:
        s3.put_bucket_notification_configuration(
            Bucket=name, NotificationConfiguration={"EventBridgeConfiguration": {}}
        )


def create_queue(name: str, *, region: str) -> tuple[str, str]:
    """(url, arn) of a new SQS queue."""
    sqs = boto3.client("sqs", region_name=region)
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    return url, arn


def drain(queue_url: str, *, region: str) -> list[dict[str, Any]]:
    """Every message body (JSON) on the queue, removing them."""
    sqs = boto3.client("sqs", region_name=region)
    bodies: list[dict[str, Any]] = []
    while True:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get(
            "Messages", []
        )
        if not messages:
            return bodies
        for message in messages:
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
