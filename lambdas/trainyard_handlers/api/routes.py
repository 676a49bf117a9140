"""The API's route table: every route once, with what code cannot tell.

The routers bind their functions to these entries by operation id; the CDK app
(``infra/api.py``) derives the API Gateway resources and methods from them, and
``trainyard/openapi.py`` the OpenAPI document. Importable without side effects
(no Powertools, no boto3): the CDK app imports it at synth time.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from pydantic.alias_generators import to_camel, to_snake

from trainyard_handlers.api.models import (
    MONTH_RE,
    AbortUploadRequest,
    AlgorithmList,
    CompleteUploadRequest,
    CreateTenantRequest,
    CreateUploadRequest,
    Health,
    ModelDecisionRequest,
    ModelList,
    ModelVersion,
    PlanList,
    PresignUploadPartsRequest,
    PutWebhookRequest,
    Queue,
    RetryRunRequest,
    Run,
    RunList,
    Tenant,
    TenantList,
    TriggerRunRequest,
    UpdateTenantRequest,
    Upload,
    UploadParts,
    UploadResult,
    Usage,
    Webhook,
    WebhookCreated,
    WebhookDeliveryList,
)

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler.api_gateway import ApiGatewayResolver

# API Gateway's resource methods are added in this order (keeps the template stable).
METHOD_ORDER = ("GET", "POST", "PUT", "PATCH", "DELETE")
_GATEWAY_PARAM = re.compile(r"{(\w+)}")
_RESOLVER_PARAM = re.compile(r"<(\w+)>")

LIMIT_MIN, LIMIT_MAX, LIMIT_DEFAULT = 1, 100, 50

# The query parameters the routers read (JSON Schema, as the OpenAPI document has them).
QUERY_PARAMETERS: dict[str, dict[str, Any]] = {
    "limit": {
        "description": "Page size.",
        "schema": {
            "type": "integer",
            "minimum": LIMIT_MIN,
            "maximum": LIMIT_MAX,
            "default": LIMIT_DEFAULT,
        },
    },
    "nextToken": {
        "description": "The `nextToken` of the previous page (opaque).",
        "schema": {"type": "string"},
    },
    "month": {
        "description": "Calendar month (UTC); defaults to the current one.",
        "schema": {"type": "string", "pattern": MONTH_RE.pattern, "examples": ["2026-01"]},
    },
    "purge": {
        "description": "Also delete the tenant's data (a silo bucket, or a pool tenant's prefix).",
        "schema": {"type": "boolean", "default": False},
    },
}

# Path parameters; TenantId is a schema of the document (the domain's id rules).
PATH_PARAMETERS: dict[str, dict[str, Any]] = {
    "tenantId": {"schema": {"$ref": "#/components/schemas/TenantId"}},
    "runId": {"description": "32 hex characters, time-ordered.", "schema": {"type": "string"}},
    "version": {
        "description": "The model package version in the tenant's group (1, 2, ...).",
        "schema": {"type": "string", "pattern": "^[1-9][0-9]{0,8}$"},
    },
    "uploadId": {
        "description": "A multipart upload's id, as POST /tenants/{tenantId}/uploads answered.",
        "schema": {"type": "string"},
    },
}

TAGS: dict[str, str] = {
    "tenants": "Onboarding, plan changes, offboarding",
    "runs": "Training runs and usage",
    "platform": "Plans, queue, health",
    "models": "A tenant's model registry: versions, approval",
    "uploads": "Training data through presigned S3 requests (no AWS credentials)",
    "webhooks": "A tenant's webhook (signed deliveries of Trainyard's events)",
}

BODY_ERRORS = ("EmptyBody", "MalformedJson", "InvalidBody")
# A training choice the catalog or the plan refuses (error.field names the field).
TRAINING_ERRORS = (
    "UnknownAlgorithm",
    "AlgorithmNotAllowed",
    "ProblemTypeNotSupported",
    "UnknownHyperparameter",
    "InvalidHyperparameter",
)


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # as API Gateway and the document have it: /tenants/{tenantId}
    operation_id: str
    summary: str
    tag: str
    responses: Mapping[int, tuple[str, type[BaseModel]]]  # status -> (description, body)
    errors: Mapping[int, tuple[str, ...]] = field(default_factory=dict)  # status -> codes
    body: type[BaseModel] | None = None
    body_required: bool = True
    query: tuple[str, ...] = ()
    description: str = ""

    @property
    def rule(self) -> str:
        """The resolver's rule: /tenants/<tenant_id> (snake_case function arguments)."""
        return _GATEWAY_PARAM.sub(lambda m: f"<{to_snake(m.group(1))}>", self.path)

    @property
    def path_parameters(self) -> tuple[str, ...]:
        return tuple(_GATEWAY_PARAM.findall(self.path))


