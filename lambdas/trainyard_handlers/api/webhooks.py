"""/tenants/{tenantId}/webhook: a tenant's webhook and its deliveries."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler.api_gateway import Router

from trainyard_handlers import dependencies
from trainyard_handlers.api import requests
from trainyard_handlers.api.bind import bind
from trainyard_handlers.api.models import (
    PutWebhookRequest,
    Webhook,
    WebhookCreated,
    WebhookDeliveryList,
)
from trainyard_handlers.observability import logger

router = Router()


def _tenant(tenant_id: str) -> None:
    logger.thread_safe_append_keys(tenant_id=tenant_id)
    dependencies.tenant_service().get(tenant_id)  # 404 for unknown tenants


@bind(router, "putWebhook")
def put_webhook(tenant_id: str) -> dict[str, Any]:
    _tenant(tenant_id)
    body = requests.json_body(router.current_event, PutWebhookRequest)
    webhook, secret = dependencies.webhook_service().put(tenant_id, body.url, body.events)
    logger.info("webhook set", extra={"events": list(webhook.events)})
    return WebhookCreated.model_validate({**webhook.api_dict(), "secret": secret}).wire()


@bind(router, "getWebhook")
def get_webhook(tenant_id: str) -> dict[str, Any]:
    _tenant(tenant_id)
    return Webhook.model_validate(dependencies.webhook_service().get(tenant_id).api_dict()).wire()


@bind(router, "deleteWebhook")
def delete_webhook(tenant_id: str) -> dict[str, Any]:
    _tenant(tenant_id)
    removed = dependencies.webhook_service().delete(tenant_id)
    logger.info("webhook removed")
    return Webhook.model_validate(removed.api_dict()).wire()


@bind(router, "listWebhookDeliveries")
def list_deliveries(tenant_id: str) -> dict[str, Any]:
    _tenant(tenant_id)
    event = router.current_event
    deliveries, token = dependencies.webhook_service().deliveries(
        tenant_id, limit=requests.limit(event), next_token=requests.next_token(event)
    )
    return WebhookDeliveryList.model_validate(
        {"deliveries": [d.api_dict() for d in deliveries], "nextToken": token}
    ).wire()
