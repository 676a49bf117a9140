"""Every bucket that holds tenant data (a silo tenant's DataBucket, the platform's
shared PoolBucket) bounds what S3 stores beyond the current objects: abandoned
multipart uploads are aborted, noncurrent versions and lone delete markers expire."""

from __future__ import annotations

from typing import Any

import pytest
from trainyard_core.limits import MULTIPART_ABORT_DAYS, MULTIPART_URL_SECONDS

from infra.tenant_template import synth_tenant_template
from tests.infra.synth_support import Synth
from tests.infra.test_least_privilege import statements

pytestmark = pytest.mark.infra


def _rules(bucket: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["Id"]: r for r in bucket["Properties"]["LifecycleConfiguration"]["Rules"]}


def _tenant_data_buckets(synth: Synth) -> dict[str, dict[str, Any]]:
    return {
        "silo DataBucket": synth.tenant_json["Resources"]["DataBucket"],
        "PoolBucket": synth.platform_json["Resources"]["PoolBucket"],
    }


@pytest.mark.parametrize("which", ["silo DataBucket", "PoolBucket"])
def test_tenant_data_buckets_abort_abandoned_uploads_and_expire_noncurrent_versions(
    synth: Synth, which: str
) -> None:
    rules = _rules(_tenant_data_buckets(synth)[which])
    assert rules["AbortIncompleteMultipartUploads"] == {
        "Id": "AbortIncompleteMultipartUploads",
        "Status": "Enabled",
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": MULTIPART_ABORT_DAYS},
    }
    assert rules["ExpireNoncurrentVersions"] == {
        "Id": "ExpireNoncurrentVersions",
        "Status": "Enabled",
        "NoncurrentVersionExpiration": {
            "NoncurrentDays": synth.settings.data_noncurrent_version_days
        },
        "ExpiredObjectDeleteMarker": True,
    }
    # Whole bucket: no prefix or filter narrows either rule.
    assert all("Prefix" not in r and "TagFilters" not in r for r in rules.values())


def test_no_multipart_upload_is_aborted_while_its_part_urls_are_valid() -> None:
    assert MULTIPART_ABORT_DAYS * 86_400 >= MULTIPART_URL_SECONDS


def test_the_noncurrent_version_days_come_from_the_settings(synth: Synth) -> None:
    settings = synth.settings.model_copy(update={"data_noncurrent_version_days": 7})
    bucket = synth_tenant_template(settings)["Resources"]["DataBucket"]
    days = _rules(bucket)["ExpireNoncurrentVersions"]["NoncurrentVersionExpiration"]
    assert days == {"NoncurrentDays": 7}


def test_the_stack_role_may_configure_tenant_buckets_lifecycle(synth: Synth) -> None:
    tenant_buckets = [
        statement
        for _, statement in statements({"platform": synth.platform_json})
        if statement.get("Sid") == "TenantBuckets"
    ]
    assert tenant_buckets, "no TenantBuckets statement"
    for statement in tenant_buckets:
        granted = set(statement["Action"])
        assert {"s3:PutLifecycleConfiguration", "s3:GetLifecycleConfiguration"} <= granted
