"""The tenant-stack service role allows what CloudFormation's resource handlers call.

CloudFormation runs each resource handler (create, the read after it, update, delete)
as the stack's service role; a missing permission fails the stack in AWS. The role
synthesized into the platform stack is rendered for a sample account, region and
tenant and evaluated (trainyard.local.iam.policy) against the concrete ARNs of that
tenant's resources, for every handler permission of every resource of both templates
(from AWS's registry schemas, infra/cfn_permissions.py).
"""

from __future__ import annotations

import json
from fnmatch import fnmatchcase
from typing import Any

import pytest
from trainyard_core import wiring

from infra import cfn_permissions as perms
from infra.tenant_template import synth_tenant_template
from tests.infra.isolation_support import ACCOUNT, render
from tests.infra.synth_support import Synth, resolve_ref
from trainyard.local.iam.policy import IDENTITY_DENY, Request, evaluate

pytestmark = pytest.mark.infra

TENANT = "acme"


@pytest.fixture(scope="module")
def templates(synth: Synth) -> dict[str, dict[str, Any]]:
    return {iso: synth_tenant_template(synth.settings, iso) for iso in ("silo", "pool")}


def _role(synth: Synth) -> tuple[str, dict[str, Any]]:
    """The service role the onboarding Lambda passes to CreateStack (id, resource)."""
    onboarding = next(
        r
        for r in synth.platform_json["Resources"].values()
        if r["Type"] == "AWS::Lambda::Function"
        and r["Properties"].get("FunctionName") == synth.names.function("onboarding")
    )
    env = onboarding["Properties"]["Environment"]["Variables"]
    role_id = resolve_ref(synth.platform_json, env[wiring.ENV_TENANT_STACK_ROLE_ARN])
    return str(role_id), dict(synth.platform_json["Resources"][role_id])


@pytest.fixture(scope="module")
def policy(synth: Synth) -> dict[str, Any]:
    """The service role's inline policy for the sample account and region."""
    policies = _role(synth)[1]["Properties"]["Policies"]
    assert [p["PolicyName"] for p in policies] == ["TenantResourcesOnly"]
    return dict(render(policies[0]["PolicyDocument"], region=synth.settings.region))


def _concrete(value: Any, synth: Synth) -> str:
    """A template value for tenant acme (references to the bucket: its name)."""
    text = str(render(value, region=synth.settings.region))
    bucket = synth.names.silo_bucket(TENANT, ACCOUNT)
    return text.replace("${TenantId}", TENANT).replace("${DataBucket}", bucket)


def _arn(resource: dict[str, Any], synth: Synth) -> str:
    """The ARN CloudFormation's handlers are authorized on, for tenant acme."""
    props, region = resource["Properties"], synth.settings.region
    kind = resource["Type"]
    if kind == perms.BUCKET:
        return f"arn:aws:s3:::{_concrete(props['BucketName'], synth)}"
    if kind == perms.BUCKET_POLICY:
        return f"arn:aws:s3:::{_concrete(props['Bucket'], synth)}"
    if kind == perms.ROLE:
        name = _concrete(props["RoleName"], synth)
        return f"arn:aws:iam::{ACCOUNT}:role{props['Path']}{name}"
    if kind == perms.RULE:
        return f"arn:aws:events:{region}:{ACCOUNT}:rule/{_concrete(props['Name'], synth)}"
    if kind == perms.MODEL_PACKAGE_GROUP:
        name = _concrete(props["ModelPackageGroupName"], synth)
        return f"arn:aws:sagemaker:{region}:{ACCOUNT}:model-package-group/{name}"
    raise AssertionError(f"no ARN for {kind}")


def _cases(templates: dict[str, dict[str, Any]]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (isolation, logical_id, resource)
        for isolation, template in templates.items()
        for logical_id, resource in template["Resources"].items()
    ]


def test_the_role_allows_every_handler_permission_of_every_tenant_resource(
    synth: Synth, templates: dict[str, dict[str, Any]], policy: dict[str, Any]
) -> None:
    checked: set[str] = set()
    for isolation, logical_id, resource in _cases(templates):
        arn = _arn(resource, synth)
        assert TENANT in arn
        for handler, actions in perms.resource_permissions(resource).items():
            assert actions, (isolation, logical_id, handler)
            denied = [a for a in actions if not evaluate([policy], Request(a, arn)).allowed]
            assert denied == [], f"{isolation}/{logical_id} {handler} handler on {arn}"
        checked.add(resource["Type"])
    assert checked == set(perms.RESOURCE_TYPES)


def test_the_role_allows_every_action_of_every_handler_schema_but_the_explained_exclusions(
    synth: Synth, templates: dict[str, dict[str, Any]], policy: dict[str, Any]
) -> None:
    """Straight from AWS's published lists (not from the map that built the policy): a
    handler may call any action its schema lists, whatever our properties seem to need,
    so the role grants them all on the tenant's own resources."""
    for isolation, logical_id, resource in _cases(templates):
        arn, kind = _arn(resource, synth), resource["Type"]
        for handler in perms.HANDLERS:
            listed = perms.schema_permissions(kind, handler)
            explained = {
                a
                for a in listed
                for e in perms.EXCLUSIONS
                if e.resource_type == kind and fnmatchcase(a, e.action)
            }
            missing = [
                a
                for a in listed
                if a not in explained and not evaluate([policy], Request(a, arn)).allowed
            ]
            assert missing == [], f"{isolation}/{logical_id} {handler} handler on {arn}"


