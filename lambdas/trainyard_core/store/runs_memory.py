"""Runs and scheduler state in memory: the twin of ``runs_dynamodb.py``.

Same semantics, one lock standing for one transaction; it drives the policy
tests, the property tests and the benchmark.
"""

from __future__ import annotations

import bisect
import copy
import threading
from collections.abc import Collection, Iterable
from typing import Any

from trainyard_core import limits
from trainyard_core.lineage import RunLineage
from trainyard_core.models import Run, RunRetry, RunStatus, TriggerObject, WaitingFor
from trainyard_core.ports.runs import (
    GLOBAL,
    AdmitOutcome,
    Caps,
    Counters,
    DuplicateUploadError,
    QueuedRunExistsError,
    Rejection,
    RetryQueuedError,
    RunNotFoundError,
    RunNotQueuedError,
    RunNotRetryableError,
    plan_counter,
    tenant_counter,
)
from trainyard_core.store.run_items import (
    REJECTION_PK,
    bounded_object,
    counter_key,
    counters_from,
    duration_slot,
    durations_from,
    durations_key,
    epoch,
    is_due,
    item_to_run,
    pointer_key,
    rejection_from,
    rejection_item,
    rejection_key,
    retry_pointer_key,
    run_to_item,
    run_token,
    schema_baseline_key,
    upload_key,
    usage_from,
    usage_key,
    wrote_schema,
)
from trainyard_core.store.runs_memory_counters import InMemoryCounterState
from trainyard_core.store.tokens import encode_token
from trainyard_core.training import RunTraining, TrainingChoice


