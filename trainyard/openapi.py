"""OpenAPI 3.1 document of the onboarding API, generated from the code.

Paths and methods come from the Powertools resolver's route table (what the
handler actually serves); request bodies from the handler's pydantic request
models; response bodies from the wire models (Tenant, Run, Plan) plus the
envelopes below. What code cannot tell (summaries, which error codes a route
returns) is declared once per route in OPERATIONS, and building the document
fails if a served route is undeclared or a declared one is not served.

    python -m trainyard.openapi > docs/openapi.json
"""

from __future__ import annotations

import copy
import html
import json
import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from aws_lambda_powertools.event_handler.api_gateway import ApiGatewayResolver
from pydantic import BaseModel, ConfigDict, Field, RootModel
from pydantic.alias_generators import to_camel
from pydantic.json_schema import models_json_schema
from trainyard_core.config import Plan
from trainyard_core.models import TENANT_ID_MAX, TENANT_ID_MIN, TENANT_ID_RE, Run, Tenant
from trainyard_handlers import onboarding
from trainyard_handlers.onboarding import (
    MAX_BODY_BYTES,
    MONTH_RE,
    CreateTenantRequest,
    UpdateTenantRequest,
)

OPENAPI_VERSION = "3.1.0"
API_VERSION = "1"
REF = "#/components/schemas/{model}"

# --- response envelopes (the handler builds these as dicts; their shape lives here)


