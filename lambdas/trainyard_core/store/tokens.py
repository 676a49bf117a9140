"""Page tokens (``nextToken``): a store's start key, opaque to API callers."""

from __future__ import annotations

import base64
import json
from typing import Any

from trainyard_core.errors import InvalidRequest


def encode_token(key: dict[str, Any] | str) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode()


class InvalidTokenError(InvalidRequest, ValueError):
    """A nextToken this API did not hand out (the API answers 400, not 500)."""

    code = "InvalidNextToken"


def decode_token(token: str, keys: tuple[str, ...] | None = None) -> Any:
    """Decode a nextToken; with ``keys``, it must be an object of exactly those
    string fields (a DynamoDB start key), so a forged one never reaches DynamoDB."""
    try:
        value = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, TypeError) as exc:
        raise InvalidTokenError("nextToken is not a token this API returned") from exc
    if keys is not None and not (
        isinstance(value, dict)
        and set(value) == set(keys)
        and all(isinstance(value[k], str) for k in keys)
    ):
        raise InvalidTokenError("nextToken is not a token this API returned")
    return value
