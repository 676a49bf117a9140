"""How the SageMaker port classifies RetryPipelineExecution's refusals: transient ones
are asked again with the same token, the rest make the run restart as a new execution."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber
from trainyard_core.ports.pipeline import RetryUnavailableError, StartError
from trainyard_core.sagemaker_port import SageMakerPipelinePort

ARN = "arn:aws:sagemaker:us-east-1:123456789012:pipeline/p/execution/abc123"
TOKEN = "0123456789abcdef0123456789abcdef-retry-1"  # Run.retry_token: 32 to 128 characters


def _port_refusing(code: str) -> tuple[SageMakerPipelinePort, Stubber]:
    client = boto3.client(
        "sagemaker", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    stub = Stubber(client)
    stub.add_client_error(
        "retry_pipeline_execution",
        service_error_code=code,
        service_message=f"{code} from SageMaker",
        expected_params={"PipelineExecutionArn": ARN, "ClientRequestToken": TOKEN},
    )
    stub.activate()
    return SageMakerPipelinePort("p", client), stub


@pytest.mark.parametrize(
    "code", ["ThrottlingException", "ResourceLimitExceeded", "InternalFailure", "ConflictException"]
)
def test_a_transient_refusal_is_asked_again_later_not_restarted(code: str) -> None:
    port, stub = _port_refusing(code)
    with pytest.raises(StartError) as refused:
        port.retry(execution_arn=ARN, client_request_token=TOKEN)
    assert refused.value.retryable and not isinstance(refused.value, RetryUnavailableError)
    stub.assert_no_pending_responses()


@pytest.mark.parametrize("code", ["ValidationException", "ResourceNotFound"])
def test_an_execution_sagemaker_will_not_retry_makes_the_run_restart(code: str) -> None:
    port, _ = _port_refusing(code)
    with pytest.raises(RetryUnavailableError, match=code):
        port.retry(execution_arn=ARN, client_request_token=TOKEN)
