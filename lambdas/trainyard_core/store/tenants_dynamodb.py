"""DynamoDB implementation of the tenant registry (the tenants table)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import boto3
from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError

from trainyard_core.models import IgnoredUpload, Tenant
from trainyard_core.ports.tenants import (
    PENDING_STATUSES,
    SETTLED_STATUSES,
    StaleTenantError,
    TenantExistsError,
)
from trainyard_core.store.dynamodb import batch_get, condition_failed
from trainyard_core.store.tenants import (
    RETRAIN_SHARD,
    candidate_location_keys,
    item_to_tenant,
    saved_attributes,
    tenant_to_item,
    with_ignored_upload,
)
from trainyard_core.store.tokens import decode_token, encode_token
from trainyard_core.wiring import RETRAIN_DUE_INDEX

LOCATION_INDEX = "byLocation"
ALT_LOCATION_INDEX = "byAltLocation"
# The current location first, then the other one of a migration (the one being
# moved to, or after it the one left).
_LOCATION_INDEXES = ((LOCATION_INDEX, "locationKey"), (ALT_LOCATION_INDEX, "altLocationKey"))
LIFECYCLE_INDEX = "byLifecycle"


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    # boto3's resource layer returns Decimals for numbers.
    return {k: (int(v) if k == "version" else v) for k, v in item.items()}


class DynamoTenantRepository:
    def __init__(self, table_name: str, *, resource: Any | None = None) -> None:
        self._resource = resource or boto3.resource("dynamodb")
        self._table = self._resource.Table(table_name)
        self._table_name = table_name

    def get(self, tenant_id: str) -> Tenant | None:
        item = self._table.get_item(Key={"tenantId": tenant_id}, ConsistentRead=True).get("Item")
        return item_to_tenant(_plain(item)) if item else None

    def get_many(self, tenant_ids: Collection[str]) -> dict[str, Tenant]:
        # Consistent BatchGetItem, 100 keys a call: a dispatch reads every waiting
        # tenant of its window in ceil(n/100) requests instead of n GetItems.
        keys = [{"tenantId": t} for t in sorted(set(tenant_ids))]
        items = batch_get(self._resource.batch_get_item, self._table_name, keys)
        tenants = (item_to_tenant(_plain(item)) for item in items)
        return {tenant.tenant_id: tenant for tenant in tenants}

    def find_by_location(self, bucket: str, key: str) -> Tenant | None:
        # A tenant's own location first, every candidate; its other location (only
        # during and after a migration) after: the common upload costs one query per
        # candidate, not two.
        candidates = candidate_location_keys(bucket, key)
        for index, attribute in _LOCATION_INDEXES:
            for candidate in candidates:
                items = self._table.query(
                    IndexName=index,
                    KeyConditionExpression=Key(attribute).eq(candidate),
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
        # An update of the attributes save owns, not a put: the intake's ones
        # (ignored uploads) written since this tenant was read stay.
        item = tenant_to_item(stored)
        item.pop("tenantId", None)
        absent = sorted(saved_attributes() - set(item))
        names = {f"#a{i}": name for i, name in enumerate([*item, *absent])}
        placeholders = {name: ph for ph, name in names.items()}
        expression = "SET " + ", ".join(f"{placeholders[k]} = :a{i}" for i, k in enumerate(item))
        if absent:
            expression += " REMOVE " + ", ".join(placeholders[k] for k in absent)
        values = {f":a{i}": v for i, v in enumerate(item.values())}
        try:
            self._table.update_item(
                Key={"tenantId": tenant.tenant_id},
                UpdateExpression=expression,
                ConditionExpression="attribute_exists(tenantId) AND #v = :v",
                ExpressionAttributeNames={**names, "#v": "version"},
                ExpressionAttributeValues={**values, ":v": tenant.version},
            )
        except ClientError as exc:
            if condition_failed(exc):
                raise StaleTenantError(tenant.tenant_id) from exc
            raise
        return stored

    def record_ignored_upload(self, tenant_id: str, upload: IgnoredUpload) -> bool:
        # Optimistic on a sequence number of its own (not ``version``), so it never
        # makes a lifecycle or API save stale; a lost race is one more lap.
        for _ in range(5):
            item = self._table.get_item(
                Key={"tenantId": tenant_id},
                ConsistentRead=True,
                ProjectionExpression="tenantId, ignoredUploads, ignoredUploadsSeq",
            ).get("Item")
            if item is None:
                return False
            uploads = with_ignored_upload(list(item.get("ignoredUploads", [])), upload)
            if uploads is None:
                return True
            seq = int(item.get("ignoredUploadsSeq", 0))
            try:
                self._table.update_item(
                    Key={"tenantId": tenant_id},
                    UpdateExpression="SET ignoredUploads = :u, ignoredUploadsSeq = :next",
                    ConditionExpression=(
                        "attribute_exists(tenantId) AND "
                        "(attribute_not_exists(ignoredUploadsSeq) OR ignoredUploadsSeq = :seq)"
                    ),
                    ExpressionAttributeValues={":u": uploads, ":seq": seq, ":next": seq + 1},
                )
                return True
            except ClientError as exc:
                if not condition_failed(exc):
                    raise
        # Five lost races: a burst of ignored uploads for one tenant. Best effort: the
        # caller logs and counts it rather than failing (and re-queueing) the batch
        # of a queue other tenants share.
        return False

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

    def outdated(self, template_version: str) -> list[Tenant]:
        # A filtered scan: "not this version" has no index. It reads the whole table
        # each lifecycle run (a few hundred read units per thousand tenants).
        kwargs: dict[str, Any] = {
            "FilterExpression": Attr("status").is_in([s.value for s in SETTLED_STATUSES])
            & (Attr("templateVersion").not_exists() | Attr("templateVersion").ne(template_version))
        }
        found: list[Tenant] = []
        while True:
            page = self._table.scan(**kwargs)
            found.extend(item_to_tenant(_plain(i)) for i in page.get("Items", []))
            if not page.get("LastEvaluatedKey"):
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return sorted(found, key=lambda t: t.tenant_id)

    def due_for_retraining(self, now_iso: str, limit: int) -> list[Tenant]:
        # One page of the due end of the index (Limit counts index items, so the
        # read is bounded however many tenants have schedules).
        page = self._table.query(
            IndexName=RETRAIN_DUE_INDEX,
            KeyConditionExpression=Key("retrainShard").eq(RETRAIN_SHARD)
            & Key("retrainDueAt").lte(now_iso),
            Limit=limit,
        )
        return [item_to_tenant(_plain(i)) for i in page.get("Items", [])]