class _Envelope(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class Health(_Envelope):
    status: str
    # Only the local stack adds it: where the CLI uploads (AWS has real S3).
    aws_endpoint_url: str | None = Field(default=None, description="Local stack only.")


class PlanList(_Envelope):
    plans: list[Plan]
    global_max_concurrent_runs: int = Field(ge=1)


class TenantList(_Envelope):
    tenants: list[Tenant]
    next_token: str | None = Field(default=None, description="Absent on the last page.")


class RunList(_Envelope):
    runs: list[Run] = Field(description="Newest first.")
    next_token: str | None = Field(default=None, description="Absent on the last page.")


class Usage(_Envelope):
    tenant_id: str
    month: str
    runs: int
    training_seconds: float
    training_hours: float
    cost_estimate_usd: float
    budget_hours: float | None = Field(description="The plan's monthly hours; null = unlimited.")


class QueuedRun(_Envelope):
    run_id: str
    tenant_id: str
    queue_position: int | None
    queued_at: str
    waiting_reason: str | None = Field(default=None, description="Present while held back.")


class PlanQueue(_Envelope):
    queued: int
    running: int
    cap: int
    runs: list[QueuedRun] = Field(description="In queue order.")


class Queue(RootModel[dict[str, PlanQueue]]):
    """Backlog per plan name."""


class ErrorDetail(BaseModel):
    code: str
    message: str


class Error(BaseModel):
    error: ErrorDetail


# Wire models always serialize every field (null when unset), so all are required;
# envelopes omit their optional keys (nextToken, waitingReason, awsEndpointUrl).
ALWAYS_PRESENT = (Tenant, Run, Plan, Usage)


# --- per-route declarations


@dataclass(frozen=True)
class Operation:
    operation_id: str
    summary: str
    tag: str
    success: dict[int, tuple[str, str]]  # status -> (description, schema name)
    errors: dict[int, tuple[str, ...]] = field(default_factory=dict)  # status -> error codes
    body: type[BaseModel] | None = None
    query: tuple[str, ...] = ()
    description: str = ""


BODY_ERRORS = ("EmptyBody", "MalformedJson", "InvalidBody")

# Keyed by the resolver's (method, path); path parameters are renamed to the
# camelCase names the API Gateway resources use (infra/api.py ROUTES).
OPERATIONS: dict[tuple[str, str], Operation] = {
    ("GET", "/health"): Operation("health", "Liveness", "platform", {200: ("OK", "Health")}),
    ("GET", "/plans"): Operation(
        "listPlans",
        "List plans: limits, isolation and instance types",
        "platform",
        {200: ("The plans and the global concurrency cap", "PlanList")},
    ),
    ("GET", "/queue"): Operation(
        "getQueue",
        "Backlog per plan with queue positions",
        "platform",
        {200: ("Queued and running counts and queued runs per plan", "Queue")},
    ),
    ("POST", "/tenants"): Operation(
        "createTenant",
        "Onboard a tenant",
        "tenants",
        {
            201: ("Created and already ACTIVE", "Tenant"),
            202: ("Created; PROVISIONING (or FAILED with failureReason)", "Tenant"),
            200: ("Repeated identical request: the existing tenant (idempotent)", "Tenant"),
        },
        {
            400: ("InvalidTenantId", "ReservedTenantId", "UnknownPlan", *BODY_ERRORS),
            409: ("TenantExists",),
            413: ("PayloadTooLarge",),
        },
        body=CreateTenantRequest,
    ),
    ("GET", "/tenants"): Operation(
        "listTenants",
        "List tenants",
        "tenants",
        {200: ("A page of tenants", "TenantList")},
        {400: ("InvalidLimit", "InvalidNextToken")},
        query=("limit", "nextToken"),
    ),
    ("GET", "/tenants/<tenant_id>"): Operation(
        "getTenant",
        "Get a tenant",
        "tenants",
        {200: ("The tenant", "Tenant")},
        {404: ("TenantNotFound",)},
    ),
    ("PATCH", "/tenants/<tenant_id>"): Operation(
        "updateTenant",
        "Change a tenant's plan and/or suspend or resume it",
        "tenants",
        {200: ("The tenant; MIGRATING while data moves to another isolation model", "Tenant")},
        {
            400: ("EmptyUpdate", "InvalidStatus", "UnknownPlan", *BODY_ERRORS),
            404: ("TenantNotFound",),
            409: ("TenantMigrating", "TenantNotUpdatable", "IsolationChangeUnsupported"),
            413: ("PayloadTooLarge",),
        },
        body=UpdateTenantRequest,
        description="Plan changes never lose data. Only ACTIVE or SUSPENDED tenants can be "
        "updated; while MIGRATING only a retry of the same plan change is accepted.",
    ),
    ("DELETE", "/tenants/<tenant_id>"): Operation(
        "offboardTenant",
        "Offboard a tenant",
        "tenants",
        {202: ("OFFBOARDING: the tenant's stack is being deleted", "Tenant")},
        {400: ("InvalidPurge",), 404: ("TenantNotFound",)},
        query=("purge",),
    ),
    ("GET", "/tenants/<tenant_id>/runs"): Operation(
        "listRuns",
        "List a tenant's runs, newest first",
        "runs",
        {200: ("A page of runs", "RunList")},
        {400: ("InvalidLimit", "InvalidNextToken"), 404: ("TenantNotFound",)},
        query=("limit", "nextToken"),
    ),
    ("POST", "/tenants/<tenant_id>/runs"): Operation(
        "triggerRun",
        "Trigger a run on the tenant's current data",
        "runs",
        {202: ("The queued run (coalesced with one already queued)", "Run")},
        {404: ("TenantNotFound",), 409: ("TenantNotAccepting",)},
    ),
    ("GET", "/tenants/<tenant_id>/runs/<run_id>"): Operation(
        "getRun",
        "Get a run",
        "runs",
        {200: ("The run", "Run")},
        {404: ("TenantNotFound", "RunNotFound")},
    ),
    ("GET", "/tenants/<tenant_id>/usage"): Operation(
        "getUsage",
        "A tenant's usage in a month",
        "runs",
        {200: ("Runs, training time and cost estimate", "Usage")},
        {400: ("InvalidMonth",), 404: ("TenantNotFound",)},
        query=("month",),
    ),
}

_PATH_PARAM = re.compile(r"<(\w+)>")

QUERY_PARAMETERS: dict[str, dict[str, Any]] = {
    "limit": {
        "description": "Page size.",
        "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 50},
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

PATH_PARAMETERS: dict[str, dict[str, Any]] = {
    "tenantId": {"schema": {"$ref": REF.format(model="TenantId")}},
    "runId": {"description": "32 hex characters, time-ordered.", "schema": {"type": "string"}},
}

TENANT_ID_SCHEMA: dict[str, Any] = {
    "type": "string",
    "minLength": TENANT_ID_MIN,
    "maxLength": TENANT_ID_MAX,
    "pattern": TENANT_ID_RE.pattern,
    "description": "Lowercase letters, digits and inner hyphens; reserved words are refused.",
    "examples": ["acme"],
}


def served_routes(app: ApiGatewayResolver | None = None) -> set[tuple[str, str]]:
    """(method, path) of every route the resolver serves, paths as the resolver has them."""
    app = app or onboarding.app
    return {(r.method.upper(), r.path) for r in [*app._static_routes, *app._dynamic_routes]}


def openapi_path(resolver_path: str) -> str:
    """``/tenants/<tenant_id>`` -> ``/tenants/{tenantId}`` (the API Gateway resource path)."""
    return _PATH_PARAM.sub(lambda m: "{" + to_camel(m.group(1)) + "}", resolver_path)


def _strip_titles(node: Any) -> Any:
    # Pydantic's auto titles ("Tenant Id") only add noise next to the property names.
    if isinstance(node, dict):
        props = node.get("properties")
        out = {k: _strip_titles(v) for k, v in node.items() if k != "title" or props is not None}
        if isinstance(props, dict):
            out["properties"] = {k: _strip_titles(v) for k, v in props.items()}
        return out
    if isinstance(node, list):
        return [_strip_titles(v) for v in node]
    return node


def _schemas() -> dict[str, Any]:
    responses: list[type[BaseModel]] = [
        Tenant,
        Run,
        Plan,
        Health,
        PlanList,
        TenantList,
        RunList,
        Usage,
        Queue,
        Error,
    ]
    models = [(m, "serialization") for m in responses]
    models += [(m, "validation") for m in (CreateTenantRequest, UpdateTenantRequest)]
    _, top = models_json_schema(models, by_alias=True, ref_template=REF)  # type: ignore[arg-type]
    schemas: dict[str, Any] = _strip_titles(top["$defs"])
    # api_dict() leaves internal bookkeeping out of the wire shape.
    for model in (Tenant, Run):
        schema = schemas[model.__name__]
        for name in model._internal_fields():
            schema["properties"].pop(to_camel(name), None)
    for model in ALWAYS_PRESENT:
        schema = schemas[model.__name__]
        schema["required"] = list(schema["properties"])
        schema["additionalProperties"] = False
    schemas["TenantId"] = TENANT_ID_SCHEMA
    for name in ("Tenant", "CreateTenantRequest"):
        schemas[name]["properties"]["tenantId"] = {"$ref": REF.format(model="TenantId")}
    schemas["Tenant"]["properties"]["dataPrefix"]["description"] = (
        "Ends with '/'; uploads go to s3://<dataBucket>/<dataPrefix><file>.csv."
    )
    schemas["CreateTenantRequest"]["properties"]["plan"]["description"] = "A name from GET /plans."
    update = schemas["UpdateTenantRequest"]["properties"]
    update["plan"]["description"] = "A name from GET /plans."
    update["status"] = {
        "anyOf": [{"enum": ["ACTIVE", "SUSPENDED"], "type": "string"}, {"type": "null"}],
        "default": None,
    }
    schemas["UpdateTenantRequest"]["minProperties"] = 1
    timestamps = ("createdAt", "updatedAt", "queuedAt", "startedAt", "endedAt")
    for name in ("Tenant", "Run"):
        for prop, schema in schemas[name]["properties"].items():
            if prop in timestamps:
                schema["description"] = "ISO-8601 UTC with milliseconds."
    return dict(sorted(schemas.items()))


def _error_response(status: int, codes: tuple[str, ...]) -> dict[str, Any]:
    return {
        "description": "Error codes: " + ", ".join(f"`{c}`" for c in codes),
        "content": {"application/json": {"schema": {"$ref": REF.format(model="Error")}}},
        # Machine-readable list of the codes (tests check them against the handler).
        "x-error-codes": list(codes),
    }


def _operation(route_path: str, op: Operation) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"name": to_camel(p), "in": "path", "required": True, **PATH_PARAMETERS[to_camel(p)]}
        for p in _PATH_PARAM.findall(route_path)
    ]
    params += [
        {"name": q, "in": "query", "required": False, **QUERY_PARAMETERS[q]} for q in op.query
    ]
    responses: dict[str, Any] = {}
    for status, (description, schema) in sorted(op.success.items()):
        responses[str(status)] = {
            "description": description,
            "content": {"application/json": {"schema": {"$ref": REF.format(model=schema)}}},
        }
    for status, codes in sorted(op.errors.items()):
        responses[str(status)] = _error_response(status, codes)
    responses["500"] = {"$ref": "#/components/responses/InternalError"}
    out: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag],
    }
    if op.description:
        out["description"] = op.description
    if params:
        out["parameters"] = params
    if op.body is not None:
        out["requestBody"] = {
            "required": True,
            "description": f"JSON object, at most {MAX_BODY_BYTES} bytes.",
            "content": {
                "application/json": {"schema": {"$ref": REF.format(model=op.body.__name__)}}
            },
        }
    out["responses"] = responses
    return out


