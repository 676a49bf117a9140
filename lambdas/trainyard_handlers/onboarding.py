"""Onboarding API Lambda (API Gateway REST, IAM auth): tenants, plans, runs, queue.

Thin: parse and validate the request, call the domain services, shape JSON.
Every bad input becomes a 4xx ``{"error": {"code", "message"}}``; unexpected
failures become a 500 with no internals in the body.
"""

from __future__ import annotations

import json
import os
import re
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, ValidationError
from trainyard_core import wiring
from trainyard_core.config import Settings, settings_from_env
from trainyard_core.errors import DomainError, InvalidRequest, PayloadTooLarge
from trainyard_core.tenants import TenantService

logger = Logger()
tracer = Tracer()
metrics = Metrics()
app = APIGatewayRestResolver()

MAX_BODY_BYTES = 16 * 1024
MONTH_RE = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


class CreateTenantRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    tenantId: str
    plan: str


class UpdateTenantRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    plan: str | None = None
    status: str | None = None


# --- wiring of dependencies (built once per container, from the environment)


@cache
def _settings() -> Settings:
    return settings_from_env()


@cache
def _tenant_service() -> TenantService:
    from trainyard_core.model_registry import SageMakerModelRegistry
    from trainyard_core.provisioning import (
        CloudFormationProvisioner,
        S3DataMover,
        S3DataPurger,
        parse_template_urls,
    )
    from trainyard_core.store.tenants_dynamodb import DynamoTenantRepository

    return TenantService(
        settings=_settings(),
        tenants=DynamoTenantRepository(os.environ[wiring.ENV_TENANTS_TABLE]),
        provisioner=CloudFormationProvisioner(
            template_urls=parse_template_urls(os.environ[wiring.ENV_TENANT_TEMPLATE_URLS]),
            role_arn=os.environ.get(wiring.ENV_TENANT_STACK_ROLE_ARN) or None,
        ),
        account_id=os.environ[wiring.ENV_ACCOUNT_ID],
        purger=S3DataPurger(),
        mover=S3DataMover(),
        used_before=lambda tenant_id: bool(_runs().runs.list_runs(tenant_id, limit=1)[0]),
        models=SageMakerModelRegistry(),
        retained=_retained,
    )


@cache
def _retained_resources() -> Any:
    from trainyard_core.model_registry import RetainedResources

    return RetainedResources()


def _retained(tenant_id: str) -> list[str]:
    names = wiring.Names.from_settings(_settings())
    account = os.environ[wiring.ENV_ACCOUNT_ID]
    return list(
        _retained_resources().of(
            group=names.model_package_group(tenant_id),
            silo_bucket=names.silo_bucket(tenant_id, account),
            pool_bucket=names.pool_bucket(account),
            pool_prefix=names.pool_tenant_prefix(tenant_id),
        )
    )


def reset_dependencies() -> None:
    """Forget cached clients (the local runtime calls this when a new stack starts)."""
    _settings.cache_clear()
    _tenant_service.cache_clear()
    _retained_resources.cache_clear()
    _runs.cache_clear()


@cache
def _runs() -> Any:
    from trainyard_core.scheduling.factory import build_scheduler_service

    return build_scheduler_service()


# --- request helpers


def _json_body(model: type[BaseModel]) -> Any:
    raw = app.current_event.body
    if raw is None or raw.strip() == "":
        raise InvalidRequest("request body is required", code="EmptyBody")
    if len(raw.encode()) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"request body exceeds {MAX_BODY_BYTES} bytes")
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"body is not valid JSON: {exc.msg}", code="MalformedJson") from exc
    if not isinstance(data, dict):
        raise InvalidRequest("body must be a JSON object", code="InvalidBody")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        raise InvalidRequest(f"{where}: {first.get('msg')}", code="InvalidBody") from exc


def _limit() -> int:
    raw = app.current_event.get_query_string_value("limit", "50") or "50"
    if not raw.isdigit() or not 1 <= int(raw) <= 100:
        raise InvalidRequest("limit must be an integer between 1 and 100", code="InvalidLimit")
    return int(raw)


