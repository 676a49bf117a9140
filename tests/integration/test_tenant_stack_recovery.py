"""Tenant stacks that fail on the embedded stack roll back, leave nothing behind, and
the lifecycle schedule provisions them again once the cause is gone.

The embedded CloudFormation checks every resource handler's permissions as the
service role (as CloudFormation does) and honours the deletion policies on rollback."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from trainyard.local.stack import EmbeddedStack

from .conftest import Api, wait_for

pytestmark = pytest.mark.integration

ATTEMPT = re.compile(r"^provisioning attempt \d of 5 failed: ")


@pytest.fixture
def immediate_retries(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every retry is due at the next lifecycle run: a background tick of the local
    one-minute schedule while the fault is on cannot push the retry minutes away."""
    from trainyard_handlers import dependencies

    service = dependencies.tenant_service()
    monkeypatch.setattr(
        service, "settings", service.settings.model_copy(update={"provisioning_retry_seconds": 0})
    )
    yield


def _gone(call: Any) -> bool:
    try:
        call()
    except ClientError:
        return True
    return False


def _leftovers(stack: EmbeddedStack, tenant_id: str) -> list[str]:
    names = stack.names
    found = []
    if not _gone(
        lambda: stack.client("s3").head_bucket(
            Bucket=names.silo_bucket(tenant_id, stack.account_id)
        )
    ):
        found.append("bucket")
    if not _gone(lambda: stack.client("iam").get_role(RoleName=names.tenant_role(tenant_id))):
        found.append("role")
    if not _gone(lambda: stack.client("events").describe_rule(Name=names.tenant_rule(tenant_id))):
        found.append("rule")
    groups = stack.client("sagemaker").list_model_package_groups(NameContains=tenant_id)
    if any(
        g["ModelPackageGroupName"] == names.model_package_group(tenant_id)
        for g in groups["ModelPackageGroupSummaryList"]
    ):
        found.append("model package group")
    if not _gone(
        lambda: stack.client("cloudformation").describe_stacks(
            StackName=names.tenant_stack(tenant_id)
        )
    ):
        found.append("stack")
    return found


def _failed_attempt(stack: EmbeddedStack, tenant_id: str) -> list[str]:
    """The resource failures of the tenant's (deleted) failed stack, from its events."""
    cfn = stack.client("cloudformation")
    name = stack.names.tenant_stack(tenant_id)
    stacks = [s for s in cfn.list_stacks()["StackSummaries"] if s["StackName"] == name]
    events = cfn.describe_stack_events(StackName=stacks[-1]["StackId"])["StackEvents"]
    return [
        f"{e['LogicalResourceId']} {e['ResourceStatus']}"
        for e in reversed(events)
        if e["ResourceStatus"].endswith("FAILED") or e["ResourceStatus"].startswith("ROLLBACK")
    ]


def test_a_missing_service_role_permission_rolls_back_and_provisioning_recovers_once_restored(
    stack: EmbeddedStack, api: Api, immediate_retries: None
) -> None:
    assert stack.platform is not None
    iam = stack.client("iam")
    role = stack.platform.tenant_stack_role_arn.rsplit("/", 1)[1]
    policy = iam.get_role_policy(RoleName=role, PolicyName="TenantResourcesOnly")["PolicyDocument"]
    broken = copy.deepcopy(policy)
    for statement in broken["Statement"]:
        if isinstance(statement["Action"], list):
            statement["Action"] = [
                a for a in statement["Action"] if a != "sagemaker:GetModelPackageGroupPolicy"
            ]
    iam.put_role_policy(
        RoleName=role, PolicyName="TenantResourcesOnly", PolicyDocument=json.dumps(broken)
    )
    try:
        created = api.post("/tenants", json={"tenantId": "rc-denied", "plan": "premium"})
        assert created.status_code in (201, 202), created.text
        tenant = api.get("/tenants/rc-denied").json()
        assert tenant["status"] == "PROVISIONING"
        reason = tenant["failureReason"] or ""
        assert ATTEMPT.match(reason), reason
        # The failing resource and its handler's error, not just "a resource failed".
        assert "ModelPackageGroup CREATE_FAILED" in reason
        assert (
            "sagemaker:GetModelPackageGroupPolicy" in reason
            and "HandlerErrorCode: AccessDenied" in reason
        )
        # Rolled back: the bucket, role and group created before the failure are gone
        # (RetainExceptOnCreate), the rule was never made, the failed stack is deleted.
        assert _leftovers(stack, "rc-denied") == []
        assert "ModelPackageGroup CREATE_FAILED" in _failed_attempt(stack, "rc-denied")
        assert "trainyard-tenant-rc-denied ROLLBACK_COMPLETE" in _failed_attempt(stack, "rc-denied")
    finally:
        iam.put_role_policy(
            RoleName=role, PolicyName="TenantResourcesOnly", PolicyDocument=json.dumps(policy)
        )

    stack.advance_tenants_now()
    healed = api.get("/tenants/rc-denied").json()
    assert healed["status"] == "ACTIVE", healed
    assert healed["failureReason"] is None
    assert healed["dataBucket"] == stack.names.silo_bucket("rc-denied", stack.account_id)
    assert sorted(_leftovers(stack, "rc-denied")) == sorted(
        ["bucket", "role", "rule", "model package group", "stack"]
    )


def test_a_resource_that_fails_on_its_own_rolls_back_and_the_lifecycle_makes_the_tenant_active(
    stack: EmbeddedStack, api: Api, immediate_retries: None
) -> None:
    events = stack.client("events")
    taken = stack.names.tenant_rule("rc-taken")
    # Someone else's rule already has the tenant rule's fixed name.
    events.put_rule(Name=taken, ScheduleExpression="rate(1 day)", State="DISABLED")
    try:
        created = api.post("/tenants", json={"tenantId": "rc-taken", "plan": "basic"})
        assert created.status_code in (201, 202), created.text
        tenant = api.get("/tenants/rc-taken").json()
        assert tenant["status"] == "PROVISIONING"
        reason = tenant["failureReason"] or ""
        assert ATTEMPT.match(reason) and "UploadRule CREATE_FAILED" in reason, reason
        assert "already exists" in reason and "HandlerErrorCode: AlreadyExists" in reason
        # The pool tenant's role and model package group were rolled back; the rule
        # that was there already is not the stack's to delete.
        assert _leftovers(stack, "rc-taken") == ["rule"]
        assert events.describe_rule(Name=taken)["ScheduleExpression"] == "rate(1 day)"
        # A read reports, only the lifecycle schedule retries: still no stack.
        assert api.get("/tenants/rc-taken").json()["status"] == "PROVISIONING"
        assert _leftovers(stack, "rc-taken") == ["rule"]
    finally:
        events.delete_rule(Name=taken)

    stack.advance_tenants_now()
    healed = wait_for(
        lambda: (t := api.get("/tenants/rc-taken").json())["status"] == "ACTIVE" and t,
        timeout=15,
        what="the tenant ACTIVE after the lifecycle retry",
    )
    assert healed["failureReason"] is None
    assert healed["dataBucket"] == stack.names.pool_bucket(stack.account_id)
    targets = events.list_targets_by_rule(Rule=taken)["Targets"]
    assert [t["Arn"].rsplit(":", 1)[1] for t in targets] == [stack.names.intake_queue("basic")]