ROUTES: tuple[Route, ...] = (
    Route("GET", "/health", "health", "Liveness", "platform", {200: ("OK", Health)}),
    Route(
        "GET",
        "/plans",
        "listPlans",
        "List plans: limits, isolation and instance types",
        "platform",
        {200: ("The plans and the global concurrency cap", PlanList)},
    ),
    Route(
        "GET",
        "/algorithms",
        "listAlgorithms",
        "List the training algorithms: problem types, hyperparameters, plans",
        "platform",
        {200: ("The catalog, how auto picks and the default", AlgorithmList)},
    ),
    Route(
        "GET",
        "/queue",
        "getQueue",
        "Backlog per plan with queue positions",
        "platform",
        {200: ("Queued and running counts and queued runs per plan", Queue)},
    ),
    Route(
        "POST",
        "/tenants",
        "createTenant",
        "Onboard a tenant",
        "tenants",
        {
            201: ("Created and already ACTIVE", Tenant),
            202: ("Created; PROVISIONING (or FAILED with failureReason)", Tenant),
            200: ("Repeated identical request: the existing tenant (idempotent)", Tenant),
        },
        {
            400: ("InvalidTenantId", "ReservedTenantId", "UnknownPlan", *BODY_ERRORS),
            409: ("TenantExists",),
            413: ("PayloadTooLarge",),
        },
        body=CreateTenantRequest,
    ),
    Route(
        "GET",
        "/tenants",
        "listTenants",
        "List tenants",
        "tenants",
        {200: ("A page of tenants", TenantList)},
        {400: ("InvalidLimit", "InvalidNextToken")},
        query=("limit", "nextToken"),
    ),
    Route(
        "GET",
        "/tenants/{tenantId}",
        "getTenant",
        "Get a tenant",
        "tenants",
        {200: ("The tenant", Tenant)},
        {404: ("TenantNotFound",)},
    ),
    Route(
        "PATCH",
        "/tenants/{tenantId}",
        "updateTenant",
        "Change a tenant's plan, suspend or resume it, or set what it trains",
        "tenants",
        {200: ("The tenant; MIGRATING while data moves to another isolation model", Tenant)},
        {
            400: ("EmptyUpdate", "InvalidStatus", "UnknownPlan", *TRAINING_ERRORS, *BODY_ERRORS),
            404: ("TenantNotFound",),
            409: ("TenantMigrating", "TenantNotUpdatable", "IsolationChangeUnsupported"),
            413: ("PayloadTooLarge",),
        },
        body=UpdateTenantRequest,
        description="Plan changes never lose data. Only ACTIVE or SUSPENDED tenants can be "
        "updated; while MIGRATING only a retry of the same plan change is accepted.",
    ),
    Route(
        "DELETE",
        "/tenants/{tenantId}",
        "offboardTenant",
        "Offboard a tenant",
        "tenants",
        {202: ("OFFBOARDING: the tenant's stack is being deleted", Tenant)},
        {400: ("InvalidPurge",), 404: ("TenantNotFound",)},
        query=("purge",),
    ),
    Route(
        "GET",
        "/tenants/{tenantId}/runs",
        "listRuns",
        "List a tenant's runs, newest first",
        "runs",
        {200: ("A page of runs", RunList)},
        {400: ("InvalidLimit", "InvalidNextToken"), 404: ("TenantNotFound",)},
        query=("limit", "nextToken"),
    ),
    Route(
        "POST",
        "/tenants/{tenantId}/runs",
        "triggerRun",
        "Trigger a run on the tenant's current data",
        "runs",
        {202: ("The queued run (coalesced with one already queued)", Run)},
        {
            400: (*TRAINING_ERRORS, *BODY_ERRORS),
            404: ("TenantNotFound",),
            409: ("TenantNotAccepting",),
            413: ("PayloadTooLarge",),
        },
        body=TriggerRunRequest,
        body_required=False,
        description="The body is optional; its training settings apply to this run only "
        "(merged over the tenant's; a run already queued takes them).",
    ),
    Route(
        "GET",
        "/tenants/{tenantId}/runs/{runId}",
        "getRun",
        "Get a run",
        "runs",
        {200: ("The run", Run)},
        {404: ("TenantNotFound", "RunNotFound")},
    ),
    Route(
        "POST",
        "/tenants/{tenantId}/runs/{runId}/retry",
        "retryRun",
        "Retry a FAILED run",
        "runs",
        {202: ("The run, QUEUED again (retries[-1] says when, why and by whom)", Run)},
        {
            400: ("InvalidReason", "MalformedJson", "InvalidBody"),
            404: ("TenantNotFound", "RunNotFound"),
            409: (
                "RunNotRetryable",
                "RetryLimitReached",
                "RetryAlreadyQueued",
                "TenantNotAccepting",
            ),
            413: ("PayloadTooLarge",),
        },
        body=RetryRunRequest,
        body_required=False,
        description="The run queues again under the same caps. At its start SageMaker's "
        "RetryPipelineExecution resumes its execution from the failed step (the steps "
        "that succeeded are not run again: retries[-1].mode RESUMED); when that execution "
        "cannot be retried, a new execution starts from the top (RESTARTED, with "
        "fallbackReason). Usage and cost add up over its executions. At most "
        "maxRunRetries retries a run, one retried run of a tenant waiting at a time.",
    ),
    Route(
        "GET",
        "/tenants/{tenantId}/usage",
        "getUsage",
        "A tenant's usage in a month",
        "runs",
        {200: ("Runs, training time and cost estimate", Usage)},
        {400: ("InvalidMonth",), 404: ("TenantNotFound",)},
        query=("month",),
    ),
    Route(
        "GET",
        "/tenants/{tenantId}/models",
        "listModels",
        "List a tenant's model versions, newest first",
        "models",
        {200: ("A page of model versions", ModelList)},
        {400: ("InvalidLimit", "InvalidNextToken"), 404: ("TenantNotFound",)},
        query=("limit", "nextToken"),
    ),
    Route(
        "POST",
        "/tenants/{tenantId}/models/{version}/approve",
        "approveModel",
        "Approve a model version (SageMaker ModelApprovalStatus Approved)",
        "models",
        {200: ("The model version, Approved (a repeated approval changes nothing)", ModelVersion)},
        {
            400: ("InvalidModelVersion", "InvalidReason", "MalformedJson", "InvalidBody"),
            404: ("TenantNotFound", "ModelNotFound"),
            409: ("ModelOfAnotherTenant", "ModelNotReady", "ModelUpdateConflict"),
            413: ("PayloadTooLarge",),
        },
        body=ModelDecisionRequest,
        description="The body is optional. Who approved (the caller's IAM identity) and "
        "why (reason) are recorded on the model package and in the model.approved event.",
    ),
    Route(
        "POST",
        "/tenants/{tenantId}/models/{version}/reject",
        "rejectModel",
        "Reject a model version (SageMaker ModelApprovalStatus Rejected)",
        "models",
        {200: ("The model version, Rejected (a repeated rejection changes nothing)", ModelVersion)},
        {
            400: ("InvalidModelVersion", "InvalidReason", "MalformedJson", "InvalidBody"),
            404: ("TenantNotFound", "ModelNotFound"),
            409: ("ModelOfAnotherTenant", "ModelNotReady", "ModelUpdateConflict"),
            413: ("PayloadTooLarge",),
        },
        body=ModelDecisionRequest,
        description="The body is optional. Rejecting an approved version revokes it "
        "(SageMaker allows it); who and why are recorded as for an approval.",
    ),
    Route(
        "PUT",
        "/tenants/{tenantId}/webhook",
        "putWebhook",
        "Set the tenant's webhook (a new signing secret, shown once)",
        "webhooks",
        {200: ("The webhook with its new signing secret (shown only here)", WebhookCreated)},
        {
            400: (
                "InvalidWebhookUrl",
                "WebhookUrlNotHttps",
                "WebhookUrlHasCredentials",
                "WebhookUrlPortNotAllowed",
                "WebhookAddressNotPublic",
                "WebhookHostUnresolvable",
                "UnknownWebhookEvent",
                "InvalidWebhookEvents",
                *BODY_ERRORS,
            ),
            404: ("TenantNotFound",),
            413: ("PayloadTooLarge",),
            503: ("WebhookSecretBusy",),
        },
        body=PutWebhookRequest,
        description="Only https URLs on port 443 whose host resolves to public addresses "
        "only (checked again before every delivery). Every PUT makes a new secret; the "
        "previous one stops signing when the webhook is written. 503 WebhookSecretBusy "
        "(practically never): retry after Retry-After seconds.",
    ),
    Route(
        "GET",
        "/tenants/{tenantId}/webhook",
        "getWebhook",
        "Get the tenant's webhook (never its secret)",
        "webhooks",
        {200: ("The webhook", Webhook)},
        {404: ("TenantNotFound", "WebhookNotFound")},
    ),
    Route(
        "DELETE",
        "/tenants/{tenantId}/webhook",
        "deleteWebhook",
        "Remove the tenant's webhook and its signing secret",
        "webhooks",
        {200: ("The webhook that was removed", Webhook)},
        {404: ("TenantNotFound", "WebhookNotFound")},
    ),
    Route(
        "GET",
        "/tenants/{tenantId}/webhook/deliveries",
        "listWebhookDeliveries",
        "List the webhook's deliveries, newest first",
        "webhooks",
        {200: ("A page of deliveries", WebhookDeliveryList)},
        {400: ("InvalidLimit", "InvalidNextToken"), 404: ("TenantNotFound",)},
        query=("limit", "nextToken"),
    ),
)

