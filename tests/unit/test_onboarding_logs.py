"""The API function's log lines name only the request they are about: keys a
request adds (``tenant_id``) do not survive into the warm container's next one."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from trainyard_core.errors import NotFound
from trainyard_handlers import dependencies, onboarding
from trainyard_handlers.observability import logger


@dataclass
class Context:
    function_name: str = "trainyard-onboarding"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:trainyard-api"
    aws_request_id: str = "req-1"


class Tenants:
    def get(self, tenant_id: str) -> Any:
        raise NotFound(f"tenant {tenant_id!r} does not exist", code="TenantNotFound")

    def list(self, limit: int, next_token: str | None) -> Any:
        raise RuntimeError("the tenants table is unavailable")


def _event(method: str, path: str, query: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": {},
        "multiValueHeaders": {},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {k: [v] for k, v in (query or {}).items()} or None,
        "pathParameters": None,
        "requestContext": {"requestId": "r", "path": path, "stage": "prod"},
        "body": None,
        "isBase64Encoded": False,
    }


@pytest.fixture
def log_lines(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    monkeypatch.setattr(onboarding.metrics, "namespace", "Trainyard")
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    dependencies.tenant_service.override(Tenants())  # type: ignore[arg-type]
    stream = io.StringIO()
    handler = logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    previous_stream, previous_level = handler.setStream(stream), logger.log_level
    logger.setLevel("INFO")
    try:
        yield stream
    finally:
        handler.setStream(previous_stream)
        logger.setLevel(previous_level)
        dependencies.tenant_service.reset()


def _records(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_a_tenant_id_from_an_earlier_request_is_not_in_a_later_unrelated_error_log(
    log_lines: io.StringIO,
) -> None:
    first = onboarding.handler(_event("GET", "/tenants/acme"), Context())
    assert first["statusCode"] == 404
    assert any(r.get("tenant_id") == "acme" for r in _records(log_lines))
    log_lines.truncate(0)
    log_lines.seek(0)

    second = onboarding.handler(_event("GET", "/tenants"), Context(aws_request_id="req-2"))
    assert second["statusCode"] == 500  # the store failed: an unexpected error, logged
    records = _records(log_lines)
    errors = [r for r in records if r["level"] == "ERROR"]
    assert errors and errors[0]["message"] == "unhandled error"
    assert all("tenant_id" not in r for r in records), records
