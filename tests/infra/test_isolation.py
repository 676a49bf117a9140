"""Tenant isolation is proven, not claimed (silo model; docs/isolation.md).

Part 1 deploys the REAL synthesized tenant template into moto's CloudFormation
for tenants A and B (and a canary), assumes each tenant role and makes real S3/IAM/... calls with
its credentials under moto's IAM enforcement; the cases moto cannot express
(conditions, non-S3 resource ARNs, iam:PassRole) go through the offline
evaluator in isolation_support, which also re-checks every moto case. Mutation
tests put deliberately broadened (and narrowed) policies on a third tenant's
role and show exactly the cases that should flip do flip, in both evaluators.

Part 2 scans the synthesized platform template: who may pass roles to
SageMaker, who may start pipeline executions, what the tenant role trusts, and
where it has "*" resources.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.infra.isolation_support import (
    ACCOUNT,
    Decision,
    DeployedTenant,
    Request,
    deploy_tenant,
    evaluate,
    grants_action,
    inline_policies,
    observe,
    policy_replaced,
    principals,
    render,
    roles_granted,
)
from tests.infra.synth_support import Synth
from tests.infra.synth_support import resources as resources_of

pytestmark = pytest.mark.infra

DOC = Path(__file__).resolve().parents[2] / "docs" / "isolation.md"
STEP_CODE_KEY = "code/pipeline/v1/preprocess.py"
TEMPLATE_KEY = "templates/tenant-stack-silo.template.json"
UPLOAD_KEY = "data/train.csv"
MODEL_KEY = "artifacts/run-1/model/model.tar.gz"
# An AWS-owned account that hosts the built-in SageMaker images (us-east-1 XGBoost).
SAGEMAKER_IMAGES_ACCOUNT = "683313688378"


# --------------------------------------------------------------------------- #
# The world: two tenants (and a canary for mutations) from the real template
# --------------------------------------------------------------------------- #


@dataclass
class World:
    synth: Synth
    tenants: dict[str, DeployedTenant]
    platform_bucket: str
    queue_url: str
    queue_arn: str

    @property
    def region(self) -> str:
        return self.synth.settings.region


@dataclass
class Pair:
    """Tenant A (whose credentials make the calls) and tenant B (the victim)."""

    world: World
    a: DeployedTenant
    b: DeployedTenant
    _clients: dict[str, Any] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.a.client(service)
        return self._clients[service]

    def values(self) -> dict[str, str]:
        names = self.world.synth.names
        return {
            "account": ACCOUNT,
            "region": self.world.region,
            "a_bucket": self.a.bucket,
            "b_bucket": self.b.bucket,
            "b_id": self.b.tenant_id,
            "a_role_arn": self.a.role_arn,
            "b_role_arn": self.b.role_arn,
            "b_group": self.b.outputs["ModelPackageGroupName"],
            "b_stack": self.b.stack_name,
            "platform": self.world.platform_bucket,
            "pipeline": names.pipeline_name,
            "tenants_table": names.tenants_table,
            "queue": self.world.queue_arn.rsplit(":", 1)[1],
            "recorder": names.function("recorder"),
            "b_rule": names.tenant_rule(self.b.tenant_id),
        }


@pytest.fixture(scope="module")
def world(synth: Synth) -> Iterator[World]:
    from moto import mock_aws

    settings, names = synth.settings, synth.names
    region = settings.region
    plan = next(iter(settings.plans))
    with pytest.MonkeyPatch.context() as env:
        # The embedded stack points boto3 elsewhere; these calls must reach mock_aws.
        for key in [k for k in os.environ if k.startswith("AWS_ENDPOINT_URL")]:
            env.delenv(key)
        with mock_aws():
            s3 = boto3.client("s3", region_name=region)
            platform = names.platform_bucket(ACCOUNT)
            if region == "us-east-1":
                s3.create_bucket(Bucket=platform)
            else:
                s3.create_bucket(
                    Bucket=platform, CreateBucketConfiguration={"LocationConstraint": region}
                )
            sqs = boto3.client("sqs", region_name=region)
            queue_url = sqs.create_queue(QueueName=names.intake_queue(plan))["QueueUrl"]
            queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
                "Attributes"
            ]["QueueArn"]
            tenants = {
                tenant_id: deploy_tenant(
                    synth.tenant_json, tenant_id, plan=plan, queue_arn=queue_arn, region=region
                )
                for tenant_id in ("acme", "globex", "canary")
            }
            for key in (STEP_CODE_KEY, TEMPLATE_KEY):
                s3.put_object(Bucket=platform, Key=key, Body=b"platform")
            for tenant in tenants.values():
                s3.put_object(Bucket=tenant.bucket, Key=UPLOAD_KEY, Body=b"x,y\n1,2\n")
                s3.put_object(Bucket=tenant.bucket, Key=MODEL_KEY, Body=b"model")
                s3.put_object(
                    Bucket=platform,
                    Key=f"access-logs/{tenant.tenant_id}/2030-01-01-00-00-00-LOG",
                    Body=b"log",
                )
            yield World(synth, tenants, platform, queue_url, queue_arn)


def _pair(world: World, a: str, b: str) -> Pair:
    return Pair(world, world.tenants[a], world.tenants[b])


# --------------------------------------------------------------------------- #
# The cases: what tenant A's role must and must not reach
# --------------------------------------------------------------------------- #

Probe = Callable[[Pair], Any]


@dataclass(frozen=True)
class Case:
    behaviour: str
    action: str
    resource: str  # str.format template over Pair.values()
    expected: Decision
    probe: Probe | None = None  # the real API call; None = moto cannot express it
    context: Mapping[str, str] = field(default_factory=dict)
    offline_because: str = ""  # why there is no moto probe

    def request(self, pair: Pair) -> Request:
        return Request(self.action, self.resource.format(**pair.values()), self.context)


def _s3(method: str, **kwargs: str) -> Probe:
    def probe(p: Pair) -> Any:
        args = {k: v.format(**p.values()) for k, v in kwargs.items()}
        return getattr(p.client("s3"), method)(**args)

    return probe


# Why a case has no moto probe (keys explained in docs/isolation.md).
MOTO_IGNORES_CONDITIONS = "condition"  # moto ignores s3:prefix, cloudwatch:namespace
MOTO_RESOURCE_STAR = "resource"  # moto checks logs/ECR calls against "*", not the ARN
MOTO_LAMBDA_ACTION = "action"  # moto evaluates lambda:Invoke, not lambda:InvokeFunction
NOT_AN_API = "passrole"  # iam:PassRole is checked inside other APIs; moto never does

CASES: tuple[Case, ...] = (
    # --- A's own bucket: read data and artifacts, write artifacts only
    Case(
        "reads_own_uploads",
        "s3:GetObject",
        "arn:aws:s3:::{a_bucket}/" + UPLOAD_KEY,
        "allow",
        _s3("get_object", Bucket="{a_bucket}", Key=UPLOAD_KEY),
    ),
    Case(
        "reads_own_artifacts",
        "s3:GetObject",
        "arn:aws:s3:::{a_bucket}/" + MODEL_KEY,
        "allow",
        _s3("get_object", Bucket="{a_bucket}", Key=MODEL_KEY),
    ),
    Case(
        "lists_own_upload_prefix",
        "s3:ListBucket",
        "arn:aws:s3:::{a_bucket}",
        "allow",
        _s3("list_objects_v2", Bucket="{a_bucket}", Prefix="data/"),
        context={"s3:prefix": "data/"},
    ),
    Case(
        "lists_own_artifacts_prefix",
        "s3:ListBucket",
        "arn:aws:s3:::{a_bucket}",
        "allow",
        _s3("list_objects_v2", Bucket="{a_bucket}", Prefix="artifacts/run-1/"),
        context={"s3:prefix": "artifacts/run-1/"},
    ),
    Case(
        "writes_own_artifacts",
        "s3:PutObject",
        "arn:aws:s3:::{a_bucket}/artifacts/run-1/evaluation/evaluation.json",
        "allow",
        _s3(
            "put_object",
            Bucket="{a_bucket}",
            Key="artifacts/run-1/evaluation/evaluation.json",
            Body="{{}}",
        ),
    ),
    Case(
        "cannot_write_own_uploads",
        "s3:PutObject",
        "arn:aws:s3:::{a_bucket}/data/injected.csv",
        "deny",
        _s3("put_object", Bucket="{a_bucket}", Key="data/injected.csv", Body="1"),
    ),
    Case(
        "cannot_delete_own_uploads",
        "s3:DeleteObject",
        "arn:aws:s3:::{a_bucket}/" + UPLOAD_KEY,
        "deny",
        _s3("delete_object", Bucket="{a_bucket}", Key=UPLOAD_KEY),
    ),
    Case(
        "cannot_list_own_bucket_outside_its_prefixes",
        "s3:ListBucket",
        "arn:aws:s3:::{a_bucket}",
        "deny",
        offline_because=MOTO_IGNORES_CONDITIONS,
    ),
    Case(
        "cannot_change_own_bucket_policy",
        "s3:PutBucketPolicy",
        "arn:aws:s3:::{a_bucket}",
        "deny",
        _s3("put_bucket_policy", Bucket="{a_bucket}", Policy="{{}}"),
    ),
    Case(
        "cannot_delete_own_bucket",
        "s3:DeleteBucket",
        "arn:aws:s3:::{a_bucket}",
        "deny",
        _s3("delete_bucket", Bucket="{a_bucket}"),
    ),
    # --- B's bucket: nothing
    Case(
        "cannot_read_other_tenant_uploads",
        "s3:GetObject",
        "arn:aws:s3:::{b_bucket}/" + UPLOAD_KEY,
        "deny",
        _s3("get_object", Bucket="{b_bucket}", Key=UPLOAD_KEY),
    ),
    Case(
        "cannot_read_other_tenant_artifacts",
        "s3:GetObject",
        "arn:aws:s3:::{b_bucket}/" + MODEL_KEY,
        "deny",
        _s3("get_object", Bucket="{b_bucket}", Key=MODEL_KEY),
    ),
    Case(
        "cannot_write_other_tenant_artifacts",
        "s3:PutObject",
        "arn:aws:s3:::{b_bucket}/artifacts/run-1/model/model.tar.gz",
        "deny",
        _s3("put_object", Bucket="{b_bucket}", Key=MODEL_KEY, Body="poisoned"),
    ),
    Case(
        "cannot_write_other_tenant_uploads",
        "s3:PutObject",
        "arn:aws:s3:::{b_bucket}/data/poison.csv",
        "deny",
        _s3("put_object", Bucket="{b_bucket}", Key="data/poison.csv", Body="1"),
    ),
    Case(
        "cannot_list_other_tenant_bucket",
        "s3:ListBucket",
        "arn:aws:s3:::{b_bucket}",
        "deny",
        _s3("list_objects_v2", Bucket="{b_bucket}", Prefix="data/"),
        context={"s3:prefix": "data/"},
    ),
    Case(
        "cannot_enumerate_buckets",
        "s3:ListAllMyBuckets",
        "*",
        "deny",
        lambda p: p.client("s3").list_buckets(),
    ),
    # --- the platform bucket: the step code under code/, read-only; nothing else
    Case(
        "reads_pipeline_step_code",
        "s3:GetObject",
        "arn:aws:s3:::{platform}/" + STEP_CODE_KEY,
        "allow",
        _s3("get_object", Bucket="{platform}", Key=STEP_CODE_KEY),
    ),
    Case(
        "lists_pipeline_step_code",
        "s3:ListBucket",
        "arn:aws:s3:::{platform}",
        "allow",
        _s3("list_objects_v2", Bucket="{platform}", Prefix=STEP_CODE_KEY),
        context={"s3:prefix": STEP_CODE_KEY},
    ),
    Case(
        "cannot_list_platform_bucket_outside_code",
        "s3:ListBucket",
        "arn:aws:s3:::{platform}",
        "deny",
        context={"s3:prefix": "access-logs/"},
        offline_because=MOTO_IGNORES_CONDITIONS,
    ),
    Case(
        "cannot_overwrite_pipeline_step_code",
        "s3:PutObject",
        "arn:aws:s3:::{platform}/" + STEP_CODE_KEY,
        "deny",
        _s3("put_object", Bucket="{platform}", Key=STEP_CODE_KEY, Body="import os"),
    ),
    Case(
        "cannot_read_tenant_templates",
        "s3:GetObject",
        "arn:aws:s3:::{platform}/" + TEMPLATE_KEY,
        "deny",
        _s3("get_object", Bucket="{platform}", Key=TEMPLATE_KEY),
    ),
    Case(
        "cannot_read_other_tenant_access_logs",
        "s3:GetObject",
        "arn:aws:s3:::{platform}/access-logs/{b_id}/2030-01-01-00-00-00-LOG",
        "deny",
        _s3("get_object", Bucket="{platform}", Key="access-logs/{b_id}/2030-01-01-00-00-00-LOG"),
    ),
    # --- other services: the control plane is out of reach
    Case(
        "cannot_start_pipeline_executions",
        "sagemaker:StartPipelineExecution",
        "arn:aws:sagemaker:{region}:{account}:pipeline/{pipeline}",
        "deny",
        lambda p: p.client("sagemaker").start_pipeline_execution(
            PipelineName=p.values()["pipeline"]
        ),
    ),
    Case(
        "cannot_register_models_in_other_tenant_group",
        "sagemaker:CreateModelPackage",
        "arn:aws:sagemaker:{region}:{account}:model-package/{b_group}/1",
        "deny",
        lambda p: p.client("sagemaker").create_model_package(
            ModelPackageGroupName=p.values()["b_group"]
        ),
    ),
    Case(
        "cannot_assume_other_tenant_role",
        "sts:AssumeRole",
        "{b_role_arn}",
        "deny",
        lambda p: p.client("sts").assume_role(RoleArn=p.b.role_arn, RoleSessionName="steal"),
    ),
    Case(
        "cannot_pass_other_tenant_role",
        "iam:PassRole",
        "{b_role_arn}",
        "deny",
        context={"iam:PassedToService": "sagemaker.amazonaws.com"},
        offline_because=NOT_AN_API,
    ),
    Case(
        "cannot_change_own_permissions",
        "iam:PutRolePolicy",
        "{a_role_arn}",
        "deny",
        lambda p: p.client("iam").put_role_policy(
            RoleName=p.a.role_name,
            PolicyName="escalate",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
                }
            ),
        ),
    ),
    Case(
        "cannot_read_tenant_registry",
        "dynamodb:GetItem",
        "arn:aws:dynamodb:{region}:{account}:table/{tenants_table}",
        "deny",
        lambda p: p.client("dynamodb").get_item(
            TableName=p.values()["tenants_table"], Key={"tenantId": {"S": p.b.tenant_id}}
        ),
    ),
    Case(
        "cannot_forge_upload_events",
        "sqs:SendMessage",
        "arn:aws:sqs:{region}:{account}:{queue}",
        "deny",
        lambda p: p.client("sqs").send_message(QueueUrl=p.world.queue_url, MessageBody="{}"),
    ),
    Case(
        "cannot_invoke_run_recorder",
        "lambda:InvokeFunction",
        "arn:aws:lambda:{region}:{account}:function:{recorder}",
        "deny",
        offline_because=MOTO_LAMBDA_ACTION,
    ),
    Case(
        "cannot_change_upload_rules",
        "events:PutRule",
        "arn:aws:events:{region}:{account}:rule/{b_rule}",
        "deny",
        lambda p: p.client("events").put_rule(
            Name=p.values()["b_rule"], EventPattern=json.dumps({"source": ["aws.s3"]})
        ),
    ),
    Case(
        "cannot_delete_tenant_stacks",
        "cloudformation:DeleteStack",
        "arn:aws:cloudformation:{region}:{account}:stack/{b_stack}/*",
        "deny",
        lambda p: p.client("cloudformation").delete_stack(StackName=p.b.stack_name),
    ),
    # --- what SageMaker jobs need outside S3
    Case(
        "gets_ecr_login_token",
        "ecr:GetAuthorizationToken",
        "*",
        "allow",
        lambda p: p.client("ecr").get_authorization_token(),
    ),
    Case(
        "pulls_builtin_sagemaker_images",
        "ecr:BatchGetImage",
        "arn:aws:ecr:{region}:" + SAGEMAKER_IMAGES_ACCOUNT + ":repository/sagemaker-xgboost",
        "allow",
        offline_because=MOTO_RESOURCE_STAR,
    ),
    Case(
        "cannot_pull_other_repositories",
        "ecr:BatchGetImage",
        "arn:aws:ecr:{region}:{account}:repository/private-models",
        "deny",
        offline_because=MOTO_RESOURCE_STAR,
    ),
    Case(
        "writes_job_logs",
        "logs:PutLogEvents",
        "arn:aws:logs:{region}:{account}:log-group:/aws/sagemaker/TrainingJobs"
        ":log-stream:job-1/algo-1",
        "allow",
        offline_because=MOTO_RESOURCE_STAR,
    ),
    Case(
        "cannot_write_platform_logs",
        "logs:PutLogEvents",
        "arn:aws:logs:{region}:{account}:log-group:/aws/lambda/{recorder}:log-stream:x",
        "deny",
        offline_because=MOTO_RESOURCE_STAR,
    ),
    Case(
        "publishes_job_metrics",
        "cloudwatch:PutMetricData",
        "*",
        "allow",
        context={"cloudwatch:namespace": "/aws/sagemaker/TrainingJobs"},
        offline_because=MOTO_IGNORES_CONDITIONS,
    ),
    Case(
        "cannot_publish_platform_metrics",
        "cloudwatch:PutMetricData",
        "*",
        "deny",
        context={"cloudwatch:namespace": "Trainyard"},
        offline_because=MOTO_IGNORES_CONDITIONS,
    ),
)
CASE_BY_NAME = {case.behaviour: case for case in CASES}
assert len(CASE_BY_NAME) == len(CASES)


@dataclass(frozen=True)
class Outcome:
    case: Case
    resource: str
    moto: Decision | None  # None: not expressible in moto
    offline: Decision

    @property
    def holds(self) -> bool:
        return self.offline == self.case.expected and self.moto in (None, self.case.expected)


def run_case(pair: Pair, case: Case) -> Outcome:
    request = case.request(pair)
    offline = evaluate(list(inline_policies(pair.a.role_name).values()), request)
    moto = observe(lambda: case.probe(pair), case.action).decision if case.probe else None
    return Outcome(case, request.resource, moto, offline)


def broken(pair: Pair) -> set[str]:
    return {c.behaviour for c in CASES if not run_case(pair, c).holds}


# --------------------------------------------------------------------------- #
# Part 1: the deployed tenant role, in moto and offline
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(("a", "b"), [("acme", "globex"), ("globex", "acme")])
@pytest.mark.parametrize("behaviour", list(CASE_BY_NAME))
def test_tenant_role(world: World, a: str, b: str, behaviour: str) -> None:
    outcome = run_case(_pair(world, a, b), CASE_BY_NAME[behaviour])
    assert outcome.offline == outcome.case.expected, outcome
    if outcome.case.probe is not None:
        assert outcome.moto == outcome.case.expected, outcome


def test_the_deployed_role_is_the_documented_one(world: World) -> None:
    """The stacks really created the template's role: path (PassRole scope), name,
    and the one inline policy the cases evaluate."""
    names = world.synth.names
    for tenant in world.tenants.values():
        assert tenant.role_arn == (
            f"arn:aws:iam::{ACCOUNT}:role{names.tenant_role_path}"
            f"{names.tenant_role(tenant.tenant_id)}"
        )
        assert tenant.bucket == names.silo_bucket(tenant.tenant_id, ACCOUNT)
        assert list(inline_policies(tenant.role_name)) == ["TenantJobAccess"]


def test_moto_cannot_see_the_s3_prefix_condition(world: World) -> None:
    """Why the condition cases are offline: moto lets an unprefixed listing through
    that AWS (and the offline evaluator) deny. If moto learns conditions, move the
    MOTO_IGNORES_CONDITIONS cases to moto probes."""
    pair = _pair(world, "acme", "globex")
    case = CASE_BY_NAME["cannot_list_own_bucket_outside_its_prefixes"]
    seen = observe(lambda: pair.client("s3").list_objects_v2(Bucket=pair.a.bucket), case.action)
    assert seen.decision == "allow"
    assert run_case(pair, case).offline == "deny"


def _statement(doc: dict[str, Any], sid: str) -> dict[str, Any]:
    return next(s for s in doc["Statement"] if s["Sid"] == sid)


def _mutate(doc: dict[str, Any], sid: str, **changes: Any) -> None:
    statement = _statement(doc, sid)
    for key, value in changes.items():
        if value is None:
            statement.pop(key, None)
        else:
            statement[key] = value


def _broaden_reads(doc: dict[str, Any]) -> None:
    _mutate(
        doc,
        "ReadOwnData",
        Resource=["arn:aws:s3:::trainyard-*/data/*", "arn:aws:s3:::trainyard-*/artifacts/*"],
    )


def _write_whole_bucket(doc: dict[str, Any]) -> None:
    own = _statement(doc, "BucketLocation")["Resource"]
    _mutate(doc, "WriteOwnArtifacts", Resource=f"{own}/*")


def _list_without_condition(doc: dict[str, Any]) -> None:
    _mutate(doc, "ListOwnPrefixes", Condition=None)


def _read_whole_platform_bucket(doc: dict[str, Any]) -> None:
    code = _statement(doc, "ReadPipelineCode")["Resource"]
    _mutate(doc, "ReadPipelineCode", Resource=code.replace("/code/*", "/*"))


def _unrelated_services(doc: dict[str, Any]) -> None:
    doc["Statement"].append({"Effect": "Allow", "Action": ["dynamodb:*", "sqs:*"], "Resource": "*"})


def _no_artifact_writes(doc: dict[str, Any]) -> None:
    doc["Statement"].remove(_statement(doc, "WriteOwnArtifacts"))


def _no_step_code_listing(doc: dict[str, Any]) -> None:
    # The policy as it was before ListPipelineCode: the jobs' code download failed.
    doc["Statement"].remove(_statement(doc, "ListPipelineCode"))


def _metrics_without_namespace(doc: dict[str, Any]) -> None:
    _mutate(doc, "JobMetrics", Condition=None)


def _pass_tenant_roles(doc: dict[str, Any]) -> None:
    doc["Statement"].append(
        {
            "Effect": "Allow",
            "Action": "iam:PassRole",
            "Resource": f"arn:aws:iam::{ACCOUNT}:role/trainyard/tenants/*",
        }
    )


MUTATIONS: dict[str, tuple[Callable[[dict[str, Any]], None], set[str]]] = {
    "reads_every_tenant_bucket": (
        _broaden_reads,
        {"cannot_read_other_tenant_uploads", "cannot_read_other_tenant_artifacts"},
    ),
    "writes_anywhere_in_own_bucket": (_write_whole_bucket, {"cannot_write_own_uploads"}),
    "lists_without_prefix_condition": (
        _list_without_condition,
        {"cannot_list_own_bucket_outside_its_prefixes"},
    ),
    "reads_whole_platform_bucket": (
        _read_whole_platform_bucket,
        {"cannot_read_tenant_templates", "cannot_read_other_tenant_access_logs"},
    ),
    "calls_unrelated_services": (
        _unrelated_services,
        {"cannot_read_tenant_registry", "cannot_forge_upload_events"},
    ),
    "cannot_write_artifacts_any_more": (_no_artifact_writes, {"writes_own_artifacts"}),
    "cannot_list_step_code": (_no_step_code_listing, {"lists_pipeline_step_code"}),
    "metrics_in_any_namespace": (
        _metrics_without_namespace,
        {"cannot_publish_platform_metrics"},
    ),
    "passes_tenant_roles": (_pass_tenant_roles, {"cannot_pass_other_tenant_role"}),
}


def test_cases_all_hold_for_the_canary_before_mutation(world: World) -> None:
    assert broken(_pair(world, "canary", "globex")) == set()


@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_a_changed_policy_breaks_exactly_the_cases_it_should(world: World, mutation: str) -> None:
    """Each case can fail: a deliberately broadened (or narrowed) policy on the
    canary tenant's role flips exactly the cases it must, and no others."""
    change, expected_broken = MUTATIONS[mutation]
    pair = _pair(world, "canary", "globex")
    documents = copy.deepcopy(inline_policies(pair.a.role_name))
    change(documents["TenantJobAccess"])
    with policy_replaced(pair.a.role_name, documents):
        assert broken(pair) == expected_broken