# Uploads through the API (trainyard_core/tenants/uploads.py): every refusal of the
# file itself (key, content type, size, expiry) is S3's, on the presigned request.
UPLOAD_ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        "/tenants/{tenantId}/uploads",
        "createUpload",
        "Presign the upload of one CSV file to the tenant's data prefix",
        "uploads",
        {201: ("A presigned POST, or a multipart upload's presigned parts", Upload)},
        {
            400: ("InvalidFileName", *BODY_ERRORS),
            404: ("TenantNotFound",),
            409: ("TenantNotAccepting", "DataQuotaExceeded", "TooManyDataObjects"),
            413: ("UploadTooLarge", "PayloadTooLarge"),
        },
        body=CreateUploadRequest,
        description="Signed with a session of the uploader role narrowed to this one key: "
        "S3 takes only that key, Content-Type text/csv and at most the plan's "
        "maxUploadBytes (and the room left in its dataQuotaBytes), for 15 minutes (a "
        "multipart upload's parts for an hour, each of exactly its signed size; "
        "POST .../parts signs them again, until the upload's deadline a day after it "
        "started).",
    ),
    Route(
        "POST",
        "/tenants/{tenantId}/uploads/{uploadId}/parts",
        "presignUploadParts",
        "Presign parts of a multipart upload in progress again (fresh URLs for an hour)",
        "uploads",
        {200: ("The parts' new presigned PUTs", UploadParts)},
        {
            400: ("InvalidPartNumbers", *BODY_ERRORS),
            404: ("TenantNotFound", "UploadNotFound"),
            409: ("TenantNotAccepting",),
            413: ("PayloadTooLarge",),
        },
        body=PresignUploadPartsRequest,
        description="For a client whose part URLs near their expiry (an hour): each part "
        "is signed again with its planned size, as the server recorded the upload when it "
        "started it. Until the upload's deadline, a day after it started.",
    ),
    Route(
        "POST",
        "/tenants/{tenantId}/uploads/{uploadId}/complete",
        "completeUpload",
        "Complete a multipart upload (the file then starts training)",
        "uploads",
        {200: ("Completed", UploadResult)},
        {
            400: ("InvalidUploadKey", "InvalidParts", *BODY_ERRORS),
            404: ("TenantNotFound", "UploadNotFound"),
            409: ("TenantNotAccepting",),
            413: ("PayloadTooLarge",),
        },
        body=CompleteUploadRequest,
    ),
    Route(
        "POST",
        "/tenants/{tenantId}/uploads/{uploadId}/abort",
        "abortUpload",
        "Abort a multipart upload (S3 drops its parts)",
        "uploads",
        {200: ("Aborted", UploadResult)},
        {
            400: ("InvalidUploadKey", *BODY_ERRORS),
            404: ("TenantNotFound", "UploadNotFound"),
            409: ("TenantNotAccepting",),
            413: ("PayloadTooLarge",),
        },
        body=AbortUploadRequest,
    ),
)
ROUTES = ROUTES + UPLOAD_ROUTES

