"""The API's resolver: one router per resource, errors in the API's envelope.

Unexpected failures become a 500 with no internals in the body.
"""

from __future__ import annotations

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from trainyard_core.errors import DomainError

from trainyard_handlers.api import health, plans, queue, runs, tenants, usage
from trainyard_handlers.api.models import Error
from trainyard_handlers.api.requests import json_response
from trainyard_handlers.observability import logger

app = APIGatewayRestResolver()
for resource in (health, plans, queue, tenants, runs, usage):
    app.include_router(resource.router)


@app.exception_handler(DomainError)
def _domain_error(exc: DomainError) -> Response[str]:
    status = exc.status
    if exc.code == "RunNotFound":
        status = 404
    logger.info("request rejected", extra={"code": exc.code, "reason": exc.message})
    return json_response(status, Error.of(exc.code, exc.message))


@app.not_found
def _not_found(exc: NotFoundError) -> Response[str]:
    return json_response(404, Error.of("RouteNotFound", f"no route {app.current_event.path}"))


@app.exception_handler(Exception)
def _unexpected(exc: Exception) -> Response[str]:
    logger.exception("unhandled error")
    return json_response(500, Error.of("InternalError", "internal error"))
