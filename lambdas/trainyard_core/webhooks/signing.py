"""The ``Trainyard-Signature`` header: ``t=<unix seconds>,v1=<hex HMAC-SHA256>``.

The MAC is over ``"<t>.<body>"`` (the exact bytes sent) with the tenant's secret;
a receiver recomputes it, compares in constant time and refuses old timestamps
(replays). docs/events.md#webhooks has a receiver's snippet.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

HEADER = "Trainyard-Signature"
EVENT_HEADER = "Trainyard-Event"
DELIVERY_HEADER = "Trainyard-Delivery"
SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE_SECONDS = 300


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_hex(32)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(
    secret: str,
    header: str,
    body: bytes,
    now: float,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
) -> bool:
    """What a receiver does (and what the tests check deliveries with)."""
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        fields.setdefault(key, []).append(value)
    try:
        timestamp = int(fields["t"][0])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = signature(secret, timestamp, body).split("v1=", 1)[1]
    return any(hmac.compare_digest(expected, v) for v in fields.get("v1", []))
