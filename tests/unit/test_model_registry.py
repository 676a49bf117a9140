"""A purge removes a tenant's model registry; what an offboarded id left behind is
told apart from empty leftovers (which are cleared: they hold nothing, and would
only collide with a new tenant's stack)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from trainyard_core.model_registry import RetainedResources, SageMakerModelRegistry

from trainyard.local.shims import install_sagemaker_registry_shims

SPEC = {
    "Containers": [{"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/x:1"}],
    "SupportedContentTypes": ["text/csv"],
    "SupportedResponseMIMETypes": ["text/csv"],
}


@pytest.fixture
def aws() -> Iterator[Any]:
    install_sagemaker_registry_shims()  # moto lacks DeleteModelPackage(Group)
    with mock_aws():
        yield boto3.session.Session(region_name="us-east-1").client


def test_purge_deletes_every_model_package_then_the_group(aws: Any) -> None:
    sm = aws("sagemaker")
    sm.create_model_package_group(ModelPackageGroupName="trainyard-acme")
    for _ in range(3):
        sm.create_model_package(ModelPackageGroupName="trainyard-acme", InferenceSpecification=SPEC)
    registry = SageMakerModelRegistry(sm)
    assert registry.purge("trainyard-acme") == 3
    assert not registry.exists("trainyard-acme")
    assert registry.purge("trainyard-acme") == 0  # idempotent


def test_retained_models_and_data_are_reported_and_empty_leftovers_cleared(aws: Any) -> None:
    sm, s3 = aws("sagemaker"), aws("s3")
    for group in ("trainyard-kept", "trainyard-empty"):
        sm.create_model_package_group(ModelPackageGroupName=group)
    sm.create_model_package(ModelPackageGroupName="trainyard-kept", InferenceSpecification=SPEC)
    s3.create_bucket(Bucket="trainyard-kept-123456789012")
    s3.put_object(Bucket="trainyard-kept-123456789012", Key="data/a.csv", Body=b"1")
    s3.create_bucket(Bucket="trainyard-empty-123456789012")
    s3.create_bucket(Bucket="trainyard-pool-123456789012")
    s3.put_object(Bucket="trainyard-pool-123456789012", Key="tenants/kept/data/a.csv", Body=b"1")
    retained = RetainedResources(SageMakerModelRegistry(sm), s3)

    def of(tenant: str) -> list[str]:
        return retained.of(
            group=f"trainyard-{tenant}",
            silo_bucket=f"trainyard-{tenant}-123456789012",
            pool_bucket="trainyard-pool-123456789012",
            pool_prefix=f"tenants/{tenant}/",
        )

    assert of("kept") == [
        "model package group trainyard-kept (with models)",
        "bucket trainyard-kept-123456789012 (with data)",
        "s3://trainyard-pool-123456789012/tenants/kept/",
    ]
    assert of("empty") == []
    assert not SageMakerModelRegistry(sm).exists("trainyard-empty")
    assert "trainyard-empty-123456789012" not in {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert of("never-existed") == []
