"""The OpenAPI document is generated from the code, valid, complete, and checked in fresh."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from openapi_spec_validator import validate
from trainyard_handlers.api.routes import ROUTES

from infra.api import RESOURCES
from trainyard.openapi import (
    build_document,
    check_routes,
    openapi_path,
    render_html,
    render_json,
    served_routes,
)

ROOT = Path(__file__).resolve().parents[2]
CHECKED_IN = ROOT / "docs" / "openapi.json"
METHODS = {"get", "post", "put", "patch", "delete", "head", "options"}


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return build_document()


def _documented(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(m.upper(), p) for p, item in doc["paths"].items() for m in item if m in METHODS}


def _validator(doc: dict[str, Any], schema: str) -> Draft202012Validator:
    # Component $refs resolve against a root that carries the document's components.
    root = {"$ref": f"#/components/schemas/{schema}", "components": doc["components"]}
    return Draft202012Validator(root)


def test_the_document_is_a_valid_openapi_3_1_document(doc: dict[str, Any]) -> None:
    assert doc["openapi"].startswith("3.1")
    validate(doc)


def test_the_checked_in_document_is_the_generated_one() -> None:
    assert CHECKED_IN.read_text() == render_json(), (
        "docs/openapi.json is stale: run `python -m trainyard.openapi > docs/openapi.json`"
    )


def test_python_m_regenerates_the_checked_in_document() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "trainyard.openapi"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(out) == json.loads(CHECKED_IN.read_text())


def test_every_served_route_is_documented_and_every_documented_one_served(
    doc: dict[str, Any],
) -> None:
    served = {(m, openapi_path(p)) for m, p in served_routes()}
    assert len(served) == len(ROUTES)
    assert _documented(doc) == served


def test_documented_paths_are_the_api_gateway_resources(doc: dict[str, Any]) -> None:
    # In AWS only these resources reach the Lambda: the document must name them exactly.
    gateway = {(m, path) for path, methods in RESOURCES.items() for m in methods}
    assert _documented(doc) == gateway


def test_a_route_added_to_the_resolver_without_a_declaration_fails_the_build() -> None:
    app = APIGatewayRestResolver()
    for route in ROUTES:
        app.route(route.rule, method=route.method)(lambda **_: {})
    check_routes(app)  # the handler's routes exactly: fine
    app.get("/secret")(lambda: {})
    with pytest.raises(ValueError, match="/secret"):
        check_routes(app)
    app2 = APIGatewayRestResolver()
    app2.get("/plans")(lambda: {})
    with pytest.raises(ValueError, match="unserved"):
        check_routes(app2)


def test_path_parameters_are_declared_and_tenant_id_carries_its_constraints(
    doc: dict[str, Any],
) -> None:
    for path, item in doc["paths"].items():
        names = set(re.findall(r"{(\w+)}", path))
        for op in item.values():
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == names, (path, op["operationId"])
    tid = doc["components"]["schemas"]["TenantId"]
    assert (tid["minLength"], tid["maxLength"]) == (3, 32)
    assert tid["pattern"] == "^[a-z0-9][a-z0-9-]*[a-z0-9]$"
    check = _validator(doc, "TenantId")
    assert check.is_valid("acme-1")
    for bad in ("ab", "a" * 33, "Acme", "-abc", "abc-", "a_b"):
        assert not check.is_valid(bad), bad
    create = doc["components"]["schemas"]["CreateTenantRequest"]
    assert create["properties"]["tenantId"] == {"$ref": "#/components/schemas/TenantId"}


def test_query_parameters_match_what_the_handler_reads(doc: dict[str, Any]) -> None:
    def query(path: str, method: str) -> dict[str, dict[str, Any]]:
        params = doc["paths"][path][method].get("parameters", [])
        return {p["name"]: p["schema"] for p in params if p["in"] == "query"}

    assert query("/tenants", "get")["limit"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 100,
        "default": 50,
    }
    assert set(query("/tenants/{tenantId}/runs", "get")) == {"limit", "nextToken"}
    assert query("/tenants/{tenantId}", "delete") == {
        "purge": {"type": "boolean", "default": False}
    }
    month = query("/tenants/{tenantId}/usage", "get")["month"]
    assert re.fullmatch(month["pattern"], "2026-01")
    assert not re.fullmatch(month["pattern"], "2026-13")


def test_request_bodies_come_from_the_handler_models(doc: dict[str, Any]) -> None:
    body = doc["paths"]["/tenants"]["post"]["requestBody"]
    assert body["required"] is True
    create = _validator(doc, "CreateTenantRequest")
    assert create.is_valid({"tenantId": "acme", "plan": "basic"})
    for bad in ({"tenantId": "acme"}, {"tenantId": "acme", "plan": "basic", "x": 1}, [1]):
        assert not create.is_valid(bad), bad
    update = _validator(doc, "UpdateTenantRequest")
    assert update.is_valid({"status": "SUSPENDED"})
    assert update.is_valid({"plan": "premium"})
    for bad in ({}, {"status": "GONE"}, {"plan": 5}, {"x": "y"}):
        assert not update.is_valid(bad), bad


def test_success_statuses_are_the_ones_the_handler_returns(doc: dict[str, Any]) -> None:
    def statuses(path: str, method: str) -> set[str]:
        return {s for s in doc["paths"][path][method]["responses"] if s < "400"}

    assert statuses("/tenants", "post") == {"200", "201", "202"}
    assert statuses("/tenants/{tenantId}", "delete") == {"202"}
    assert statuses("/tenants/{tenantId}/runs", "post") == {"202"}
    assert statuses("/tenants/{tenantId}", "patch") == {"200"}
    assert statuses("/plans", "get") == {"200"}


def test_wire_schemas_accept_real_payloads_and_omit_internal_fields(doc: dict[str, Any]) -> None:
    from trainyard_core.config import Settings
    from trainyard_core.models import Run, Tenant, Trigger, TriggerObject

    tenant = Tenant(
        tenant_id="acme",
        plan="basic",
        status="ACTIVE",
        isolation="pool",
        created_at="2026-01-01T00:00:00.000Z",
        updated_at="2026-01-01T00:00:00.000Z",
    )
    run = Run(
        run_id="0" * 32,
        tenant_id="acme",
        plan="basic",
        status="QUEUED",
        trigger=Trigger(type="s3", objects=[TriggerObject(key="k.csv", etag="e", size=1)]),
        queued_at="2026-01-01T00:00:00.000Z",
        queue_position=1,
    )
    _validator(doc, "Tenant").validate(tenant.api_dict())
    _validator(doc, "Run").validate(run.api_dict())
    settings = Settings()
    plans = {
        "plans": [p.api_dict() for p in settings.plans.values()],
        "globalMaxConcurrentRuns": settings.global_max_concurrent_runs,
    }
    _validator(doc, "PlanList").validate(plans)
    # Internal bookkeeping never appears, and a payload carrying it is not the wire shape.
    for name in ("version", "queuedRunId", "locationSince"):
        assert name not in doc["components"]["schemas"]["Tenant"]["properties"]
    with pytest.raises(ValidationError):
        _validator(doc, "Tenant").validate({**tenant.api_dict(), "version": 3})
    assert "startAttempts" not in doc["components"]["schemas"]["Run"]["properties"]


def test_error_responses_use_the_error_envelope_and_cover_the_bad_input_table(
    doc: dict[str, Any],
) -> None:
    from tests.integration.test_bad_input import API_CASES

    error = _validator(doc, "Error")
    error.validate({"error": {"code": "InvalidLimit", "message": "limit must be ..."}})
    assert not error.is_valid({"message": "no envelope"})
    checked = 0
    for case_id, method, raw_path, _, status, code in API_CASES:
        path = raw_path.split("?")[0].replace("{t}", "acme")
        match = [
            p
            for p in doc["paths"]
            if re.fullmatch(re.sub(r"{\w+}", r"[^/]+", p), path)
            and method.lower() in doc["paths"][p]
        ]
        if not match:
            assert code == "RouteNotFound", case_id  # the only undocumented answers
            continue
        (documented,) = match
        response = doc["paths"][documented][method.lower()]["responses"].get(str(status))
        assert response is not None, (case_id, status)
        assert code in response["x-error-codes"], (case_id, code)
        checked += 1
    assert checked >= 45


def test_every_operation_is_signed_with_sigv4(doc: dict[str, Any]) -> None:
    scheme = doc["components"]["securitySchemes"]["sigv4"]
    assert scheme["x-amazon-apigateway-authtype"] == "awsSigv4"
    assert doc["security"] == [{"sigv4": []}]
    assert all("security" not in op for item in doc["paths"].values() for op in item.values())


def test_the_html_reference_lists_every_operation_and_schema(doc: dict[str, Any]) -> None:
    page = render_html(doc)
    # Self-contained: nothing fetched from elsewhere (no CDN offline).
    assert "<script" not in page and "<link" not in page and "src=" not in page
    for path, item in doc["paths"].items():
        for op in item.values():
            assert f"id='{op['operationId']}'" in page
        assert f"<code>{path}</code>" in page
    for name in doc["components"]["schemas"]:
        assert f"id='schema-{name}'" in page
