"""UpdateStack on the embedded CloudFormation: add, modify, replace and remove
resources, update rollback, and the silo <-> pool template swap of a plan change."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from trainyard_core.config import Settings

from tests.unit.cfn_support import (
    ACCOUNT,
    REGION,
    Account,
    bucket,
    bucket_exists,
    client,
    error_of,
    group,
    group_exists,
    role,
)
from trainyard.local.bootstrap import PROJECT_ROOT, tenant_template

STACK = "trainyard-tenant-acme"
V1 = {
    "Parameters": {"Name": {"Type": "String", "Default": "trainyard-one"}},
    "Resources": {
        "Old": bucket("trainyard-old", "RetainExceptOnCreate"),
        "Gone": bucket("trainyard-gone", "Delete"),
        "Role": role("trainyard-tenant-acme", "first"),
        "Named": bucket({"Ref": "Name"}) | {"UpdateReplacePolicy": "Retain"},
    },
}


def _description(name: str) -> str:
    return str(client("iam").get_role(RoleName=name)["Role"].get("Description"))


def test_an_update_adds_modifies_and_removes_resources(cfn: Account) -> None:
    cfn.create(STACK, V1)
    v2 = copy.deepcopy(V1)
    del v2["Resources"]["Old"], v2["Resources"]["Gone"]
    v2["Resources"]["Role"] = role("trainyard-tenant-acme", "second")
    v2["Resources"]["New"] = bucket("trainyard-new")
    stack = cfn.update(STACK, v2)
    assert stack["StackStatus"] == "UPDATE_COMPLETE"
    assert _description("trainyard-tenant-acme") == "second"
    assert bucket_exists("trainyard-new")
    # Removed: RetainExceptOnCreate keeps it (this update did not create it); Delete does not.
    assert bucket_exists("trainyard-old") and not bucket_exists("trainyard-gone")
    events = cfn.events(STACK)
    assert ("Old", "DELETE_SKIPPED", "") in events and ("Gone", "DELETE_COMPLETE", "") in events
    statuses = [status for lid, status, _ in events if lid == STACK]
    assert statuses[-3:] == [
        "UPDATE_IN_PROGRESS",
        "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS",
        "UPDATE_COMPLETE",
    ]
    ids = {
        r["LogicalResourceId"]
        for r in cfn.cfn.describe_stack_resources(StackName=STACK)["StackResources"]
    }
    assert ids == {"Role", "Named", "New"}


def test_a_changed_create_only_property_replaces_the_resource_honouring_update_replace_policy(
    cfn: Account,
) -> None:
    cfn.create(STACK, V1)
    stack = cfn.update(STACK, V1, params={"Name": "trainyard-two"})
    assert stack["StackStatus"] == "UPDATE_COMPLETE"
    assert bucket_exists("trainyard-two")
    assert bucket_exists("trainyard-one")  # UpdateReplacePolicy: Retain
    reasons = [
        r
        for lid, status, r in cfn.events(STACK)
        if lid == "Named" and status == "UPDATE_IN_PROGRESS"
    ]
    assert reasons == [
        "Requested update requires the creation of a new physical resource; hence creating one."
    ]
    [named] = cfn.cfn.describe_stack_resources(StackName=STACK, LogicalResourceId="Named")[
        "StackResources"
    ]
    assert named["PhysicalResourceId"] == "trainyard-two"


def test_a_replacement_that_keeps_a_custom_name_fails_and_the_stack_rolls_back(
    cfn: Account,
) -> None:
    template = {
        "Resources": {
            "Role": role("trainyard-tenant-acme", "first"),
            "G": group("trainyard-acme", "v1"),
        }
    }
    cfn.create(STACK, template)
    changed = copy.deepcopy(template)
    changed["Resources"]["Role"] = role("trainyard-tenant-acme", "second")
    changed["Resources"]["G"] = group("trainyard-acme", "v2")  # the description is create-only
    stack = cfn.update(STACK, changed)
    assert stack["StackStatus"] == "UPDATE_ROLLBACK_COMPLETE"
    failed = [r for lid, status, r in cfn.events(STACK) if status == "UPDATE_FAILED"]
    assert failed == [
        "CloudFormation cannot update a stack when a custom-named resource requires replacing. "
        "Rename trainyard-acme and update the stack again."
    ]
    assert _description("trainyard-tenant-acme") == "first"  # the role's update was reverted
    assert cfn.cfn.get_template(StackName=STACK)["TemplateBody"] == template


def test_a_failed_update_deletes_what_it_created_and_reverts_what_it_changed(cfn: Account) -> None:
    client("sagemaker").create_model_package_group(ModelPackageGroupName="trainyard-taken")
    cfn.create(STACK, V1)
    v2 = copy.deepcopy(V1)
    v2["Resources"]["Role"] = role("trainyard-tenant-acme", "second")
    v2["Resources"]["Fresh"] = bucket("trainyard-fresh", "RetainExceptOnCreate")
    v2["Resources"]["Taken"] = group("trainyard-taken") | {"DependsOn": ["Role", "Fresh"]}
    stack = cfn.update(STACK, v2)
    assert stack["StackStatus"] == "UPDATE_ROLLBACK_COMPLETE"
    reason = next(
        r for lid, status, r in cfn.events(STACK) if status == "UPDATE_ROLLBACK_IN_PROGRESS"
    )
    assert reason == "The following resource(s) failed to create: [Taken]. "
    assert _description("trainyard-tenant-acme") == "first"
    assert not bucket_exists("trainyard-fresh")  # created by the failed update: deleted
    assert bucket_exists("trainyard-gone")  # untouched, still the stack's
    assert group_exists("trainyard-taken")
    # The stack still serves its old template, and can be updated again.
    assert (
        cfn.update(STACK, V1, params={"Name": "trainyard-three"})["StackStatus"]
        == "UPDATE_COMPLETE"
    )


def test_an_update_with_nothing_to_do_and_an_update_of_a_rolled_back_stack_are_refused(
    cfn: Account,
) -> None:
    cfn.create(STACK, V1)
    code, text = error_of(lambda: cfn.update(STACK, V1))
    assert (code, text) == ("ValidationError", "No updates are to be performed.")
    cfn.allow(["sts:GetCallerIdentity"])  # no handler permission: the next create rolls back
    stack_id = cfn.create("trainyard-tenant-broken", V1)["StackId"]
    assert cfn.stack(stack_id)["StackStatus"] == "ROLLBACK_COMPLETE"
    code, text = error_of(lambda: cfn.update("trainyard-tenant-broken", V1))
    assert text == f"Stack:{stack_id} is in ROLLBACK_COMPLETE state and can not be updated."


# --- the real tenant templates ----------------------------------------------------


@pytest.fixture(scope="module")
def templates() -> dict[str, dict[str, Any]]:
    cache = Path(PROJECT_ROOT) / ".trainyard" / "cache"
    return {iso: tenant_template(Settings(), cache, iso) for iso in ("silo", "pool")}


def test_a_plan_change_swaps_pool_and_silo_templates_in_place(
    cfn: Account, templates: dict[str, dict[str, Any]]
) -> None:
    s3 = client("s3")
    s3.create_bucket(Bucket=f"trainyard-platform-{ACCOUNT}")
    s3.create_bucket(Bucket=f"trainyard-pool-{ACCOUNT}")
    # The platform bucket admits S3 server access logs, as the platform stack's policy does.
    logs = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "logging.s3.amazonaws.com"},
                "Action": "s3:PutObject",
                "Resource": f"arn:aws:s3:::trainyard-platform-{ACCOUNT}/*",
            }
        ],
    }
    s3.put_bucket_policy(Bucket=f"trainyard-platform-{ACCOUNT}", Policy=json.dumps(logs))
    cfn.allow_handlers_of(
        {"Resources": {**templates["silo"]["Resources"], **templates["pool"]["Resources"]}}
    )
    params = {
        "TenantId": "acme",
        "PlanName": "basic",
        "IntakeQueueArn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:trainyard-intake-basic",
    }
    pool = cfn.create(STACK, templates["pool"], params=params)
    assert pool["StackStatus"] == "CREATE_COMPLETE", cfn.events(STACK)
    silo_bucket = f"trainyard-acme-{ACCOUNT}"

    silo = cfn.update(STACK, templates["silo"], params={**params, "PlanName": "premium"})
    assert silo["StackStatus"] == "UPDATE_COMPLETE", cfn.events(STACK)
    out = {o["OutputKey"]: o["OutputValue"] for o in silo["Outputs"]}
    assert out["DataBucketName"] == silo_bucket and out["DataPrefix"] == "data/"
    assert bucket_exists(silo_bucket)
    config = s3.get_bucket_logging(Bucket=silo_bucket)["LoggingEnabled"]
    assert config["TargetBucket"] == f"trainyard-platform-{ACCOUNT}"
    rule = client("events").describe_rule(Name="trainyard-tenant-acme-uploads")
    assert json.loads(rule["EventPattern"])["detail"]["bucket"]["name"] == [silo_bucket]
    modified = {lid for lid, status, _ in cfn.events(STACK)[-20:] if status == "UPDATE_COMPLETE"}
    assert modified >= {"JobRole", "UploadRule"} and "ModelPackageGroup" not in modified

    back = cfn.update(STACK, templates["pool"], params=params)
    assert back["StackStatus"] == "UPDATE_COMPLETE", cfn.events(STACK)
    # Out of the stack, but retained: the migration moves the data, then removes it.
    assert bucket_exists(silo_bucket)
    assert ("DataBucket", "DELETE_SKIPPED", "") in cfn.events(STACK)
    # Its bucket policy was a resource of its own (DeletionPolicy Delete): removed.
    code, _ = error_of(lambda: s3.get_bucket_policy(Bucket=silo_bucket))
    assert code == "NoSuchBucketPolicy"
    assert group_exists("trainyard-acme")
