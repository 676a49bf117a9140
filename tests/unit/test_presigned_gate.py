"""The embedded S3's check of presigned requests (trainyard/local/iam/presigned.py),
where time matters: an expired POST policy, URL or session is refused with S3's
codes, and the same requests pass while they are valid."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.config import Config
from moto import mock_aws
from werkzeug.test import Client
from werkzeug.wrappers import Response

from trainyard.local.iam.actions import Scope
from trainyard.local.iam.enforcer import Enforcer, MotoPolicyStore
from trainyard.local.iam.presigned import PresignedS3Gate

HOST = "http://127.0.0.1:1"  # what the URLs are signed for (the Host header is signed)
ACCOUNT, REGION, BUCKET, KEY = "123456789012", "us-east-1", "tenant-data", "data/part-1.csv"
TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"AWS": ACCOUNT}, "Action": "sts:AssumeRole"}],
}
UPLOADS = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{BUCKET}/data/*"}
    ],
}


def _stored(environ: dict[str, Any], start_response: Any) -> Any:
    return Response(status=204)(environ, start_response)


@pytest.fixture
def signed() -> Iterator[tuple[Any, datetime]]:
    """A presigning client on a 15-minute session of a role allowed data/*."""
    with mock_aws():
        iam = boto3.client("iam", region_name=REGION)
        role = iam.create_role(RoleName="uploader", AssumeRolePolicyDocument=json.dumps(TRUST))
        iam.put_role_policy(RoleName="uploader", PolicyName="p", PolicyDocument=json.dumps(UPLOADS))
        creds = boto3.client("sts", region_name=REGION).assume_role(
            RoleArn=role["Role"]["Arn"], RoleSessionName="upload-acme", DurationSeconds=900
        )["Credentials"]
        s3 = boto3.client(
            "s3",
            region_name=REGION,
            endpoint_url=HOST,
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
            config=Config(signature_version="s3v4"),
        )
        yield s3, creds["Expiration"].astimezone(UTC)


def _client(at: datetime) -> Client:
    enforcer = Enforcer(MotoPolicyStore(ACCOUNT), Scope(REGION, ACCOUNT))
    gate = PresignedS3Gate(
        _stored,
        enforcer,
        region=REGION,
        partition="aws",
        buckets=lambda: [BUCKET],
        now=lambda: at,
    )
    return Client(gate)


def _post(client: Client, post: dict[str, Any], data: bytes = b"a,label\n1,0\n") -> Any:
    path = urlsplit(post["url"]).path
    form = {**post["fields"], "file": (io.BytesIO(data), "f.csv")}
    return client.post(path, data=form, content_type="multipart/form-data")


def _code(response: Any) -> tuple[int, str]:
    text = response.get_data(as_text=True)
    return response.status_code, text.split("<Code>")[1].split("</Code>")[0] if text else ""


def test_a_post_is_taken_until_its_policy_expires(signed: tuple[Any, datetime]) -> None:
    s3, _ = signed
    post = s3.generate_presigned_post(
        Bucket=BUCKET,
        Key=KEY,
        Fields={"Content-Type": "text/csv"},
        Conditions=[{"Content-Type": "text/csv"}, ["content-length-range", 1, 100]],
        ExpiresIn=60,
    )
    now = datetime.now(UTC)
    assert _post(_client(now), post).status_code == 204
    assert _code(_post(_client(now + timedelta(seconds=61)), post)) == (403, "AccessDenied")


def test_nothing_signed_by_a_session_is_taken_after_the_session_ends(
    signed: tuple[Any, datetime],
) -> None:
    s3, session_ends = signed
    post = s3.generate_presigned_post(
        Bucket=BUCKET, Key=KEY, Conditions=[["content-length-range", 1, 100]], ExpiresIn=3600
    )
    late = session_ends + timedelta(seconds=1)
    assert _code(_post(_client(late), post)) == (400, "ExpiredToken")
    url = s3.generate_presigned_url(
        "upload_part",
        Params={"Bucket": BUCKET, "Key": KEY, "UploadId": "u", "PartNumber": 1, "ContentLength": 3},
        ExpiresIn=3600,
    )
    parts = urlsplit(url)
    target = f"{parts.path}?{parts.query}"
    assert _client(datetime.now(UTC)).put(target, data=b"abc", base_url=HOST).status_code == 204
    assert _code(_client(late).put(target, data=b"abc", base_url=HOST)) == (400, "ExpiredToken")


def test_a_presigned_url_is_taken_until_x_amz_expires(signed: tuple[Any, datetime]) -> None:
    s3, _ = signed
    url = s3.generate_presigned_url(
        "put_object", Params={"Bucket": BUCKET, "Key": KEY}, ExpiresIn=30
    )
    parts = urlsplit(url)
    target = f"{parts.path}?{parts.query}"
    now = datetime.now(UTC)
    assert _client(now).put(target, data=b"abc", base_url=HOST).status_code == 204
    assert _code(_client(now + timedelta(seconds=31)).put(target, data=b"abc", base_url=HOST)) == (
        403,
        "AccessDenied",
    )
    # The role allows data/* only: a URL for another prefix is the signer's to answer for.
    other = s3.generate_presigned_url(
        "put_object", Params={"Bucket": BUCKET, "Key": "artifacts/x"}, ExpiresIn=30
    )
    bits = urlsplit(other)
    assert _code(_client(now).put(f"{bits.path}?{bits.query}", data=b"abc", base_url=HOST)) == (
        403,
        "AccessDenied",
    )


def test_moto_alone_takes_a_post_whose_key_and_type_break_its_policy(
    signed: tuple[Any, datetime],
) -> None:
    """Why the gate exists (a canary: if moto starts checking, this says so)."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    s3, _ = signed
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
    post = s3.generate_presigned_post(
        Bucket=BUCKET,
        Key=KEY,
        Fields={"Content-Type": "text/csv"},
        Conditions=[{"Content-Type": "text/csv"}, ["content-length-range", 1, 5]],
    )
    post["fields"].update({"key": "artifacts/evil", "Content-Type": "application/x-sh"})
    moto = Client(DomainDispatcherApplication(create_backend_app))
    path = urlsplit(post["url"]).path
    form = {**post["fields"], "file": (io.BytesIO(b"more than five bytes"), "f")}
    answer = moto.post(path, data=form, content_type="multipart/form-data", base_url=HOST)
    assert answer.status_code == 204
    listed = boto3.client("s3", region_name=REGION).list_objects_v2(Bucket=BUCKET)
    assert [o["Key"] for o in listed["Contents"]] == ["artifacts/evil"]
    gated = _post(_client(datetime.now(UTC)), post)
    assert _code(gated) == (403, "AccessDenied")


def _form(before: dict[str, str], data: bytes, after: dict[str, str]) -> tuple[bytes, str]:
    """A multipart/form-data body in exactly this order: fields, the file, fields."""
    boundary = "trainyard-test-boundary"
    chunks = []
    for name, value in before.items():
        chunks.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n')
        chunks.append(f"{value}\r\n")
    head = "".join(chunks).encode()
    file_part = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="f.csv"\r\n'
            "Content-Type: text/csv\r\n\r\n"
        ).encode()
        + data
        + b"\r\n"
    )
    tail = "".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in after.items()
    ).encode()
    return head + file_part + tail + f"--{boundary}--\r\n".encode(), (
        f"multipart/form-data; boundary={boundary}"
    )


def test_fields_after_the_file_are_ignored_as_s3_ignores_them(
    signed: tuple[Any, datetime],
) -> None:
    s3, _ = signed
    post = s3.generate_presigned_post(
        Bucket=BUCKET,
        Key=KEY,
        Conditions=[{"Content-Type": "text/csv"}, ["content-length-range", 1, 100]],
        ExpiresIn=60,
    )
    path = urlsplit(post["url"]).path
    forwarded: list[bytes] = []

    def backend(environ: dict[str, Any], start_response: Any) -> Any:
        forwarded.append(environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"])))
        return _stored(environ, start_response)

    enforcer = Enforcer(MotoPolicyStore(ACCOUNT), Scope(REGION, ACCOUNT))
    client = Client(
        PresignedS3Gate(backend, enforcer, region=REGION, partition="aws", buckets=lambda: [BUCKET])
    )
    data = b"a,label\n1,0\n"

    def send(before: dict[str, str], after: dict[str, str]) -> Any:
        body, content_type = _form(before, data, after)
        return client.post(path, data=body, content_type=content_type)

    # A condition is not met by a field after the file...
    late_type = send(post["fields"], {"Content-Type": "text/csv"})
    assert _code(late_type) == (403, "AccessDenied")
    assert forwarded == []
    # ...nor broken by one (nor is an uncovered field after it "extra"), and nothing
    # after the file reaches the store: no metadata, no other content type.
    fields = {**post["fields"], "Content-Type": "text/csv"}
    sneaky = {"Content-Type": "text/html", "x-amz-meta-owner": "mallory", "key": "data/x.csv"}
    assert send(fields, sneaky).status_code == 204
    (stored,) = forwarded
    assert b"mallory" not in stored and b"text/html" not in stored and b"data/x.csv" not in stored
    assert data in stored and stored.endswith(b"--trainyard-test-boundary--\r\n")