class InMemoryRunRepository(InMemoryCounterState):
    """Same semantics as ``DynamoRunRepository``; one lock = one transaction."""

    def __init__(self) -> None:
        self._runs: dict[tuple[str, str], dict[str, Any]] = {}
        self._state: dict[tuple[str, str], dict[str, Any]] = {}
        self._counter_names: set[str] = set()  # counters live in _state; this indexes them
        self._slot_counter_names: set[str] = set()  # the global and plan ones among them
        # Decoded runs by key, each with the item it was decoded from: decoding is
        # most of a read's CPU (the benchmark's full trace), and an item is replaced
        # (never edited) on every write, except where ``_forget`` says so. Callers
        # treat runs as values (a change is a ``model_copy``), so readers share them.
        self._decoded: dict[tuple[str, str], tuple[dict[str, Any], Run]] = {}
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
        item = run_to_item(run, next_attempt_at)
        # DynamoDB refuses an item over 400 KB, and the whole transaction with it;
        # so does the twin: callers write the run first, then the rest.
        limits.check_item_size(item)
        old = self._runs.get(key)
        if old is not None:
            self._unindex(key, old)
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
        key = (tenant_id, run_id)
        item = self._runs.get(key)
        return self._decode(key, item) if item else None

    def _decode(self, key: tuple[str, str], item: dict[str, Any]) -> Run:
        cached = self._decoded.get(key)
        if cached is None or cached[0] is not item:
            cached = (item, item_to_run(item))
            self._decoded[key] = cached
        return cached[1]

    def _forget(self, key: tuple[str, str]) -> None:
        """The item at ``key`` was changed in place: decode it again next time."""
        self._decoded.pop(key, None)

    def _add_counter(self, name: str, delta: int) -> None:
        item = self._state.setdefault(counter_key(name), {"running": 0})
        self._note_counter(name)
        item["running"] = int(item.get("running", 0)) + delta

    def _clear_retry_pointer(self, run: Run) -> None:
        held = self._state.get(retry_pointer_key(run.tenant_id))
        if held is not None and held["runId"] == run.run_id:
            del self._state[retry_pointer_key(run.tenant_id)]

    def _pointer(self, tenant_id: str) -> str | None:
        item = self._state.get(pointer_key(tenant_id))
        return item["runId"] if item else None

    def _dedupe_taken(self, key: str | None, now_iso: str) -> bool:
        if key is None:
            return False
        item = self._state.get(upload_key(key))
        return bool(item) and int(item.get("expiresAt", 0)) > epoch(now_iso)

    # --- reads
    def get_run(self, tenant_id: str, run_id: str) -> Run | None:
        with self._lock:
            return self._load(tenant_id, run_id)

    def list_runs(
        self,
        tenant_id: str,
        limit: int = 50,
        next_token: str | None = None,
        *,
        consistent: bool = False,  # always consistent here
    ) -> tuple[list[Run], str | None]:
        after = run_token(tenant_id, next_token)["runId"] if next_token else None
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
            if key is not None and item is not None and item.get("executionArn") == execution_arn:
                return self._decode(key, item)
        return None

    def queued_runs(self, plan: str, limit: int | None = None) -> list[Run]:
        with self._lock:
            entries = self._queue_idx.get(plan, [])
            head = entries if limit is None else entries[:limit]
            return [self._decode(key, self._runs[key]) for _, key in head]

    def queue_depth(self, plan: str) -> int:
        with self._lock:
            return len(self._queue_idx.get(plan, []))

    def _active_items(self, plan: str) -> list[tuple[tuple[str, str], dict[str, Any]]]:
        with self._lock:
            keys = sorted(self._active_idx.get(plan, {}).items(), key=lambda kv: kv[1])
            return [(key, self._runs[key]) for key, _ in keys]

    def active_runs(self, plan: str) -> list[Run]:
        with self._lock:
            return [self._decode(k, i) for k, i in self._active_items(plan)]

    def due_starts(self, plan: str, now_iso: str) -> list[Run]:
        with self._lock:
            return [self._decode(k, i) for k, i in self._active_items(plan) if is_due(i, now_iso)]

    def queued_run_id(self, tenant_id: str) -> str | None:
        with self._lock:
            return self._pointer(tenant_id)

    def counters(self, tenant_ids: Collection[str] | None = None) -> Counters:
        with self._lock:
            if tenant_ids is None:
                names: Iterable[str] = list(self._counter_names)
            else:
                names = list(self._slot_counter_names) + [
                    tenant_counter(t) for t in set(tenant_ids)
                ]
            items = [
                {"sk": name, **self._state[counter_key(name)]}
                for name in names
                if counter_key(name) in self._state
            ]
        return counters_from(items)

    def usage(self, tenant_id: str, month: str) -> dict[str, float]:
        with self._lock:
            item = dict(self._state.get(usage_key(tenant_id, month), {}))
        return usage_from(item)

    def usage_many(self, tenant_ids: Collection[str], month: str) -> dict[str, dict[str, float]]:
        return {t: self.usage(t, month) for t in set(tenant_ids)}

    def list_rejections(self, limit: int = 50) -> list[Rejection]:
        with self._lock:
            items = sorted(
                ((sk, v) for (pk, sk), v in self._state.items() if pk == REJECTION_PK), reverse=True
            )
        return [rejection_from(v) for _, v in items[:limit]]

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
            self._put_run(run)
            if dedupe_key is not None:
                self._state[upload_key(dedupe_key)] = {"expiresAt": dedupe_ttl}
            self._state[pointer_key(run.tenant_id)] = {"runId": run.run_id}

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
            objects, omitted = run.trigger.objects, run.trigger.objects_omitted
            if obj is not None and len(objects) < limits.TRIGGER_OBJECTS_MAX:
                objects = [*objects, bounded_object(obj)]
            elif obj is not None:
                omitted += 1
            trigger = run.trigger.model_copy(
                update={"objects": objects, "objects_omitted": omitted}
            )
            self._put_run(run.model_copy(update={"trigger": trigger, "updated_at": now_iso}))
            if dedupe_key is not None:
                self._state[upload_key(dedupe_key)] = {"expiresAt": dedupe_ttl}

    def record_rejection(self, rejection: Rejection, ttl: int) -> None:
        item = {**rejection_item(rejection), "expiresAt": ttl}
        limits.check_item_size(item)
        with self._lock:
            self._state[rejection_key(rejection.at)] = item

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
            self._put_run(
                current.model_copy(
                    update={
                        "status": RunStatus.STARTING,
                        "failure_reason": None,
                        "waiting_for": None,
                        "updated_at": now_iso,
                    }
                ),
                next_attempt_at,
            )
            for name in (GLOBAL, plan_counter(run.plan), tenant_counter(run.tenant_id)):
                self._add_counter(name, 1)
            self._state[counter_key(tenant_counter(run.tenant_id))]["lastAdmittedAt"] = now_iso
            if self._pointer(run.tenant_id) == run.run_id:
                del self._state[pointer_key(run.tenant_id)]
            self._clear_retry_pointer(run)
            return AdmitOutcome.ADMITTED

    def set_waiting_reason(self, run: Run, reason: WaitingFor | None) -> None:
        with self._lock:
            current = self._load(run.tenant_id, run.run_id)
            if current is not None and current.status == RunStatus.QUEUED:
                self._put_run(current.model_copy(update={"waiting_for": reason}))

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
            self._put_run(
                current.model_copy(
                    update={
                        "status": RunStatus.FAILED,
                        "failure_reason": reason,
                        "waiting_for": None,
                        "ended_at": now_iso,
                        "updated_at": now_iso,
                    }
                )
            )
            if self._pointer(run.tenant_id) == run.run_id:
                del self._state[pointer_key(run.tenant_id)]
            self._clear_retry_pointer(run)
            return True

    def mark_started(
        self,
        run: Run,
        execution_arn: str,
        started_at: str,
        instance_type: str,
        instance_count: int,
        training: RunTraining | None = None,
        lineage: RunLineage | None = None,
        retry: RunRetry | None = None,
    ) -> bool:
        with self._lock:
            current = self._load(run.tenant_id, run.run_id)
            if current is None:
                return False
            # What this execution trains with: recorded whichever way the start went.
            record = {
                "execution_arn": execution_arn,
                "instance_type": instance_type,
                "instance_count": instance_count,
                "training": training or current.training,
                "lineage": lineage or current.lineage,
                "retries": current.retries[:-1] + [retry]
                if retry is not None and current.retries
                else current.retries,
            }
            if current.status != RunStatus.STARTING:
                # An Executing event beat us: record it all the same, unless the run
                # belongs to another execution by now.
                if current.execution_arn in (None, execution_arn):
                    self._put_run(current.model_copy(update=record))
                return False
            started = {
                "status": RunStatus.RUNNING,
                "started_at": started_at,
                "failure_reason": None,
                "waiting_for": None,
                "updated_at": started_at,
            }
            self._put_run(current.model_copy(update={**record, **started}))
            return True

    def requeue_for_retry(self, run: Run, retry: RunRetry, now_iso: str, plan: str) -> None:
        with self._lock:
            current = self._load(run.tenant_id, run.run_id)
            if (
                current is None
                or current.status != RunStatus.FAILED
                or len(current.retries) != len(run.retries)
            ):
                raise RunNotRetryableError(run.run_id)
            held = self._state.get(retry_pointer_key(run.tenant_id))
            if held is not None:
                other = self._load(run.tenant_id, held["runId"])
                if other is not None and other.status == RunStatus.QUEUED:
                    raise RetryQueuedError(run.tenant_id)
            self._put_run(
                current.model_copy(
                    update={
                        "status": RunStatus.QUEUED,
                        "plan": plan,
                        "queued_at": now_iso,
                        "updated_at": now_iso,
                        "retries": [*current.retries, retry],
                        "metrics": {},
                        "model_package_arn": None,
                        "data_report": None,
                        "failure_reason": None,
                        "ended_at": None,
                        "execution_arn": None,
                        "started_at": None,
                        "waiting_for": None,
                        "start_attempts": 0,
                    }
                )
            )
            self._state[retry_pointer_key(run.tenant_id)] = {"runId": run.run_id}

    def set_training_request(
        self, tenant_id: str, run_id: str, choice: TrainingChoice, now_iso: str
    ) -> bool:
        with self._lock:
            current = self._load(tenant_id, run_id)
            if current is None or current.status != RunStatus.QUEUED:
                return False
            self._put_run(
                current.model_copy(update={"training_request": choice, "updated_at": now_iso})
            )
            return True

    def record_start_failure(
        self, run: Run, attempts: int, next_attempt_at: str, reason: WaitingFor, now_iso: str
    ) -> bool:
        with self._lock:
            current = self._load(run.tenant_id, run.run_id)
            if current is None or current.status != RunStatus.STARTING or current.execution_arn:
                return False
            self._put_run(
                current.model_copy(
                    update={
                        "start_attempts": attempts,
                        "waiting_for": reason,
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
                        "waiting_for": None,
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
        duration_sample: float | None = None,
        totals: tuple[float, float] | None = None,
    ) -> bool:
        total_seconds, total_cost = totals or (training_seconds, cost_usd)
        with self._lock:
            current = self._load(run.tenant_id, run.run_id)
            if current is None or not current.status.holds_slot:
                return False
            self._put_run(
                current.model_copy(
                    update={
                        "status": status,
                        "ended_at": ended_at,
                        "training_seconds": total_seconds,
                        "cost_estimate_usd": total_cost,
                        "failure_reason": failure_reason,
                        "waiting_for": None,
                        "execution_arn": current.execution_arn or execution_arn,
                        "updated_at": ended_at,
                    }
                )
            )
            for name in (GLOBAL, plan_counter(current.plan), tenant_counter(current.tenant_id)):
                self._add_counter(name, -1)
            usage = self._state.setdefault(
                usage_key(current.tenant_id, month),
                {"runs": 0, "trainingSeconds": 0.0, "costEstimateUsd": 0.0},
            )
            usage["runs"] += 0 if current.retries else 1  # counted when it first ended
            usage["trainingSeconds"] += training_seconds
            usage["costEstimateUsd"] += cost_usd
            if duration_sample is not None:
                samples = self._state.setdefault(durations_key(current.plan), {})
                samples[duration_slot(run.run_id)] = round(duration_sample, 3)
            if status == RunStatus.SUCCEEDED and wrote_schema(current):
                self._state[schema_baseline_key(current.tenant_id)] = {"runId": current.run_id}
            return True

    def schema_baseline(self, tenant_id: str) -> str | None:
        with self._lock:
            return (self._state.get(schema_baseline_key(tenant_id)) or {}).get("runId")

    def duration_samples(self, plans: Collection[str]) -> dict[str, list[float]]:
        with self._lock:
            return {p: durations_from(self._state.get(durations_key(p))) for p in set(plans)}

    # --- recorder
    def record_results(
        self,
        tenant_id: str,
        run_id: str,
        metrics: dict[str, float],
        model_package_arn: str | None,
        now_iso: str,
        data_report: dict[str, Any] | None = None,
    ) -> Run:
        with self._lock:
            current = self._load(tenant_id, run_id)
            if current is None:
                raise RunNotFoundError(f"run {tenant_id}/{run_id} does not exist")
            update: dict[str, Any] = {"metrics": dict(metrics), "updated_at": now_iso}
            if model_package_arn:
                update["model_package_arn"] = model_package_arn
            if data_report is not None:
                update["data_report"] = data_report
            item = self._run_item(tenant_id, run_id)
            assert item is not None
            next_attempt = item.get("nextAttemptAt")
            updated = current.model_copy(update=update)
            self._put_run(updated, next_attempt)
            return updated

    # --- test/benchmark helpers
    def all_runs(self) -> list[Run]:
        with self._lock:
            return [item_to_run(copy.deepcopy(i)) for i in self._runs.values()]
