"""Where presigned uploads go (trainyard_core/upload_signer.py): the bucket's
regional virtual-hosted endpoint in AWS, in every region; path style against a
configured endpoint (the embedded stack). Offline: botocore presigns locally."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.stub import Stubber
from trainyard_core.ports.uploads import UploadTarget
from trainyard_core.upload_signer import S3UploadSigner

TARGET = UploadTarget(
    "acme", "trainyard-pool-123456789012", "tenants/acme/data/", "tenants/acme/data/part-1.csv"
)


def _signer(region: str, **kwargs: Any) -> S3UploadSigner:
    sts = boto3.client("sts", region_name=region)
    stubber = Stubber(sts)
    for _ in range(2):
        stubber.add_response(
            "assume_role",
            {
                "Credentials": {
                    "AccessKeyId": "ASIAEXAMPLEEXAMPLE00",
                    "SecretAccessKey": "secret",
                    "SessionToken": "token",
                    "Expiration": datetime.now(UTC) + timedelta(minutes=15),
                }
            },
        )
    stubber.activate()

    def session_client(*args: Any, **client_kwargs: Any) -> Any:
        client = boto3.client(*args, **client_kwargs)
        stub = Stubber(client)
        stub.add_response("create_multipart_upload", {"UploadId": "up-1"})
        stub.activate()
        return client

    return S3UploadSigner(
        "arn:aws:iam::123456789012:role/trainyard-uploader",
        region,
        sts=sts,
        s3_factory=session_client,
        **kwargs,
    )


def _urls(signer: S3UploadSigner) -> tuple[str, str]:
    post = signer.presign_post(TARGET, content_type="text/csv", max_bytes=10, expires_in=900)
    start = signer.start_multipart(
        TARGET, content_type="text/csv", part_sizes=[5 * 1024**2], expires_in=3600
    )
    return post.url, start.parts[0].url


@pytest.fixture
def no_configured_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("no_configured_endpoint")
@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1"])
def test_presigned_urls_use_the_buckets_regional_virtual_hosted_endpoint(region: str) -> None:
    post_url, part_url = _urls(_signer(region))
    host = f"{TARGET.bucket}.s3.{region}.amazonaws.com"
    assert post_url == f"https://{host}/"
    part = urlsplit(part_url)
    assert (part.scheme, part.netloc, part.path) == ("https", host, f"/{TARGET.key}")


@pytest.mark.usefixtures("no_configured_endpoint")
def test_presigned_urls_in_another_partition_use_its_regional_endpoint() -> None:
    post_url, _ = _urls(_signer("cn-north-1"))
    assert post_url == f"https://{TARGET.bucket}.s3.cn-north-1.amazonaws.com.cn/"


@pytest.mark.parametrize("variable", ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"])
def test_presigned_urls_against_a_configured_endpoint_are_path_style(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, "http://127.0.0.1:4566")
    post_url, part_url = _urls(_signer("us-east-1"))
    assert post_url == f"http://127.0.0.1:4566/{TARGET.bucket}"
    assert part_url.startswith(f"http://127.0.0.1:4566/{TARGET.bucket}/{TARGET.key}?")


def _versions_signer(pages: list[dict[str, Any]], calls: list[dict[str, Any]]) -> S3UploadSigner:
    signer = _signer("us-east-1")

    def session_client(*args: Any, **client_kwargs: Any) -> Any:
        client = boto3.client(*args, **client_kwargs)
        stub = Stubber(client)
        for page in pages:
            stub.add_response("list_object_versions", page)
        stub.activate()
        original = client.list_object_versions

        def listed(**kwargs: Any) -> Any:
            calls.append(kwargs)
            return original(**kwargs)

        client.list_object_versions = listed
        return client

    signer._s3_factory = session_client
    return signer


@pytest.mark.usefixtures("no_configured_endpoint")
def test_the_quota_counts_current_and_noncurrent_versions_across_pages() -> None:
    calls: list[dict[str, Any]] = []
    first = {
        "IsTruncated": True,
        "NextKeyMarker": "tenants/acme/data/a.csv",
        "NextVersionIdMarker": "v1",
        "Versions": [
            {"Key": "tenants/acme/data/a.csv", "VersionId": "v2", "IsLatest": True, "Size": 100},
            {"Key": "tenants/acme/data/a.csv", "VersionId": "v1", "IsLatest": False, "Size": 50},
        ],
        "DeleteMarkers": [{"Key": "tenants/acme/data/b.csv", "VersionId": "d1", "IsLatest": True}],
    }
    last = {
        "IsTruncated": False,
        "Versions": [{"Key": "tenants/acme/data/b.csv", "VersionId": "b1", "Size": 7}],
    }
    assert _versions_signer([first, last], calls).data_bytes(TARGET, max_pages=5) == 157
    assert calls == [
        {"Bucket": TARGET.bucket, "Prefix": TARGET.data_prefix},
        {
            "Bucket": TARGET.bucket,
            "Prefix": TARGET.data_prefix,
            "KeyMarker": "tenants/acme/data/a.csv",
            "VersionIdMarker": "v1",
        },
    ]


@pytest.mark.usefixtures("no_configured_endpoint")
def test_the_quota_gives_up_after_max_pages() -> None:
    page = {
        "IsTruncated": True,
        "NextKeyMarker": "tenants/acme/data/a.csv",
        "Versions": [{"Key": "tenants/acme/data/a.csv", "VersionId": "v", "Size": 1}],
    }
    calls: list[dict[str, Any]] = []
    assert _versions_signer([page, page], calls).data_bytes(TARGET, max_pages=2) is None
    assert len(calls) == 2
