"""STS sessions on the embedded stack's IAM enforcement: AssumeRole needs the target
role's trust, and a session acts as its role narrowed by its session policy until
it expires (trainyard/local/iam/sessions.py, enforcer.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from trainyard.local.iam.actions import Scope
from trainyard.local.iam.enforcer import Enforcer, MotoPolicyStore, Principal, acting_as
from trainyard.local.iam.sessions import SessionExpired, session_of

ACCOUNT, REGION, BUCKET = "123456789012", "us-east-1", "tenant-data"
ALL_DATA = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{BUCKET}/*"}
    ],
}


def _role(iam: Any, name: str, trust: dict[str, Any], policy: dict[str, Any]) -> str:
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    iam.put_role_policy(RoleName=name, PolicyName="p", PolicyDocument=json.dumps(policy))
    return str(arn)


@pytest.fixture
def world() -> Iterator[tuple[Any, str, str, str]]:
    with mock_aws():
        session = boto3.session.Session(region_name=REGION)
        enforcer = Enforcer(MotoPolicyStore(ACCOUNT), Scope(REGION, ACCOUNT))
        enforcer.attach(session)
        iam = session.client("iam")
        lambda_trust = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "lambda.amazonaws.com"},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
        assume_any = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}],
        }
        caller = _role(iam, "caller", lambda_trust, assume_any)
        stranger = _role(iam, "stranger", lambda_trust, assume_any)
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"AWS": caller}, "Action": "sts:AssumeRole"}
            ],
        }
        uploader = _role(iam, "uploader", trust, ALL_DATA)
        session.client("s3").create_bucket(Bucket=BUCKET)
        try:
            yield session, caller, stranger, uploader
        finally:
            enforcer.detach()


def _assume(session: Any, who: str, role: str, key: str) -> dict[str, Any]:
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "s3:PutObject",
                "Resource": f"arn:aws:s3:::{BUCKET}/{key}",
            }
        ],
    }
    with acting_as(Principal(who, "fn")):
        return session.client("sts").assume_role(
            RoleArn=role, RoleSessionName="upload-acme", Policy=json.dumps(policy)
        )["Credentials"]


def _s3(session: Any, creds: dict[str, Any]) -> Any:
    return session.client(
        "s3",
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )


def test_only_a_caller_the_trust_policy_names_may_assume_the_role(
    world: tuple[Any, str, str, str],
) -> None:
    session, caller, stranger, uploader = world
    assert _assume(session, caller, uploader, "a.csv")["AccessKeyId"].startswith("ASIA")
    with pytest.raises(ClientError) as denied:
        _assume(session, stranger, uploader, "a.csv")
    assert denied.value.response["Error"]["Code"] == "AccessDenied"


def test_a_session_can_do_only_what_its_session_policy_also_allows(
    world: tuple[Any, str, str, str],
) -> None:
    session, caller, _, uploader = world
    s3 = _s3(session, _assume(session, caller, uploader, "data/a.csv"))
    # Whatever principal the thread claims, the keys decide who acts.
    with acting_as(Principal(caller, "fn")):
        s3.put_object(Bucket=BUCKET, Key="data/a.csv", Body=b"1")
        with pytest.raises(ClientError) as denied:
            s3.put_object(Bucket=BUCKET, Key="data/b.csv", Body=b"1")
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    assert "assumed-role/uploader/upload-acme" in denied.value.response["Error"]["Message"]


def test_an_expired_session_is_refused_with_expired_token(
    world: tuple[Any, str, str, str],
) -> None:
    session, caller, _, uploader = world
    creds = _assume(session, caller, uploader, "data/a.csv")
    later = datetime.now(UTC) + timedelta(hours=2)
    with pytest.raises(SessionExpired):
        session_of(creds["AccessKeyId"], now=later)
    assert session_of("local") is None
    assert session_of(creds["AccessKeyId"]).session_policy is not None
