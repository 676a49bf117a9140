"""An AWS error in an API route: 503 only when the service says "retry later"."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.exceptions import ClientError
from trainyard_handlers import dependencies
from trainyard_handlers.api.app import app


@dataclass
class _Context:
    function_name: str = "trainyard-onboarding"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = (
        "arn:aws:lambda:us-east-1:123456789012:function:trainyard-onboarding"
    )
    aws_request_id: str = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


def _get_plans() -> dict[str, Any]:
    return {
        "resource": "/plans",
        "path": "/plans",
        "httpMethod": "GET",
        "headers": {},
        "queryStringParameters": None,
        "pathParameters": None,
        "requestContext": {"resourcePath": "/plans", "httpMethod": "GET", "requestId": "r"},
        "body": None,
        "isBase64Encoded": False,
    }


@pytest.mark.parametrize(
    ("code", "http", "expected"),
    [
        ("ThrottlingException", 400, 503),
        ("ProvisionedThroughputExceededException", 400, 503),
        ("ServiceUnavailable", 503, 503),
        ("InternalServerError", 500, 503),
        ("AccessDeniedException", 400, 500),
        ("ValidationException", 400, 500),
        ("ResourceNotFoundException", 400, 500),
        # A write racing a transaction on the same item (two retries of one run).
        ("TransactionConflictException", 400, 503),
    ],
)
def test_only_an_aws_error_that_says_retry_later_is_a_503(
    monkeypatch: pytest.MonkeyPatch, code: str, http: int, expected: int
) -> None:
    def failing() -> Any:
        raise ClientError(
            {
                "Error": {"Code": code, "Message": "no"},
                "ResponseMetadata": {"HTTPStatusCode": http},
            },
            "GetItem",
        )

    monkeypatch.setattr(dependencies, "settings", failing)
    answer = app.resolve(_get_plans(), _Context())
    body = json.loads(answer["body"])
    assert answer["statusCode"] == expected
    if expected == 503:
        assert body["error"]["code"] == "DependencyUnavailable"
        assert f"GetItem: {code}" in body["error"]["message"]
    else:
        # A refusal is our fault: no internals leak, and the suites refuse 500s.
        assert body["error"] == {"code": "InternalError", "message": "internal error"}


@pytest.mark.parametrize(
    ("reasons", "expected"),
    [
        (["None", "TransactionConflict"], 503),
        (["ThrottlingError", "None"], 503),
        (["ValidationError", "None"], 500),
    ],
)
def test_a_transaction_cancelled_by_a_conflict_is_a_503_not_a_500(
    monkeypatch: pytest.MonkeyPatch, reasons: list[str], expected: int
) -> None:
    def failing() -> Any:
        raise ClientError(
            {
                "Error": {"Code": "TransactionCanceledException", "Message": "cancelled"},
                "CancellationReasons": [{"Code": code} for code in reasons],
                "ResponseMetadata": {"HTTPStatusCode": 400},
            },
            "TransactWriteItems",
        )

    monkeypatch.setattr(dependencies, "settings", failing)
    answer = app.resolve(_get_plans(), _Context())
    assert answer["statusCode"] == expected
