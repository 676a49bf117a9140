"""Binding a router function to its entry in the route table."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools.event_handler.api_gateway import Router

from trainyard_handlers.api.routes import route

F = TypeVar("F", bound=Callable[..., Any])


def bind(router: Router, operation_id: str) -> Callable[[F], F]:
    """``@bind(router, "getTenant")``: serve that entry's method and path, nothing else."""
    entry = route(operation_id)
    return router.route(entry.rule, method=entry.method)  # type: ignore[no-any-return]