def _next_token() -> str | None:
    return app.current_event.get_query_string_value("nextToken") or None


def _page(key: str, items: list[dict[str, Any]], token: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {key: items}
    if token:
        body["nextToken"] = token
    return body


def _json(status: int, body: Any) -> Response:
    return Response(status_code=status, content_type="application/json", body=json.dumps(body))


# --- routes


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/plans")
def list_plans() -> dict[str, Any]:
    settings = _settings()
    return {
        "plans": [p.api_dict() for p in settings.plans.values()],
        "globalMaxConcurrentRuns": settings.global_max_concurrent_runs,
    }


@app.post("/tenants")
def create_tenant() -> Response:
    request = _json_body(CreateTenantRequest)
    tenant, created = _tenant_service().create(request.tenantId, request.plan)
    logger.append_keys(tenant_id=tenant.tenant_id)
    if created:
        metrics.add_metric(name="TenantsCreated", unit="Count", value=1)
    status = 201 if tenant.status.value == "ACTIVE" and created else 202 if created else 200
    return _json(status, tenant.api_dict())


@app.get("/tenants")
def list_tenants() -> dict[str, Any]:
    tenants, token = _tenant_service().list(_limit(), _next_token())
    return _page("tenants", [t.api_dict() for t in tenants], token)


@app.get("/tenants/<tenant_id>")
def get_tenant(tenant_id: str) -> dict[str, Any]:
    logger.append_keys(tenant_id=tenant_id)
    return _tenant_service().get(tenant_id).api_dict()


@app.patch("/tenants/<tenant_id>")
def update_tenant(tenant_id: str) -> dict[str, Any]:
    logger.append_keys(tenant_id=tenant_id)
    request = _json_body(UpdateTenantRequest)
    tenant = _tenant_service().update(tenant_id, plan=request.plan, status=request.status)
    if request.plan is not None:
        try:
            moved = _runs().follow_plan_change(tenant_id)
            if moved is not None:
                logger.info("queued run follows the plan change", extra={"run_id": moved.run_id})
        except Exception:
            # The plan change stands; dispatch moves the run when it next sees it.
            logger.exception("could not move the queued run to the new plan")
    if tenant.status.value == "ACTIVE":
        # A resumed tenant's waiting runs (or a plan with free room) start now,
        # not at the next one-minute reconcile.
        _request_dispatch(tenant.plan)
    return tenant.api_dict()


@app.delete("/tenants/<tenant_id>")
def delete_tenant(tenant_id: str) -> Response:
    logger.append_keys(tenant_id=tenant_id)
    raw = (app.current_event.get_query_string_value("purge") or "false").lower()
    if raw not in ("true", "false"):
        raise InvalidRequest("purge must be true or false", code="InvalidPurge")
    tenant = _tenant_service().offboard(tenant_id, purge=raw == "true")
    return _json(202, tenant.api_dict())


@app.get("/tenants/<tenant_id>/runs")
def list_runs(tenant_id: str) -> dict[str, Any]:
    logger.append_keys(tenant_id=tenant_id)
    _tenant_service().get(tenant_id)  # 404 for unknown tenants
    runs, token = _runs().list_runs(tenant_id, limit=_limit(), next_token=_next_token())
    return _page("runs", [r.api_dict() for r in runs], token)


@app.get("/tenants/<tenant_id>/runs/<run_id>")
def get_run(tenant_id: str, run_id: str) -> dict[str, Any]:
    logger.append_keys(tenant_id=tenant_id, run_id=run_id)
    _tenant_service().get(tenant_id)
    run = _runs().get_run(tenant_id, run_id)
    if run is None:
        raise DomainError(
            f"run {run_id!r} of tenant {tenant_id!r} does not exist", code="RunNotFound"
        )
    return run.api_dict()


@app.post("/tenants/<tenant_id>/runs")
def trigger_run(tenant_id: str) -> Response:
    logger.append_keys(tenant_id=tenant_id)
    tenant = _tenant_service().get(tenant_id)
    run = _runs().submit_manual_run(tenant)
    logger.append_keys(run_id=run.run_id)
    _request_dispatch(run.plan)
    return _json(202, run.api_dict())


def _request_dispatch(plan: str) -> None:
    """Wake the scheduler now instead of at the next reconcile: the API never admits
    runs itself, so admission stays in one place (the scheduler)."""
    import boto3

    names = wiring.Names.from_settings(_settings())
    sqs = boto3.client("sqs")
    try:
        url = sqs.get_queue_url(QueueName=names.intake_queue(plan))["QueueUrl"]
        sqs.send_message(
            QueueUrl=url,
            MessageBody=json.dumps({"source": "trainyard", "detail-type": "Dispatch Requested"}),
        )
    except Exception:
        # The run is recorded; the one-minute reconcile dispatches it anyway.
        logger.exception("could not request an immediate dispatch")


@app.get("/tenants/<tenant_id>/usage")
def usage(tenant_id: str) -> dict[str, Any]:
    logger.append_keys(tenant_id=tenant_id)
    _tenant_service().get(tenant_id)
    month = app.current_event.get_query_string_value("month")
    if month is None:
        from trainyard_core.models import now_utc

        month = now_utc().strftime("%Y-%m")
    if not MONTH_RE.fullmatch(month):
        raise InvalidRequest("month must be YYYY-MM", code="InvalidMonth")
    return _runs().usage(tenant_id, month)


@app.get("/queue")
def queue() -> dict[str, Any]:
    return _runs().queue_overview()


# --- errors


@app.exception_handler(DomainError)
def _domain_error(exc: DomainError) -> Response:
    status = exc.status
    if exc.code == "RunNotFound":
        status = 404
    logger.info("request rejected", extra={"code": exc.code, "reason": exc.message})
    return _json(status, {"error": {"code": exc.code, "message": exc.message}})


@app.not_found
def _not_found(exc: NotFoundError) -> Response:
    return _json(
        404,
        {"error": {"code": "RouteNotFound", "message": f"no route {app.current_event.path}"}},
    )


@app.exception_handler(Exception)
def _unexpected(exc: Exception) -> Response:
    logger.exception("unhandled error")
    return _json(500, {"error": {"code": "InternalError", "message": "internal error"}})


class TenantLifecycleError(RuntimeError):
    """A tenant's provisioning, migration or offboarding step raised."""


def _is_lifecycle_schedule(event: dict[str, Any]) -> bool:
    return event.get("source") == "aws.events" and event.get("detail-type") == "Scheduled Event"


@tracer.capture_method
def advance_tenants(context: LambdaContext) -> dict[str, Any]:
    """The lifecycle schedule: tenants finish provisioning, migrating and
    offboarding on their own, not only when someone reads them."""
    report = _tenant_service().advance_pending(
        time_left=lambda: context.get_remaining_time_in_millis() / 1000.0
    )
    for error in report["errors"]:
        tenant_id, _, reason = error.partition(": ")
        logger.error(
            "tenant lifecycle step failed", extra={"tenant_id": tenant_id, "reason": reason}
        )
    if report["advanced"] or report["errors"] or report["deferred"]:
        logger.info("tenant lifecycle advanced", extra={"report": report})
    metrics.add_metric("TenantsPending", MetricUnit.Count, len(report["waiting"]))
    if report["errors"]:
        # After every other tenant had its turn: fail the invocation so the
        # <prefix>-onboarding-errors alarm sees it (the next minute retries anyway).
        raise TenantLifecycleError(f"{len(report['errors'])} tenant(s) failed: {report['errors']}")
    return {key: len(ids) for key, ids in report.items()}


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if _is_lifecycle_schedule(event):
        return advance_tenants(context)
    return app.resolve(event, context)
