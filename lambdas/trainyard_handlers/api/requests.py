"""Reading requests and writing responses, the same way in every router.

Every bad input becomes a ``DomainError`` (the app turns it into a 4xx
``{"error": {"code", "message"}}``), never a Powertools 422 or a 500.
"""

from __future__ import annotations

import json
import re
from typing import Any, NoReturn, TypeVar

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent
from pydantic import BaseModel, ValidationError
from trainyard_core.errors import InvalidRequest, PayloadTooLarge

from trainyard_handlers import dependencies
from trainyard_handlers.api.models import MAX_BODY_BYTES, MONTH_RE
from trainyard_handlers.api.routes import LIMIT_DEFAULT, LIMIT_MAX, LIMIT_MIN
from trainyard_handlers.observability import logger

M = TypeVar("M", bound=BaseModel)

# Deeper bodies are refused before they reach anything recursive (our bodies are flat).
MAX_BODY_DEPTH = 32
# Query integers are ASCII digits only ("²" and "٣" are digits to str.isdigit()).
_ASCII_INT = re.compile(r"[0-9]{1,9}", re.ASCII)


def _reject_constant(name: str) -> NoReturn:
    # NaN, Infinity and -Infinity are not JSON (RFC 8259), whatever json.loads allows.
    raise ValueError(f"{name} is not valid JSON")


def _depth_exceeds(data: Any, limit: int) -> bool:
    """Whether ``data`` nests deeper than ``limit`` (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > limit:
                return True
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children)
    return False


def json_body(event: APIGatewayProxyEvent, model: type[M]) -> M:
    raw = event.body
    if raw is None or raw.strip() == "":
        raise InvalidRequest("request body is required", code="EmptyBody")
    if len(raw.encode()) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"request body exceeds {MAX_BODY_BYTES} bytes")
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"body is not valid JSON: {exc.msg}", code="MalformedJson") from exc
    except RecursionError as exc:
        raise InvalidRequest(
            f"body nests deeper than {MAX_BODY_DEPTH} levels", code="InvalidBody"
        ) from exc
    except ValueError as exc:
        # An integer past Python's int/str digit limit, NaN or Infinity.
        raise InvalidRequest(f"body is not valid JSON: {exc}", code="MalformedJson") from exc
    if not isinstance(data, dict):
        raise InvalidRequest("body must be a JSON object", code="InvalidBody")
    if _depth_exceeds(data, MAX_BODY_DEPTH):
        raise InvalidRequest(f"body nests deeper than {MAX_BODY_DEPTH} levels", code="InvalidBody")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        raise InvalidRequest(f"{where}: {first.get('msg')}", code="InvalidBody") from exc


def limit(event: APIGatewayProxyEvent) -> int:
    default = str(LIMIT_DEFAULT)
    raw = event.get_query_string_value("limit", default) or default
    if not _ASCII_INT.fullmatch(raw) or not LIMIT_MIN <= int(raw) <= LIMIT_MAX:
        raise InvalidRequest(
            f"limit must be an integer between {LIMIT_MIN} and {LIMIT_MAX}", code="InvalidLimit"
        )
    return int(raw)


def next_token(event: APIGatewayProxyEvent) -> str | None:
    return event.get_query_string_value("nextToken") or None


def month(event: APIGatewayProxyEvent) -> str:
    value = event.get_query_string_value("month")
    if value is None:
        from trainyard_core.models import now_utc

        value = now_utc().strftime("%Y-%m")
    if not MONTH_RE.fullmatch(value):
        raise InvalidRequest("month must be YYYY-MM", code="InvalidMonth")
    return value


def purge(event: APIGatewayProxyEvent) -> bool:
    raw = (event.get_query_string_value("purge") or "false").lower()
    if raw not in ("true", "false"):
        raise InvalidRequest("purge must be true or false", code="InvalidPurge")
    return raw == "true"


def json_response(status: int, body: Any) -> Response[str]:
    return Response(status_code=status, content_type="application/json", body=json.dumps(body))


def request_dispatch(plan: str) -> None:
    """Wake the scheduler now instead of at the next reconcile."""
    queue = dependencies.intake_queue()
    try:
        queue.request_dispatch(plan)
    except Exception:
        # The run is recorded; the one-minute reconcile dispatches it anyway.
        logger.exception("could not request an immediate dispatch")


def caller(event: APIGatewayProxyEvent) -> str:
    """Who is asking: the IAM identity API Gateway authorised (IAM auth on every
    method); the local API passes its caller the same way."""
    identity = event.request_context.identity
    return identity.user_arn or identity.caller or identity.user or "unknown"