def check_routes(app: ApiGatewayResolver | None = None) -> None:
    served = served_routes(app)
    undocumented = sorted(served - set(OPERATIONS))
    unserved = sorted(set(OPERATIONS) - served)
    if undocumented or unserved:
        raise ValueError(f"routes without OPERATIONS entry: {undocumented}; unserved: {unserved}")


@cache
def _document() -> dict[str, Any]:
    check_routes()
    paths: dict[str, dict[str, Any]] = {}
    for method, route_path in sorted(served_routes(), key=lambda r: (r[1], r[0])):
        item = paths.setdefault(openapi_path(route_path), {})
        item[method.lower()] = _operation(route_path, OPERATIONS[(method, route_path)])
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Trainyard onboarding API",
            "version": API_VERSION,
            "description": (
                "Tenants, plans, runs and the queue. JSON, camelCase, the same locally and in "
                "AWS. In AWS every method uses IAM authorization: sign requests with SigV4 "
                "(service `execute-api`). The embedded local stack needs no signature. Errors "
                'are `{"error": {"code", "message"}}` with a 4xx; never a stack trace.'
            ),
        },
        "servers": [
            {
                "url": "https://{restApiId}.execute-api.{region}.amazonaws.com/v1",
                "description": "AWS (API Gateway REST, stage v1)",
                "variables": {
                    "restApiId": {"default": "example"},
                    "region": {"default": "us-east-1"},
                },
            },
            {
                "url": "http://127.0.0.1:{port}",
                "description": "Embedded local stack (trainyard local up)",
                "variables": {"port": {"default": "8787"}},
            },
        ],
        "security": [{"sigv4": []}],
        "tags": [
            {"name": "tenants", "description": "Onboarding, plan changes, offboarding"},
            {"name": "runs", "description": "Training runs and usage"},
            {"name": "platform", "description": "Plans, queue, health"},
        ],
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "responses": {
                "InternalError": {
                    "description": "Unexpected failure (`InternalError`); no internals leak.",
                    "content": {
                        "application/json": {"schema": {"$ref": REF.format(model="Error")}}
                    },
                }
            },
            "securitySchemes": {
                "sigv4": {
                    "type": "apiKey",
                    "name": "Authorization",
                    "in": "header",
                    "description": "AWS Signature Version 4 (API Gateway AWS_IAM authorization).",
                    # API Gateway's marker for IAM (SigV4) authorization.
                    "x-amazon-apigateway-authtype": "awsSigv4",
                }
            },
        },
    }


