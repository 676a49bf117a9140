"""The embedded STS refuses what AWS STS refuses in an AssumeRole (sts_limits.py,
through the enforcer's hook), and Trainyard's own uploader sessions stay within it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from trainyard_core.limits import UPLOAD_FILE_NAME_MAX_BYTES
from trainyard_core.models import TENANT_ID_MAX
from trainyard_core.ports.uploads import UploadTarget
from trainyard_core.upload_signer import S3UploadSigner

from trainyard.local.api_model import ApiModelCheck
from trainyard.local.iam.actions import Scope
from trainyard.local.iam.enforcer import Enforcer, MotoPolicyStore, Principal, acting_as
from trainyard.local.iam.sts_limits import EXCEEDS_CHAINING, EXCEEDS_MAX_SESSION

ACCOUNT, REGION = "123456789012", "us-east-1"
ASSUME_ANY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"},
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
    ],
}
BUCKET = "b" * 63  # the longest bucket name


def _trust(principal: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "sts:AssumeRole"}
            ],
        }
    )


@pytest.fixture
def world() -> Iterator[tuple[Any, dict[str, str]]]:
    with mock_aws():
        session = boto3.session.Session(region_name=REGION)
        enforcer = Enforcer(MotoPolicyStore(ACCOUNT), Scope(REGION, ACCOUNT))
        checks = ApiModelCheck()
        checks.attach(session)
        enforcer.attach(session)
        iam = session.client("iam")
        roles: dict[str, str] = {}
        for name, maximum in (("caller", 3600), ("short", 3600), ("long", 43200)):
            principal = f"arn:aws:iam::{ACCOUNT}:root"
            arn = iam.create_role(
                RoleName=name,
                AssumeRolePolicyDocument=_trust(principal),
                MaxSessionDuration=maximum,
            )["Role"]["Arn"]
            iam.put_role_policy(
                RoleName=name, PolicyName="p", PolicyDocument=json.dumps(ASSUME_ANY)
            )
            roles[name] = arn
        try:
            yield session, roles
        finally:
            enforcer.detach()
            checks.detach()


def _refusal(call: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as refused:
        call()
    error = refused.value.response["Error"]
    return error["Code"], error["Message"]


def test_a_duration_above_the_roles_max_session_duration_is_a_validation_error(
    world: tuple[Any, dict[str, str]],
) -> None:
    session, roles = world
    sts = session.client("sts")
    assert _refusal(
        lambda: sts.assume_role(
            RoleArn=roles["short"], RoleSessionName="sess", DurationSeconds=3601
        )
    ) == ("ValidationError", EXCEEDS_MAX_SESSION)
    # Up to the role's own maximum, from long-term credentials (no chaining).
    sts.assume_role(RoleArn=roles["long"], RoleSessionName="sess", DurationSeconds=43200)
    code, message = _refusal(
        lambda: sts.assume_role(
            RoleArn=roles["long"], RoleSessionName="sess", DurationSeconds=43201
        )
    )
    assert code == "ValidationError" and "less than or equal to 43200" in message


def test_role_chaining_is_limited_to_one_hour_whatever_the_role_allows(
    world: tuple[Any, dict[str, str]],
) -> None:
    session, roles = world
    sts = session.client("sts")
    # A role session (a Lambda function's role, as the embedded stack's code acts).
    with acting_as(Principal(roles["caller"], "fn")):
        assert _refusal(
            lambda: sts.assume_role(
                RoleArn=roles["long"], RoleSessionName="sess", DurationSeconds=3601
            )
        ) == ("ValidationError", EXCEEDS_CHAINING)
        sts.assume_role(RoleArn=roles["long"], RoleSessionName="sess", DurationSeconds=3600)
    # An STS session's own keys are a role session too.
    creds = sts.assume_role(RoleArn=roles["caller"], RoleSessionName="first")["Credentials"]
    chained = session.client(
        "sts",
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )
    assert _refusal(
        lambda: chained.assume_role(
            RoleArn=roles["long"], RoleSessionName="sess", DurationSeconds=7200
        )
    ) == ("ValidationError", EXCEEDS_CHAINING)


def _policy_of(chars: int) -> str:
    head = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject",'
    head += '"Resource":"arn:aws:s3:::'
    tail = '"}]}'
    return head + "x" * (chars - len(head) - len(tail)) + tail


def test_a_session_policy_over_2048_characters_is_a_validation_error(
    world: tuple[Any, dict[str, str]],
) -> None:
    session, roles = world
    sts = session.client("sts")
    sts.assume_role(RoleArn=roles["short"], RoleSessionName="sess", Policy=_policy_of(2048))
    code, message = _refusal(
        lambda: sts.assume_role(
            RoleArn=roles["short"], RoleSessionName="sess", Policy=_policy_of(2049)
        )
    )
    assert code == "ValidationError" and "length less than or equal to 2048" in message
    code, message = _refusal(
        lambda: sts.assume_role(
            RoleArn=roles["short"],
            RoleSessionName="sess",
            Policy=_policy_of(300).replace("x", "\u0100"),
        )
    )
    assert code == "ValidationError" and "regular expression pattern" in message


def test_the_uploaders_session_for_the_longest_key_is_issued_by_sts(
    world: tuple[Any, dict[str, str]],
) -> None:
    """The longest tenant id, bucket name and file name: every session the signer asks
    for (quota listing, POST, multipart, parts, abort) is one STS issues, as the
    role-chained onboarding Lambda asks for it, in any partition."""
    session, roles = world
    tenant = "t" * TENANT_ID_MAX
    prefix = f"tenants/{tenant}/data/"
    name = "f" * (UPLOAD_FILE_NAME_MAX_BYTES - 4) + ".csv"
    target = UploadTarget(tenant, BUCKET, prefix, prefix + name)
    session.client("s3").create_bucket(Bucket=BUCKET)
    issued: list[dict[str, Any]] = []
    sts = session.client("sts")
    original = sts.assume_role

    def assume(**kwargs: Any) -> Any:
        issued.append(kwargs)
        return original(**kwargs)

    sts.assume_role = assume  # type: ignore[method-assign]
    signer = S3UploadSigner(roles["short"], REGION, sts=sts, s3_factory=session.client)
    with acting_as(Principal(roles["caller"], "trainyard-onboarding")):
        assert signer.data_bytes(target, max_pages=1) == 0
        signer.presign_post(target, content_type="text/csv", max_bytes=10, expires_in=900)
        start = signer.start_multipart(
            target, content_type="text/csv", part_sizes=[5 * 2**20, 1], expires_in=3600
        )
        signer.presign_parts(target, start.upload_id, [(2, 1)], 3600)
        signer.abort_multipart(target, start.upload_id)
    assert len(issued) == 5
    assert all(call["DurationSeconds"] <= 3600 for call in issued)
    assert all(f"arn:aws:s3:::{BUCKET}" in call["Policy"] for call in issued)
    # The same sessions in the partition with the longest name (aws-us-gov) fit too.
    with acting_as(Principal(roles["caller"], "trainyard-onboarding")):
        for call in issued:
            longest = call["Policy"].replace("arn:aws:", "arn:aws-us-gov:")
            assert len(longest) <= 2048
            original(**{**call, "Policy": longest})