def test_read_and_delete_handlers_get_their_whole_schema_list_but_the_explained_exclusions(
    templates: dict[str, dict[str, Any]],
) -> None:
    """Left out, each with its reason (infra/cfn_permissions.py EXCLUSIONS):
    iam:PassRole of the Events::Rule handlers (a tenant rule's only target is an SQS
    queue, reached through the queue policy: no role is passed), iam:PassRole of the
    S3 bucket handlers (only a ReplicationConfiguration passes a role), and the S3
    Tables calls of a bucket's MetadataTableConfiguration (not configured)."""
    left_out: set[tuple[str, str]] = set()
    for _, _, resource in _cases(templates):
        kind = resource["Type"]
        for handler in ("read", "delete"):
            required = set(perms.required_permissions(kind, handler, resource["Properties"]))
            left_out |= {(kind, a) for a in set(perms.schema_permissions(kind, handler)) - required}
    assert left_out == {(perms.RULE, "iam:PassRole")}
    reasons = {(e.resource_type, e.action): e.reason for e in perms.EXCLUSIONS}
    assert set(reasons) == {
        (perms.RULE, "iam:PassRole"),
        (perms.BUCKET, "iam:PassRole"),
        (perms.BUCKET, "s3tables:*"),
    }
    assert all(len(reason) > 60 for reason in reasons.values())


def test_the_role_may_pass_no_role_and_touch_no_table_bucket(policy: dict[str, Any]) -> None:
    granted = {a for s in policy["Statement"] if s["Effect"] == "Allow" for a in s["Action"]}
    assert not [a for a in granted if a.startswith(("iam:PassRole", "s3tables:"))]


def test_an_exclusion_stops_holding_when_the_template_needs_the_action() -> None:
    rule = {
        "Targets": [{"Arn": "arn:aws:states:::x", "Id": "t", "RoleArn": "arn:aws:iam::1:role/r"}]
    }
    with pytest.raises(perms.PermissionMapError, match="iam:PassRole"):
        perms.required_permissions(perms.RULE, "read", rule)


def test_the_platform_and_pool_buckets_stay_denied(
    synth: Synth, templates: dict[str, dict[str, Any]], policy: dict[str, Any]
) -> None:
    bucket_actions = {
        action
        for _, _, resource in _cases(templates)
        if resource["Type"] in (perms.BUCKET, perms.BUCKET_POLICY)
        for actions in perms.resource_permissions(resource).values()
        for action in actions
    }
    for bucket in (synth.names.platform_bucket(ACCOUNT), synth.names.pool_bucket(ACCOUNT)):
        for action in sorted(bucket_actions):
            decision = evaluate([policy], Request(action, f"arn:aws:s3:::{bucket}"))
            assert decision.denial == IDENTITY_DENY, (bucket, action)


def test_the_property_map_covers_every_property_the_templates_use(
    templates: dict[str, dict[str, Any]],
) -> None:
    for isolation, logical_id, resource in _cases(templates):
        used = set(resource.get("Properties", {}))
        for handler in ("create", "update"):
            mapped = set(perms.PROPERTY_ACTIONS[resource["Type"]][handler])
            assert used <= mapped, (isolation, logical_id, handler, sorted(used - mapped))
    perms.check_maps()  # and every mapped action is one the handler's schema lists


def test_an_unmapped_property_or_type_fails_loudly() -> None:
    with pytest.raises(perms.PermissionMapError, match="ReplicationConfiguration"):
        perms.required_permissions(perms.BUCKET, "create", {"ReplicationConfiguration": {}})
    with pytest.raises(perms.PermissionMapError, match="AWS::SQS::Queue"):
        perms.required_permissions("AWS::SQS::Queue", "create", {})


def test_the_inline_policy_fits_iams_quota(policy: dict[str, Any]) -> None:
    assert perms.policy_size(policy) <= perms.ROLE_INLINE_POLICY_LIMIT


def test_an_oversized_policy_fails_synthesis_with_a_clear_message(
    synth: Synth, templates: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(perms, "ROLE_INLINE_POLICY_LIMIT", 1_000)
    resources = list(templates["silo"]["Resources"].values())
    with pytest.raises(
        perms.PermissionMapError, match=r"inline policy is \d+ characters; IAM allows 1000"
    ):
        perms.service_role_statements(synth.names, resources)


def test_the_role_trusts_cloudformation_without_conditions_and_only_onboarding_passes_it(
    synth: Synth,
) -> None:
    role_id, role = _role(synth)
    trust = role["Properties"]["AssumeRolePolicyDocument"]
    assert trust["Statement"] == [
        {
            "Action": "sts:AssumeRole",
            "Effect": "Allow",
            "Principal": {"Service": "cloudformation.amazonaws.com"},
        }
    ]
    passers = set()
    for resource in synth.platform_json["Resources"].values():
        if resource["Type"] != "AWS::IAM::Policy":
            continue
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
            actions = (
                statement["Action"]
                if isinstance(statement["Action"], list)
                else [statement["Action"]]
            )
            if "iam:PassRole" in actions and role_id in json.dumps(statement["Resource"]):
                assert statement["Condition"]["StringEquals"]["iam:PassedToService"] == (
                    "cloudformation.amazonaws.com"
                )
                passers |= {r["Ref"] for r in resource["Properties"]["Roles"]}
    assert len(passers) == 1 and next(iter(passers)).startswith("OnboardingHandlerRole")
