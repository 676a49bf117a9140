"""Runs and scheduler state: DynamoDB implementation and an in-memory twin.

Both implement ``scheduling.ports.RunRepository`` with the same semantics; the
in-memory one drives the policy tests, the property tests and the benchmark.

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
``upload#<sha256>``    ``upload``      an accepted S3 object (dedupe, with TTL)
``rejection``          ``<at>#<rand>`` an upload that was refused, and why (TTL)
``usage#<t>``          ``YYYY-MM``     runs, trainingSeconds, costEstimateUsd
``drift``              ``<counter>``   a counter mismatch seen by the reconciler
=====================  ==============  ===========================================
"""

from __future__ import annotations

import bisect
import copy
import hashlib
import secrets
import threading
import time
from collections.abc import Collection, Iterable, Iterator
from decimal import Decimal
from typing import Any

from trainyard_core.models import Run, RunStatus, TriggerObject, parse_iso
from trainyard_core.scheduling.ports import (
    AdmitOutcome,
    Caps,
    Counters,
    DuplicateUploadError,
    QueuedRunExistsError,
    Rejection,
    RunNotFoundError,
    RunNotQueuedError,
)
from trainyard_core.store.tenants import InvalidTokenError, decode_token, encode_token

COUNTER_PK = "counter"
GLOBAL = "global"
REJECTION_PK = "rejection"
DRIFT_PK = "drift"
_ACTIVE = (RunStatus.STARTING.value, RunStatus.RUNNING.value)
# Attributes that exist only for indexing/scheduling, never part of a Run.
_INTERNAL_ATTRS = ("queuePlan", "queueKey", "activePlan", "activeKey", "nextAttemptAt")


def plan_counter(plan: str) -> str:
    return f"plan#{plan}"


def tenant_counter(tenant_id: str) -> str:
    return f"tenant#{tenant_id}"


def dedupe_key(bucket: str, key: str, etag: str | None, version_id: str | None) -> str:
    """S3 delivers at least once; the same object version is the same upload.
    Hashed because a raw key (up to 1 KiB) would not fit a sort key."""
    raw = "\x1f".join((bucket, key, etag or "", version_id or ""))
    return hashlib.sha256(raw.encode()).hexdigest()


