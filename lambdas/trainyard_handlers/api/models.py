"""The API's request and response bodies: one home for their shapes.

The routers parse requests into these and shape responses with them, the route
table (``routes``) names them per route, ``trainyard/openapi.py`` turns them into
the document's schemas, and ``trainyard/api_client.py`` builds its request bodies
with them. Tenant, Run and Plan are the domain's own wire models (``api_dict()``);
the envelopes here wrap them. Importable without side effects (pydantic only).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel
from pydantic.alias_generators import to_camel
from trainyard_core.config import Plan
from trainyard_core.models import MONTH_RE, Run, Tenant

__all__ = [
    "MAX_BODY_BYTES",
    "MONTH_RE",
    "CreateTenantRequest",
    "Error",
    "ErrorDetail",
    "Health",
    "Plan",
    "PlanList",
    "PlanQueue",
    "PutWebhookRequest",
    "Queue",
    "QueuedRun",
    "Run",
    "RunList",
    "Tenant",
    "TenantList",
    "UpdateTenantRequest",
    "Usage",
    "Webhook",
    "WebhookCreated",
    "WebhookDelivery",
    "WebhookDeliveryList",
]

MAX_BODY_BYTES = 16 * 1024


def _absent_if_none(value: Any) -> bool:
    return value is None


# --- requests


class CreateTenantRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    tenantId: str
    plan: str


class UpdateTenantRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    plan: str | None = None
    status: str | None = None


class PutWebhookRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    url: str = Field(description="https:// on port 443, resolving to public addresses only.")
    events: list[str] | None = Field(
        default=None, description="Event names (docs/events.md); all when omitted."
    )


# --- responses (envelopes around the domain's wire models)


class _Envelope(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)
    # Per list of domain records: their internal bookkeeping, left off the wire as
    # their api_dict() leaves it.
    _hidden: ClassVar[dict[str, Any]] = {}

    def wire(self) -> dict[str, Any]:
        """The JSON body: camelCase; optional envelope keys absent rather than null."""
        return self.model_dump(mode="json", by_alias=True, exclude=self._hidden or None)


class Health(_Envelope):
    status: str
    # Only the local stack adds it: where the CLI uploads (AWS has real S3).
    aws_endpoint_url: str | None = Field(
        default=None, exclude_if=_absent_if_none, description="Local stack only."
    )


class PlanList(_Envelope):
    plans: list[Plan]
    global_max_concurrent_runs: int = Field(ge=1)


class TenantList(_Envelope):
    _hidden: ClassVar[dict[str, Any]] = {"tenants": {"__all__": Tenant._internal_fields()}}

    tenants: list[Tenant]
    next_token: str | None = Field(
        default=None, exclude_if=_absent_if_none, description="Absent on the last page."
    )


class RunList(_Envelope):
    _hidden: ClassVar[dict[str, Any]] = {"runs": {"__all__": Run._internal_fields()}}

    runs: list[Run] = Field(description="Newest first.")
    next_token: str | None = Field(
        default=None, exclude_if=_absent_if_none, description="Absent on the last page."
    )


class Usage(_Envelope):
    tenant_id: str
    month: str
    runs: int
    training_seconds: float
    training_hours: float
    cost_estimate_usd: float
    budget_hours: float | None = Field(description="The plan's monthly hours; null = unlimited.")


class QueuedRun(_Envelope):
    run_id: str
    tenant_id: str
    queue_position: int | None
    queued_at: str
    waiting_reason: str | None = Field(
        default=None, exclude_if=_absent_if_none, description="Present while held back."
    )


class PlanQueue(_Envelope):
    queued: int
    running: int
    cap: int
    runs: list[QueuedRun] = Field(description="In queue order.")


class Queue(RootModel[dict[str, PlanQueue]]):
    """Backlog per plan name."""

    def wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


class ErrorDetail(BaseModel):
    code: str
    message: str


class Error(BaseModel):
    error: ErrorDetail

    @classmethod
    def of(cls, code: str, message: str) -> dict[str, Any]:
        return cls(error=ErrorDetail(code=code, message=message)).model_dump()


class Webhook(_Envelope):
    tenant_id: str
    url: str
    events: list[str]
    created_at: str
    updated_at: str


class WebhookCreated(Webhook):
    secret: str = Field(
        description="The signing secret (Trainyard-Signature); shown only in this answer."
    )


class WebhookDelivery(_Envelope):
    delivery_id: str = Field(description="The Trainyard-Delivery header (de-duplicate on it).")
    event: str
    run_id: str | None = Field(default=None, exclude_if=_absent_if_none)
    status: Literal["pending", "succeeded", "failed"]
    attempts: int
    last_status_code: int | None = Field(default=None, exclude_if=_absent_if_none)
    last_error: str | None = Field(default=None, exclude_if=_absent_if_none)
    created_at: str
    updated_at: str


class WebhookDeliveryList(_Envelope):
    deliveries: list[WebhookDelivery] = Field(description="Newest first.")
    next_token: str | None = Field(
        default=None, exclude_if=_absent_if_none, description="Absent on the last page."
    )
