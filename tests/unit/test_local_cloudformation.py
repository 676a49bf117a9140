"""The embedded CloudFormation (trainyard/local/cloudformation) on in-process moto:
validation, intrinsics, order, tags, the service role's permissions, rollback with
each deletion policy, OnFailure, and DeleteStack."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.unit.cfn_support import (
    ACCOUNT,
    REGION,
    TRUST,
    Account,
    bucket,
    bucket_exists,
    client,
    error_of,
    group,
    group_exists,
    role,
    role_exists,
    rule,
    rule_exists,
)

QUEUE = f"arn:aws:sqs:{REGION}:{ACCOUNT}:intake"
TENANT = {
    "Parameters": {
        "TenantId": {
            "Type": "String",
            "AllowedPattern": "^[a-z0-9][a-z0-9-]*[a-z0-9]$",
            "MinLength": 3,
            "MaxLength": 32,
        },
        "PlanName": {"Type": "String", "AllowedValues": ["basic", "premium"]},
    },
    "Resources": {
        "DataBucket": bucket({"Fn::Sub": "trainyard-${TenantId}-${AWS::AccountId}"}),
        "JobRole": role({"Fn::Sub": "trainyard-tenant-${TenantId}"}),
        "ModelPackageGroup": group({"Fn::Sub": "trainyard-${TenantId}"}),
    },
    "Outputs": {
        "Bucket": {"Value": {"Ref": "DataBucket"}},
        "BucketArn": {"Value": {"Fn::GetAtt": ["DataBucket", "Arn"]}},
        "RoleArn": {"Value": {"Fn::GetAtt": "JobRole.Arn"}},
        "Group": {"Value": {"Ref": "ModelPackageGroup"}},
        "Where": {
            "Value": {
                "Fn::Join": [
                    "/",
                    [
                        {"Ref": "AWS::Partition"},
                        {"Ref": "AWS::Region"},
                        {"Fn::Select": [1, {"Fn::Split": ["-", {"Ref": "AWS::StackName"}]}]},
                        {"Fn::Sub": ["${Plan}!${!Literal}", {"Plan": {"Ref": "PlanName"}}]},
                    ],
                ]
            }
        },
    },
}
PARAMS = {"TenantId": "acme", "PlanName": "premium"}
STACK = "trainyard-tenant-acme"


def outputs(stack: dict[str, Any]) -> dict[str, str]:
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def test_a_stack_resolves_parameters_pseudo_parameters_and_intrinsics(cfn: Account) -> None:
    stack = cfn.create(STACK, TENANT, params=PARAMS)
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    assert outputs(stack) == {
        "Bucket": f"trainyard-acme-{ACCOUNT}",
        "BucketArn": f"arn:aws:s3:::trainyard-acme-{ACCOUNT}",
        "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/trainyard/tenants/trainyard-tenant-acme",
        # A model package group's Ref is its ARN.
        "Group": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package-group/trainyard-acme",
        "Where": f"aws/{REGION}/tenant/premium!${{Literal}}",
    }
    assert {(p["ParameterKey"], p["ParameterValue"]) for p in stack["Parameters"]} == {
        ("TenantId", "acme"),
        ("PlanName", "premium"),
    }
    resources = cfn.cfn.describe_stack_resources(StackName=STACK)["StackResources"]
    assert {r["LogicalResourceId"]: r["ResourceStatus"] for r in resources} == {
        "DataBucket": "CREATE_COMPLETE",
        "JobRole": "CREATE_COMPLETE",
        "ModelPackageGroup": "CREATE_COMPLETE",
    }
    assert [s["StackName"] for s in cfn.cfn.list_stacks()["StackSummaries"]] == [STACK]


def test_resources_are_created_after_what_they_reference(cfn: Account) -> None:
    template = {
        "Resources": {
            # Declared first, but refers to the bucket (and depends on the group).
            "Rule": {**rule("trainyard-tenant-acme-uploads", {"Ref": "Data"}, QUEUE)}
            | {"DependsOn": "Group"},
            "Group": group("trainyard-acme"),
            "Data": bucket(f"trainyard-acme-{ACCOUNT}"),
        }
    }
    cfn.create(STACK, template)
    started = [lid for lid, status, _ in cfn.events(STACK) if status == "CREATE_COMPLETE"]
    assert started == ["Group", "Data", "Rule", STACK]


@pytest.mark.parametrize(
    ("template", "message"),
    [
        (
            {"Resources": {"B": bucket({"Fn::If": ["IsProd", "a", "b"]})}},
            "Fn::If is not supported",
        ),
        (
            {"Conditions": {"C": {"Fn::Equals": ["a", "a"]}}, "Resources": {"B": bucket("x")}},
            "Conditions",
        ),
        ({"Resources": {"Q": {"Type": "AWS::SQS::Queue"}}}, "Unrecognized resource types"),
        ({"Resources": {"B": bucket({"Ref": "Nope"})}}, "Unresolved resource dependencies [Nope]"),
        (
            {"Resources": {"B": bucket("x"), "R": rule("r", {"Fn::GetAtt": ["B", "Nope"]}, QUEUE)}},
            "does not support attribute type Nope",
        ),
        ({"Resources": {"B": bucket("x", AccelerateConfiguration={})}}, "not supported"),
        ({"Resources": {"B": bucket("x", policy="Snapshot")}}, "DeletionPolicy 'Snapshot'"),
    ],
    ids=["intrinsic", "conditions", "type", "ref", "getatt", "property", "policy"],
)
def test_what_the_engine_cannot_do_is_a_template_error_of_the_call(
    cfn: Account, template: dict[str, Any], message: str
) -> None:
    code, text = error_of(lambda: cfn.create(STACK, template))
    assert code == "ValidationError" and message in text
    assert cfn.cfn.list_stacks()["StackSummaries"] == []


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"TenantId": "Acme!", "PlanName": "basic"}, "Parameter 'TenantId' must match pattern"),
        ({"TenantId": "ab", "PlanName": "basic"}, "must contain at least 3 characters"),
        ({"TenantId": "a" * 33, "PlanName": "basic"}, "must contain at most 32 characters"),
        ({"TenantId": "acme", "PlanName": "gold"}, "'PlanName' must be one of AllowedValues"),
        ({"TenantId": "acme"}, "Parameters: ['PlanName'] must have values"),
        ({**PARAMS, "Extra": "x"}, "Parameters: ['Extra'] do not exist in the template"),
    ],
    ids=["pattern", "min", "max", "allowed", "missing", "unknown"],
)
def test_bad_parameters_fail_the_create_call_itself(
    cfn: Account, params: dict[str, str], message: str
) -> None:
    code, text = error_of(lambda: cfn.create(STACK, TENANT, params=params))
    assert code == "ValidationError" and message in text
    assert not bucket_exists(f"trainyard-acme-{ACCOUNT}")


def test_named_iam_resources_need_the_named_iam_capability(cfn: Account) -> None:
    code, text = error_of(
        lambda: cfn.create(STACK, TENANT, params=PARAMS, Capabilities=["CAPABILITY_IAM"])
    )
    assert (code, text) == (
        "InsufficientCapabilitiesException",
        "Requires capabilities : [CAPABILITY_NAMED_IAM]",
    )


def test_a_template_body_over_the_limit_is_rejected(cfn: Account) -> None:
    big = {"Description": "x" * 51_200, "Resources": {"B": bucket("trainyard-big")}}
    code, text = error_of(lambda: cfn.create(STACK, big))
    assert code == "ValidationError" and "51200" in text


@pytest.mark.parametrize(
    "trust",
    [
        # Another service's role.
        {
            **TRUST,
            "Statement": [
                {**TRUST["Statement"][0], "Principal": {"Service": "sagemaker.amazonaws.com"}}
            ],
        },
        # A condition key no AWS document says CloudFormation sets when it assumes the role.
        {
            **TRUST,
            "Statement": [
                {
                    **TRUST["Statement"][0],
                    "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT}},
                }
            ],
        },
    ],
    ids=["other-service", "source-account-condition"],
)
def test_a_role_cloudformation_cannot_assume_fails_the_call(
    cfn: Account, trust: dict[str, Any]
) -> None:
    arn = client("iam").create_role(RoleName="other", AssumeRolePolicyDocument=json.dumps(trust))[
        "Role"
    ]["Arn"]
    code, text = error_of(lambda: cfn.create(STACK, TENANT, params=PARAMS, RoleARN=arn))
    assert (code, text) == ("ValidationError", f"Role {arn} is invalid or cannot be assumed")


def test_stack_tags_propagate_to_taggable_resources_and_a_resources_own_tag_wins(
    cfn: Account,
) -> None:
    name = f"trainyard-acme-{ACCOUNT}"
    template = {"Resources": {"B": bucket(name, Tags=[{"Key": "owner", "Value": "bucket"}])}}
    cfn.create(
        STACK, template, Tags=[{"Key": "owner", "Value": "stack"}, {"Key": "t", "Value": "1"}]
    )
    tags = client("s3").get_bucket_tagging(Bucket=name)["TagSet"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("owner", "bucket"), ("t", "1")]


def test_a_missing_handler_permission_fails_the_resource_and_the_rollback_leaves_nothing(
    cfn: Account,
) -> None:
    # The ModelPackageGroup read handler (the read after the create) needs this.
    cfn.allow_handlers_of(TENANT, but="sagemaker:GetModelPackageGroupPolicy")
    stack = cfn.create(STACK, TENANT, params=PARAMS)
    assert stack["StackStatus"] == "ROLLBACK_COMPLETE"
    assert stack["StackStatusReason"] == (
        "The following resource(s) failed to create: [ModelPackageGroup]. "
        "Rollback requested by user."
    )
    failed = [
        (lid, reason) for lid, status, reason in cfn.events(STACK) if status == "CREATE_FAILED"
    ]
    [(logical_id, reason)] = failed
    assert logical_id == "ModelPackageGroup"
    assert reason.startswith('Resource handler returned message: "User: arn:aws:sts::')
    assert ":assumed-role/stacks/AWSCloudFormation is not authorized to perform: " in reason
    assert "sagemaker:GetModelPackageGroupPolicy on resource: arn:aws:sagemaker:" in reason
    assert reason.endswith("HandlerErrorCode: AccessDenied)")
    # Created before the failure, deleted by the rollback.
    assert not bucket_exists(f"trainyard-acme-{ACCOUNT}")
    assert not role_exists("trainyard-tenant-acme")
    assert not group_exists("trainyard-acme")
    assert cfn.cfn.describe_stack_resources(StackName=STACK)["StackResources"] == []
    rolled_back = [lid for lid, status, _ in cfn.events(STACK) if status == "DELETE_COMPLETE"]
    assert rolled_back == ["ModelPackageGroup", "JobRole", "DataBucket"]


def test_a_rollback_honours_each_deletion_policy(cfn: Account) -> None:
    client("sagemaker").create_model_package_group(ModelPackageGroupName="trainyard-taken")
    template = {
        "Resources": {
            "Deleted": bucket("trainyard-deleted", "Delete"),
            "Kept": bucket("trainyard-kept", "Retain"),
            "NotKeptOnCreate": bucket("trainyard-not-kept", "RetainExceptOnCreate"),
            "Taken": group("trainyard-taken")
            | {"DependsOn": ["Deleted", "Kept", "NotKeptOnCreate"]},
        }
    }
    stack = cfn.create(STACK, template)
    assert stack["StackStatus"] == "ROLLBACK_COMPLETE"
    reason = next(r for lid, status, r in cfn.events(STACK) if status == "CREATE_FAILED")
    assert "already exists" in reason and "HandlerErrorCode: AlreadyExists" in reason
    assert not bucket_exists("trainyard-deleted")
    assert bucket_exists("trainyard-kept")  # Retain: kept even after a failed create
    assert not bucket_exists("trainyard-not-kept")  # this create made it: deleted
    assert ("Kept", "DELETE_SKIPPED", "") in cfn.events(STACK)
    assert group_exists("trainyard-taken")  # not the stack's: untouched


def test_on_failure_delete_removes_the_stack_and_do_nothing_keeps_everything(cfn: Account) -> None:
    client("sagemaker").create_model_package_group(ModelPackageGroupName="trainyard-taken")
    template = {
        "Resources": {
            "B": bucket("trainyard-made"),
            "G": group("trainyard-taken") | {"DependsOn": "B"},
        }
    }
    cfn.cfn.create_stack(
        StackName=STACK, TemplateBody=json.dumps(template), OnFailure="DELETE", RoleARN=cfn.role_arn
    )
    code, _ = error_of(lambda: cfn.stack(STACK))
    assert code == "ValidationError"  # gone by name
    [summary] = cfn.cfn.list_stacks()["StackSummaries"]
    assert summary["StackStatus"] == "DELETE_COMPLETE"
    assert cfn.stack(summary["StackId"])["StackStatus"] == "DELETE_COMPLETE"  # by id: still there
    assert not bucket_exists("trainyard-made")

    other = "trainyard-tenant-other"
    cfn.cfn.create_stack(StackName=other, TemplateBody=json.dumps(template), DisableRollback=True)
    stack = cfn.stack(other)
    assert stack["StackStatus"] == "CREATE_FAILED"
    assert stack["StackStatusReason"].startswith("The following resource(s) failed to create: [G]")
    assert bucket_exists("trainyard-made")
    code, text = error_of(
        lambda: cfn.cfn.create_stack(
            StackName="trainyard-tenant-both",
            TemplateBody=json.dumps(template),
            OnFailure="ROLLBACK",
            DisableRollback=True,
        )
    )
    assert code == "ValidationError" and "either DisableRollback or OnFailure" in text


def test_delete_keeps_retained_resources_and_fails_on_a_non_empty_bucket(cfn: Account) -> None:
    template = {
        "Resources": {
            "Data": bucket("trainyard-data", "Delete"),
            "Kept": bucket("trainyard-kept", "Retain"),
            "KeptToo": bucket("trainyard-kept-too", "RetainExceptOnCreate"),
            "Role": role("trainyard-tenant-acme"),
        }
    }
    stack_id = cfn.create(STACK, template)["StackId"]
    client("iam").put_role_policy(
        RoleName="trainyard-tenant-acme",
        PolicyName="added-later",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}],
            }
        ),
    )
    client("s3").put_object(Bucket="trainyard-data", Key="a.csv", Body=b"x")
    cfn.cfn.delete_stack(StackName=STACK, RoleARN=cfn.role_arn)
    stack = cfn.stack(STACK)
    assert stack["StackStatus"] == "DELETE_FAILED"
    assert stack["StackStatusReason"] == "The following resource(s) failed to delete: ['Data']. "
    reason = next(
        r for lid, status, r in cfn.events(STACK) if status == "DELETE_FAILED" and lid == "Data"
    )
    assert "not empty" in reason
    remaining = cfn.cfn.describe_stack_resources(StackName=STACK)["StackResources"]
    assert [(r["LogicalResourceId"], r["ResourceStatus"]) for r in remaining] == [
        ("Data", "DELETE_FAILED")
    ]
    assert not role_exists("trainyard-tenant-acme")  # its inline policies went first

    client("s3").delete_object(Bucket="trainyard-data", Key="a.csv")
    cfn.cfn.delete_stack(StackName=STACK)
    assert cfn.stack(stack_id)["StackStatus"] == "DELETE_COMPLETE"
    assert not bucket_exists("trainyard-data")
    assert bucket_exists("trainyard-kept") and bucket_exists("trainyard-kept-too")
    # Deleting a stack that no longer exists succeeds, as in CloudFormation.
    cfn.cfn.delete_stack(StackName=STACK)


def test_the_delete_handler_needs_its_permissions_too(cfn: Account) -> None:
    template = {"Resources": {"Role": role("trainyard-tenant-acme")}}
    cfn.allow_handlers_of(template, but="iam:DetachRolePolicy")
    cfn.create(STACK, template)
    cfn.cfn.delete_stack(StackName=STACK)
    assert cfn.stack(STACK)["StackStatus"] == "DELETE_FAILED"
    reason = next(r for _, status, r in cfn.events(STACK) if status == "DELETE_FAILED")
    assert "iam:DetachRolePolicy" in reason and "HandlerErrorCode: AccessDenied" in reason


def test_the_rule_handlers_apply_pattern_state_description_targets_and_tags(cfn: Account) -> None:
    template = {
        "Resources": {
            "Data": bucket("trainyard-data"),
            "Rule": rule("trainyard-tenant-acme-uploads", {"Ref": "Data"}, QUEUE)
            | {"DeletionPolicy": "Delete"},
        }
    }
    template["Resources"]["Rule"]["Properties"]["Description"] = "uploads"
    cfn.create(STACK, template, Tags=[{"Key": "trainyard:tenant-id", "Value": "acme"}])
    events = client("events")
    found = events.describe_rule(Name="trainyard-tenant-acme-uploads")
    assert json.loads(found["EventPattern"])["detail"]["bucket"]["name"] == ["trainyard-data"]
    assert (found["State"], found["Description"]) == ("ENABLED", "uploads")
    targets = events.list_targets_by_rule(Rule="trainyard-tenant-acme-uploads")["Targets"]
    assert [(t["Id"], t["Arn"]) for t in targets] == [("Intake", QUEUE)]
    tags = events.list_tags_for_resource(ResourceARN=found["Arn"])["Tags"]
    assert tags == [{"Key": "trainyard:tenant-id", "Value": "acme"}]
    cfn.cfn.delete_stack(StackName=STACK)
    assert not rule_exists("trainyard-tenant-acme-uploads")


def test_other_stacks_stay_moto_s(cfn: Account) -> None:
    template = {"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}}
    cfn.cfn.create_stack(StackName="someone-else", TemplateBody=json.dumps(template))
    assert cfn.stack("someone-else")["StackStatus"] == "CREATE_COMPLETE"
