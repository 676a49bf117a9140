"""Trainyard's own events: the one table of their names and the shape of their detail.

Trainyard puts these on the account's default EventBridge bus (source ``trainyard``)
and delivers the same events to tenant webhooks. The webhook event name and the
EventBridge ``detail-type`` are two spellings of one event; both are listed here
once (docs/events.md documents them; a test checks the two agree).

``detail`` is versioned (``detail.version``): fields may be added within a version,
never renamed or removed. Every detail carries ``event``, ``tenantId`` and
``occurredAt``; run events carry the run, model events the model package.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SOURCE = "trainyard"
DETAIL_VERSION = "1"


@dataclass(frozen=True)
class EventType:
    name: str  # the webhook event name, e.g. "run.succeeded"
    detail_type: str  # the EventBridge detail-type, e.g. "Trainyard Run Succeeded"


RUN_QUEUED = EventType("run.queued", "Trainyard Run Queued")
RUN_STARTED = EventType("run.started", "Trainyard Run Started")
RUN_SUCCEEDED = EventType("run.succeeded", "Trainyard Run Succeeded")
RUN_FAILED = EventType("run.failed", "Trainyard Run Failed")
MODEL_REGISTERED = EventType("model.registered", "Trainyard Model Registered")
MODEL_APPROVED = EventType("model.approved", "Trainyard Model Approved")
MODEL_REJECTED = EventType("model.rejected", "Trainyard Model Rejected")

ALL: tuple[EventType, ...] = (
    RUN_QUEUED,
    RUN_STARTED,
    RUN_SUCCEEDED,
    RUN_FAILED,
    MODEL_REGISTERED,
    MODEL_APPROVED,
    MODEL_REJECTED,
)
BY_NAME: dict[str, EventType] = {event.name: event for event in ALL}
BY_DETAIL_TYPE: dict[str, EventType] = {event.detail_type: event for event in ALL}
NAMES: tuple[str, ...] = tuple(event.name for event in ALL)


@dataclass(frozen=True)
class Event:
    """One event, as the domain emits it; ``detail`` is the wire (camelCase) detail
    without the envelope fields, which ``envelope`` adds."""

    type: EventType
    tenant_id: str
    occurred_at: str  # ISO 8601, milliseconds, UTC
    detail: dict[str, Any]

    def envelope(self) -> dict[str, Any]:
        # The envelope's fields win: a detail field of the same name cannot shadow them.
        return {
            **self.detail,
            "version": DETAIL_VERSION,
            "event": self.type.name,
            "tenantId": self.tenant_id,
            "occurredAt": self.occurred_at,
        }


# --- the details the domain emits (docs/events.md documents every field)

# The run statuses each end event carries (a STOPPED run is a run.failed whose
# ``status`` says STOPPED: for a receiver, both mean "no new model").
_END_EVENT = {"SUCCEEDED": RUN_SUCCEEDED, "FAILED": RUN_FAILED, "STOPPED": RUN_FAILED}


def run_end_type(status: str) -> EventType:
    return _END_EVENT[status]


def run_event(event_type: EventType, run: Any, occurred_at: str, **changes: Any) -> Event:
    """A run event from a ``models.Run`` (as read before the transition) and the
    fields the transition wrote (``status``, ``startedAt``, ``endedAt``, ...), so the
    detail says what the run is now without a second read."""
    detail: dict[str, Any] = {
        "runId": run.run_id,
        "plan": run.plan,
        "status": run.status.value,
        "trigger": run.trigger.type,
        "queuedAt": run.queued_at,
        "startedAt": run.started_at,
        "endedAt": run.ended_at,
        "executionArn": run.execution_arn,
        "failureReason": None,
        "metrics": dict(run.metrics),
        "modelPackageArn": run.model_package_arn,
    }
    detail.update(changes)
    return Event(event_type, run.tenant_id, occurred_at, detail)


def model_event(event_type: EventType, model: Any, occurred_at: str, tenant_id: str) -> Event:
    """A model event from a ``model_versions.ModelVersion`` (its state after the change).
    The model's version is ``modelVersion``: ``version`` is the envelope's (the
    detail's schema version), which a field of the detail must never shadow."""
    detail: dict[str, Any] = {
        "modelPackageArn": model.model_package_arn,
        "modelPackageGroupName": model.model_package_group_name,
        "modelVersion": model.version,
        "status": model.status,
        "metrics": dict(model.metrics),
        "runId": model.run_id,
        "createdAt": model.created_at,
    }
    if event_type is MODEL_APPROVED:
        detail.update(approvedBy=model.decided_by, reason=model.reason)
    elif event_type is MODEL_REJECTED:
        detail.update(rejectedBy=model.decided_by, reason=model.reason)
    return Event(event_type, tenant_id, occurred_at, detail)
