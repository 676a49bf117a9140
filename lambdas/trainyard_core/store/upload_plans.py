"""Multipart upload plans in the state table (``ports/uploads.py``: ``UploadPlanStore``).

One item per upload in progress: pk ``multipart#<tenantId>``, sk the S3 upload id,
with the key, the content length, the part size and count, and ``expiresAt`` (epoch
seconds, the table's TTL attribute) at the plan's deadline. Keyed by tenant, so
another tenant's upload id is simply not found. Every value is bounded (the upload
id by ``UPLOAD_ID_MAX_CHARS``, the key by S3's 1,024 bytes): an item stays under
~3 KB, far below DynamoDB's 400 KB, however the upload was sized. TTL deletes
lazily (up to days later), so a reader checks ``expires_at`` itself.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from trainyard_core.limits import check_item_size
from trainyard_core.models import iso_ms, parse_iso
from trainyard_core.ports.uploads import UploadPlan
from trainyard_core.store.dynamodb import DynamoClient, from_dynamo, to_dynamo

PLAN_PK_PREFIX = "multipart#"
# S3 documents no bound for an UploadId (AWS's are ~100-200 characters); a sort key
# holds at most 1,024 bytes, so a longer id cannot be one this API stored.
UPLOAD_ID_MAX_CHARS = 1024
S3_KEY_MAX_BYTES = 1024


def plan_key(tenant_id: str, upload_id: str) -> dict[str, str]:
    return {"pk": PLAN_PK_PREFIX + tenant_id, "sk": upload_id}


def plan_item(plan: UploadPlan) -> dict[str, Any]:
    if len(plan.upload_id.encode()) > UPLOAD_ID_MAX_CHARS:
        raise ValueError(f"an upload id of more than {UPLOAD_ID_MAX_CHARS} bytes")
    if len(plan.key.encode()) > S3_KEY_MAX_BYTES:
        raise ValueError(f"an S3 key of more than {S3_KEY_MAX_BYTES} bytes")
    item = {
        **plan_key(plan.tenant_id, plan.upload_id),
        "key": plan.key,
        "contentLength": plan.content_length,
        "partSize": plan.part_size,
        "partCount": plan.part_count,
        "createdAt": iso_ms(plan.created_at),
        "expiresAt": int(plan.expires_at.timestamp()),
    }
    check_item_size(item)
    return item


def plan_of(item: dict[str, Any]) -> UploadPlan:
    created = parse_iso(str(item["createdAt"]))
    assert created is not None
    return UploadPlan(
        tenant_id=str(item["pk"])[len(PLAN_PK_PREFIX) :],
        upload_id=str(item["sk"]),
        key=str(item["key"]),
        content_length=int(item["contentLength"]),
        part_size=int(item["partSize"]),
        part_count=int(item["partCount"]),
        created_at=created,
        expires_at=datetime.fromtimestamp(int(item["expiresAt"]), UTC),
    )


class DynamoUploadPlans(DynamoClient):
    def __init__(self, state_table: str, client: Any | None = None) -> None:
        super().__init__(client)
        self.state_table = state_table

    def put(self, plan: UploadPlan) -> None:
        self.client.put_item(TableName=self.state_table, Item=self._s(plan_item(plan)))

    def get(self, tenant_id: str, upload_id: str) -> UploadPlan | None:
        if len(upload_id.encode()) > UPLOAD_ID_MAX_CHARS or not upload_id:
            return None  # DynamoDB would refuse the key (a 500); no such plan exists
        item = self._get(self.state_table, plan_key(tenant_id, upload_id))
        return plan_of(item) if item is not None else None

    def delete(self, tenant_id: str, upload_id: str) -> None:
        if len(upload_id.encode()) > UPLOAD_ID_MAX_CHARS or not upload_id:
            return
        self.client.delete_item(
            TableName=self.state_table, Key=self._s(plan_key(tenant_id, upload_id))
        )


class MemoryUploadPlans:
    """The in-memory twin (unit tests): the same items, the same size check."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], dict[str, Any]] = {}

    def put(self, plan: UploadPlan) -> None:
        item = to_dynamo(plan_item(plan))
        self.items[(item["pk"], item["sk"])] = item

    def get(self, tenant_id: str, upload_id: str) -> UploadPlan | None:
        key = plan_key(tenant_id, upload_id)
        item = self.items.get((key["pk"], key["sk"]))
        return plan_of(from_dynamo(item)) if item is not None else None

    def delete(self, tenant_id: str, upload_id: str) -> None:
        key = plan_key(tenant_id, upload_id)
        self.items.pop((key["pk"], key["sk"]), None)
