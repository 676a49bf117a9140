"""`make destroy` / `trainyard aws leftovers`: what a deployment leaves behind is
found by name and removed in order, and nothing of anyone else is touched."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from trainyard.aws.leftovers import Deployment, delete_leftovers, find_leftovers
from trainyard.local.shims import install_sagemaker_registry_shims

ACCOUNT = "123456789012"
REGION = "us-east-1"
DEPLOYMENT = Deployment("trainyard", "TrainyardPlatform", ACCOUNT)
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


@pytest.fixture
def clients() -> Iterator[Any]:
    install_sagemaker_registry_shims()  # moto lacks DeleteModelPackage(Group)
    with mock_aws():
        session = boto3.session.Session(region_name=REGION)
        yield session.client


def _a_retained_deployment(clients: Any) -> None:
    s3 = clients("s3")
    s3.create_bucket(Bucket=f"trainyard-platform-{ACCOUNT}")
    s3.create_bucket(Bucket=f"trainyard-acme-{ACCOUNT}")
    s3.put_bucket_versioning(
        Bucket=f"trainyard-acme-{ACCOUNT}", VersioningConfiguration={"Status": "Enabled"}
    )
    for version in (b"1", b"2"):
        s3.put_object(Bucket=f"trainyard-acme-{ACCOUNT}", Key="data/a.csv", Body=version)
    s3.delete_object(Bucket=f"trainyard-acme-{ACCOUNT}", Key="data/a.csv")  # a delete marker
    s3.create_bucket(Bucket="someone-elses-bucket")
    ddb = clients("dynamodb")
    for table in ("trainyard-tenants", "other-app-table"):
        ddb.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
    clients("logs").create_log_group(logGroupName="/aws/lambda/trainyard-scheduler")
    clients("logs").create_log_group(logGroupName="/aws/lambda/other-function")
    iam = clients("iam")
    iam.create_role(
        RoleName="trainyard-tenant-acme", Path="/trainyard/tenants/", AssumeRolePolicyDocument=TRUST
    )
    iam.put_role_policy(
        RoleName="trainyard-tenant-acme",
        PolicyName="p",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}],
            }
        ),
    )
    iam.create_role(RoleName="unrelated-role", AssumeRolePolicyDocument=TRUST)
    sm = clients("sagemaker")
    sm.create_model_package_group(ModelPackageGroupName="trainyard-acme")
    sm.create_model_package(
        ModelPackageGroupName="trainyard-acme",
        InferenceSpecification={
            "Containers": [{"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/x:1"}],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"],
        },
    )


def test_what_a_deployment_left_is_found_by_its_names_only(clients: Any) -> None:
    _a_retained_deployment(clients)
    found = {(item.kind, item.name) for item in find_leftovers(clients, DEPLOYMENT)}
    assert found == {
        ("bucket", f"trainyard-platform-{ACCOUNT}"),
        ("bucket", f"trainyard-acme-{ACCOUNT}"),
        ("table", "trainyard-tenants"),
        ("log-group", "/aws/lambda/trainyard-scheduler"),
        ("role", "trainyard-tenant-acme"),
        ("model-package-group", "trainyard-acme"),
    }


def test_deleting_leftovers_empties_versioned_buckets_and_leaves_others_alone(
    clients: Any,
) -> None:
    _a_retained_deployment(clients)
    failed = delete_leftovers(clients, find_leftovers(clients, DEPLOYMENT))
    assert failed == []
    assert find_leftovers(clients, DEPLOYMENT) == []
    assert [b["Name"] for b in clients("s3").list_buckets()["Buckets"]] == ["someone-elses-bucket"]
    assert clients("dynamodb").list_tables()["TableNames"] == ["other-app-table"]
    assert [r["RoleName"] for r in clients("iam").list_roles()["Roles"]] == ["unrelated-role"]
