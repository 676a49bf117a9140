"""/tenants/{tenantId}/models: a tenant's model versions and their approval."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent
from botocore.exceptions import ClientError
from trainyard_core.errors import Conflict
from trainyard_core.model_versions import ModelVersion, parse_version

from trainyard_handlers import dependencies
from trainyard_handlers.api import requests
from trainyard_handlers.api.bind import bind
from trainyard_handlers.api.models import ModelDecisionRequest, ModelList
from trainyard_handlers.api.requests import caller
from trainyard_handlers.observability import logger

router = Router()


def _decision(event: APIGatewayProxyEvent) -> ModelDecisionRequest:
    raw = event.body
    if raw is None or raw.strip() == "":
        return ModelDecisionRequest()  # the body is optional: no reason given
    return requests.json_body(event, ModelDecisionRequest)


def _decide(tenant_id: str, version: str, approve: bool) -> dict[str, Any]:
    logger.thread_safe_append_keys(tenant_id=tenant_id, model_version=version)
    number = parse_version(version)
    tenant = dependencies.tenant_service().get(tenant_id)  # 404 for unknown tenants
    event = router.current_event
    body = _decision(event)
    service = dependencies.model_versions()
    decide = service.approve if approve else service.reject
    try:
        model: ModelVersion = decide(tenant, number, caller(event), body.reason)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ConflictException":
            # SageMaker refused the change while another one is under way.
            raise Conflict(
                f"SageMaker refused the update of model version {number}: "
                f"{exc.response['Error'].get('Message', '')}"[:1024],
                code="ModelUpdateConflict",
            ) from exc
        raise
    logger.info("model decided", extra={"status": model.status, "by": model.decided_by})
    return model.api_dict()


@bind(router, "listModels")
def list_models(tenant_id: str) -> dict[str, Any]:
    logger.thread_safe_append_keys(tenant_id=tenant_id)
    tenant = dependencies.tenant_service().get(tenant_id)
    event = router.current_event
    models, token = dependencies.model_versions().list(
        tenant, requests.limit(event), requests.next_token(event)
    )
    return ModelList(models=models, next_token=token).wire()


@bind(router, "approveModel")
def approve_model(tenant_id: str, version: str) -> dict[str, Any]:
    return _decide(tenant_id, version, approve=True)


@bind(router, "rejectModel")
def reject_model(tenant_id: str, version: str) -> dict[str, Any]:
    return _decide(tenant_id, version, approve=False)
