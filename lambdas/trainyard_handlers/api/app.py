"""The API's resolver: one router per resource, errors in the API's envelope.

Unexpected failures become a 500 with no internals in the body.
"""

from __future__ import annotations

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from botocore.exceptions import ClientError
from trainyard_core.errors import DomainError

from trainyard_handlers.api import (
    algorithms,
    health,
    plans,
    queue,
    registry,
    runs,
    tenants,
    uploads,
    usage,
    webhooks,
)
from trainyard_handlers.api.models import Error
from trainyard_handlers.api.requests import json_response
from trainyard_handlers.observability import logger

app = APIGatewayRestResolver()
for resource in (
    algorithms,
    health,
    plans,
    queue,
    tenants,
    runs,
    usage,
    registry,
    uploads,
    webhooks,
):
    app.include_router(resource.router)


@app.exception_handler(DomainError)
def _domain_error(exc: DomainError) -> Response[str]:
    status = exc.status
    if exc.code == "RunNotFound":
        status = 404
    logger.info("request rejected", extra={"code": exc.code, "reason": exc.message})
    response = json_response(status, Error.of(exc.code, exc.message, exc.field))
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:  # a 503 the caller may retry: when
        response.headers["Retry-After"] = str(int(retry_after))
    return response


@app.not_found
def _not_found(exc: NotFoundError) -> Response[str]:
    return json_response(404, Error.of("RouteNotFound", f"no route {app.current_event.path}"))


# What an AWS service answers when it is the one that is (briefly) unable: retrying
# later succeeds. Everything else (AccessDenied, ValidationException, a missing
# resource) is a fault of ours and stays a 500 that the tests refuse.
_RETRYABLE_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ProvisionedThroughputExceededException",
        "RequestThrottled",
        "SlowDown",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalError",
        "InternalServerError",
        "InternalFailure",
    }
)


# A DynamoDB transaction cancelled for these (another transaction on the same item,
# throttling) succeeds when asked again; one cancelled by a condition would not (the
# stores turn those into domain errors before they get here).
_RETRYABLE_CANCELLATIONS = frozenset({"TransactionConflict", "ThrottlingError"})


def _retryable(exc: ClientError) -> bool:
    code = exc.response.get("Error", {}).get("Code", "")
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    if code == "TransactionCanceledException":
        reasons = exc.response.get("CancellationReasons") or []
        return any(r.get("Code") in _RETRYABLE_CANCELLATIONS for r in reasons)
    return (
        code in _RETRYABLE_CODES
        or code == "TransactionConflictException"
        or int(status or 0) >= 500
    )


@app.exception_handler(ClientError)
def _dependency_error(exc: ClientError) -> Response[str]:
    error = exc.response.get("Error", {})
    what = f"{exc.operation_name}: {error.get('Code', 'error')}"
    if not _retryable(exc):
        logger.exception("AWS call refused", extra={"operation": exc.operation_name})
        return json_response(500, Error.of("InternalError", "internal error"))
    # The service is unavailable for now: 503 with what answered (its operation and
    # error code, no internals), so a caller knows to retry later.
    logger.exception("AWS dependency unavailable", extra={"operation": exc.operation_name})
    message = f"an AWS dependency is unavailable ({what}); retry later"
    return json_response(503, Error.of("DependencyUnavailable", message))


@app.exception_handler(Exception)
def _unexpected(exc: Exception) -> Response[str]:
    logger.exception("unhandled error")
    return json_response(500, Error.of("InternalError", "internal error"))
