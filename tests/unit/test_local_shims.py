"""The local shims for moto gaps (docs/architecture.md §4): DynamoDB's atomic transactions, the
SageMaker model registry operations moto lacks, and S3 log delivery decided by the
target bucket's policy."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from trainyard.local import shims
from trainyard.local.shims import (
    install_dynamodb_serializer,
    install_s3_logging_policy_check,
    install_sagemaker_registry_shims,
    install_secretsmanager_deletion_checks,
)


@pytest.fixture
def table(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName="state",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield client


def _race(client: Any, contenders: int) -> tuple[int, int, list[str]]:
    """Each thread claims the same pointer and writes its own run, in one transaction."""
    import moto.dynamodb.models as models

    # Widen the window between moto's rollback snapshot and its writes, as a busy
    # machine would.
    real_deepcopy = models.copy.deepcopy

    def slow_deepcopy(value: Any, *args: Any) -> Any:
        time.sleep(0.01)
        return real_deepcopy(value, *args)

    wins: list[int] = []
    errors: list[str] = []
    barrier = threading.Barrier(contenders)

    def contend(i: int) -> None:
        barrier.wait()
        try:
            client.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": "state",
                            "Item": {"pk": {"S": "tenant#acme#queued"}, "run": {"S": str(i)}},
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                    {"Put": {"TableName": "state", "Item": {"pk": {"S": f"run#{i}"}}}},
                ]
            )
            wins.append(i)
        except client.exceptions.TransactionCanceledException:
            pass  # lost the race, as it should
        except Exception as exc:  # moto failing mid-transaction: a 500 in the stack
            errors.append(f"{type(exc).__name__}: {exc}")

    models.copy.deepcopy = slow_deepcopy
    try:
        threads = [threading.Thread(target=contend, args=(i,)) for i in range(contenders)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        models.copy.deepcopy = real_deepcopy
    runs = [i for i in client.scan(TableName="state")["Items"] if i["pk"]["S"].startswith("run#")]
    return len(wins), len(runs), errors


def test_concurrent_transactions_on_the_embedded_stack_are_atomic(table: Any) -> None:
    install_dynamodb_serializer()
    # One winner, only its run exists, and no transaction broke. Without the
    # serializer moto raises "dictionary changed size during iteration" here.
    assert _race(table, 12) == (1, 1, [])


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield


def _error(call: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as caught:
        call()
    return caught.value.response["Error"]["Code"], caught.value.response["Error"]["Message"]


def test_the_model_registry_operations_moto_lacks_behave_as_in_aws(aws: None) -> None:
    install_sagemaker_registry_shims()
    sm = boto3.client("sagemaker", region_name="us-east-1")
    sm.create_model_package_group(ModelPackageGroupName="trainyard-acme")
    # A second create does not silently replace the group (and its models).
    code, message = _error(
        lambda: sm.create_model_package_group(ModelPackageGroupName="trainyard-acme")
    )
    assert code == "ValidationException" and "already exists" in message

    code, message = _error(
        lambda: sm.get_model_package_group_policy(ModelPackageGroupName="trainyard-acme")
    )
    assert code == "ValidationException" and "does not have a resource policy" in message
    policy = '{"Version": "2012-10-17", "Statement": []}'
    sm.put_model_package_group_policy(ModelPackageGroupName="trainyard-acme", ResourcePolicy=policy)
    got = sm.get_model_package_group_policy(ModelPackageGroupName="trainyard-acme")
    assert got["ResourcePolicy"] == policy
    sm.delete_model_package_group_policy(ModelPackageGroupName="trainyard-acme")
    code, _ = _error(
        lambda: sm.get_model_package_group_policy(ModelPackageGroupName="trainyard-acme")
    )
    assert code == "ValidationException"

    package = sm.create_model_package(ModelPackageGroupName="trainyard-acme")["ModelPackageArn"]
    code, message = _error(
        lambda: sm.delete_model_package_group(ModelPackageGroupName="trainyard-acme")
    )
    assert code == "ConflictException" and "contains 1 model package" in message
    sm.delete_model_package(ModelPackageName=package)
    assert (
        sm.list_model_packages(ModelPackageGroupName="trainyard-acme")["ModelPackageSummaryList"]
        == []
    )
    sm.delete_model_package_group(ModelPackageGroupName="trainyard-acme")
    code, message = _error(
        lambda: sm.describe_model_package_group(ModelPackageGroupName="trainyard-acme")
    )
    assert code == "ValidationException" and "does not exist" in message
    code, _ = _error(lambda: sm.delete_model_package_group(ModelPackageGroupName="trainyard-acme"))
    assert code == "ValidationException"


def test_log_delivery_is_decided_by_the_target_buckets_policy(aws: None) -> None:
    install_s3_logging_policy_check()
    s3 = boto3.client("s3", region_name="us-east-1")
    for name in ("trainyard-logs", "trainyard-acme", "someone-else"):
        s3.create_bucket(Bucket=name)
    # As the platform bucket says: this account's trainyard-* buckets, under access-logs/.
    statement = {
        "Effect": "Allow",
        "Principal": {"Service": "logging.s3.amazonaws.com"},
        "Action": "s3:PutObject",
        "Resource": "arn:aws:s3:::trainyard-logs/access-logs/*",
        "Condition": {
            "ArnLike": {"aws:SourceArn": "arn:aws:s3:::trainyard-*"},
            "StringEquals": {"aws:SourceAccount": "123456789012"},
        },
    }
    s3.put_bucket_policy(
        Bucket="trainyard-logs",
        Policy=json.dumps({"Version": "2012-10-17", "Statement": [statement]}),
    )

    def log(source: str, prefix: str) -> None:
        s3.put_bucket_logging(
            Bucket=source,
            BucketLoggingStatus={
                "LoggingEnabled": {"TargetBucket": "trainyard-logs", "TargetPrefix": prefix}
            },
        )

    log("trainyard-acme", "access-logs/acme/")
    assert s3.get_bucket_logging(Bucket="trainyard-acme")["LoggingEnabled"]["TargetPrefix"] == (
        "access-logs/acme/"
    )
    for source, prefix in (("someone-else", "access-logs/x/"), ("trainyard-acme", "elsewhere/")):
        code, _ = _error(lambda source=source, prefix=prefix: log(source, prefix))
        assert code == "InvalidTargetBucketForLogging"


def test_a_force_deleted_secrets_name_stays_taken_for_a_while_as_in_aws(
    aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # AWS finishes ForceDeleteWithoutRecovery asynchronously: meanwhile the name cannot
    # be created again, nor the secret restored (moto frees the name at once).
    install_secretsmanager_deletion_checks()
    monkeypatch.setattr(shims, "FORCE_DELETE_PENDING_SECONDS", 1.0)
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    arn = sm.create_secret(Name="trainyard/t/webhooks/acme/g1", SecretString="v1")["ARN"]
    sm.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)
    code, message = _error(
        lambda: sm.create_secret(Name="trainyard/t/webhooks/acme/g1", SecretString="v2")
    )
    assert code == "InvalidRequestException" and "scheduled for deletion" in message
    for secret_id in ("trainyard/t/webhooks/acme/g1", arn):
        assert _error(lambda s=secret_id: sm.restore_secret(SecretId=s))[0] == (
            "InvalidRequestException"
        )
    # Other names are free; a forced deletion of a missing secret succeeds (as in AWS).
    sm.create_secret(Name="trainyard/t/webhooks/acme/g2", SecretString="v")
    sm.delete_secret(SecretId="trainyard/t/webhooks/never", ForceDeleteWithoutRecovery=True)
    time.sleep(1.1)
    sm.create_secret(Name="trainyard/t/webhooks/acme/g1", SecretString="v3")
    got = sm.get_secret_value(SecretId="trainyard/t/webhooks/acme/g1")
    assert got["SecretString"] == "v3"
