"""Tenant isolation is proven, not claimed (silo model; docs/isolation.md).

Part 1 deploys the REAL synthesized tenant template into moto's CloudFormation
for tenants A and B (and a canary), assumes each tenant role and makes real S3/IAM/... calls with
its credentials under moto's IAM enforcement; the cases moto cannot express
(conditions, non-S3 resource ARNs, iam:PassRole) go through the offline
evaluator in isolation_support, which also re-checks every moto case. Mutation
tests put deliberately broadened (and narrowed) policies on a third tenant's
role and show exactly the cases that should flip do flip, in both evaluators.
The world, the case table and the checks are the pool proof's too
(isolation_cases, isolation_table, isolation_checks); this module runs them for silo.

Part 2 scans the synthesized platform template: who may pass roles to
SageMaker, who may start pipeline executions, what the tenant role trusts, and
where it has "*" resources.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import pytest

from tests.infra import isolation_checks as checks
from tests.infra.isolation_cases import World, pair, world_fixture
from tests.infra.isolation_support import (
    ACCOUNT,
    grants_action,
    inline_policies,
    principals,
    render,
    roles_granted,
)
from tests.infra.synth_support import Synth
from tests.infra.synth_support import resources as resources_of

pytestmark = pytest.mark.infra
world = world_fixture("silo")

# --------------------------------------------------------------------------- #
# Part 1: the deployed tenant role, in moto and offline
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(("behaviour", "a", "b"), checks.case_params("silo"))
def test_tenant_role(world: World, behaviour: str, a: str, b: str) -> None:
    checks.check_case(world, a, b, behaviour)


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
    p = pair(world, "acme", "globex")
    checks.check_moto_blind(
        p,
        "cannot_list_own_bucket_outside_its_prefixes",
        lambda: p.client("s3").list_objects_v2(Bucket=p.a.bucket),
    )


def test_cases_all_hold_for_the_canary_before_mutation(world: World) -> None:
    checks.check_canary_holds(world)


@pytest.mark.parametrize("mutation", checks.mutations("silo"))
def test_a_changed_policy_breaks_exactly_the_cases_it_should(world: World, mutation: str) -> None:
    checks.check_mutation(world, mutation)


def test_broadened_reads_are_caught_by_moto_itself(world: World) -> None:
    checks.check_moto_catches(world, "reads_every_tenant_bucket")


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


def test_docs_show_the_proven_cases(world: World) -> None:
    checks.check_docs_table(world)
