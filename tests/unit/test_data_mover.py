"""The S3 data mover on moto: what a plan change across isolation models does to
a tenant's objects (same relative keys, nothing lost, nothing doubled)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from trainyard_core.provisioning import S3DataMover

POOL = "trainyard-pool-123456789012"
SILO = "trainyard-acme-123456789012"


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        for bucket in (POOL, SILO):
            client.create_bucket(Bucket=bucket)
            client.put_bucket_versioning(
                Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}
            )
        yield client


def _keys(s3: Any, bucket: str, prefix: str = "") -> list[str]:
    return sorted(
        o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    )


def test_a_silo_bucket_moves_into_the_tenant_prefix_and_is_then_removed(s3: Any) -> None:
    s3.put_object(Bucket=SILO, Key="data/a.csv", Body=b"label,f\n1,2\n")
    s3.put_object(Bucket=SILO, Key="data/a.csv", Body=b"label,f\n0,3\n")  # two versions
    s3.put_object(Bucket=SILO, Key="artifacts/run1/model.tar.gz", Body=b"model")
    s3.put_object(Bucket=SILO, Key="data/gone.csv", Body=b"x")
    s3.delete_object(Bucket=SILO, Key="data/gone.csv")  # only a delete marker is current
    mover = S3DataMover(s3)

    objects = mover.copy(SILO, "", POOL, "tenants/acme/")
    assert sorted(o.key for o in objects) == ["artifacts/run1/model.tar.gz", "data/a.csv"]
    assert mover.verify(objects, POOL, "tenants/acme/") == []
    assert mover.delete(objects, SILO, "") >= 3
    mover.delete_bucket(SILO)

    assert _keys(s3, POOL) == [
        "tenants/acme/artifacts/run1/model.tar.gz",
        "tenants/acme/data/a.csv",
    ]
    latest = s3.get_object(Bucket=POOL, Key="tenants/acme/data/a.csv")["Body"].read()
    assert latest == b"label,f\n0,3\n"
    assert SILO not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_copying_again_copies_nothing_and_touches_no_neighbour(s3: Any) -> None:
    s3.put_object(Bucket=POOL, Key="tenants/acme/data/a.csv", Body=b"a")
    s3.put_object(Bucket=POOL, Key="tenants/acme-two/data/z.csv", Body=b"z")
    mover = S3DataMover(s3)
    first = mover.copy(POOL, "tenants/acme/", SILO, "")
    version = s3.head_object(Bucket=SILO, Key="data/a.csv")["VersionId"]
    again = mover.copy(POOL, "tenants/acme/", SILO, "")
    assert [o.key for o in first] == [o.key for o in again] == ["data/a.csv"]
    # Same ETag already there: not copied a second time (no new version, no new event).
    assert s3.head_object(Bucket=SILO, Key="data/a.csv")["VersionId"] == version
    mover.delete(again, POOL, "tenants/acme/")
    assert _keys(s3, POOL) == ["tenants/acme-two/data/z.csv"]


def test_an_object_replaced_after_the_copy_is_not_deleted_and_verify_reports_changes(
    s3: Any,
) -> None:
    s3.put_object(Bucket=POOL, Key="tenants/acme/data/a.csv", Body=b"old")
    mover = S3DataMover(s3)
    objects = mover.copy(POOL, "tenants/acme/", SILO, "")
    s3.put_object(Bucket=POOL, Key="tenants/acme/data/a.csv", Body=b"newer upload")
    assert mover.delete(objects, POOL, "tenants/acme/") == 0
    assert _keys(s3, POOL) == ["tenants/acme/data/a.csv"]
    s3.put_object(Bucket=SILO, Key="data/a.csv", Body=b"tampered")
    assert mover.verify(objects, SILO, "") == ["data/a.csv"]


def test_a_bucket_with_current_objects_is_never_removed(s3: Any) -> None:
    s3.put_object(Bucket=SILO, Key="data/a.csv", Body=b"a")
    with pytest.raises(RuntimeError):
        S3DataMover(s3).delete_bucket(SILO)
    assert _keys(s3, SILO) == ["data/a.csv"]


def test_a_source_bucket_already_removed_counts_as_moved(s3: Any) -> None:
    mover = S3DataMover(s3)
    assert mover.copy("trainyard-gone-123456789012", "", POOL, "tenants/gone/") == []
    mover.delete_bucket("trainyard-gone-123456789012")  # a resumed move: no error