def _to_dynamo(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {k: _to_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_dynamo(v) for v in value]
    return value


def _from_dynamo(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_dynamo(v) for v in value]
    return value


def run_to_item(run: Run, next_attempt_at: str | None = None) -> dict[str, Any]:
    item = run.model_dump(by_alias=True, mode="json", exclude_none=True, exclude={"queue_position"})
    if run.status == RunStatus.QUEUED:
        item["queuePlan"] = run.plan
        item["queueKey"] = f"{run.queued_at}#{run.run_id}"
    elif run.status.holds_slot:
        item["activePlan"] = run.plan
        item["activeKey"] = f"{run.tenant_id}#{run.run_id}"
        if next_attempt_at:
            item["nextAttemptAt"] = next_attempt_at
    return _to_dynamo(item)


def item_to_run(item: dict[str, Any]) -> Run:
    clean = {k: v for k, v in _from_dynamo(item).items() if k not in _INTERNAL_ATTRS}
    return Run.model_validate(clean)


def _run_token(tenant_id: str, token: str) -> dict[str, Any]:
    """A runs page token, only for the tenant it was issued for."""
    key = decode_token(token, ("tenantId", "runId"))
    if key["tenantId"] != tenant_id:
        raise InvalidTokenError("nextToken belongs to another listing")
    return dict(key)


def _epoch(iso: str) -> int:
    moment = parse_iso(iso)
    return int(moment.timestamp()) if moment else int(time.time())


def _is_due(item: dict[str, Any], now_iso: str) -> bool:
    return (
        item.get("status") == RunStatus.STARTING.value
        and not item.get("executionArn")
        and str(item.get("nextAttemptAt", "")) <= now_iso
    )


# ---------------------------------------------------------------------------
# In-memory
# ---------------------------------------------------------------------------


class InMemoryRunRepository:
    """Same semantics as ``DynamoRunRepository``; one lock = one transaction."""

    def __init__(self) -> None:
        self._runs: dict[tuple[str, str], dict[str, Any]] = {}
        self._state: dict[tuple[str, str], dict[str, Any]] = {}
        self._counter_names: set[str] = set()  # counters live in _state; this indexes them
        self._lock = threading.RLock()
        # The in-memory twins of the GSIs, so reads cost what a GSI query costs
        # (the head of the queue, the active runs) rather than a scan of every run.
        self._queue_idx: dict[str, list[tuple[str, tuple[str, str]]]] = {}
        self._active_idx: dict[str, dict[tuple[str, str], str]] = {}
        self._exec_idx: dict[str, tuple[str, str]] = {}
        self._tenant_idx: dict[str, set[str]] = {}

    # --- helpers
    def _run_item(self, tenant_id: str, run_id: str) -> dict[str, Any] | None:
        return self._runs.get((tenant_id, run_id))

    def _put_run(self, run: Run, next_attempt_at: str | None = None) -> None:
        key = (run.tenant_id, run.run_id)
        old = self._runs.get(key)
        if old is not None:
            self._unindex(key, old)
        item = run_to_item(run, next_attempt_at)
        self._runs[key] = item
        self._index(key, item)

    def _index(self, key: tuple[str, str], item: dict[str, Any]) -> None:
        if item.get("queuePlan"):
            bisect.insort(
                self._queue_idx.setdefault(item["queuePlan"], []), (item["queueKey"], key)
            )
        if item.get("activePlan"):
            self._active_idx.setdefault(item["activePlan"], {})[key] = item["activeKey"]
        if item.get("executionArn"):
            self._exec_idx[item["executionArn"]] = key
        self._tenant_idx.setdefault(key[0], set()).add(key[1])

    def _unindex(self, key: tuple[str, str], item: dict[str, Any]) -> None:
        if item.get("queuePlan"):
            entries = self._queue_idx.get(item["queuePlan"], [])
            entry = (item["queueKey"], key)
            at = bisect.bisect_left(entries, entry)
            if at < len(entries) and entries[at] == entry:
                del entries[at]
        if item.get("activePlan"):
            self._active_idx.get(item["activePlan"], {}).pop(key, None)

    def _load(self, tenant_id: str, run_id: str) -> Run | None:
        item = self._run_item(tenant_id, run_id)
        return item_to_run(item) if item else None

    def _counter(self, name: str) -> int:
        return int(self._state.get((COUNTER_PK, name), {}).get("running", 0))

    def _add_counter(self, name: str, delta: int) -> None:
        item = self._state.setdefault((COUNTER_PK, name), {"running": 0})
        self._counter_names.add(name)
        item["running"] = int(item.get("running", 0)) + delta

    def _pointer(self, tenant_id: str) -> str | None:
        item = self._state.get((f"tenant#{tenant_id}", "queued"))
        return item["runId"] if item else None

    def _dedupe_taken(self, key: str | None, now_iso: str) -> bool:
        if key is None:
            return False
        item = self._state.get((f"upload#{key}", "upload"))
        return bool(item) and int(item.get("expiresAt", 0)) > _epoch(now_iso)

    # --- reads
    def get_run(self, tenant_id: str, run_id: str) -> Run | None:
        with self._lock:
            return self._load(tenant_id, run_id)

    def list_runs(
        self, tenant_id: str, limit: int = 50, next_token: str | None = None
    ) -> tuple[list[Run], str | None]:
        after = _run_token(tenant_id, next_token)["runId"] if next_token else None
        with self._lock:
            ids = sorted(self._tenant_idx.get(tenant_id, ()), reverse=True)
            if after is not None:
                ids = [r for r in ids if r < after]
            page = [self._load(tenant_id, r) for r in ids[:limit]]
        runs = [r for r in page if r]
        token = (
            encode_token({"tenantId": tenant_id, "runId": runs[-1].run_id})
            if len(ids) > limit
            else None
        )
        return runs, token

    def find_by_execution(self, execution_arn: str) -> Run | None:
        with self._lock:
            key = self._exec_idx.get(execution_arn)
            item = self._runs.get(key) if key else None
            if item is not None and item.get("executionArn") == execution_arn:
                return item_to_run(item)
        return None

    def queued_runs(self, plan: str, limit: int | None = None) -> list[Run]:
        with self._lock:
            entries = self._queue_idx.get(plan, [])
            head = entries if limit is None else entries[:limit]
            items = [self._runs[key] for _, key in head]
        return [item_to_run(i) for i in items]

    def queue_depth(self, plan: str) -> int:
        with self._lock:
            return len(self._queue_idx.get(plan, []))

    def _active_items(self, plan: str) -> list[dict[str, Any]]:
        with self._lock:
            keys = sorted(self._active_idx.get(plan, {}).items(), key=lambda kv: kv[1])
            return [self._runs[key] for key, _ in keys]

    def active_runs(self, plan: str) -> list[Run]:
        return [item_to_run(i) for i in self._active_items(plan)]

    def due_starts(self, plan: str, now_iso: str) -> list[Run]:
        return [item_to_run(i) for i in self._active_items(plan) if _is_due(i, now_iso)]

    def queued_run_id(self, tenant_id: str) -> str | None:
        with self._lock:
            return self._pointer(tenant_id)

    def counters(self, tenant_ids: Collection[str] | None = None) -> Counters:
        with self._lock:
            if tenant_ids is None:
                names: Iterable[str] = list(self._counter_names)
            else:
                slots = [n for n in self._counter_names if not n.startswith("tenant#")]
                names = slots + [tenant_counter(t) for t in set(tenant_ids)]
            items = [
                {"sk": name, **self._state[(COUNTER_PK, name)]}
                for name in names
                if (COUNTER_PK, name) in self._state
            ]
        return _counters_from(items)

    def usage(self, tenant_id: str, month: str) -> dict[str, float]:
        with self._lock:
            item = dict(self._state.get((f"usage#{tenant_id}", month), {}))
        return _usage_from(item)

    def list_rejections(self, limit: int = 50) -> list[Rejection]:
        with self._lock:
            items = sorted(
                ((sk, v) for (pk, sk), v in self._state.items() if pk == REJECTION_PK), reverse=True
            )
        return [_rejection_from(v) for _, v in items[:limit]]

    # --- intake
    def create_queued_run(
        self,
        run: Run,
        dedupe_key: str | None,
        dedupe_ttl: int,
        replace_pointer: str | None = None,
    ) -> None:
        with self._lock:
            if self._dedupe_taken(dedupe_key, run.queued_at):
                raise DuplicateUploadError(dedupe_key)
            pointer = self._pointer(run.tenant_id)
            if pointer is not None and pointer != replace_pointer:
                raise QueuedRunExistsError(pointer)
            if self._run_item(run.tenant_id, run.run_id):
                raise QueuedRunExistsError(run.run_id)
            if dedupe_key is not None:
                self._state[(f"upload#{dedupe_key}", "upload")] = {"expiresAt": dedupe_ttl}
            self._state[(f"tenant#{run.tenant_id}", "queued")] = {"runId": run.run_id}
            self._put_run(run)

    def add_to_queued_run(
        self,
        tenant_id: str,
        run_id: str,
        obj: TriggerObject | None,
        dedupe_key: str | None,
        dedupe_ttl: int,
        now_iso: str,
    ) -> None:
        with self._lock:
            if self._dedupe_taken(dedupe_key, now_iso):
                raise DuplicateUploadError(dedupe_key)
            run = self._load(tenant_id, run_id)
            if run is None or run.status != RunStatus.QUEUED:
                raise RunNotQueuedError(run_id)
            if dedupe_key is not None:
                self._state[(f"upload#{dedupe_key}", "upload")] = {"expiresAt": dedupe_ttl}
            objects = [*run.trigger.objects, obj] if obj is not None else run.trigger.objects
            trigger = run.trigger.model_copy(update={"objects": objects})
            self._put_run(run.model_copy(update={"trigger": trigger, "updated_at": now_iso}))

    def record_rejection(self, rejection: Rejection, ttl: int) -> None:
        with self._lock:
            self._state[(REJECTION_PK, f"{rejection.at}#{secrets.token_hex(4)}")] = {
                **_rejection_item(rejection),
                "expiresAt": ttl,
            }

    # --- dispatch
    def admit(self, run: Run, caps: Caps, now_iso: str, next_attempt_at: str) -> AdmitOutcome:
        with self._lock:
            current = self._load(run.tenant_id, run.run_id)
            if current is None or current.status != RunStatus.QUEUED:
                return AdmitOutcome.NOT_QUEUED
            if (
                self._counter(GLOBAL) >= caps.global_cap
                or self._counter(plan_counter(run.plan)) >= caps.plan_cap
                or self._counter(tenant_counter(run.tenant_id)) >= caps.tenant_cap
            ):
                return AdmitOutcome.CAP_REACHED
            for name in (GLOBAL, plan_counter(run.plan), tenant_counter(run.tenant_id)):
                self._add_counter(name, 1)
            self._state[(COUNTER_PK, tenant_counter(run.tenant_id))]["lastAdmittedAt"] = now_iso
            if self._pointer(run.tenant_id) == run.run_id:
                del self._state[(f"tenant#{run.tenant_id}", "queued")]
            self._put_run(
                current.model_copy(
                    update={
                        "status": RunStatus.STARTING,
                        "failure_reason": None,
                        "updated_at": now_iso,
                    }
                ),
                next_attempt_at,
            )
            return AdmitOutcome.ADMITTED

    def set_waiting_reason(self, run: Run, reason: str | None) -> None:
        with self._lock:
            current = self._load(run.tenant_id, run.run_id)
            if current is not None and current.status == RunStatus.QUEUED:
                self._put_run(current.model_copy(update={"failure_reason": reason}))

    def move_queued_run(self, run: Run, plan: str) -> bool:
        with self._lock:
            current = self._load(run.tenant_id, run.run_id)
            if current is None or current.status != RunStatus.QUEUED:
                return False
            self._put_run(current.model_copy(update={"plan": plan}))
            return True

    def set_stuck_reason(self, run: Run, reason: str) -> None:
        with self._lock:
            current = self._load(run.tenant_id, run.run_id)
            if current is not None and current.status.holds_slot:
                self._put_run(current.model_copy(update={"failure_reason": reason}))

    def cancel_queued(self, run: Run, reason: str, now_iso: str) -> bool:
        with self._lock:
            current = self._load(run.tenant_id, run.run_id)
            if current is None or current.status != RunStatus.QUEUED:
                return False
            if self._pointer(run.tenant_id) == run.run_id:
                del self._state[(f"tenant#{run.tenant_id}", "queued")]
            self._put_run(
                current.model_copy(
                    update={
                        "status": RunStatus.FAILED,
                        "failure_reason": reason,
                        "ended_at": now_iso,
                        "updated_at": now_iso,
                    }
                )
            )
            return True

    def mark_started(
        self,
        run: Run,
        execution_arn: str,
        started_at: str,
        instance_type: str,
        instance_count: int,
    ) -> bool:
        with self._lock:
            current = self._load(run.tenant_id, run.run_id)
            if current is None:
                return False
            if current.status != RunStatus.STARTING:
                if current.execution_arn is None:
                    item = self._run_item(run.tenant_id, run.run_id)
                    assert item is not None
                    item["executionArn"] = execution_arn
                    self._exec_idx[execution_arn] = (run.tenant_id, run.run_id)
                return False
            self._put_run(
                current.model_copy(
                    update={
                        "status": RunStatus.RUNNING,
                        "execution_arn": execution_arn,
                        "started_at": started_at,
                        "instance_type": instance_type,
                        "instance_count": instance_count,
                        "failure_reason": None,
                        "updated_at": started_at,
                    }
                )
            )
            return True

    def record_start_failure(
        self, run: Run, attempts: int, next_attempt_at: str, reason: str, now_iso: str
    ) -> bool:
        with self._lock:
            current = self._load(run.tenant_id, run.run_id)
            if current is None or current.status != RunStatus.STARTING or current.execution_arn:
                return False
            self._put_run(
                current.model_copy(
                    update={
                        "start_attempts": attempts,
                        "failure_reason": reason,
                        "updated_at": now_iso,
                    }
                ),
                next_attempt_at,
            )
            return True

    # --- status
    def mark_running(self, run: Run, execution_arn: str, now_iso: str) -> bool:
        with self._lock:
            current = self._load(run.tenant_id, run.run_id)
            if current is None or current.status != RunStatus.STARTING:
                return False
            self._put_run(
                current.model_copy(
                    update={
                        "status": RunStatus.RUNNING,
                        "execution_arn": current.execution_arn or execution_arn,
                        "started_at": current.started_at or now_iso,
                        "failure_reason": None,
                        "updated_at": now_iso,
                    }
                )
            )
            return True

    def finish(
        self,
        run: Run,
        status: RunStatus,
        *,
        ended_at: str,
        month: str,
        training_seconds: float,
        cost_usd: float,
        failure_reason: str | None,
        execution_arn: str | None = None,
    ) -> bool:
        with self._lock:
            current = self._load(run.tenant_id, run.run_id)
            if current is None or not current.status.holds_slot:
                return False
            for name in (GLOBAL, plan_counter(current.plan), tenant_counter(current.tenant_id)):
                self._add_counter(name, -1)
            usage = self._state.setdefault(
                (f"usage#{current.tenant_id}", month),
                {"runs": 0, "trainingSeconds": 0.0, "costEstimateUsd": 0.0},
            )
            usage["runs"] += 1
            usage["trainingSeconds"] += training_seconds
            usage["costEstimateUsd"] += cost_usd
            self._put_run(
                current.model_copy(
                    update={
                        "status": status,
                        "ended_at": ended_at,
                        "training_seconds": training_seconds,
                        "cost_estimate_usd": cost_usd,
                        "failure_reason": failure_reason,
                        "execution_arn": current.execution_arn or execution_arn,
                        "updated_at": ended_at,
                    }
                )
            )
            return True

    # --- recorder
    def record_results(
        self,
        tenant_id: str,
        run_id: str,
        metrics: dict[str, float],
        model_package_arn: str | None,
        now_iso: str,
    ) -> Run:
        with self._lock:
            current = self._load(tenant_id, run_id)
            if current is None:
                raise RunNotFoundError(f"run {tenant_id}/{run_id} does not exist")
            update: dict[str, Any] = {"metrics": dict(metrics), "updated_at": now_iso}
            if model_package_arn:
                update["model_package_arn"] = model_package_arn
            item = self._run_item(tenant_id, run_id)
            assert item is not None
            next_attempt = item.get("nextAttemptAt")
            updated = current.model_copy(update=update)
            self._put_run(updated, next_attempt)
            return updated

    # --- reconcile
    def set_counter(self, name: str, value: int, expected: int | None) -> bool:
        with self._lock:
            if expected is not None and self._counter(name) != expected:
                return False
            self._state.setdefault((COUNTER_PK, name), {})["running"] = value
            self._counter_names.add(name)
            return True

    def drift_marker(self, name: str) -> tuple[int, int] | None:
        with self._lock:
            item = self._state.get((DRIFT_PK, name))
        return (int(item["observed"]), int(item["actual"])) if item else None

    def put_drift_marker(self, name: str, observed: int | None, actual: int | None) -> None:
        with self._lock:
            if observed is None or actual is None:
                self._state.pop((DRIFT_PK, name), None)
            else:
                self._state[(DRIFT_PK, name)] = {"observed": observed, "actual": actual}

    # --- test/benchmark helpers
    def all_runs(self) -> list[Run]:
        with self._lock:
            return [item_to_run(copy.deepcopy(i)) for i in self._runs.values()]


def _counters_from(items: list[dict[str, Any]]) -> Counters:
    names = {str(i["sk"]): int(i.get("running", 0)) for i in items}
    plans = {k.split("#", 1)[1]: v for k, v in names.items() if k.startswith("plan#")}
    tenants = {k.split("#", 1)[1]: v for k, v in names.items() if k.startswith("tenant#")}
    last = {
        str(i["sk"]).split("#", 1)[1]: str(i["lastAdmittedAt"])
        for i in items
        if str(i["sk"]).startswith("tenant#") and i.get("lastAdmittedAt")
    }
    return Counters(
        global_running=names.get(GLOBAL, 0), plans=plans, tenants=tenants, last_admitted=last
    )


def _usage_from(item: dict[str, Any]) -> dict[str, float]:
    item = _from_dynamo(item)
    return {
        "runs": int(item.get("runs", 0)),
        "trainingSeconds": float(item.get("trainingSeconds", 0.0)),
        "costEstimateUsd": float(item.get("costEstimateUsd", 0.0)),
    }


def _rejection_item(rejection: Rejection) -> dict[str, Any]:
    item: dict[str, Any] = {"at": rejection.at, "reason": rejection.reason}
    for attr, value in (
        ("bucket", rejection.bucket),
        ("key", rejection.key),
        ("tenantId", rejection.tenant_id),
    ):
        if value is not None:
            item[attr] = value
    if rejection.detail:
        item["detail"] = rejection.detail
    return item


def _rejection_from(item: dict[str, Any]) -> Rejection:
    item = _from_dynamo(item)
    return Rejection(
        at=item["at"],
        reason=item["reason"],
        bucket=item.get("bucket"),
        key=item.get("key"),
        tenant_id=item.get("tenantId"),
        detail=item.get("detail", {}),
    )


# ---------------------------------------------------------------------------
# DynamoDB
# ---------------------------------------------------------------------------


class DynamoRunRepository:
    """Low-level client + (de)serializer so transactions and plain calls share one path."""

    def __init__(self, runs_table: str, state_table: str, client: Any | None = None) -> None:
        from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

        self.runs_table = runs_table
        self.state_table = state_table
        self._client = client
        self._ser = TypeSerializer()
        self._de = TypeDeserializer()

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            # Plain boto3 honours AWS_ENDPOINT_URL (moto locally).
            self._client = boto3.client("dynamodb")
        return self._client

    # --- (de)serialization
    def _s(self, values: dict[str, Any]) -> dict[str, Any]:
        return {k: self._ser.serialize(_to_dynamo(v)) for k, v in values.items()}

    def _d(self, item: dict[str, Any]) -> dict[str, Any]:
        return {k: self._de.deserialize(v) for k, v in item.items()}

    def _run_key(self, tenant_id: str, run_id: str) -> dict[str, Any]:
        return self._s({"tenantId": tenant_id, "runId": run_id})

    def _state_key(self, pk: str, sk: str) -> dict[str, Any]:
        return self._s({"pk": pk, "sk": sk})

    @staticmethod
    def _error_code(exc: Exception) -> str:
        return getattr(exc, "response", {}).get("Error", {}).get("Code", "")

    @staticmethod
    def _cancel_codes(exc: Exception) -> list[str]:
        reasons = getattr(exc, "response", {}).get("CancellationReasons") or []
        return [r.get("Code", "None") for r in reasons]

    def _transact(self, items: list[dict[str, Any]]) -> list[str] | None:
        """Run a transaction; None on success, the per-item cancellation codes if
        a condition refused it. Other errors propagate."""
        from botocore.exceptions import ClientError

        try:
            self.client.transact_write_items(TransactItems=items)
            return None
        except ClientError as exc:
            if self._error_code(exc) != "TransactionCanceledException":
                raise
            codes = self._cancel_codes(exc)
            if any(c not in ("None", "ConditionalCheckFailed") for c in codes):
                raise  # e.g. TransactionConflict / throttling: let the caller retry
            return codes or ["ConditionalCheckFailed"] * len(items)

    def _update(self, **kwargs: Any) -> dict[str, Any] | None:
        """UpdateItem; None when its condition failed."""
        from botocore.exceptions import ClientError

        try:
            return self.client.update_item(**kwargs)
        except ClientError as exc:
            if self._error_code(exc) == "ConditionalCheckFailedException":
                return None
            raise

    def _query_all(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        while True:
            page = self.client.query(**kwargs)
            for item in page.get("Items", []):
                yield self._d(item)
            if not page.get("LastEvaluatedKey"):
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _get_run_item(self, tenant_id: str, run_id: str) -> dict[str, Any] | None:
        resp = self.client.get_item(
            TableName=self.runs_table, Key=self._run_key(tenant_id, run_id), ConsistentRead=True
        )
        return self._d(resp["Item"]) if "Item" in resp else None

    def _dedupe_put(self, key: str, ttl: int, now_iso: str) -> dict[str, Any]:
        return {
            "Put": {
                "TableName": self.state_table,
                "Item": self._s({"pk": f"upload#{key}", "sk": "upload", "expiresAt": ttl}),
                # An expired-but-not-yet-deleted marker (TTL is lazy) no longer counts.
                "ConditionExpression": "attribute_not_exists(pk) OR expiresAt <= :now",
                "ExpressionAttributeValues": self._s({":now": _epoch(now_iso)}),
            }
        }

    def _counter_update(
        self, name: str, delta: int, cap: int | None, stamp: str | None = None
    ) -> dict[str, Any]:
        update: dict[str, Any] = {
            "TableName": self.state_table,
            "Key": self._state_key(COUNTER_PK, name),
            "UpdateExpression": "ADD running :delta",
        }
        values: dict[str, Any] = {":delta": delta}
        if stamp is not None:  # same write, so the fair order costs no extra request
            update["UpdateExpression"] += " SET lastAdmittedAt = :stamp"
            values[":stamp"] = stamp
        if cap is not None:
            update["ConditionExpression"] = "attribute_not_exists(running) OR running < :cap"
            values[":cap"] = cap
        update["ExpressionAttributeValues"] = self._s(values)
        return {"Update": update}

    def _pointer_delete_if(self, tenant_id: str, run_id: str) -> list[dict[str, Any]]:
        # Only clear the pointer if it points at this run. Nobody can move it away
        # from a QUEUED run, so this read cannot go stale before the transaction.
        if self.queued_run_id(tenant_id) != run_id:
            return []
        return [
            {
                "Delete": {
                    "TableName": self.state_table,
                    "Key": self._state_key(f"tenant#{tenant_id}", "queued"),
                    "ConditionExpression": "runId = :rid",
                    "ExpressionAttributeValues": self._s({":rid": run_id}),
                }
            }
        ]

    # --- reads
    def get_run(self, tenant_id: str, run_id: str) -> Run | None:
        item = self._get_run_item(tenant_id, run_id)
        return item_to_run(item) if item else None

    def list_runs(
        self, tenant_id: str, limit: int = 50, next_token: str | None = None
    ) -> tuple[list[Run], str | None]:
        kwargs: dict[str, Any] = {
            "TableName": self.runs_table,
            "KeyConditionExpression": "tenantId = :t",
            "ExpressionAttributeValues": self._s({":t": tenant_id}),
            "ScanIndexForward": False,  # run ids are time-ordered: newest first
            "Limit": limit,
        }
        if next_token:
            kwargs["ExclusiveStartKey"] = self._s(_run_token(tenant_id, next_token))
        page = self.client.query(**kwargs)
        runs = [item_to_run(self._d(i)) for i in page.get("Items", [])]
        last = page.get("LastEvaluatedKey")
        token = encode_token(self._d(last)) if last else None
        return runs, token

    def find_by_execution(self, execution_arn: str) -> Run | None:
        items = list(
            self._query_all(
                TableName=self.runs_table,
                IndexName="byExecution",
                KeyConditionExpression="executionArn = :a",
                ExpressionAttributeValues=self._s({":a": execution_arn}),
            )
        )
        if not items:
            return None
        # The GSI is eventually consistent; read the base item for the truth.
        return self.get_run(items[0]["tenantId"], items[0]["runId"])

    def queued_runs(self, plan: str, limit: int | None = None) -> list[Run]:
        kwargs: dict[str, Any] = {
            "TableName": self.runs_table,
            "IndexName": "byQueue",
            "KeyConditionExpression": "queuePlan = :p",
            "ExpressionAttributeValues": self._s({":p": plan}),
        }
        if limit is not None:
            kwargs["Limit"] = limit  # only the head of the queue is read (and paid for)
        runs: list[Run] = []
        for item in self._query_all(**kwargs):
            runs.append(item_to_run(item))
            if limit is not None and len(runs) >= limit:
                break
        return runs

    def queue_depth(self, plan: str) -> int:
        kwargs: dict[str, Any] = {
            "TableName": self.runs_table,
            "IndexName": "byQueue",
            "KeyConditionExpression": "queuePlan = :p",
            "ExpressionAttributeValues": self._s({":p": plan}),
            "Select": "COUNT",
        }
        total = 0
        while True:
            page = self.client.query(**kwargs)
            total += int(page.get("Count", 0))
            if not page.get("LastEvaluatedKey"):
                return total
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _active_items(self, plan: str) -> list[dict[str, Any]]:
        return list(
            self._query_all(
                TableName=self.runs_table,
                IndexName="byActive",
                KeyConditionExpression="activePlan = :p",
                ExpressionAttributeValues=self._s({":p": plan}),
            )
        )

    def active_runs(self, plan: str) -> list[Run]:
        return [item_to_run(i) for i in self._active_items(plan)]

    def due_starts(self, plan: str, now_iso: str) -> list[Run]:
        return [item_to_run(i) for i in self._active_items(plan) if _is_due(i, now_iso)]

    def queued_run_id(self, tenant_id: str) -> str | None:
        resp = self.client.get_item(
            TableName=self.state_table,
            Key=self._state_key(f"tenant#{tenant_id}", "queued"),
            ConsistentRead=True,
        )
        return self._d(resp["Item"]).get("runId") if "Item" in resp else None

    def counters(self, tenant_ids: Collection[str] | None = None) -> Counters:
        if tenant_ids is None:
            items = list(
                self._query_all(
                    TableName=self.state_table,
                    KeyConditionExpression="pk = :pk",
                    ExpressionAttributeValues=self._s({":pk": COUNTER_PK}),
                    ConsistentRead=True,
                )
            )
            return _counters_from(items)
        # "global" and "plan#..." sort before "tenant#": one small query, and the
        # tenants asked for by key, so the read does not grow with the tenant count.
        items = list(
            self._query_all(
                TableName=self.state_table,
                KeyConditionExpression="pk = :pk AND sk < :tenants",
                ExpressionAttributeValues=self._s({":pk": COUNTER_PK, ":tenants": "tenant#"}),
                ConsistentRead=True,
            )
        )
        items.extend(self._get_many([(COUNTER_PK, tenant_counter(t)) for t in set(tenant_ids)]))
        return _counters_from(items)

    def _get_many(self, keys: list[tuple[str, str]]) -> list[dict[str, Any]]:
        """BatchGetItem on the state table (100 keys a call, unprocessed keys retried)."""
        found: list[dict[str, Any]] = []
        for start in range(0, len(keys), 100):
            request: dict[str, Any] = {
                self.state_table: {
                    "Keys": [self._state_key(pk, sk) for pk, sk in keys[start : start + 100]],
                    "ConsistentRead": True,
                }
            }
            for attempt in range(8):
                resp = self.client.batch_get_item(RequestItems=request)
                found.extend(
                    self._d(i) for i in resp.get("Responses", {}).get(self.state_table, [])
                )
                request = resp.get("UnprocessedKeys") or {}
                if not request:
                    break
                time.sleep(min(1.0, 0.05 * 2**attempt))
            else:
                raise RuntimeError("BatchGetItem left keys unprocessed after retries")
        return found

    def usage(self, tenant_id: str, month: str) -> dict[str, float]:
        resp = self.client.get_item(
            TableName=self.state_table,
            Key=self._state_key(f"usage#{tenant_id}", month),
            ConsistentRead=True,
        )
        return _usage_from(self._d(resp["Item"]) if "Item" in resp else {})

    def list_rejections(self, limit: int = 50) -> list[Rejection]:
        resp = self.client.query(
            TableName=self.state_table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues=self._s({":pk": REJECTION_PK}),
            ScanIndexForward=False,
            Limit=limit,
        )
        return [_rejection_from(self._d(i)) for i in resp.get("Items", [])]

    # --- intake
    def create_queued_run(
        self,
        run: Run,
        dedupe_key: str | None,
        dedupe_ttl: int,
        replace_pointer: str | None = None,
    ) -> None:
        items: list[dict[str, Any]] = []
        pointer_put: dict[str, Any] = {
            "TableName": self.state_table,
            "Item": self._s({"pk": f"tenant#{run.tenant_id}", "sk": "queued", "runId": run.run_id}),
            "ConditionExpression": "attribute_not_exists(pk)",
        }
        if replace_pointer is not None:
            # The pointer names a run that is no longer QUEUED: take it over.
            pointer_put["ConditionExpression"] = "attribute_not_exists(pk) OR runId = :stale"
            pointer_put["ExpressionAttributeValues"] = self._s({":stale": replace_pointer})
        if dedupe_key is not None:
            items.append(self._dedupe_put(dedupe_key, dedupe_ttl, run.queued_at))
        items.append({"Put": pointer_put})
        items.append(
            {
                "Put": {
                    "TableName": self.runs_table,
                    "Item": self._s(run_to_item(run)),
                    "ConditionExpression": "attribute_not_exists(runId)",
                }
            }
        )
        codes = self._transact(items)
        if codes is None:
            return
        if dedupe_key is not None and codes[0] == "ConditionalCheckFailed":
            raise DuplicateUploadError(dedupe_key)
        raise QueuedRunExistsError(run.tenant_id)

    def add_to_queued_run(
        self,
        tenant_id: str,
        run_id: str,
        obj: TriggerObject | None,
        dedupe_key: str | None,
        dedupe_ttl: int,
        now_iso: str,
    ) -> None:
        items: list[dict[str, Any]] = []
        if dedupe_key is not None:
            items.append(self._dedupe_put(dedupe_key, dedupe_ttl, now_iso))
        values: dict[str, Any] = {":queued": RunStatus.QUEUED.value, ":now": now_iso}
        expression = "SET updatedAt = :now"
        if obj is not None:
            expression += ", #trigger.objects = list_append(#trigger.objects, :obj)"
            values[":obj"] = [obj.model_dump(by_alias=True, mode="json", exclude_none=True)]
        names = {"#status": "status"}
        if obj is not None:
            names["#trigger"] = "trigger"
        items.append(
            {
                "Update": {
                    "TableName": self.runs_table,
                    "Key": self._run_key(tenant_id, run_id),
                    "UpdateExpression": expression,
                    "ConditionExpression": "#status = :queued",
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": self._s(values),
                }
            }
        )
        codes = self._transact(items)
        if codes is None:
            return
        if dedupe_key is not None and codes[0] == "ConditionalCheckFailed":
            raise DuplicateUploadError(dedupe_key)
        raise RunNotQueuedError(run_id)

    def record_rejection(self, rejection: Rejection, ttl: int) -> None:
        item = {
            "pk": REJECTION_PK,
            "sk": f"{rejection.at}#{secrets.token_hex(4)}",
            "expiresAt": ttl,
            **_rejection_item(rejection),
        }
        self.client.put_item(TableName=self.state_table, Item=self._s(item))

    # --- dispatch
    def admit(self, run: Run, caps: Caps, now_iso: str, next_attempt_at: str) -> AdmitOutcome:
        run_update = {
            "Update": {
                "TableName": self.runs_table,
                "Key": self._run_key(run.tenant_id, run.run_id),
                "UpdateExpression": (
                    "SET #status = :starting, updatedAt = :now, nextAttemptAt = :next, "
                    "activePlan = :plan, activeKey = :akey "
                    "REMOVE queuePlan, queueKey, failureReason"
                ),
                "ConditionExpression": "#status = :queued",
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": self._s(
                    {
                        ":starting": RunStatus.STARTING.value,
                        ":queued": RunStatus.QUEUED.value,
                        ":now": now_iso,
                        ":next": next_attempt_at,
                        ":plan": run.plan,
                        ":akey": f"{run.tenant_id}#{run.run_id}",
                    }
                ),
            }
        }
        items = [
            run_update,
            self._counter_update(GLOBAL, 1, caps.global_cap),
            self._counter_update(plan_counter(run.plan), 1, caps.plan_cap),
            self._counter_update(tenant_counter(run.tenant_id), 1, caps.tenant_cap, now_iso),
            *self._pointer_delete_if(run.tenant_id, run.run_id),
        ]
        codes = self._transact(items)
        if codes is None:
            return AdmitOutcome.ADMITTED
        if codes[0] == "ConditionalCheckFailed":
            return AdmitOutcome.NOT_QUEUED
        if any(c == "ConditionalCheckFailed" for c in codes[1:4]):
            return AdmitOutcome.CAP_REACHED
        return AdmitOutcome.NOT_QUEUED

    def set_waiting_reason(self, run: Run, reason: str | None) -> None:
        values: dict[str, Any] = {":queued": RunStatus.QUEUED.value}
        if reason is None:
            expression = "REMOVE failureReason"
        else:
            expression = "SET failureReason = :r"
            values[":r"] = reason
        self._update(
            TableName=self.runs_table,
            Key=self._run_key(run.tenant_id, run.run_id),
            UpdateExpression=expression,
            ConditionExpression="#status = :queued",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues=self._s(values),
        )

    def move_queued_run(self, run: Run, plan: str) -> bool:
        # queueKey (queued time) stays: the run keeps its seniority in the new queue.
        done = self._update(
            TableName=self.runs_table,
            Key=self._run_key(run.tenant_id, run.run_id),
            UpdateExpression="SET #plan = :plan, queuePlan = :plan",
            ConditionExpression="#status = :queued",
            ExpressionAttributeNames={"#plan": "plan", "#status": "status"},
            ExpressionAttributeValues=self._s({":plan": plan, ":queued": RunStatus.QUEUED.value}),
        )
        return done is not None

    def set_stuck_reason(self, run: Run, reason: str) -> None:
        # updatedAt is left alone: it dates the last state change, not this note.
        self._update(
            TableName=self.runs_table,
            Key=self._run_key(run.tenant_id, run.run_id),
            UpdateExpression="SET failureReason = :r",
            ConditionExpression="#status IN (:starting, :running)",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues=self._s(
                {
                    ":r": reason,
                    ":starting": RunStatus.STARTING.value,
                    ":running": RunStatus.RUNNING.value,
                }
            ),
        )

    def cancel_queued(self, run: Run, reason: str, now_iso: str) -> bool:
        items = [
            {
                "Update": {
                    "TableName": self.runs_table,
                    "Key": self._run_key(run.tenant_id, run.run_id),
                    "UpdateExpression": (
                        "SET #status = :failed, failureReason = :r, endedAt = :now, "
                        "updatedAt = :now REMOVE queuePlan, queueKey"
                    ),
                    "ConditionExpression": "#status = :queued",
                    "ExpressionAttributeNames": {"#status": "status"},
                    "ExpressionAttributeValues": self._s(
                        {
                            ":failed": RunStatus.FAILED.value,
                            ":queued": RunStatus.QUEUED.value,
                            ":r": reason,
                            ":now": now_iso,
                        }
                    ),
                }
            },
            *self._pointer_delete_if(run.tenant_id, run.run_id),
        ]
        return self._transact(items) is None

    def mark_started(
        self,
        run: Run,
        execution_arn: str,
        started_at: str,
        instance_type: str,
        instance_count: int,
    ) -> bool:
        done = self._update(
            TableName=self.runs_table,
            Key=self._run_key(run.tenant_id, run.run_id),
            UpdateExpression=(
                "SET #status = :running, executionArn = :arn, startedAt = :at, "
                "instanceType = :it, instanceCount = :ic, updatedAt = :at "
                "REMOVE nextAttemptAt, failureReason"
            ),
            ConditionExpression="#status = :starting",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues=self._s(
                {
                    ":running": RunStatus.RUNNING.value,
                    ":starting": RunStatus.STARTING.value,
                    ":arn": execution_arn,
                    ":at": started_at,
                    ":it": instance_type,
                    ":ic": instance_count,
                }
            ),
        )
        if done is not None:
            return True
        # It moved on already (a status event beat us): at least keep the ARN.
        self._update(
            TableName=self.runs_table,
            Key=self._run_key(run.tenant_id, run.run_id),
            UpdateExpression="SET executionArn = :arn",
            ConditionExpression="attribute_exists(runId) AND attribute_not_exists(executionArn)",
            ExpressionAttributeValues=self._s({":arn": execution_arn}),
        )
        return False

    def record_start_failure(
        self, run: Run, attempts: int, next_attempt_at: str, reason: str, now_iso: str
    ) -> bool:
        done = self._update(
            TableName=self.runs_table,
            Key=self._run_key(run.tenant_id, run.run_id),
            UpdateExpression=(
                "SET startAttempts = :n, nextAttemptAt = :next, failureReason = :r, "
                "updatedAt = :now"
            ),
            ConditionExpression="#status = :starting AND attribute_not_exists(executionArn)",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues=self._s(
                {
                    ":starting": RunStatus.STARTING.value,
                    ":n": attempts,
                    ":next": next_attempt_at,
                    ":r": reason,
                    ":now": now_iso,
                }
            ),
        )
        return done is not None

    # --- status
    def mark_running(self, run: Run, execution_arn: str, now_iso: str) -> bool:
        done = self._update(
            TableName=self.runs_table,
            Key=self._run_key(run.tenant_id, run.run_id),
            UpdateExpression=(
                "SET #status = :running, executionArn = if_not_exists(executionArn, :arn), "
                "startedAt = if_not_exists(startedAt, :now), updatedAt = :now "
                "REMOVE failureReason"
            ),
            ConditionExpression="#status = :starting",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues=self._s(
                {
                    ":running": RunStatus.RUNNING.value,
                    ":starting": RunStatus.STARTING.value,
                    ":arn": execution_arn,
                    ":now": now_iso,
                }
            ),
        )
        return done is not None

    def finish(
        self,
        run: Run,
        status: RunStatus,
        *,
        ended_at: str,
        month: str,
        training_seconds: float,
        cost_usd: float,
        failure_reason: str | None,
        execution_arn: str | None = None,
    ) -> bool:
        values: dict[str, Any] = {
            ":status": status.value,
            ":starting": RunStatus.STARTING.value,
            ":running": RunStatus.RUNNING.value,
            ":ended": ended_at,
            ":secs": training_seconds,
            ":cost": cost_usd,
        }
        expression = (
            "SET #status = :status, endedAt = :ended, updatedAt = :ended, "
            "trainingSeconds = :secs, costEstimateUsd = :cost"
        )
        if failure_reason:
            expression += ", failureReason = :reason"
            values[":reason"] = failure_reason
        if execution_arn:
            expression += ", executionArn = if_not_exists(executionArn, :arn)"
            values[":arn"] = execution_arn
        expression += " REMOVE activePlan, activeKey, nextAttemptAt"
        if not failure_reason:
            expression += ", failureReason"
        items = [
            {
                "Update": {
                    "TableName": self.runs_table,
                    "Key": self._run_key(run.tenant_id, run.run_id),
                    "UpdateExpression": expression,
                    # Only a slot holder may finish: duplicates and late events are no-ops.
                    "ConditionExpression": "#status IN (:starting, :running)",
                    "ExpressionAttributeNames": {"#status": "status"},
                    "ExpressionAttributeValues": self._s(values),
                }
            },
            self._counter_update(GLOBAL, -1, None),
            self._counter_update(plan_counter(run.plan), -1, None),
            self._counter_update(tenant_counter(run.tenant_id), -1, None),
            {
                "Update": {
                    "TableName": self.state_table,
                    "Key": self._state_key(f"usage#{run.tenant_id}", month),
                    "UpdateExpression": (
                        "ADD runs :one, trainingSeconds :secs, costEstimateUsd :cost"
                    ),
                    "ExpressionAttributeValues": self._s(
                        {":one": 1, ":secs": training_seconds, ":cost": cost_usd}
                    ),
                }
            },
        ]
        return self._transact(items) is None

    # --- recorder
    def record_results(
        self,
        tenant_id: str,
        run_id: str,
        metrics: dict[str, float],
        model_package_arn: str | None,
        now_iso: str,
    ) -> Run:
        values: dict[str, Any] = {":m": metrics, ":now": now_iso}
        expression = "SET #metrics = :m, updatedAt = :now"
        if model_package_arn:
            expression += ", modelPackageArn = :arn"
            values[":arn"] = model_package_arn
        resp = self._update(
            TableName=self.runs_table,
            Key=self._run_key(tenant_id, run_id),
            UpdateExpression=expression,
            ConditionExpression="attribute_exists(runId)",
            ExpressionAttributeNames={"#metrics": "metrics"},  # a reserved word
            ExpressionAttributeValues=self._s(values),
            ReturnValues="ALL_NEW",
        )
        if resp is None:
            raise RunNotFoundError(f"run {tenant_id}/{run_id} does not exist")
        return item_to_run(self._d(resp["Attributes"]))

    # --- reconcile
    def set_counter(self, name: str, value: int, expected: int | None) -> bool:
        kwargs: dict[str, Any] = {
            "TableName": self.state_table,
            "Key": self._state_key(COUNTER_PK, name),
            "UpdateExpression": "SET running = :v",
        }
        values: dict[str, Any] = {":v": value}
        if expected is not None:
            kwargs["ConditionExpression"] = (
                "running = :e" if expected else ("attribute_not_exists(running) OR running = :e")
            )
            values[":e"] = expected
        kwargs["ExpressionAttributeValues"] = self._s(values)
        return self._update(**kwargs) is not None

    def drift_marker(self, name: str) -> tuple[int, int] | None:
        resp = self.client.get_item(
            TableName=self.state_table, Key=self._state_key(DRIFT_PK, name), ConsistentRead=True
        )
        if "Item" not in resp:
            return None
        item = _from_dynamo(self._d(resp["Item"]))
        return int(item["observed"]), int(item["actual"])

    def put_drift_marker(self, name: str, observed: int | None, actual: int | None) -> None:
        if observed is None or actual is None:
            self.client.delete_item(TableName=self.state_table, Key=self._state_key(DRIFT_PK, name))
            return
        self.client.put_item(
            TableName=self.state_table,
            Item=self._s({"pk": DRIFT_PK, "sk": name, "observed": observed, "actual": actual}),
        )
