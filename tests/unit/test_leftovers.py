"""`make destroy` / `trainyard aws leftovers`: what a deployment leaves behind is
found by its exact names (tenant resources by their tenant tag too) and removed in
order, and nothing of anyone else is touched - not even a deployment whose prefix
extends this one's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from trainyard_core.config import resolve_settings
from trainyard_core.wiring import TENANT_TAG_KEY

from trainyard.aws.leftovers import (
    Deployment,
    Leftover,
    delete_leftovers,
    find_leftovers,
    tenant_stacks,
)
from trainyard.local.shims import install_sagemaker_registry_shims

ACCOUNT = "123456789012"
REGION = "us-east-1"
OURS = Deployment.of(resolve_settings(), ACCOUNT)
# Another deployment in the same account whose prefix starts with ours.
THEIRS = Deployment.of(resolve_settings({"resourcePrefix": "trainyard-dev"}), ACCOUNT)
TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "s.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
)
SPEC = {
    "Containers": [{"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/x:1"}],
    "SupportedContentTypes": ["text/csv"],
    "SupportedResponseMIMETypes": ["text/csv"],
}


@pytest.fixture
def clients() -> Iterator[Any]:
    install_sagemaker_registry_shims()  # moto lacks DeleteModelPackage(Group)
    with mock_aws():
        yield boto3.session.Session(region_name=REGION).client


def _deployment(clients: Any, d: Deployment, tenant: str) -> None:
    """What a destroyed deployment keeps, and one offboarded tenant's leftovers."""
    names = d.names
    s3 = clients("s3")
    s3.create_bucket(Bucket=names.platform_bucket(ACCOUNT))
    bucket = names.silo_bucket(tenant, ACCOUNT)
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_tagging(
        Bucket=bucket, Tagging={"TagSet": [{"Key": TENANT_TAG_KEY, "Value": tenant}]}
    )
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    for version in (b"1", b"2"):
        s3.put_object(Bucket=bucket, Key="data/a.csv", Body=version)
    s3.delete_object(Bucket=bucket, Key="data/a.csv")  # a delete marker
    clients("dynamodb").create_table(
        TableName=names.tenants_table,
        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    clients("logs").create_log_group(logGroupName=f"/aws/lambda/{names.function('scheduler')}")
    iam = clients("iam")
    role = names.tenant_role(tenant)
    iam.create_role(RoleName=role, Path=names.tenant_role_path, AssumeRolePolicyDocument=TRUST)
    iam.put_role_policy(
        RoleName=role,
        PolicyName="p",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}],
            }
        ),
    )
    sm = clients("sagemaker")
    group = names.model_package_group(tenant)
    sm.create_model_package_group(
        ModelPackageGroupName=group, Tags=[{"Key": TENANT_TAG_KEY, "Value": tenant}]
    )
    sm.create_model_package(ModelPackageGroupName=group, InferenceSpecification=SPEC)
    # A tenant's webhook signing secret (made by the API at run time).
    secret = names.webhook_secret(tenant, "g1")
    clients("secretsmanager").create_secret(Name=secret, SecretString="s")
    # The webhook rule target's dead-letter queue (kept by a failed stack deletion).
    clients("sqs").create_queue(QueueName=names.webhook_rule_dlq)


@pytest.fixture
def account(clients: Any) -> Any:
    _deployment(clients, OURS, "acme")
    # trainyard-dev's tenant "x": named trainyard-dev-x..., which under our prefix would
    # be tenant "dev-x" - but its tag says "x", so it is not ours.
    _deployment(clients, THEIRS, "x")
    clients("s3").create_bucket(Bucket="someone-elses-bucket")
    return clients


def test_what_a_deployment_left_is_found_by_its_names_and_tags_only(account: Any) -> None:
    found = {(item.kind, item.name) for item in find_leftovers(account, OURS)}
    assert found == {
        ("bucket", f"trainyard-platform-{ACCOUNT}"),
        ("bucket", f"trainyard-acme-{ACCOUNT}"),
        ("table", "trainyard-tenants"),
        ("log-group", "/aws/lambda/trainyard-scheduler"),
        ("role", "trainyard-tenant-acme"),
        ("model-package-group", "trainyard-acme"),
        ("secret", "trainyard/trainyard/webhooks/acme/g1"),
        ("queue", f"https://sqs.us-east-1.amazonaws.com/{ACCOUNT}/trainyard-webhook-events-dlq"),
    }


def test_deleting_leftovers_empties_versioned_buckets_and_leaves_others_alone(
    account: Any,
) -> None:
    theirs_before = {(i.kind, i.name) for i in find_leftovers(account, THEIRS)}
    failed = delete_leftovers(account, find_leftovers(account, OURS))
    assert failed == []
    assert find_leftovers(account, OURS) == []
    assert {(i.kind, i.name) for i in find_leftovers(account, THEIRS)} == theirs_before
    assert "someone-elses-bucket" in {b["Name"] for b in account("s3").list_buckets()["Buckets"]}


def test_tenant_stacks_go_before_the_platform_stack_whose_role_they_need(clients: Any) -> None:
    cfn = clients("cloudformation")
    template = json.dumps({"Resources": {"T": {"Type": "AWS::SNS::Topic"}}})
    cfn.create_stack(StackName="TrainyardPlatform", TemplateBody=template)
    cfn.create_stack(
        StackName=OURS.names.tenant_stack("acme"),
        TemplateBody=template,
        Tags=[{"Key": TENANT_TAG_KEY, "Value": "acme"}],
    )
    assert tenant_stacks(clients, OURS) == ["trainyard-tenant-acme"]
    order: list[str] = []
    failed = delete_leftovers(
        clients, find_leftovers(clients, OURS), lambda item, error: order.append(item.name)
    )
    assert failed == []
    assert order.index("trainyard-tenant-acme") < order.index("TrainyardPlatform")


def test_a_tenant_stack_that_cannot_go_stops_the_rest() -> None:
    def broken(service: str) -> Any:
        raise RuntimeError("the service role is gone")

    items = [Leftover("platform-stack", "TrainyardPlatform"), Leftover("tenant-stack", "t")]
    failed = delete_leftovers(broken, items)
    assert [(item.kind, why.split(":")[0]) for item, why in failed] == [
        ("tenant-stack", "RuntimeError"),
        ("platform-stack", "skipped"),
    ]
