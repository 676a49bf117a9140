"""The run store's item layout, shared by its DynamoDB and in-memory backends.

Runs table (pk tenantId, sk runId) carries sparse index attributes:
``queuePlan``/``queueKey`` while QUEUED, ``activePlan``/``activeKey`` while
STARTING/RUNNING, ``executionArn`` once started.

State table (pk, sk; TTL ``expiresAt``):

=====================  ==============  ===========================================
pk                     sk              what
=====================  ==============  ===========================================
``counter``            ``global``      running slots held (``running``), guarded
                       ``plan#<p>``    by ``running < cap`` in the admission
                       ``tenant#<t>``  transaction
``tenant#<t>``         ``queued``      the tenant's QUEUED run (``runId``): coalescing
                       ``retry``       its retried run while QUEUED (``runId``)
                       ``schema-       its latest SUCCEEDED run that wrote a schema
                       baseline``      (``runId``): the schema-drift baseline
``upload#<sha256>``    ``upload``      an accepted S3 object (dedupe, with TTL)
``multipart#<t>``      ``<uploadId>``  a multipart upload the API started (TTL;
                                       ``store/upload_plans.py``)
``rejection``          ``<at>#<rand>`` an upload that was refused, and why (TTL)
``usage#<t>``          ``YYYY-MM``     runs, trainingSeconds, costEstimateUsd
``drift``              ``<counter>``   a counter mismatch seen by the reconciler
``heal``               ``cursor``      the last tenant counter healed (``after``):
                                       reconcile heals a slice a tick from there
``durations``          ``<plan>``      recent run durations of the plan, seconds,
                                       in ``d00``..``d15`` (``DURATION_SAMPLES``)
=====================  ==============  ===========================================

Durations: each SUCCEEDED or FAILED run that ran overwrites the slot its run id
picks (random bits), in the transaction that ends it: no read, no growth, and an
old sample survives ``n`` later runs with probability ``(1 - 1/16)**n`` (an
exponentially fading sample, like a moving average). The read model estimates
start times from it (``scheduling/waiting.py``).
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from trainyard_core import limits
from trainyard_core.models import Run, RunRetry, RunStatus, TriggerObject, WaitingFor, parse_iso
from trainyard_core.ports.runs import (
    GLOBAL,
    PLAN_PREFIX,
    TENANT_PREFIX,
    Counters,
    Rejection,
)
from trainyard_core.store.dynamodb import from_dynamo, to_dynamo
from trainyard_core.store.tokens import InvalidTokenError, decode_token

COUNTER_PK = "counter"
REJECTION_PK = "rejection"
DRIFT_PK = "drift"
HEAL_PK = "heal"
DURATIONS_PK = "durations"
DURATION_SAMPLES = 16
# What waiting reasons began with when they were kept in failureReason.
LEGACY_WAIT_PREFIX = "Waiting: "
# Attributes that exist only for indexing/scheduling, never part of a Run.
INTERNAL_ATTRS = ("queuePlan", "queueKey", "activePlan", "activeKey", "nextAttemptAt")

# --- state table keys, as (pk, sk)

StateKey = tuple[str, str]


def state_item(key: StateKey, /, **attributes: Any) -> dict[str, Any]:
    # key is positional-only: a rejection item has an attribute named "key".
    return {"pk": key[0], "sk": key[1], **attributes}


def counter_key(name: str) -> StateKey:
    return COUNTER_PK, name


def pointer_key(tenant_id: str) -> StateKey:
    return f"tenant#{tenant_id}", "queued"


def schema_baseline_key(tenant_id: str) -> StateKey:
    # The tenant's latest SUCCEEDED run that wrote a schema (the schema-drift
    # baseline), set by the transaction that ends such a run.
    return f"tenant#{tenant_id}", "schema-baseline"


def wrote_schema(run: Run) -> bool:
    """Preprocess wrote schema.json beside the run's data report (its report has
    ``schemaDrift``): a run from before the check has nothing there."""
    return "schemaDrift" in (run.data_report or {})


def retry_pointer_key(tenant_id: str) -> StateKey:
    # The tenant's retried run while it is QUEUED (at most one at a time).
    return f"tenant#{tenant_id}", "retry"


def upload_key(dedupe_key: str) -> StateKey:
    return f"upload#{dedupe_key}", "upload"


def rejection_key(at: str) -> StateKey:
    # The random suffix keeps two rejections of the same millisecond apart.
    return REJECTION_PK, f"{at}#{secrets.token_hex(4)}"


def usage_key(tenant_id: str, month: str) -> StateKey:
    return f"usage#{tenant_id}", month


def drift_key(name: str) -> StateKey:
    return DRIFT_PK, name


def heal_cursor_key() -> StateKey:
    return HEAL_PK, "cursor"


def durations_key(plan: str) -> StateKey:
    return DURATIONS_PK, plan


def duration_slot(run_id: str) -> str:
    """The sample attribute a run's duration goes to: its id's last (random) hex digits."""
    try:
        value = int(run_id[-4:], 16)
    except ValueError:
        value = sum(map(ord, run_id))
    return f"d{value % DURATION_SAMPLES:02d}"


def durations_from(item: dict[str, Any] | None) -> list[float]:
    if not item:
        return []
    item = from_dynamo(item)
    names = (f"d{i:02d}" for i in range(DURATION_SAMPLES))
    return [float(item[n]) for n in names if n in item]


def epoch(iso: str) -> int:
    """An ISO time in epoch seconds, the unit of TTL attributes (``expiresAt``)."""
    moment = parse_iso(iso)
    return int(moment.timestamp()) if moment else int(time.time())


# --- runs


def bounded_object(obj: TriggerObject) -> TriggerObject:
    """An upload as a run lists it: S3 already bounds keys (1024 bytes), but an
    event is only as trustworthy as its sender."""
    return obj.model_copy(
        update={
            "key": limits.bounded(obj.key, limits.S3_KEY_MAX_CHARS),
            "etag": limits.bounded_or_none(obj.etag, limits.NAME_MAX_CHARS),
            "bucket": limits.bounded_or_none(obj.bucket, limits.NAME_MAX_CHARS),
            "version_id": limits.bounded_or_none(obj.version_id, limits.NAME_MAX_CHARS),
        }
    )


def bounded_run(run: Run) -> Run:
    """The run with every caller- or data-controlled field within limits.py."""
    objects = run.trigger.objects
    omitted = run.trigger.objects_omitted + max(0, len(objects) - limits.TRIGGER_OBJECTS_MAX)
    trigger = run.trigger.model_copy(
        update={
            "objects": [bounded_object(o) for o in objects[: limits.TRIGGER_OBJECTS_MAX]],
            "objects_omitted": omitted,
        }
    )
    return run.model_copy(
        update={
            "trigger": trigger,
            "failure_reason": limits.failure_reason(run.failure_reason),
            "waiting_for": bounded_waiting(run.waiting_for),
            "metrics": bounded_metrics(run.metrics),
            "data_report": bounded_data_report(run.data_report),
            "model_package_arn": limits.bounded_or_none(
                run.model_package_arn, limits.ARN_MAX_CHARS
            ),
            "retries": [bounded_retry(r) for r in run.retries[-limits.RUN_RETRIES_MAX :]],
        }
    )


def bounded_retry(retry: RunRetry) -> RunRetry:
    """A retry entry within limits: the caller's reason and the failures it records."""
    return retry.model_copy(
        update={
            "reason": limits.bounded_or_none(retry.reason, limits.MODEL_REASON_MAX_CHARS),
            "previous_failure_reason": limits.failure_reason(retry.previous_failure_reason),
            "fallback_reason": limits.failure_reason(retry.fallback_reason),
            "previous_execution_arn": limits.bounded_or_none(
                retry.previous_execution_arn, limits.ARN_MAX_CHARS
            ),
            "execution_arn": limits.bounded_or_none(retry.execution_arn, limits.ARN_MAX_CHARS),
        }
    )


