"""GET /tenants/{tenantId}/usage."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler.api_gateway import Router

from trainyard_handlers import dependencies
from trainyard_handlers.api import requests
from trainyard_handlers.api.bind import bind
from trainyard_handlers.api.models import Usage
from trainyard_handlers.observability import logger

router = Router()


@bind(router, "getUsage")
def usage(tenant_id: str) -> dict[str, Any]:
    logger.thread_safe_append_keys(tenant_id=tenant_id)
    dependencies.tenant_service().get(tenant_id)  # 404 for unknown tenants
    month = requests.month(router.current_event)
    return Usage.model_validate(dependencies.run_service().usage(tenant_id, month)).wire()
