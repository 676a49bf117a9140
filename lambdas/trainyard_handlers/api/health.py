"""GET /health (in AWS; the local stack answers it itself, with its endpoint)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler.api_gateway import Router

from trainyard_handlers.api.bind import bind
from trainyard_handlers.api.models import Health

router = Router()


@bind(router, "health")
def health() -> dict[str, Any]:
    return Health(status="ok").wire()
