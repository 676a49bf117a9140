"""/tenants and /tenants/{tenantId}: onboarding, plan changes, suspension, offboarding."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from trainyard_core.tenants.service import KEEP, RetrainChange

from trainyard_handlers import dependencies
from trainyard_handlers.api import requests
from trainyard_handlers.api.bind import bind
from trainyard_handlers.api.models import CreateTenantRequest, TenantList, UpdateTenantRequest
from trainyard_handlers.observability import logger, metrics

router = Router()


@bind(router, "createTenant")
def create_tenant() -> Response[str]:
    request = requests.json_body(router.current_event, CreateTenantRequest)
    tenant, created = dependencies.tenant_service().create(request.tenantId, request.plan)
    logger.thread_safe_append_keys(tenant_id=tenant.tenant_id)
    if created:
        metrics.add_metric(name="TenantsCreated", unit="Count", value=1)
    status = 201 if tenant.status.value == "ACTIVE" and created else 202 if created else 200
    return requests.json_response(status, tenant.api_dict())


@bind(router, "listTenants")
def list_tenants() -> dict[str, Any]:
    event = router.current_event
    tenants, token = dependencies.tenant_service().list(
        requests.limit(event), requests.next_token(event)
    )
    return TenantList(tenants=tenants, next_token=token or None).wire()


@bind(router, "getTenant")
def get_tenant(tenant_id: str) -> dict[str, Any]:
    logger.thread_safe_append_keys(tenant_id=tenant_id)
    return dependencies.tenant_service().get(tenant_id).api_dict()


@bind(router, "updateTenant")
def update_tenant(tenant_id: str) -> dict[str, Any]:
    logger.thread_safe_append_keys(tenant_id=tenant_id)
    request = requests.json_body(router.current_event, UpdateTenantRequest)
    retrain: RetrainChange = KEEP
    if "retrain" in request.model_fields_set:
        retrain = {"every": request.retrain.every} if request.retrain else None
    tenant = dependencies.tenant_service().update(
        tenant_id,
        plan=request.plan,
        status=request.status,
        retrain=retrain,
        training=request.training,
    )
    if request.plan is not None:
        try:
            moved = dependencies.run_service().follow_plan_change(tenant_id)
            if moved is not None:
                logger.info("queued run follows the plan change", extra={"run_id": moved.run_id})
        except Exception:
            # The plan change stands; dispatch moves the run when it next sees it.
            logger.exception("could not move the queued run to the new plan")
    if tenant.status.value == "ACTIVE" and (request.plan or request.status):
        # A resumed tenant's waiting runs (or a plan with free room) start now,
        # not at the next one-minute reconcile.
        requests.request_dispatch(tenant.plan)
    return tenant.api_dict()


@bind(router, "offboardTenant")
def offboard_tenant(tenant_id: str) -> Response[str]:
    logger.thread_safe_append_keys(tenant_id=tenant_id)
    purge = requests.purge(router.current_event)
    tenant = dependencies.tenant_service().offboard(tenant_id, purge=purge)
    try:
        # An offboarded tenant is told nothing more; its signing secret goes now.
        dependencies.webhook_service().forget(tenant_id)
    except Exception:
        # The offboarding is under way regardless; logged with the tenant id so an
        # operator can remove the secret (trainyard/<prefix>/webhooks/<id>).
        logger.exception("could not remove the offboarded tenant's webhook")
    return requests.json_response(202, tenant.api_dict())