def test_broadened_reads_are_caught_by_moto_itself(world: World) -> None:
    """The moto half is not decorative: with the offline evaluator out of the
    picture, real S3 calls signed by the broadened role reach tenant B's data."""
    pair = _pair(world, "canary", "globex")
    documents = copy.deepcopy(inline_policies(pair.a.role_name))
    _broaden_reads(documents["TenantJobAccess"])
    case = CASE_BY_NAME["cannot_read_other_tenant_uploads"]
    assert case.probe is not None
    with policy_replaced(pair.a.role_name, documents):
        assert observe(lambda: case.probe(pair), case.action).decision == "allow"
    assert observe(lambda: case.probe(pair), case.action).decision == "deny"


# --------------------------------------------------------------------------- #
# Part 2: structural proofs on the synthesized templates
# --------------------------------------------------------------------------- #

SAGEMAKER = "sagemaker.amazonaws.com"


def _rendered(synth: Synth, value: Any) -> Any:
    return render(value, region=synth.settings.region)


def _pipeline_role(template: Mapping[str, Any]) -> str:
    (pipeline,) = resources_of(template, "AWS::SageMaker::Pipeline").values()
    return pipeline["Properties"]["RoleArn"]["Fn::GetAtt"][0]


def pass_role_violations(synth: Synth, template: Mapping[str, Any]) -> list[str]:
    """Every statement that may pass a role to SageMaker must be the pipeline role's,
    limited to the tenant role path and to SageMaker by iam:PassedToService."""
    tenant_roles = f"arn:aws:iam::{ACCOUNT}:role{synth.names.tenant_role_path}*"
    pipeline_role = _pipeline_role(template)
    found = []
    for lid, principal in principals(template).items():
        for statement in principal.statements:
            if not grants_action(statement, "iam:PassRole"):
                continue
            passed_to = (
                statement.get("Condition", {}).get("StringEquals", {}).get("iam:PassedToService")
            )
            if passed_to is None:
                found.append(f"{lid}: iam:PassRole without iam:PassedToService")
            elif SAGEMAKER in (passed_to if isinstance(passed_to, list) else [passed_to]):
                if lid != pipeline_role:
                    found.append(f"{lid}: passes roles to SageMaker")
                resources = _rendered(synth, statement["Resource"])
                if resources not in (tenant_roles, [tenant_roles]):
                    found.append(f"{lid}: passes {resources!r} to SageMaker")
    return found