def build_document() -> dict[str, Any]:
    """The OpenAPI document (a fresh copy: callers may mutate it)."""
    return copy.deepcopy(_document())


def render_json(document: dict[str, Any] | None = None) -> str:
    """Exactly what docs/openapi.json holds."""
    return json.dumps(document or build_document(), indent=2, ensure_ascii=False) + "\n"


# --- a self-contained HTML reference (no CDN, no scripts)


def _schema_text(schema: dict[str, Any]) -> str:
    return html.escape(json.dumps(schema, indent=2, ensure_ascii=False))


def render_html(document: dict[str, Any] | None = None) -> str:
    doc = document or build_document()
    e = html.escape
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{e(doc['info']['title'])}</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;"
        "padding:0 1rem;line-height:1.4}code,pre{background:#f4f4f4;border-radius:3px}"
        "pre{padding:.5rem;overflow:auto;font-size:.85rem}.m{display:inline-block;"
        "min-width:4.5rem;font-weight:bold}section{border-top:1px solid #ddd;padding:.5rem 0}"
        "table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.2rem .5rem;"
        "text-align:left;vertical-align:top}</style></head><body>",
        f"<h1>{e(doc['info']['title'])} <small>v{e(doc['info']['version'])}</small></h1>",
        f"<p>{e(doc['info']['description'])}</p>",
        "<p>Machine-readable: <a href='/openapi.json'>openapi.json</a> (OpenAPI "
        f"{e(doc['openapi'])}).</p><h2>Operations</h2>",
    ]
    for path, item in doc["paths"].items():
        for method, op in item.items():
            anchor = e(op["operationId"])
            parts.append(
                f"<section id='{anchor}'><h3><span class='m'>{e(method.upper())}</span>"
                f"<code>{e(path)}</code> — {e(op['summary'])}</h3>"
            )
            if "description" in op:
                parts.append(f"<p>{e(op['description'])}</p>")
            if op.get("parameters"):
                parts.append("<table><tr><th>parameter</th><th>in</th><th>schema</th></tr>")
                for p in op["parameters"]:
                    desc = e(p.get("description", ""))
                    parts.append(
                        f"<tr><td><code>{e(p['name'])}</code></td><td>{e(p['in'])}</td>"
                        f"<td><code>{e(json.dumps(p['schema']))}</code> {desc}</td></tr>"
                    )
                parts.append("</table>")
            if "requestBody" in op:
                ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                name = ref.rsplit("/", 1)[-1]
                parts.append(f"<p>Body: <a href='#schema-{e(name)}'>{e(name)}</a></p>")
            parts.append("<table><tr><th>status</th><th>meaning</th></tr>")
            for status, resp in op["responses"].items():
                if "$ref" in resp:
                    name = resp["$ref"].rsplit("/", 1)[-1]
                    resp = doc["components"]["responses"][name]
                schema = resp.get("content", {}).get("application/json", {}).get("schema", {})
                name = schema.get("$ref", "").rsplit("/", 1)[-1]
                link = f" → <a href='#schema-{e(name)}'>{e(name)}</a>" if name else ""
                parts.append(
                    f"<tr><td>{e(status)}</td><td>{e(resp['description'])}{link}</td></tr>"
                )
            parts.append("</table></section>")
    parts.append("<h2>Schemas</h2>")
    for name, schema in doc["components"]["schemas"].items():
        parts.append(
            f"<section id='schema-{e(name)}'><h3>{e(name)}</h3>"
            f"<pre>{_schema_text(schema)}</pre></section>"
        )
    parts.append("</body></html>\n")
    return "".join(parts)


def main() -> None:
    import sys

    sys.stdout.write(render_json())


if __name__ == "__main__":
    main()
