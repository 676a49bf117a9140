"""GET /plans."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler.api_gateway import Router

from trainyard_handlers import dependencies
from trainyard_handlers.api.bind import bind
from trainyard_handlers.api.models import PlanList

router = Router()


@bind(router, "listPlans")
def list_plans() -> dict[str, Any]:
    settings = dependencies.settings()
    return PlanList(
        plans=list(settings.plans.values()),
        global_max_concurrent_runs=settings.global_max_concurrent_runs,
    ).wire()
