"""Requests the embedded stack sends are held to AWS's published API model, also
where botocore itself does not check (maximum lengths, enums, patterns)."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from trainyard.local.api_model import ApiModelCheck, violations


@pytest.fixture
def sagemaker() -> object:
    with mock_aws():
        session = boto3.session.Session(region_name="us-east-1")
        check = ApiModelCheck()
        check.attach(session)
        try:
            yield session.client("sagemaker")
        finally:
            check.detach()


def test_a_display_name_aws_would_refuse_is_refused_before_reaching_the_service(
    sagemaker: object,
) -> None:
    with pytest.raises(ClientError) as refused:
        sagemaker.start_pipeline_execution(  # type: ignore[attr-defined]
            PipelineName="trainyard-training",
            PipelineExecutionDisplayName="tenant_with_underscores",
            ClientRequestToken="x" * 32,
        )
    error = refused.value.response["Error"]
    assert error["Code"] == "ValidationException"
    assert "PipelineExecutionDisplayName" in error["Message"]
    assert "regular expression pattern" in error["Message"]


def test_botocore_checks_minimum_lengths_and_the_model_the_maximum(sagemaker: object) -> None:
    with pytest.raises(ClientError, match="less than or equal to 128"):
        sagemaker.start_pipeline_execution(  # type: ignore[attr-defined]
            PipelineName="trainyard-training", ClientRequestToken="x" * 129
        )


def test_nested_members_lists_and_enums_are_checked() -> None:
    model = boto3.session.Session(region_name="us-east-1").client("sagemaker").meta.service_model
    shape = model.operation_model("CreateModelPackageGroup").input_shape
    assert violations({"ModelPackageGroupName": "ok-name"}, shape, "") == []
    too_long = violations(
        {"ModelPackageGroupName": "g", "Tags": [{"Key": "k", "Value": "v" * 300}]}, shape, ""
    )
    assert len(too_long) == 1 and "Tags.1.Value" in too_long[0]
    status = model.operation_model("CreateModelPackage").input_shape
    assert any("enum" in v for v in violations({"ModelApprovalStatus": "Maybe"}, status, ""))
