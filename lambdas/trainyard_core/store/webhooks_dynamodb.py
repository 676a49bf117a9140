"""DynamoDB implementation of the webhook store (the webhooks table, wiring.tables()).

One partition per tenant: its webhook (sk ``webhook``) and its deliveries (sk
``delivery#<occurredAt>#<id>``, listed newest first, removed by TTL on
``expiresAt``). Every value is bounded (the URL by ``limits.WEBHOOK_URL_MAX_CHARS``,
errors by ``limits.REASON_MAX_CHARS``): an item stays far below 400 KB.

The deliverer uses the store from one thread per record of a batch, and boto3
resources are not thread-safe: the store makes its calls on one low-level client
(clients are), made when the store is, with the items (de)serialized here.
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.exceptions import ClientError

from trainyard_core.errors import InvalidRequest
from trainyard_core.store.dynamodb import DynamoClient, condition_failed
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


class DynamoWebhookStore(DynamoClient):
    def __init__(
        self, table_name: str, client: Any | None = None, *, legacy_secret_prefix: str = ""
    ) -> None:
        # Made now, in one thread (a session is not thread-safe either); plain boto3
        # honours AWS_ENDPOINT_URL (moto locally).
        super().__init__(client or boto3.client("dynamodb"))
        self.table = table_name
        self._legacy_secret_prefix = legacy_secret_prefix

    def _key(self, tenant_id: str, sk: str) -> dict[str, Any]:
        return {"tenantId": tenant_id, "sk": sk}

    def get_webhook(self, tenant_id: str) -> Webhook | None:
        item = self._get(self.table, self._key(tenant_id, WEBHOOK_KEY))
        return item_to_webhook(item, self._legacy_secret_prefix) if item else None

    def put_webhook(self, webhook: Webhook) -> None:
        self.client.put_item(TableName=self.table, Item=self._s(webhook_to_item(webhook)))

    def delete_webhook(self, tenant_id: str) -> None:
        self.client.delete_item(
            TableName=self.table, Key=self._s(self._key(tenant_id, WEBHOOK_KEY))
        )

    def create_delivery(self, delivery: Delivery) -> Delivery:
        try:
            self.client.put_item(
                TableName=self.table,
                Item=self._s(delivery_to_item(delivery)),
                ConditionExpression="attribute_not_exists(sk)",
            )
            return delivery
        except ClientError as exc:
            if not condition_failed(exc):
                raise
        item = self._get(self.table, self._key(delivery.tenant_id, delivery.key))
        return item_to_delivery(item) if item else delivery

    def put_delivery(self, delivery: Delivery) -> None:
        self.client.put_item(TableName=self.table, Item=self._s(delivery_to_item(delivery)))

    def list_deliveries(
        self, tenant_id: str, *, limit: int, next_token: str | None = None
    ) -> tuple[list[Delivery], str | None]:
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "tenantId = :t AND begins_with(sk, :p)",
            "ExpressionAttributeValues": self._s({":t": tenant_id, ":p": DELIVERY_KEY_PREFIX}),
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if next_token:
            kwargs["ExclusiveStartKey"] = self._s(decode_deliveries_token(tenant_id, next_token))
        page = self.client.query(**kwargs)
        deliveries = [item_to_delivery(self._d(i)) for i in page.get("Items", [])]
        last = page.get("LastEvaluatedKey")
        return deliveries, deliveries_token(tenant_id, self._d(last)) if last else None
