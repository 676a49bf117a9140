"""GET /algorithms: the training catalog tenants choose from."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler.api_gateway import Router

from trainyard_handlers import dependencies
from trainyard_handlers.api.bind import bind
from trainyard_handlers.api.models import AlgorithmInfo, AlgorithmList

router = Router()


@bind(router, "listAlgorithms")
def list_algorithms() -> dict[str, Any]:
    settings = dependencies.settings()
    algorithms = [
        AlgorithmInfo(
            name=a.name,
            description=a.description,
            framework=a.image.framework,
            framework_version=a.image.version,
            problem_types=list(a.problem_types),
            hyperparameters=a.hyperparameters,
            plans=[plan for plan in settings.plans if a.allowed_on(plan)],
        )
        for a in settings.algorithms.values()
    ]
    return AlgorithmList(
        algorithms=algorithms, auto=settings.auto_algorithm, default=settings.default_training
    ).wire()
