"""The CloudFormation provisioner on moto: what the onboarding service relies on."""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws
from trainyard_core.provisioning import CloudFormationProvisioner

from tests.unit.cfn_support import Account, client, group, role

TEMPLATE = {
    "Parameters": {"TenantId": {"Type": "String"}},
    "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
    "Outputs": {"Tenant": {"Value": {"Ref": "TenantId"}}},
}


@pytest.fixture
def provisioner(monkeypatch: pytest.MonkeyPatch) -> Iterator[CloudFormationProvisioner]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="templates")
        s3.put_object(Bucket="templates", Key="silo.json", Body=json.dumps(TEMPLATE))
        url = "https://templates.s3.amazonaws.com/silo.json"
        yield CloudFormationProvisioner(template_urls={"silo": url, "pool": url})


def test_creating_a_stack_that_already_exists_is_not_an_error(
    provisioner: CloudFormationProvisioner,
) -> None:
    # The API call and the lifecycle schedule can race to create the same tenant stack.
    provisioner.create("trainyard-tenant-acme", {"TenantId": "acme"}, {"trainyard:tenant": "acme"})
    provisioner.create("trainyard-tenant-acme", {"TenantId": "acme"}, {"trainyard:tenant": "acme"})
    stacks = boto3.client("cloudformation", region_name="us-east-1").list_stacks()
    assert [s["StackName"] for s in stacks["StackSummaries"]] == ["trainyard-tenant-acme"]
    state = provisioner.describe("trainyard-tenant-acme")
    assert state is not None and state.complete and state.outputs["Tenant"] == "acme"


def test_a_failed_create_stays_visible_and_describe_names_the_failing_resource_and_why(
    cfn: Account,
) -> None:
    client("sagemaker").create_model_package_group(ModelPackageGroupName="trainyard-acme")
    template = {
        "Parameters": {"TenantId": {"Type": "String"}},
        "Resources": {
            "Role": role({"Fn::Sub": "trainyard-tenant-${TenantId}"}),
            "Group": group({"Fn::Sub": "trainyard-${TenantId}"}) | {"DependsOn": "Role"},
        },
    }
    s3 = client("s3")
    s3.create_bucket(Bucket="templates")
    s3.put_object(Bucket="templates", Key="silo.json", Body=json.dumps(template))
    url = "https://templates.s3.amazonaws.com/silo.json"
    provisioner = CloudFormationProvisioner(
        template_urls={"silo": url}, role_arn=cfn.role_arn, client=client("cloudformation")
    )
    provisioner.create("trainyard-tenant-acme", {"TenantId": "acme"}, {"trainyard:tenant": "acme"})
    state = provisioner.describe("trainyard-tenant-acme")
    # Rolled back, not deleted (OnFailure ROLLBACK): the reason is the resource's own.
    assert state is not None and state.status == "ROLLBACK_COMPLETE" and state.failed
    assert (state.reason or "").startswith(
        'Group CREATE_FAILED: Resource handler returned message: "arn:aws:sagemaker:'
    )
    assert "already exists" in (state.reason or "")
    assert "HandlerErrorCode: AlreadyExists" in (state.reason or "")
