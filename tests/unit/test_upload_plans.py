"""Multipart upload plans in the state table (trainyard_core/store/upload_plans.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3
import pytest
from moto import mock_aws
from trainyard_core.limits import item_size
from trainyard_core.ports.uploads import UploadPlan
from trainyard_core.store.upload_plans import (
    UPLOAD_ID_MAX_CHARS,
    DynamoUploadPlans,
    MemoryUploadPlans,
    plan_item,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _plan(tenant: str = "acme", upload_id: str = "u-1", key: str = "d/x.csv") -> UploadPlan:
    return UploadPlan(tenant, upload_id, key, 130 * 2**20, 64 * 2**20, 3, NOW, NOW + timedelta(1))


def test_the_largest_plan_item_is_a_few_kilobytes() -> None:
    item = plan_item(_plan("a" * 32, "u" * UPLOAD_ID_MAX_CHARS, "k" * 1024))
    assert item_size(item) < 4 * 1024  # DynamoDB's limit is 400 KB
    with pytest.raises(ValueError):
        plan_item(_plan(upload_id="u" * (UPLOAD_ID_MAX_CHARS + 1)))


def test_plans_round_trip_per_tenant_in_dynamodb_and_in_memory() -> None:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName="state",
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        for store in (DynamoUploadPlans("state", client), MemoryUploadPlans()):
            store.put(_plan())
            assert store.get("acme", "u-1") == _plan()
            assert store.get("bob", "u-1") is None  # another tenant's upload id
            assert store.get("acme", "u" * (UPLOAD_ID_MAX_CHARS + 1)) is None
            stored = client.get_item(
                TableName="state", Key={"pk": {"S": "multipart#acme"}, "sk": {"S": "u-1"}}
            ).get("Item")
            if isinstance(store, DynamoUploadPlans):
                # The TTL attribute: epoch seconds at the plan's deadline.
                assert stored is not None
                assert stored["expiresAt"] == {"N": str(int((NOW + timedelta(1)).timestamp()))}
            store.delete("acme", "u-1")
            assert store.get("acme", "u-1") is None
