"""OpenAPI 3.1 document of the onboarding API, generated from the code.

Paths, methods, summaries and error codes come from the API's route table
(``trainyard_handlers.api.routes``, which the handler's routers are bound to and
which the CDK app builds API Gateway from); request and response bodies from its
models (``trainyard_handlers.api.models``). Building the document fails if the
handler's resolver serves a route the table lacks, or lacks one it declares.

    python -m trainyard.openapi > docs/openapi.json
"""

from __future__ import annotations

import copy
import html
import json
from functools import cache
from typing import Any

from aws_lambda_powertools.event_handler.api_gateway import ApiGatewayResolver
from pydantic import BaseModel
from pydantic.alias_generators import to_camel
from pydantic.json_schema import models_json_schema
from trainyard_core.models import TENANT_ID_MAX, TENANT_ID_MIN, TENANT_ID_RE
from trainyard_handlers.api import routes
from trainyard_handlers.api.models import (
    MAX_BODY_BYTES,
    Error,
    Plan,
    Run,
    Tenant,
    Usage,
)
from trainyard_handlers.api.routes import (
    PATH_PARAMETERS,
    QUERY_PARAMETERS,
    ROUTES,
    TAGS,
    Route,
    gateway_path,
)

OPENAPI_VERSION = "3.1.0"
API_VERSION = "1"
REF = "#/components/schemas/{model}"

# Wire models always serialize every field (null when unset), so all are required;
# envelopes omit their optional keys (nextToken, waitingReason, awsEndpointUrl).
ALWAYS_PRESENT = (Tenant, Run, Plan, Usage)

TENANT_ID_SCHEMA: dict[str, Any] = {
    "type": "string",
    "minLength": TENANT_ID_MIN,
    "maxLength": TENANT_ID_MAX,
    "pattern": TENANT_ID_RE.pattern,
    "description": "Lowercase letters, digits and inner hyphens; reserved words are refused.",
    "examples": ["acme"],
}


def _app() -> ApiGatewayResolver:
    # Lazily: the handler's resolver imports Powertools and the routers.
    from trainyard_handlers.api.app import app

    return app


def served_routes(app: ApiGatewayResolver | None = None) -> set[tuple[str, str]]:
    """(method, path) of every route the resolver serves, paths as the resolver has them."""
    return routes.served_routes(app or _app())


def openapi_path(resolver_path: str) -> str:
    """``/tenants/<tenant_id>`` -> ``/tenants/{tenantId}`` (the API Gateway resource path)."""
    return gateway_path(resolver_path)


def check_routes(app: ApiGatewayResolver | None = None) -> None:
    routes.check_routes(app or _app())


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
    # Responses in serialization mode, request bodies in validation mode.
    responses: dict[type[BaseModel], None] = {Error: None}
    requests: dict[type[BaseModel], None] = {}
    for route in ROUTES:
        responses.update(dict.fromkeys(model for _, model in route.responses.values()))
        if route.body is not None:
            requests[route.body] = None
    models = [(m, "serialization") for m in responses]
    models += [(m, "validation") for m in requests]
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
    # Absent leaves the schedule as it is; null removes it (no default to assume).
    update["retrain"].pop("default", None)
    update["retrain"]["description"] = (
        "Set the retrain schedule; null removes it; absent leaves it unchanged."
    )
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


def _operation(route: Route) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"name": p, "in": "path", "required": True, **PATH_PARAMETERS[p]}
        for p in route.path_parameters
    ]
    params += [
        {"name": q, "in": "query", "required": False, **QUERY_PARAMETERS[q]} for q in route.query
    ]
    responses: dict[str, Any] = {}
    for status, (description, model) in sorted(route.responses.items()):
        responses[str(status)] = {
            "description": description,
            "content": {"application/json": {"schema": {"$ref": REF.format(model=model.__name__)}}},
        }
    for status, codes in sorted(route.errors.items()):
        responses[str(status)] = _error_response(status, codes)
    responses["500"] = {"$ref": "#/components/responses/InternalError"}
    out: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "tags": [route.tag],
    }
    if route.description:
        out["description"] = route.description
    if params:
        out["parameters"] = params
    if route.body is not None:
        out["requestBody"] = {
            "required": route.body_required,
            "description": f"JSON object, at most {MAX_BODY_BYTES} bytes.",
            "content": {
                "application/json": {"schema": {"$ref": REF.format(model=route.body.__name__)}}
            },
        }
    out["responses"] = responses
    return out


@cache
def _document() -> dict[str, Any]:
    check_routes()
    paths: dict[str, dict[str, Any]] = {}
    for route in sorted(ROUTES, key=lambda r: (r.path, r.method)):
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
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
        "tags": [{"name": name, "description": text} for name, text in TAGS.items()],
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
