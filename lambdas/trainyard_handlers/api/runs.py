"""/tenants/{tenantId}/runs: a tenant's runs and manual triggers."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from trainyard_core.errors import DomainError

from trainyard_handlers import dependencies
from trainyard_handlers.api import requests
from trainyard_handlers.api.bind import bind
from trainyard_handlers.api.models import RunList
from trainyard_handlers.observability import logger

router = Router()


@bind(router, "listRuns")
def list_runs(tenant_id: str) -> dict[str, Any]:
    logger.thread_safe_append_keys(tenant_id=tenant_id)
    dependencies.tenant_service().get(tenant_id)  # 404 for unknown tenants
    event = router.current_event
    runs, token = dependencies.run_service().list_runs(
        tenant_id, limit=requests.limit(event), next_token=requests.next_token(event)
    )
    return RunList(runs=runs, next_token=token or None).wire()


@bind(router, "getRun")
def get_run(tenant_id: str, run_id: str) -> dict[str, Any]:
    logger.thread_safe_append_keys(tenant_id=tenant_id, run_id=run_id)
    dependencies.tenant_service().get(tenant_id)
    run = dependencies.run_service().get_run(tenant_id, run_id)
    if run is None:
        raise DomainError(
            f"run {run_id!r} of tenant {tenant_id!r} does not exist", code="RunNotFound"
        )
    return run.api_dict()


@bind(router, "triggerRun")
def trigger_run(tenant_id: str) -> Response[str]:
    logger.thread_safe_append_keys(tenant_id=tenant_id)
    tenant = dependencies.tenant_service().get(tenant_id)
    run = dependencies.run_service().submit_manual_run(tenant)
    logger.thread_safe_append_keys(run_id=run.run_id)
    requests.request_dispatch(run.plan)
    return requests.json_response(202, run.api_dict())
