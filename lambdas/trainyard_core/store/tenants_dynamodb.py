"""DynamoDB implementation of the tenant registry (the tenants table)."""

from __future__ import annotations

from typing import Any

import boto3
from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from trainyard_core.models import Tenant
from trainyard_core.ports.tenants import PENDING_STATUSES, StaleTenantError, TenantExistsError
from trainyard_core.store.dynamodb import condition_failed
from trainyard_core.store.tenants import candidate_location_keys, item_to_tenant, tenant_to_item
from trainyard_core.store.tokens import decode_token, encode_token

LOCATION_INDEX = "byLocation"
LIFECYCLE_INDEX = "byLifecycle"


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    # boto3's resource layer returns Decimals for numbers.
    return {k: (int(v) if k == "version" else v) for k, v in item.items()}


class DynamoTenantRepository:
    def __init__(self, table_name: str, *, resource: Any | None = None) -> None:
        self._table = (resource or boto3.resource("dynamodb")).Table(table_name)

    def get(self, tenant_id: str) -> Tenant | None:
        item = self._table.get_item(Key={"tenantId": tenant_id}, ConsistentRead=True).get("Item")
        return item_to_tenant(_plain(item)) if item else None

    def find_by_location(self, bucket: str, key: str) -> Tenant | None:
        for candidate in candidate_location_keys(bucket, key):
            items = self._table.query(
                IndexName=LOCATION_INDEX,
                KeyConditionExpression=Key("locationKey").eq(candidate),
                Limit=2,
            ).get("Items", [])
            if items:
                # GSIs are eventually consistent: confirm against the base table.
                return self.get(items[0]["tenantId"])
        return None

    def create(self, tenant: Tenant) -> None:
        try:
            self._table.put_item(
                Item=tenant_to_item(tenant),
                ConditionExpression="attribute_not_exists(tenantId)",
            )
        except ClientError as exc:
            if condition_failed(exc):
                raise TenantExistsError(tenant.tenant_id) from exc
            raise

    def save(self, tenant: Tenant) -> Tenant:
        stored = tenant.model_copy(update={"version": tenant.version + 1})
        try:
            self._table.put_item(
                Item=tenant_to_item(stored),
                ConditionExpression="attribute_exists(tenantId) AND #v = :v",
                ExpressionAttributeNames={"#v": "version"},
                ExpressionAttributeValues={":v": tenant.version},
            )
        except ClientError as exc:
            if condition_failed(exc):
                raise StaleTenantError(tenant.tenant_id) from exc
            raise
        return stored

    def list(
        self, limit: int = 50, next_token: str | None = None
    ) -> tuple[list[Tenant], str | None]:
        # A scan is fine for the control plane's page sizes; order is by id within a page.
        kwargs: dict[str, Any] = {"Limit": limit}
        if next_token:
            kwargs["ExclusiveStartKey"] = decode_token(next_token, ("tenantId",))
        page = self._table.scan(**kwargs)
        tenants = sorted(
            (item_to_tenant(_plain(i)) for i in page.get("Items", [])), key=lambda t: t.tenant_id
        )
        last = page.get("LastEvaluatedKey")
        return tenants, encode_token(last) if last else None

    def delete(self, tenant_id: str) -> None:
        self._table.delete_item(Key={"tenantId": tenant_id})

    def pending(self) -> list[Tenant]:
        found: list[Tenant] = []
        for status in PENDING_STATUSES:
            kwargs: dict[str, Any] = {
                "IndexName": LIFECYCLE_INDEX,
                "KeyConditionExpression": Key("lifecycleStatus").eq(status.value),
            }
            while True:
                page = self._table.query(**kwargs)
                found.extend(item_to_tenant(_plain(i)) for i in page.get("Items", []))
                if not page.get("LastEvaluatedKey"):
                    break
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return sorted(found, key=lambda t: t.tenant_id)
