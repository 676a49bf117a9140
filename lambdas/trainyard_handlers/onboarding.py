"""Entry point of the ``onboarding`` function (its wiring key and physical name).

That one function serves two sources (``wiring.handlers()``): API Gateway, whose
requests go to the API (``trainyard_handlers.api``: every resource, not only
onboarding), and the tenant lifecycle schedule (``trainyard_handlers.lifecycle``).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from trainyard_handlers import dependencies, lifecycle
from trainyard_handlers.api.app import app
from trainyard_handlers.observability import logger, metrics, tracer


def reset_dependencies() -> None:
    """Forget cached clients (the local runtime calls this when a new stack starts)."""
    dependencies.reset(*dependencies.ONBOARDING)


@logger.inject_lambda_context(
    correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True
)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if lifecycle.is_lifecycle_schedule(event):
        return lifecycle.advance_tenants(context)
    return app.resolve(event, context)
