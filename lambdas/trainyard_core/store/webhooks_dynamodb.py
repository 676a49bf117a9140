"""DynamoDB implementation of the webhook store (the webhooks table, wiring.tables()).

One partition per tenant: its webhook (sk ``webhook``) and its deliveries (sk
``delivery#<occurredAt>#<id>``, listed newest first, removed by TTL on
``expiresAt``). Every value is bounded (the URL by ``limits.WEBHOOK_URL_MAX_CHARS``,
errors by ``limits.REASON_MAX_CHARS``): an item stays far below 400 KB.
"""

from __future__ import annotations

from typing import Any

import boto3
from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from trainyard_core.errors import InvalidRequest
from trainyard_core.store.dynamodb import condition_failed
from trainyard_core.store.tokens import decode_token, encode_token
from trainyard_core.webhooks.records import (
    DELIVERY_KEY_PREFIX,
    WEBHOOK_KEY,
    Delivery,
    Webhook,
)


def webhook_to_item(webhook: Webhook) -> dict[str, Any]:
    return {
        "tenantId": webhook.tenant_id,
        "sk": WEBHOOK_KEY,
        "url": webhook.url,
        "events": list(webhook.events),
        "createdAt": webhook.created_at,
        "updatedAt": webhook.updated_at,
        "secretName": webhook.secret_name,
    }


def item_to_webhook(item: dict[str, Any], legacy_secret_prefix: str = "") -> Webhook:
    # A webhook set before secrets had generations names none: its secret is the
    # tenant's one secret, <webhook secret prefix><tenant> (replaced at its next PUT).
    legacy = f"{legacy_secret_prefix}{item['tenantId']}"
    return Webhook(
        tenant_id=item["tenantId"],
        url=item["url"],
        events=tuple(item.get("events", [])),
        created_at=item["createdAt"],
        updated_at=item["updatedAt"],
        secret_name=str(item.get("secretName") or legacy),
    )


def delivery_to_item(delivery: Delivery) -> dict[str, Any]:
    item: dict[str, Any] = {
        "tenantId": delivery.tenant_id,
        "sk": delivery.key,
        "deliveryId": delivery.delivery_id,
        "event": delivery.event,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "createdAt": delivery.created_at,
        "updatedAt": delivery.updated_at,
        "expiresAt": delivery.expires_at,
    }
    for name, value in (
        ("runId", delivery.run_id),
        ("lastStatusCode", delivery.last_status_code),
        ("lastError", delivery.last_error),
    ):
        if value is not None:
            item[name] = value
    return item


def item_to_delivery(item: dict[str, Any]) -> Delivery:
    code = item.get("lastStatusCode")
    return Delivery(
        tenant_id=item["tenantId"],
        delivery_id=item["deliveryId"],
        key=item["sk"],
        event=item["event"],
        status=item["status"],
        attempts=int(item.get("attempts", 0)),
        created_at=item["createdAt"],
        updated_at=item["updatedAt"],
        expires_at=int(item.get("expiresAt", 0)),
        run_id=item.get("runId"),
        last_status_code=int(code) if code is not None else None,
        last_error=item.get("lastError"),
    )


def deliveries_token(tenant_id: str, start_key: dict[str, Any]) -> str:
    return encode_token({"tenantId": start_key["tenantId"], "sk": start_key["sk"]})


def decode_deliveries_token(tenant_id: str, token: str) -> dict[str, Any]:
    key = decode_token(token, ("tenantId", "sk"))
    if key["tenantId"] != tenant_id or not key["sk"].startswith(DELIVERY_KEY_PREFIX):
        raise InvalidRequest("nextToken belongs to another listing", code="InvalidNextToken")
    return dict(key)


class DynamoWebhookStore:
    def __init__(
        self, table_name: str, resource: Any | None = None, *, legacy_secret_prefix: str = ""
    ) -> None:
        self._table = (resource or boto3.resource("dynamodb")).Table(table_name)
        self._legacy_secret_prefix = legacy_secret_prefix

    def get_webhook(self, tenant_id: str) -> Webhook | None:
        item = self._table.get_item(
            Key={"tenantId": tenant_id, "sk": WEBHOOK_KEY}, ConsistentRead=True
        ).get("Item")
        return item_to_webhook(item, self._legacy_secret_prefix) if item else None

    def put_webhook(self, webhook: Webhook) -> None:
        self._table.put_item(Item=webhook_to_item(webhook))

    def delete_webhook(self, tenant_id: str) -> None:
        self._table.delete_item(Key={"tenantId": tenant_id, "sk": WEBHOOK_KEY})

    def create_delivery(self, delivery: Delivery) -> Delivery:
        try:
            self._table.put_item(
                Item=delivery_to_item(delivery),
                ConditionExpression="attribute_not_exists(sk)",
            )
            return delivery
        except ClientError as exc:
            if not condition_failed(exc):
                raise
        item = self._table.get_item(
            Key={"tenantId": delivery.tenant_id, "sk": delivery.key}, ConsistentRead=True
        ).get("Item")
        return item_to_delivery(item) if item else delivery

    def put_delivery(self, delivery: Delivery) -> None:
        self._table.put_item(Item=delivery_to_item(delivery))

    def list_deliveries(
        self, tenant_id: str, *, limit: int, next_token: str | None = None
    ) -> tuple[list[Delivery], str | None]:
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": Key("tenantId").eq(tenant_id)
            & Key("sk").begins_with(DELIVERY_KEY_PREFIX),
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if next_token:
            kwargs["ExclusiveStartKey"] = decode_deliveries_token(tenant_id, next_token)
        page = self._table.query(**kwargs)
        deliveries = [item_to_delivery(i) for i in page.get("Items", [])]
        last = page.get("LastEvaluatedKey")
        return deliveries, deliveries_token(tenant_id, last) if last else None
