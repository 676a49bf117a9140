"""GET /queue."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler.api_gateway import Router

from trainyard_handlers import dependencies
from trainyard_handlers.api.bind import bind
from trainyard_handlers.api.models import Queue

router = Router()


@bind(router, "getQueue")
def queue() -> dict[str, Any]:
    return Queue.model_validate(dependencies.run_service().queue_overview()).wire()
