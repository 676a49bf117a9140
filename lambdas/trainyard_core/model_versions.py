"""A tenant's model versions: list them, approve or reject one (who and why are
recorded on the model package), and the per-plan auto-approval rule applied when a
model is registered. Pure: SageMaker is behind ``ports/model_versions``.

What is recorded where (SageMaker's own fields, so a deployment stack or the
console sees the same thing as the API): the status in ``ModelApprovalStatus``,
the reason in ``ApprovalDescription`` (<= 1,024 characters of one line, its
shape), who and when in the customer metadata (``trainyard:decidedBy``,
``trainyard:decidedAt``). The pipeline's register step writes
``trainyard:tenantId``, ``trainyard:runId``, the problem type's metric as
``trainyard:primaryMetric`` (its name) and ``trainyard:primaryMetricValue``, the
problem type and the algorithm (packages of older runs: ``trainyard:metric:<name>``).
"""

from __future__ import annotations

import math
import re
from typing import Literal

from pydantic import Field

from trainyard_core import events as catalogue
from trainyard_core import limits
from trainyard_core.clock import Clock, SystemClock
from trainyard_core.config import Settings
from trainyard_core.errors import Conflict, DomainError, InvalidRequest
from trainyard_core.models import Tenant, _Wire, iso_ms
from trainyard_core.ports.events import EventPublisher
from trainyard_core.ports.model_versions import ModelRegistryPort

ModelStatus = Literal["PendingManualApproval", "Approved", "Rejected"]
APPROVED: ModelStatus = "Approved"
REJECTED: ModelStatus = "Rejected"

# Customer metadata keys (CustomerMetadataProperties) Trainyard reads and writes.
META_TENANT = "trainyard:tenantId"
META_RUN = "trainyard:runId"
META_METRIC_PREFIX = "trainyard:metric:"
# The pipeline's one metric per problem type (AUC, macro-F1, R²) by name and value:
# metadata keys are literals in the definition, the metric's name is not.
META_PRIMARY_METRIC = "trainyard:primaryMetric"
META_PRIMARY_METRIC_VALUE = "trainyard:primaryMetricValue"
META_PROBLEM_TYPE = "trainyard:problemType"
META_ALGORITHM = "trainyard:algorithm"
META_DECIDED_BY = "trainyard:decidedBy"
META_DECIDED_AT = "trainyard:decidedAt"
AUTO_APPROVER = "trainyard:auto-approval"
# A customer metadata value's shape (botocore: 1-256 of letters, spaces, digits, _.:/=+-@).
_METADATA_VALUE_DISALLOWED = re.compile(r"[^\w\s.:/=+\-@]|[\t\n\r\f\v]")
# ApprovalDescription's pattern is ".*": one line (Java's "." matches no line terminator).
_LINE_TERMINATORS = re.compile(r"[\n\r\x85\u2028\u2029]")
# A version in a path: SageMaker's ModelPackageName ends in /[0-9]{1,9}.
_VERSION_RE = re.compile(r"[1-9][0-9]{0,8}", re.ASCII)


# CustomerMetadataProperties holds at most 50 keys (botocore CustomerMetadataMap);
# Trainyard's own take 8 (tenant, run, primary metric and value, problem type,
# algorithm, decided by and at): the metrics get the rest, by name.
METADATA_METRICS_MAX = 50 - 8


def metric_metadata(metrics: dict[str, float]) -> dict[str, str]:
    """``trainyard:metric:<name>`` -> the value, for the first metrics by name whose
    name fits a key (1-128 of letters, spaces, digits, _.:/=+-@)."""
    chosen = {}
    for name in sorted(metrics):
        key = f"{META_METRIC_PREFIX}{name}"
        if len(key) > 128 or _METADATA_VALUE_DISALLOWED.search(name):
            continue
        if len(chosen) >= METADATA_METRICS_MAX:
            break
        chosen[key] = repr(float(metrics[name]))
    return chosen


class ModelVersion(_Wire):
    version: int
    model_package_arn: str
    status: ModelStatus
    metrics: dict[str, float] = Field(default_factory=dict)
    run_id: str | None = None
    created_at: str
    # Who decided the status and why (absent while PendingManualApproval).
    decided_by: str | None = None
    decided_at: str | None = None
    reason: str | None = None
    # Internal: where it lives and what SageMaker says of the package itself.
    model_package_group_name: str
    tenant_id: str | None = None
    package_status: str = "Completed"

    @classmethod
    def _internal_fields(cls) -> set[str]:
        return {"model_package_group_name", "tenant_id", "package_status"}


class ModelNotFoundError(DomainError):
    status = 404
    code = "ModelNotFound"


class ModelOfAnotherTenantError(Conflict):
    code = "ModelOfAnotherTenant"


class ModelNotReadyError(Conflict):
    code = "ModelNotReady"


def parse_version(raw: str) -> int:
    if not _VERSION_RE.fullmatch(raw or ""):
        raise InvalidRequest(
            f"model version must be a positive integer of at most 9 digits, not {raw!r}",
            code="InvalidModelVersion",
        )
    return int(raw)


