"""What S3 keeps of a tenant's data beyond its current files, on the embedded stack:
the tenant data buckets' lifecycle rules (a silo tenant's bucket, made by the
embedded CloudFormation from the tenant template; the shared pool bucket), and a
data quota that counts the noncurrent versions S3 stores (and bills) until then.
Uploads are plain HTTP, as a tenant without AWS credentials sends them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from trainyard_core.limits import MULTIPART_ABORT_DAYS
from trainyard_handlers import dependencies

from trainyard.local.stack import EmbeddedStack

from .conftest import Api

pytestmark = pytest.mark.integration

QUOTA = 20_000


def _rules(stack: EmbeddedStack, bucket: str) -> dict[str, dict[str, Any]]:
    answer = stack.client("s3").get_bucket_lifecycle_configuration(Bucket=bucket)
    return {rule["ID"]: rule for rule in answer["Rules"]}


def test_a_silo_tenants_bucket_and_the_pool_bucket_report_the_lifecycle_rules(
    stack: EmbeddedStack, onboard: Any
) -> None:
    tenant = onboard("lc-initech", "premium")
    days = dependencies.settings().data_noncurrent_version_days
    for bucket in (tenant["dataBucket"], stack.names.pool_bucket(stack.account_id)):
        rules = _rules(stack, bucket)
        aborts = rules["AbortIncompleteMultipartUploads"]
        assert aborts["Status"] == "Enabled"
        assert aborts["AbortIncompleteMultipartUpload"] == {
            "DaysAfterInitiation": MULTIPART_ABORT_DAYS
        }
        expires = rules["ExpireNoncurrentVersions"]
        assert expires["Status"] == "Enabled"
        assert expires["NoncurrentVersionExpiration"]["NoncurrentDays"] == days
        assert expires["Expiration"] == {"ExpiredObjectDeleteMarker": True}


@pytest.fixture
def small_quota(stack: EmbeddedStack) -> Iterator[None]:
    """The onboarding function with a basic plan of 20 KB of data quota (the same
    handler, STS and S3; only the number is smaller)."""
    from trainyard_core.tenants.uploads import TenantUploads

    real = dependencies.tenant_uploads()
    settings = dependencies.settings()
    basic = settings.plans["basic"].model_copy(update={"data_quota_bytes": QUOTA})
    small = settings.model_copy(update={"plans": {**settings.plans, "basic": basic}})
    dependencies.tenant_uploads.override(TenantUploads(small, real.signer, real.plans))
    try:
        yield
    finally:
        dependencies.tenant_uploads.override(real)


def _upload(api: Api, tenant_id: str, name: str, data: bytes) -> dict[str, Any]:
    resp = api.post(
        f"/tenants/{tenant_id}/uploads", json={"fileName": name, "contentLength": len(data)}
    )
    assert resp.status_code == 201, resp.text
    grant = resp.json()
    sent = requests.post(
        grant["url"], data=grant["fields"], files={"file": (name, data, "text/csv")}, timeout=30
    )
    assert sent.status_code == 204, sent.text
    return grant


def test_noncurrent_versions_count_against_the_data_quota(
    stack: EmbeddedStack, api: Api, onboard: Any, small_quota: None
) -> None:
    tenant = onboard("lc-hooli", "basic")
    # The same file twice: 8,000 bytes are current, 8,000 more are a noncurrent version.
    _upload(api, "lc-hooli", "a.csv", b"a" * 8_000)
    grant = _upload(api, "lc-hooli", "a.csv", b"b" * 8_000)
    versions = stack.client("s3").list_object_versions(
        Bucket=tenant["dataBucket"], Prefix=grant["key"]
    )["Versions"]
    assert sorted(v["IsLatest"] for v in versions) == [False, True]
    # 16,000 of 20,000 bytes stored: 6,000 more do not fit, though the current files
    # are only 8,000 bytes.
    resp = api.post("/tenants/lc-hooli/uploads", json={"fileName": "b.csv", "contentLength": 6_000})
    assert resp.status_code == 409, resp.text
    error = resp.json()["error"]
    assert error["code"] == "DataQuotaExceeded"
    assert "16000 bytes" in error["message"] and "versions" in error["message"]
    # Deleting the file leaves its versions (and a delete marker): still stored, still counted.
    stack.client("s3").delete_object(Bucket=tenant["dataBucket"], Key=grant["key"])
    resp = api.post("/tenants/lc-hooli/uploads", json={"fileName": "b.csv", "contentLength": 6_000})
    assert (resp.status_code, resp.json()["error"]["code"]) == (409, "DataQuotaExceeded")
    # What still fits is granted: 4,000 bytes.
    assert _upload(api, "lc-hooli", "b.csv", b"c" * 4_000)["key"].endswith("b.csv")
