"""Requests are checked against AWS's published API models (the botocore shapes).

botocore validates types, required members and minimum lengths client-side, but
not maximum lengths, value ranges, enums or patterns: AWS checks those and
answers a ValidationException (e.g. a PipelineExecutionDisplayName over 82
characters, a ClientRequestToken over 128, a tag value over 256). moto mostly
does not. While the embedded stack runs, every call made through an attached
boto3 session is checked against the full shape first; a violation gets AWS's
"1 validation error detected: ..." answer without reaching the backend.

Patterns are Java regular expressions; the few Python cannot compile (Unicode
property classes) are skipped rather than guessed.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from botocore.awsrequest import AWSResponse

_HOOK_ID = "trainyard-api-model"
_PARAMS = "trainyard_api_model_params"
# Service protocols answer validation errors with these codes and statuses.
_CODES: dict[str, tuple[str, int]] = {
    "s3": ("InvalidArgument", 400),
    "sqs": ("InvalidParameterValue", 400),
    "iam": ("ValidationError", 400),
    "cloudformation": ("ValidationError", 400),
    "sts": ("ValidationError", 400),
}


@lru_cache(maxsize=2048)
def _regex(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern)
    except (re.error, OverflowError):
        return None


def violations(value: Any, shape: Any, path: str) -> list[str]:
    """What AWS would refuse in ``value`` under ``shape`` (constraints botocore skips)."""
    out: list[str] = []
    kind = shape.type_name
    meta = shape.metadata
    if kind == "structure" and isinstance(value, dict):
        for name, member in shape.members.items():
            if name in value:
                out += violations(value[name], member, f"{path}.{name}" if path else name)
    elif kind == "list" and isinstance(value, list | tuple):
        if "max" in meta and len(value) > meta["max"]:
            out.append(
                f"Value at '{path}' failed to satisfy constraint: Member must have length "
                f"less than or equal to {meta['max']}"
            )
        for i, item in enumerate(value):
            out += violations(item, shape.member, f"{path}.{i + 1}")
    elif kind == "map" and isinstance(value, dict):
        if "max" in meta and len(value) > meta["max"]:
            out.append(
                f"Value at '{path}' failed to satisfy constraint: Map must have at most "
                f"{meta['max']} entries"
            )
        for key, item in value.items():
            out += violations(key, shape.key, f"{path}.key")
            out += violations(item, shape.value, f"{path}.{key}")
    elif kind == "string" and isinstance(value, str):
        if "max" in meta and len(value) > meta["max"]:
            out.append(
                f"Value '{value[:60]}' at '{path}' failed to satisfy constraint: Member must have "
                f"length less than or equal to {meta['max']}"
            )
        if shape.enum and value not in shape.enum:
            out.append(
                f"Value '{value[:60]}' at '{path}' failed to satisfy constraint: Member must "
                f"satisfy enum value set: {list(shape.enum)}"
            )
        pattern = meta.get("pattern")
        regex = _regex(pattern) if pattern else None
        # AWS services match the whole value (Java's String.matches), anchors or not.
        if regex is not None and regex.fullmatch(value) is None:
            out.append(
                f"Value '{value[:60]}' at '{path}' failed to satisfy constraint: Member must "
                f"satisfy regular expression pattern: {pattern}"
            )
    elif (
        kind in ("integer", "long", "float", "double")
        and isinstance(value, int | float)
        and not isinstance(value, bool)
        and "max" in meta
        and value > meta["max"]
    ):
        out.append(
            f"Value '{value}' at '{path}' failed to satisfy constraint: Member must have "
            f"value less than or equal to {meta['max']}"
        )
    return out


class ApiModelCheck:
    def __init__(self) -> None:
        self._sessions: list[Any] = []
        self.refused: list[str] = []

    def attach(self, session: Any) -> None:
        events = session.events if hasattr(session, "events") else session.meta.events
        events.register("before-parameter-build", self._keep, unique_id=f"{_HOOK_ID}-p")
        events.register("before-call", self._check, unique_id=f"{_HOOK_ID}-c")
        self._sessions.append(events)

    def detach(self) -> None:
        for events in self._sessions:
            events.unregister("before-parameter-build", unique_id=f"{_HOOK_ID}-p")
            events.unregister("before-call", unique_id=f"{_HOOK_ID}-c")
        self._sessions.clear()

    @staticmethod
    def _keep(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context[_PARAMS] = dict(params)

    def _check(self, model: Any, context: dict[str, Any], **_: Any) -> Any:
        shape = model.input_shape
        if shape is None:
            return None
        found = violations(context.get(_PARAMS, {}), shape, "")
        if not found:
            return None
        service = model.service_model.service_name
        noun = "error" if len(found) == 1 else "errors"
        message = f"{len(found)} validation {noun} detected: " + "; ".join(found)
        self.refused.append(f"{service}:{model.name}: {message}")
        code, status = _CODES.get(service, ("ValidationException", 400))
        response = AWSResponse(f"https://{service}.local/", status, {}, None)
        return response, {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
        }
