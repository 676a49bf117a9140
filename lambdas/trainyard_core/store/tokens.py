"""Page tokens (``nextToken``): a store's start key, opaque and tamper-evident.

A token is ``<payload>.<mac>``: the start key as base64url JSON and an HMAC-SHA256
of it (truncated to 128 bits). A token this API did not hand out (garbage, an
edited or hand-made key, a token of another deployment) fails the MAC and is
refused with 400 ``InvalidNextToken`` before anything reaches a store; a valid one
is then checked for its shape (``keys``) and by the caller for its listing (a runs
token names its tenant: ``run_items.run_token``).

Where the key comes from (no new infrastructure, nothing fetched at run time):

- ``TRAINYARD_TOKEN_SECRET`` when set, e.g. the function's environment value
  ``{{resolve:secretsmanager:<name>}}`` (CloudFormation resolves it at deploy time);
- otherwise derived per deployment from its identity (the account id and the table
  names every API function already has). That key is not secret: it makes tokens
  tamper-evident against accidents, edits and other deployments, and a forged but
  well-signed token still only passes the shape and listing checks, i.e. starts a
  page the caller may read anyway (the API is IAM-authorised). Set the secret when
  that matters (docs/architecture.md §5).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
from typing import Any

from trainyard_core.errors import InvalidRequest

TOKEN_SECRET_ENV = "TRAINYARD_TOKEN_SECRET"
# What the key is derived from when no secret is set (present in every API function).
_DEPLOYMENT_ENV = ("PLATFORM_ACCOUNT_ID", "TENANTS_TABLE", "RUNS_TABLE")
_MAC_BYTES = 16
MAX_TOKEN_CHARS = 2048  # a start key of ids is ~150 characters
_CONTEXT = b"trainyard/nextToken/v1"


class InvalidTokenError(InvalidRequest, ValueError):
    """A nextToken this API did not hand out (the API answers 400, not 500)."""

    code = "InvalidNextToken"


def _key() -> bytes:
    secret = os.environ.get(TOKEN_SECRET_ENV)
    material = (
        secret if secret else "\x00".join(os.environ.get(name, "") for name in _DEPLOYMENT_ENV)
    )
    return hmac.new(_CONTEXT, material.encode(), hashlib.sha256).digest()


def _mac(payload: bytes) -> bytes:
    return hmac.new(_key(), payload, hashlib.sha256).digest()[:_MAC_BYTES]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    if not text or not text.isascii():
        raise ValueError("not base64url")
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


def encode_token(key: dict[str, Any] | str) -> str:
    payload = json.dumps(key, sort_keys=True, separators=(",", ":")).encode()
    return f"{_b64(payload)}.{_b64(_mac(payload))}"


def decode_token(token: str, keys: tuple[str, ...] | None = None) -> Any:
    """Decode a nextToken; with ``keys``, it must be an object of exactly those
    string fields (a DynamoDB start key), so a forged one never reaches DynamoDB."""
    refused = InvalidTokenError("nextToken is not a token this API returned")
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
        raise refused
    body, _, mac = token.partition(".")
    try:
        payload, signature = _unb64(body), _unb64(mac)
    except (ValueError, binascii.Error):
        raise refused from None
    if not hmac.compare_digest(signature, _mac(payload)):
        raise refused
    try:
        value = json.loads(payload)
    except ValueError:
        raise refused from None
    if keys is not None and not (
        isinstance(value, dict)
        and set(value) == set(keys)
        and all(isinstance(value[k], str) for k in keys)
    ):
        raise refused
    return value