_BY_ID = {route.operation_id: route for route in ROUTES}


def route(operation_id: str) -> Route:
    return _BY_ID[operation_id]


def gateway_resources() -> dict[str, tuple[str, ...]]:
    """API Gateway resource path -> its methods (paths sorted, methods in METHOD_ORDER)."""
    methods: dict[str, list[str]] = {}
    for r in ROUTES:
        methods.setdefault(r.path, []).append(r.method)
    return {path: tuple(sorted(methods[path], key=METHOD_ORDER.index)) for path in sorted(methods)}


def gateway_path(rule: str) -> str:
    """``/tenants/<tenant_id>`` -> ``/tenants/{tenantId}`` (a resolver rule's resource path)."""
    return _RESOLVER_PARAM.sub(lambda m: "{" + to_camel(m.group(1)) + "}", rule)


def served_routes(app: ApiGatewayResolver) -> set[tuple[str, str]]:
    """(method, rule) of every route a resolver serves, rules as the resolver has them."""
    return {(r.method.upper(), r.path) for r in [*app._static_routes, *app._dynamic_routes]}


def check_routes(app: ApiGatewayResolver) -> None:
    """A resolver serves exactly the table: no route without an entry, no entry unserved."""
    served = served_routes(app)
    declared = {(r.method, r.rule) for r in ROUTES}
    undocumented = sorted(served - declared)
    unserved = sorted(declared - served)
    if undocumented or unserved:
        raise ValueError(f"routes without a ROUTES entry: {undocumented}; unserved: {unserved}")


def _check_table() -> None:
    if len(_BY_ID) != len(ROUTES):
        raise ValueError("operation ids must be unique")
    for r in ROUTES:
        unknown = [q for q in r.query if q not in QUERY_PARAMETERS]
        unknown += [p for p in r.path_parameters if p not in PATH_PARAMETERS]
        if r.method not in METHOD_ORDER or r.tag not in TAGS or unknown:
            raise ValueError(f"{r.operation_id}: bad method, tag or parameters {unknown}")


_check_table()
