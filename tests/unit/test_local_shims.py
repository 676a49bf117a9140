"""The local stand-in for DynamoDB's atomic transactions (DESIGN §4: moto's are not)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from trainyard.local.shims import install_dynamodb_serializer


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