def retry_value(retry: RunRetry) -> dict[str, Any]:
    """A retry entry as stored in the run's ``retries`` list."""
    return bounded_retry(retry).model_dump(by_alias=True, mode="json", exclude_none=True)


def bounded_waiting(waiting: WaitingFor | None) -> WaitingFor | None:
    if waiting is None:
        return None
    return waiting.model_copy(
        update={"message": limits.bounded(waiting.message, limits.REASON_MAX_CHARS)}
    )


def bounded_data_report(report: dict[str, Any] | None) -> dict[str, Any] | None:
    """The report if its JSON fits limits.DATA_REPORT_MAX_CHARS, else only its counts."""
    if report is None:
        return None
    if len(json.dumps(report, separators=(",", ":"))) <= limits.DATA_REPORT_MAX_CHARS:
        return report
    kept = {k: report[k] for k in ("problemType", "rows", "columns") if k in report}
    return {**{k: limits.bounded(str(v), 64) for k, v in kept.items()}, "truncated": True}


def bounded_metrics(metrics: dict[str, float]) -> dict[str, float]:
    names = sorted(metrics)[: limits.METRICS_MAX]
    return {limits.bounded(n, limits.NAME_MAX_CHARS): metrics[n] for n in names}


def run_to_item(run: Run, next_attempt_at: str | None = None) -> dict[str, Any]:
    run = bounded_run(run)
    # Position and estimate are the read model's (computed per read, never stored).
    item = run.model_dump(
        by_alias=True,
        mode="json",
        exclude_none=True,
        exclude={"queue_position", "estimated_start_at"},
    )
    if run.status == RunStatus.QUEUED:
        item["queuePlan"] = run.plan
        item["queueKey"] = f"{run.queued_at}#{run.run_id}"
    elif run.status.holds_slot:
        item["activePlan"] = run.plan
        item["activeKey"] = f"{run.tenant_id}#{run.run_id}"
        if next_attempt_at:
            item["nextAttemptAt"] = next_attempt_at
    return to_dynamo(item)


