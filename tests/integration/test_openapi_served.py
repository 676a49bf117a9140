"""The embedded stack serves the generated OpenAPI document and its HTML reference,
and the API's real responses match the document's schemas."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from trainyard.openapi import build_document

from .conftest import Api

pytestmark = pytest.mark.integration


def _check(doc: dict[str, Any], schema: str, payload: Any) -> None:
    root = {"$ref": f"#/components/schemas/{schema}", "components": doc["components"]}
    Draft202012Validator(root).validate(payload)


def test_get_openapi_json_returns_the_generated_document(api: Api) -> None:
    resp = api.get("/openapi.json")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("application/json")
    assert resp.json() == build_document()


def test_get_docs_returns_a_self_contained_html_reference(api: Api) -> None:
    resp = api.get("/docs")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/html")
    assert "<script" not in resp.text
    assert "createTenant" in resp.text and "/tenants/{tenantId}/runs" in resp.text


def test_real_responses_match_the_documented_schemas(api: Api, onboard: Any) -> None:
    doc = api.get("/openapi.json").json()
    tid = f"oa-{uuid.uuid4().hex[:6]}"
    tenant = onboard(tid, "basic")
    _check(doc, "Tenant", tenant)
    _check(doc, "PlanList", api.get("/plans").json())
    _check(doc, "TenantList", api.get("/tenants?limit=2").json())
    run = api.post(f"/tenants/{tid}/runs")
    assert run.status_code == 202, run.text
    _check(doc, "Run", run.json())
    _check(doc, "Run", api.get(f"/tenants/{tid}/runs/{run.json()['runId']}").json())
    _check(doc, "RunList", api.get(f"/tenants/{tid}/runs").json())
    _check(doc, "Usage", api.get(f"/tenants/{tid}/usage").json())
    _check(doc, "Queue", api.get("/queue").json())
    _check(doc, "Health", api.get("/health").json())
    bad = api.get(f"/tenants/{tid}/usage?month=13")
    assert bad.status_code == 400
    _check(doc, "Error", bad.json())
