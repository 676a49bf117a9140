"""/tenants/{tenantId}/runs: a tenant's runs and manual triggers."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from trainyard_core.errors import DomainError
from trainyard_core.model_versions import check_reason
from trainyard_core.models import Tenant
from trainyard_core.training import validate_choice

from trainyard_handlers import dependencies
from trainyard_handlers.api import requests
from trainyard_handlers.api.bind import bind
from trainyard_handlers.api.models import RetryRunRequest, RunList, TriggerRunRequest
from trainyard_handlers.api.requests import caller
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
    event = router.current_event
    choice = None
    if event.body is not None and event.body.strip():
        request = requests.json_body(event, TriggerRunRequest)
        if request.training is not None:
            # Checked now (a 400), over the tenant's own settings.
            choice = validate_choice(
                dependencies.settings(), tenant.plan, request.training, base=tenant.training
            )
    run = dependencies.run_service().submit_manual_run(
        tenant, training=choice, data_bytes=_data_bytes(tenant)
    )
    logger.thread_safe_append_keys(run_id=run.run_id)
    requests.request_dispatch(run.plan)
    return requests.json_response(202, run.api_dict())


@bind(router, "retryRun")
def retry_run(tenant_id: str, run_id: str) -> Response[str]:
    logger.thread_safe_append_keys(tenant_id=tenant_id, run_id=run_id)
    dependencies.tenant_service().get(tenant_id)  # 404 for unknown tenants
    event = router.current_event
    reason = None
    if event.body is not None and event.body.strip():
        reason = check_reason(requests.json_body(event, RetryRunRequest).reason)
    run = dependencies.run_service().retry_run(tenant_id, run_id, reason, caller(event))
    logger.info("run retry requested", extra={"attempt": len(run.retries)})
    requests.request_dispatch(run.plan)
    return requests.json_response(202, run.api_dict())


def _data_bytes(tenant: Tenant) -> int | None:
    """The data volume of a manual run: the bytes under the tenant's data prefix."""
    try:
        return dependencies.tenant_uploads().data_bytes(tenant)
    except Exception:
        # Sizing and auto then see no bytes (the smallest choice); the run still runs.
        logger.exception("could not measure the tenant's data for a manual run")
        return None
