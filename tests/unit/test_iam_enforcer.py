"""The embedded stack's IAM enforcement: a call made as a principal is decided by
that role's policies as IAM holds them, and a denied call fails as in AWS."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from trainyard.local.iam.actions import OPERATIONS, Scope, requests_for
from trainyard.local.iam.enforcer import (
    AssumeRoleDenied,
    Enforcer,
    MotoPolicyStore,
    Principal,
    acting_as,
)

ACCOUNT = "123456789012"
REGION = "us-east-1"
BUCKET = "tenant-a-data"
TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "sagemaker.amazonaws.com"},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT}},
        }
    ],
}


@pytest.fixture
def world() -> Iterator[tuple[Enforcer, Any, str]]:
    with mock_aws():
        session = boto3.session.Session(region_name=REGION)
        enforcer = Enforcer(MotoPolicyStore(ACCOUNT), Scope(REGION, ACCOUNT))
        enforcer.attach(session)
        iam = session.client("iam")
        role = iam.create_role(
            RoleName="job", Path="/tenants/", AssumeRolePolicyDocument=json.dumps(TRUST)
        )["Role"]["Arn"]
        iam.put_role_policy(
            RoleName="job",
            PolicyName="own-data",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Action": ["s3:GetObject", "s3:PutObject"],
                            "Resource": f"arn:aws:s3:::{BUCKET}/artifacts/*",
                        }
                    ],
                }
            ),
        )
        session.client("s3").create_bucket(Bucket=BUCKET)
        try:
            yield enforcer, session, role
        finally:
            enforcer.detach()


def test_a_call_the_role_allows_goes_through(world: tuple[Enforcer, Any, str]) -> None:
    enforcer, session, role = world
    s3 = session.client("s3")
    with acting_as(Principal(role, "SageMaker")):
        s3.put_object(Bucket=BUCKET, Key="artifacts/model.tar.gz", Body=b"m")
    assert enforcer.evaluations[-1].allowed


def test_a_denied_call_fails_as_aws_says_and_never_reaches_the_service(
    world: tuple[Enforcer, Any, str],
) -> None:
    enforcer, session, role = world
    s3 = session.client("s3")
    with acting_as(Principal(role, "SageMaker")), pytest.raises(ClientError) as denied:
        s3.put_object(Bucket=BUCKET, Key="data/upload.csv", Body=b"x")
    error = denied.value.response["Error"]
    assert error["Code"] == "AccessDenied"
    assert error["Message"] == (
        f"User: arn:aws:sts::{ACCOUNT}:assumed-role/job/SageMaker is not authorized to perform: "
        f"s3:PutObject on resource: arn:aws:s3:::{BUCKET}/data/upload.csv because no "
        "identity-based policy allows the s3:PutObject action"
    )
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0
    assert len(enforcer.denials) == 1


def test_calls_made_as_nobody_are_not_evaluated(world: tuple[Enforcer, Any, str]) -> None:
    enforcer, session, _ = world
    session.client("s3").put_object(Bucket=BUCKET, Key="data/upload.csv", Body=b"x")
    assert not enforcer.evaluations


def test_an_operation_without_an_iam_mapping_is_denied_not_waved_through(
    world: tuple[Enforcer, Any, str],
) -> None:
    assert ("s3", "PutBucketAccelerateConfiguration") not in OPERATIONS
    _, session, role = world
    with acting_as(Principal(role, "SageMaker")), pytest.raises(ClientError) as denied:
        session.client("s3").put_bucket_accelerate_configuration(
            Bucket=BUCKET, AccelerateConfiguration={"Status": "Enabled"}
        )
    assert denied.value.response["Error"]["Code"] == "AccessDenied"


def test_transfer_threads_act_for_the_principal_that_started_the_transfer(
    world: tuple[Enforcer, Any, str], tmp_path: Any
) -> None:
    _, session, role = world
    source = tmp_path / "upload.csv"
    source.write_bytes(b"a,b\n1,2\n")
    s3 = session.client("s3")
    with acting_as(Principal(role, "SageMaker")):
        s3.upload_file(str(source), BUCKET, "artifacts/ok.csv")
        with pytest.raises(Exception, match="AccessDenied"):
            s3.upload_file(str(source), BUCKET, "data/not-allowed.csv")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert keys == ["artifacts/ok.csv"]


def test_a_bucket_policy_deny_applies_on_top_of_the_identity_allow(
    world: tuple[Enforcer, Any, str],
) -> None:
    _, session, role = world
    s3 = session.client("s3")
    s3.put_bucket_policy(
        Bucket=BUCKET,
        Policy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Deny",
                        "Principal": {"AWS": "*"},
                        "Action": "s3:PutObject",
                        "Resource": f"arn:aws:s3:::{BUCKET}/artifacts/frozen/*",
                    }
                ],
            }
        ),
    )
    with acting_as(Principal(role, "SageMaker")):
        s3.put_object(Bucket=BUCKET, Key="artifacts/live.txt", Body=b"1")
        with pytest.raises(ClientError, match="explicit deny in a resource-based policy"):
            s3.put_object(Bucket=BUCKET, Key="artifacts/frozen/x.txt", Body=b"1")


def test_a_service_assumes_a_role_only_as_its_trust_policy_allows(
    world: tuple[Enforcer, Any, str],
) -> None:
    enforcer, _, role = world
    principal = enforcer.assume(
        role, "sagemaker.amazonaws.com", "SageMaker", {"aws:SourceAccount": ACCOUNT}
    )
    assert principal.arn == f"arn:aws:sts::{ACCOUNT}:assumed-role/job/SageMaker"
    with pytest.raises(AssumeRoleDenied):
        enforcer.assume(role, "sagemaker.amazonaws.com", "SageMaker")  # no SourceAccount
    with pytest.raises(AssumeRoleDenied):
        enforcer.assume(role, "lambda.amazonaws.com", "fn", {"aws:SourceAccount": ACCOUNT})


def test_api_calls_map_to_the_actions_and_keys_aws_authorizes() -> None:
    scope = Scope(REGION, ACCOUNT)
    listing = requests_for("s3", "ListObjectsV2", {"Bucket": "b", "Prefix": "data/"}, scope)
    assert [(r.action, r.resource, dict(r.context)) for r in listing] == [
        ("s3:ListBucket", "arn:aws:s3:::b", {"s3:prefix": "data/"})
    ]
    copy = requests_for(
        "s3",
        "CopyObject",
        {"Bucket": "d", "Key": "k2", "CopySource": {"Bucket": "s", "Key": "k"}},
        scope,
    )
    assert [r.action for r in copy] == ["s3:GetObject", "s3:PutObject"]
    job = requests_for(
        "sagemaker",
        "CreateTrainingJob",
        {"TrainingJobName": "J", "RoleArn": "arn:aws:iam::1:role/r", "Tags": [{"Key": "a"}]},
        scope,
    )
    assert [(r.action, dict(r.context)) for r in job] == [
        ("sagemaker:CreateTrainingJob", {}),
        ("iam:PassRole", {"iam:PassedToService": "sagemaker.amazonaws.com"}),
        ("sagemaker:AddTags", {}),
    ]
    assert job[0].resource.endswith(":training-job/j")  # SageMaker lowercases job ARNs
    transact = requests_for(
        "dynamodb",
        "TransactWriteItems",
        {"TransactItems": [{"Put": {"TableName": "t"}}, {"ConditionCheck": {"TableName": "u"}}]},
        scope,
    )
    assert [r.action for r in transact] == ["dynamodb:PutItem", "dynamodb:ConditionCheckItem"]
