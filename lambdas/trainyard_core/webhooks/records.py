"""A tenant's webhook and its deliveries, as the domain keeps them."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

DeliveryStatus = Literal["pending", "succeeded", "failed", "refused"]


@dataclass(frozen=True)
class Webhook:
    tenant_id: str
    url: str
    events: tuple[str, ...]
    created_at: str
    updated_at: str
    # The Secrets Manager secret this webhook's deliveries are signed with (a new one
    # per PUT); its name, never its value, is stored here.
    secret_name: str

    def api_dict(self) -> dict[str, Any]:
        # Never the secret: it is shown once, in the answer to the PUT that made it.
        return {
            "tenantId": self.tenant_id,
            "url": self.url,
            "events": list(self.events),
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
        }


@dataclass(frozen=True)
class Delivery:
    tenant_id: str
    delivery_id: str  # the EventBridge event id: receivers de-duplicate on it
    key: str  # the store's sort key: delivery#<occurredAt>#<delivery id>
    event: str
    status: DeliveryStatus
    attempts: int
    created_at: str
    updated_at: str
    expires_at: int  # epoch seconds (DynamoDB TTL)
    run_id: str | None = None
    last_status_code: int | None = None
    last_error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def with_changes(self, **changes: Any) -> Delivery:
        return replace(self, **changes)

    def api_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "deliveryId": self.delivery_id,
            "event": self.event,
            "status": self.status,
            "attempts": self.attempts,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
        }
        if self.run_id is not None:
            out["runId"] = self.run_id
        if self.last_status_code is not None:
            out["lastStatusCode"] = self.last_status_code
        if self.last_error is not None:
            out["lastError"] = self.last_error
        return out


DELIVERY_KEY_PREFIX = "delivery#"
WEBHOOK_KEY = "webhook"


def delivery_key(occurred_at: str, delivery_id: str) -> str:
    return f"{DELIVERY_KEY_PREFIX}{occurred_at}#{delivery_id}"