def test_only_the_pipeline_role_passes_roles_to_sagemaker_and_only_tenant_roles(
    synth: Synth,
) -> None:
    assert pass_role_violations(synth, synth.platform_json) == []
    # ...and the pipeline role does pass them (the check is not vacuous).
    pipeline_role = principals(synth.platform_json)[_pipeline_role(synth.platform_json)]
    assert any(grants_action(s, "iam:PassRole") for s in pipeline_role.statements)


@pytest.mark.parametrize(
    "broadening",
    ["any_role", "no_condition", "another_role_passes_to_sagemaker", "wildcard_action"],
)
def test_pass_role_check_catches_broadened_statements(synth: Synth, broadening: str) -> None:
    template = copy.deepcopy(synth.platform_json)
    pipeline_role = _pipeline_role(template)
    policy = next(
        p
        for p in resources_of(template, "AWS::IAM::Policy").values()
        if any(r.get("Ref") == pipeline_role for r in p["Properties"]["Roles"])
    )
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    passing = next(s for s in statements if s.get("Sid") == "PassTenantRolesToSageMaker")
    if broadening == "any_role":
        passing["Resource"] = "*"
    elif broadening == "no_condition":
        del passing["Condition"]
    else:
        scheduler = _scheduler_role(template)
        extra = copy.deepcopy(passing)
        if broadening == "wildcard_action":
            extra["Action"] = "iam:*"
        template["Resources"]["Injected"] = {
            "Type": "AWS::IAM::Policy",
            "Properties": {
                "PolicyName": "Injected",
                "Roles": [{"Ref": scheduler}],
                "PolicyDocument": {"Version": "2012-10-17", "Statement": [extra]},
            },
        }
    assert pass_role_violations(synth, template) != []