def check_reason(reason: str | None) -> str | None:
    if reason is None:
        return None
    if len(reason) > limits.MODEL_REASON_MAX_CHARS:
        raise InvalidRequest(
            f"reason is longer than {limits.MODEL_REASON_MAX_CHARS} characters "
            "(SageMaker's ApprovalDescription)",
            code="InvalidReason",
        )
    if _LINE_TERMINATORS.search(reason) or any(ord(c) < 32 for c in reason):
        raise InvalidRequest(
            "reason must be one line without control characters", code="InvalidReason"
        )
    return reason or None


def metadata_value(value: str) -> str:
    """A value as customer metadata takes it (an assumed-role session may hold ',')."""
    cleaned = _METADATA_VALUE_DISALLOWED.sub("_", value)[: limits.METADATA_VALUE_MAX_CHARS]
    return cleaned or "_"


class ModelVersionService:
    def __init__(
        self,
        settings: Settings,
        registry: ModelRegistryPort,
        events: EventPublisher,
        *,
        clock: Clock | None = None,
        log: object | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.events = events
        self.clock = clock or SystemClock()
        self._log = log

    # --- reads
    def list(
        self, tenant: Tenant, limit: int, next_token: str | None
    ) -> tuple[list[ModelVersion], str | None]:
        group = tenant.model_package_group_name
        if not group:
            return [], None
        return self.registry.list_versions(group, limit, next_token)

    def get(self, tenant: Tenant, version: int) -> ModelVersion:
        group = tenant.model_package_group_name
        model = self.registry.get_version(group, version) if group else None
        if model is None:
            raise ModelNotFoundError(f"tenant {tenant.tenant_id!r} has no model version {version}")
        if model.tenant_id and model.tenant_id != tenant.tenant_id:
            raise ModelOfAnotherTenantError(
                f"model version {version} in {group} was trained for another tenant"
            )
        return model

    # --- decisions
    def approve(self, tenant: Tenant, version: int, by: str, reason: str | None) -> ModelVersion:
        return self._decide(tenant.tenant_id, self.get(tenant, version), APPROVED, by, reason)

    def reject(self, tenant: Tenant, version: int, by: str, reason: str | None) -> ModelVersion:
        return self._decide(tenant.tenant_id, self.get(tenant, version), REJECTED, by, reason)

    def _decide(
        self,
        tenant_id: str,
        model: ModelVersion,
        status: ModelStatus,
        by: str,
        reason: str | None,
    ) -> ModelVersion:
        reason = check_reason(reason)
        if model.status == status:
            # A repeated decision (a retried request) changes nothing and says nothing
            # new: the first decision's who and why stay.
            return model
        if model.package_status != "Completed":
            raise ModelNotReadyError(
                f"model version {model.version} is {model.package_status}; only a "
                "Completed model package can be approved or rejected"
            )
        now = iso_ms(self.clock.now()) or ""
        decided = self.registry.set_status(
            model,
            status,
            reason or "",
            {META_DECIDED_BY: metadata_value(by), META_DECIDED_AT: now},
        )
        event = catalogue.MODEL_APPROVED if status == APPROVED else catalogue.MODEL_REJECTED
        self._emit(catalogue.model_event(event, decided, now, tenant_id))
        return decided

    # --- registration (the recorder)
    def registered(
        self,
        tenant_id: str,
        plan: str,
        model_package_arn: str,
        run_id: str,
        metrics: dict[str, float],
    ) -> ModelVersion | None:
        """A run registered a model: model.registered, then the plan's auto-approval."""
        model = self.registry.get_by_arn(model_package_arn)
        if model is None:
            return None
        if metrics:
            # Every metric on the package itself (the definition can only name the
            # primary one: its metadata keys are literals); a retried step writes the
            # same values again.
            self.registry.add_metadata(model, metric_metadata(metrics))
            model = model.model_copy(update={"metrics": {**model.metrics, **metrics}})
        if not model.run_id:
            model = model.model_copy(update={"run_id": run_id})
        now = iso_ms(self.clock.now()) or ""
        self._emit(catalogue.model_event(catalogue.MODEL_REGISTERED, model, now, tenant_id))
        reason = self.auto_approval_reason(plan, model)
        if reason is None:
            return model
        return self._decide(tenant_id, model, APPROVED, AUTO_APPROVER, reason)

    def auto_approval_reason(self, plan_name: str, model: ModelVersion) -> str | None:
        """Why the plan's rule approves the model, or None: its metric reaches the
        rule's ``min`` and beats the newest approved version's (if that has one)."""
        plan = self.settings.plans.get(plan_name)
        rule = plan.auto_approve if plan else None
        if rule is None or model.status != "PendingManualApproval":
            return None
        value = model.metrics.get(rule.metric)
        if value is None or not math.isfinite(value) or value < rule.min:
            return None
        current = self.registry.latest_approved(model.model_package_group_name)
        if current is None or current.version == model.version:
            return f"auto-approval: {rule.metric} {value:.4f} >= {rule.min:g} (plan {plan_name})"
        best = current.metrics.get(rule.metric)
        if best is not None and value <= best:
            return None
        return (
            f"auto-approval: {rule.metric} {value:.4f} >= {rule.min:g} (plan {plan_name}) "
            f"and better than approved version {current.version}"
            + (f" ({best:.4f})" if best is not None else "")
        )

    def _emit(self, event: catalogue.Event) -> None:
        try:
            self.events.publish([event])
        except Exception:  # the decision is written; a lost event must not undo it
            if self._log is not None:
                self._log.exception("events not published")  # type: ignore[attr-defined]