def item_to_run(item: dict[str, Any]) -> Run:
    clean = {k: v for k, v in from_dynamo(item).items() if k not in INTERNAL_ATTRS}
    legacy = str(clean.get("failureReason") or "")
    if clean.get("status") == RunStatus.QUEUED.value and legacy.startswith(LEGACY_WAIT_PREFIX):
        # Written before waitingFor existed: a waiting reason, not a failure.
        clean.pop("failureReason")
    return Run.model_validate(clean)


def run_token(tenant_id: str, token: str) -> dict[str, Any]:
    """A runs page token, only for the tenant it was issued for."""
    key = decode_token(token, ("tenantId", "runId"))
    if key["tenantId"] != tenant_id:
        raise InvalidTokenError("nextToken belongs to another listing")
    return dict(key)


def is_due(item: dict[str, Any], now_iso: str) -> bool:
    """A STARTING run without an execution whose next start attempt is due."""
    return (
        item.get("status") == RunStatus.STARTING.value
        and not item.get("executionArn")
        and str(item.get("nextAttemptAt", "")) <= now_iso
    )


# --- scheduler state


def counters_from(items: list[dict[str, Any]]) -> Counters:
    names = {str(i["sk"]): int(i.get("running", 0)) for i in items}
    plans = {k.split("#", 1)[1]: v for k, v in names.items() if k.startswith(PLAN_PREFIX)}
    tenants = {k.split("#", 1)[1]: v for k, v in names.items() if k.startswith(TENANT_PREFIX)}
    last = {
        str(i["sk"]).split("#", 1)[1]: str(i["lastAdmittedAt"])
        for i in items
        if str(i["sk"]).startswith(TENANT_PREFIX) and i.get("lastAdmittedAt")
    }
    return Counters(
        global_running=names.get(GLOBAL, 0), plans=plans, tenants=tenants, last_admitted=last
    )


def usage_from(item: dict[str, Any]) -> dict[str, float]:
    item = from_dynamo(item)
    return {
        "runs": int(item.get("runs", 0)),
        "trainingSeconds": float(item.get("trainingSeconds", 0.0)),
        "costEstimateUsd": float(item.get("costEstimateUsd", 0.0)),
    }


def rejection_item(rejection: Rejection) -> dict[str, Any]:
    item: dict[str, Any] = {
        "at": rejection.at,
        "reason": limits.bounded(rejection.reason, limits.REASON_MAX_CHARS),
    }
    for attr, value, bound in (
        ("bucket", rejection.bucket, limits.NAME_MAX_CHARS),
        ("key", rejection.key, limits.S3_KEY_MAX_CHARS),
        ("tenantId", rejection.tenant_id, limits.NAME_MAX_CHARS),
    ):
        if value is not None:
            item[attr] = limits.bounded(value, bound)
    # Free-form: kept only while it is small.
    if rejection.detail and limits.item_size(rejection.detail) <= limits.DETAIL_MAX_BYTES:
        item["detail"] = rejection.detail
    return item


def rejection_from(item: dict[str, Any]) -> Rejection:
    item = from_dynamo(item)
    return Rejection(
        at=item["at"],
        reason=item["reason"],
        bucket=item.get("bucket"),
        key=item.get("key"),
        tenant_id=item.get("tenantId"),
        detail=item.get("detail", {}),
    )