def _scheduler_role(template: Mapping[str, Any]) -> str:
    (role,) = [
        lid
        for lid, p in principals(template).items()
        if any(u.endswith(" trainyard-scheduler") for u in p.used_by)
    ]
    return role


def test_only_the_scheduler_can_start_pipeline_executions(synth: Synth) -> None:
    template = synth.platform_json
    scheduler_role = _scheduler_role(template)
    assert roles_granted(template, "sagemaker:StartPipelineExecution") == {scheduler_role}
    # The scheduler's role is its own: no other function or service runs with it.
    assert principals(template)[scheduler_role].used_by == [
        f"AWS::Lambda::Function {synth.names.function('scheduler')}"
    ]
    # And no role of the platform holds an AWS-managed policy the scan cannot read,
    # except API Gateway's account logging role (its policy is CloudWatch Logs only).
    for lid, principal in principals(template).items():
        for arn in principal.managed_policy_arns:
            assert str(_rendered(synth, arn)).endswith(
                ":iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"
            ), lid


def test_start_pipeline_check_catches_a_wildcard_grant(synth: Synth) -> None:
    template = copy.deepcopy(synth.platform_json)
    onboarding = next(
        lid
        for lid, p in principals(template).items()
        if any(u.endswith(" trainyard-onboarding") for u in p.used_by)
    )
    template["Resources"]["Injected"] = {
        "Type": "AWS::IAM::Policy",
        "Properties": {
            "PolicyName": "Injected",
            "Roles": [{"Ref": onboarding}],
            "PolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "sagemaker:Start*", "Resource": "*"}],
            },
        },
    }
    assert roles_granted(template, "sagemaker:StartPipelineExecution") == {
        _scheduler_role(template),
        onboarding,
    }


