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
from trainyard_core.config import AutoSelection, DefaultTraining, HyperparameterSpec, Plan
from trainyard_core.limits import UPLOAD_PARTS_MAX
from trainyard_core.model_versions import ModelVersion
from trainyard_core.models import MONTH_RE, Run, Tenant, WaitingFor
from trainyard_core.training import TrainingChoice

__all__ = [
    "MAX_BODY_BYTES",
    "MONTH_RE",
    "AbortUploadRequest",
    "AlgorithmInfo",
    "AlgorithmList",
    "CompleteUploadRequest",
    "CompletedPartBody",
    "CreateTenantRequest",
    "CreateUploadRequest",
    "Error",
    "ErrorDetail",
    "Health",
    "ModelDecisionRequest",
    "ModelList",
    "ModelVersion",
    "Plan",
    "PlanList",
    "PlanQueue",
    "PresignUploadPartsRequest",
    "PutWebhookRequest",
    "Queue",
    "QueuedRun",
    "RetryRunRequest",
    "Run",
    "RunList",
    "Tenant",
    "TenantList",
    "TrainingChoice",
    "TriggerRunRequest",
    "UpdateTenantRequest",
    "Upload",
    "UploadPart",
    "UploadParts",
    "UploadResult",
    "Usage",
    "WaitingFor",
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


class RetrainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    every: str = Field(
        max_length=32,
        examples=["P7D"],
        description="ISO-8601 duration (weeks, days, hours, minutes, seconds): a run on the "
        "tenant's current data this often, when the data changed since its last successful run.",
    )


class UpdateTenantRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    plan: str | None = None
    status: str | None = None
    # Absent: unchanged; null: the schedule is removed.
    retrain: RetrainRequest | None = None
    training: TrainingChoice | None = Field(
        default=None,
        description="What the tenant's runs train, checked against GET /algorithms and the "
        "plan; merged over the stored one (hyperparameters key by key, unless the "
        "algorithm changes).",
    )


class TriggerRunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    training: TrainingChoice | None = Field(
        default=None, description="This run's training settings, over the tenant's."
    )


class RetryRunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    # Bounded and one line, like a model decision's (model_versions.check_reason).
    reason: str | None = Field(default=None, description="Why it is retried (recorded).")


class ModelDecisionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    # Bounded and one line (SageMaker's ApprovalDescription; model_versions.check_reason).
    reason: str | None = None


class CreateUploadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    fileName: str = Field(min_length=1, max_length=1024, examples=["part-1.csv"])
    contentLength: int | None = Field(
        default=None,
        ge=1,
        description="The file's size in bytes: above 100 MiB the answer is a multipart "
        "upload; without it, a presigned POST that takes up to the plan's maxUploadBytes.",
    )


class CompletedPartBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    partNumber: int = Field(ge=1)
    eTag: str = Field(min_length=1, description="The ETag header S3 answered the part's PUT with.")


_UPLOAD_KEY_DESCRIPTION = (
    "The upload's key, as POST /tenants/{tenantId}/uploads answered. Optional: the "
    "server keeps the upload's key and refuses another one (InvalidUploadKey)."
)


class CompleteUploadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    key: str | None = Field(
        default=None, min_length=1, max_length=1024, description=_UPLOAD_KEY_DESCRIPTION
    )
    parts: list[CompletedPartBody] = Field(
        min_length=1, description="Every part of the upload, partNumber 1 to the last, in order."
    )


class AbortUploadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    key: str | None = Field(
        default=None, min_length=1, max_length=1024, description=_UPLOAD_KEY_DESCRIPTION
    )


class PresignUploadPartsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    partNumbers: list[int] = Field(
        min_length=1,
        max_length=UPLOAD_PARTS_MAX,
        description="Parts of the upload (1 to its last part) to presign again.",
        examples=[[3, 4, 5]],
    )


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


class AlgorithmInfo(_Envelope):
    name: str
    description: str
    framework: str = Field(description="The SageMaker framework image (xgboost, sklearn).")
    framework_version: str
    problem_types: list[str]
    hyperparameters: dict[str, HyperparameterSpec]
    plans: list[str] = Field(description="The plans whose tenants may use it.")


class AlgorithmList(_Envelope):
    algorithms: list[AlgorithmInfo]
    auto: AutoSelection = Field(description='How "auto" picks by the run\'s input bytes.')
    default: DefaultTraining = Field(description="What a tenant that chose nothing trains.")


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


class ModelList(_Envelope):
    _hidden: ClassVar[dict[str, Any]] = {"models": {"__all__": ModelVersion._internal_fields()}}

    models: list[ModelVersion] = Field(description="Newest first.")
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
    estimated_start_at: str | None = Field(
        default=None, description="When it is expected to start; null when unknown."
    )
    waiting_for: WaitingFor | None = Field(default=None, description="Why it waits.")
    waiting_reason: str | None = Field(
        default=None,
        exclude_if=_absent_if_none,
        description="The message of waitingFor (kept for older clients).",
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


class UploadPart(_Envelope):
    part_number: int
    url: str = Field(description="Presigned PUT of this part (its Content-Length is signed).")
    size: int = Field(description="The part's exact size in bytes.")


class Upload(_Envelope):
    """A presigned POST (``method`` POST: send ``fields`` and then the file as
    multipart/form-data to ``url``) or a multipart upload (``method`` PUT: PUT each
    part to its URL, then complete it with the parts' ETags)."""

    method: Literal["POST", "PUT"]
    key: str
    expires_at: str
    url: str | None = Field(default=None, exclude_if=_absent_if_none, description="POST only.")
    fields: dict[str, str] | None = Field(
        default=None, exclude_if=_absent_if_none, description="POST only."
    )
    upload_id: str | None = Field(
        default=None, exclude_if=_absent_if_none, description="Multipart only."
    )
    parts: list[UploadPart] | None = Field(
        default=None, exclude_if=_absent_if_none, description="Multipart only."
    )


class UploadParts(_Envelope):
    """Fresh presigned PUTs of parts of a multipart upload in progress."""

    parts: list[UploadPart]
    expires_at: str


class UploadResult(_Envelope):
    key: str
    upload_id: str
    status: Literal["COMPLETED", "ABORTED"]
    e_tag: str | None = Field(
        default=None, exclude_if=_absent_if_none, description="COMPLETED only."
    )


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = Field(
        default=None,
        exclude_if=_absent_if_none,
        description="The offending field of the body (training.hyperparameters.eta), if one.",
    )


class Error(BaseModel):
    error: ErrorDetail

    @classmethod
    def of(cls, code: str, message: str, field: str | None = None) -> dict[str, Any]:
        return cls(error=ErrorDetail(code=code, message=message, field=field)).model_dump()


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
    status: Literal["pending", "succeeded", "failed", "refused"] = Field(
        description="refused: the event did not match Trainyard's records (a forged or "
        "stale event on the bus) and was not sent; lastError says why."
    )
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