def tenant_trust_violations(template: Mapping[str, Any]) -> list[str]:
    found = []
    (role,) = resources_of(template, "AWS::IAM::Role").values()
    for statement in role["Properties"]["AssumeRolePolicyDocument"]["Statement"]:
        if statement["Effect"] != "Allow":
            continue
        if statement.get("Principal") != {"Service": SAGEMAKER}:
            found.append(f"trusts {statement.get('Principal')!r}")
        if statement.get("Action") != "sts:AssumeRole":
            found.append(f"trust allows {statement.get('Action')!r}")
        if statement.get("Condition") != {
            "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
        }:
            found.append(f"trust condition {statement.get('Condition')!r}")
    return found


def test_tenant_role_trusts_only_sagemaker_on_behalf_of_this_account(synth: Synth) -> None:
    assert tenant_trust_violations(synth.tenant_json) == []


@pytest.mark.parametrize("broadening", ["any_aws_principal", "no_source_account", "lambda"])
def test_trust_check_catches_broadened_trust(synth: Synth, broadening: str) -> None:
    template = copy.deepcopy(synth.tenant_json)
    (role,) = resources_of(template, "AWS::IAM::Role").values()
    (statement,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    if broadening == "any_aws_principal":
        statement["Principal"] = {"AWS": "*", "Service": SAGEMAKER}
    elif broadening == "no_source_account":
        del statement["Condition"]
    else:
        role["Properties"]["AssumeRolePolicyDocument"]["Statement"].append(
            {**statement, "Principal": {"Service": "lambda.amazonaws.com"}}
        )
    assert tenant_trust_violations(template) != []


# Where the tenant role may have a wildcard resource, and why AWS leaves no choice.
ALLOWED_STAR_RESOURCES = {
    "EcrLogin": (["ecr:GetAuthorizationToken"], None),
    "JobMetrics": (
        ["cloudwatch:PutMetricData"],
        {"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}},
    ),
}


def star_resources(template: Mapping[str, Any]) -> dict[str, tuple[list[str], Any]]:
    """Statements of the tenant role whose resource is "*" (or NotResource/NotAction)."""
    (role,) = resources_of(template, "AWS::IAM::Role").values()
    found: dict[str, tuple[list[str], Any]] = {}
    for policy in role["Properties"]["Policies"]:
        for statement in policy["PolicyDocument"]["Statement"]:
            resources = statement.get("Resource", "*")
            listed = resources if isinstance(resources, list) else [resources]
            if "*" in listed or "NotResource" in statement or "NotAction" in statement:
                actions = statement.get("Action", [])
                found[statement.get("Sid", "?")] = (
                    actions if isinstance(actions, list) else [actions],
                    statement.get("Condition"),
                )
    return found


def test_tenant_role_star_resources_are_only_where_aws_requires_them(synth: Synth) -> None:
    assert star_resources(synth.tenant_json) == ALLOWED_STAR_RESOURCES
    # The other wildcards are inside scoped ARNs (listed in docs/isolation.md).
    (role,) = resources_of(synth.tenant_json, "AWS::IAM::Role").values()
    patterns = {
        s["Sid"]: _rendered(synth, s["Resource"])
        for p in role["Properties"]["Policies"]
        for s in p["PolicyDocument"]["Statement"]
        if s["Sid"] in ("JobLogs", "PullSageMakerImages")
    }
    region = synth.settings.region
    assert patterns == {
        "JobLogs": [
            f"arn:aws:logs:{region}:{ACCOUNT}:log-group:/aws/sagemaker/*",
            f"arn:aws:logs:{region}:{ACCOUNT}:log-group:/aws/sagemaker/*:log-stream:*",
        ],
        "PullSageMakerImages": f"arn:aws:ecr:{region}:*:repository/sagemaker-*",
    }


def test_star_resource_check_catches_a_new_wildcard(synth: Synth) -> None:
    template = copy.deepcopy(synth.tenant_json)
    (role,) = resources_of(template, "AWS::IAM::Role").values()
    role["Properties"]["Policies"][0]["PolicyDocument"]["Statement"].append(
        {"Sid": "Oops", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}
    )
    assert "Oops" in star_resources(template)


def resource_policy_grants(template: Mapping[str, Any]) -> list[str]:
    """Allow statements of resource policies whose principal is not an AWS service:
    the only way a tenant role could gain access beyond its identity policy."""
    found = []
    kinds = {
        "AWS::S3::BucketPolicy": "PolicyDocument",
        "AWS::SQS::QueuePolicy": "PolicyDocument",
        "AWS::SNS::TopicPolicy": "PolicyDocument",
    }
    for lid, res in template["Resources"].items():
        if res["Type"] in kinds:
            for statement in res["Properties"][kinds[res["Type"]]]["Statement"]:
                principal = statement.get("Principal", {})
                if statement["Effect"] == "Allow" and (
                    not isinstance(principal, dict) or set(principal) != {"Service"}
                ):
                    found.append(f"{lid}: {principal!r}")
        elif res["Type"] == "AWS::Lambda::Permission" and not str(
            res["Properties"]["Principal"]
        ).endswith(".amazonaws.com"):
            found.append(f"{lid}: {res['Properties']['Principal']!r}")
    return found


def test_resource_policies_grant_nothing_to_roles(synth: Synth) -> None:
    """Tenant bucket policy (skipped by moto) and every platform resource policy only
    deny, or allow AWS services: nothing widens what a tenant role may do."""
    assert resource_policy_grants(synth.tenant_json) == []
    assert resource_policy_grants(synth.platform_json) == []
    template = copy.deepcopy(synth.tenant_json)
    (policy,) = resources_of(template, "AWS::S3::BucketPolicy").values()
    policy["Properties"]["PolicyDocument"]["Statement"].append(
        {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "s3:GetObject", "Resource": "*"}
    )
    assert resource_policy_grants(template) != []


# --------------------------------------------------------------------------- #
# The documented table is the proven one
# --------------------------------------------------------------------------- #


def proven_table(world: World) -> str:
    pair = _pair(world, "acme", "globex")
    rows = [
        "| case (test id) | principal | action | resource | expected | moto | offline |",
        "|---|---|---|---|---|---|---|",
    ]
    for case in CASES:
        outcome = run_case(pair, case)
        context = "".join(f" `{k}={v}`" for k, v in case.context.items())
        moto = outcome.moto or f"n/a ({case.offline_because})"
        rows.append(
            f"| {case.behaviour} | `{pair.a.role_name}` | `{case.action}`{context} "
            f"| `{outcome.resource}` | {case.expected} | {moto} | {outcome.offline} |"
        )
    return "\n".join(rows)


def test_docs_show_the_proven_cases(world: World) -> None:
    table = proven_table(world)
    assert table in DOC.read_text(), "docs/isolation.md is stale; the proven table is:\n" + table
