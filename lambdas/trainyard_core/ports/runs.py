"""The run repository: runs and scheduler state, as the scheduler needs them.

Also the domain contracts both implementations share: the names of the slot
counters and the rule that tells one upload from a repeated delivery of it.
Implemented by ``store/runs_dynamodb.py`` and ``store/runs_memory.py``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from trainyard_core.lineage import RunLineage
from trainyard_core.models import Run, RunRetry, RunStatus, TriggerObject, WaitingFor
from trainyard_core.training import RunTraining, TrainingChoice

# --- slot counters: one global, one a plan, one a tenant

GLOBAL = "global"
PLAN_PREFIX = "plan#"
TENANT_PREFIX = "tenant#"


def plan_counter(plan: str) -> str:
    return f"{PLAN_PREFIX}{plan}"


def tenant_counter(tenant_id: str) -> str:
    return f"{TENANT_PREFIX}{tenant_id}"


def dedupe_key(bucket: str, key: str, etag: str | None, version_id: str | None) -> str:
    """S3 delivers at least once; the same object version is the same upload.
    Hashed because a raw key (up to 1 KiB) would not fit a sort key."""
    raw = "\x1f".join((bucket, key, etag or "", version_id or ""))
    return hashlib.sha256(raw.encode()).hexdigest()


# --- errors the repository raises (both implementations raise the same ones)


class DuplicateUploadError(Exception):
    """This (bucket, key, etag, version id) was already accepted."""


class RunNotQueuedError(Exception):
    """The run left QUEUED (or does not exist) before the write landed."""


class QueuedRunExistsError(Exception):
    """The tenant already has a QUEUED run (someone else created it first)."""


class RunNotFoundError(LookupError):
    pass


class RunNotRetryableError(Exception):
    """The run is not FAILED (any more), or was retried meanwhile."""


class RetryQueuedError(Exception):
    """The tenant already has a retried run waiting (one at a time, so retries
    cannot flood the queue's head)."""


class AdmitOutcome(StrEnum):
    ADMITTED = "ADMITTED"
    NOT_QUEUED = "NOT_QUEUED"  # someone else admitted/cancelled it first
    CAP_REACHED = "CAP_REACHED"  # a counter condition refused: capacity taken meanwhile


@dataclass(frozen=True)
class Caps:
    global_cap: int
    plan_cap: int
    tenant_cap: int


@dataclass(frozen=True)
class Counters:
    """Slot counters as stored (the transactional guard, not the source of truth)."""

    global_running: int = 0
    plans: dict[str, int] = field(default_factory=dict)
    tenants: dict[str, int] = field(default_factory=dict)
    # tenant id -> when its latest run was admitted (ISO): the fair order's tie-break
    last_admitted: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Rejection:
    at: str
    reason: str
    bucket: str | None = None
    key: str | None = None
    tenant_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


class RunRepository(Protocol):
    """Runs table + scheduler state table. Every transition is conditional,
    so duplicate or concurrent callers can never double-apply one."""

    # --- reads
    def get_run(self, tenant_id: str, run_id: str) -> Run | None: ...

    def list_runs(
        self,
        tenant_id: str,
        limit: int = 50,
        next_token: str | None = None,
        *,
        consistent: bool = False,
    ) -> tuple[list[Run], str | None]:
        """Newest first; ``consistent``: a strongly consistent read of the base table."""
        ...

    def find_by_execution(self, execution_arn: str) -> Run | None: ...

    def queued_runs(self, plan: str, limit: int | None = None) -> list[Run]:
        """QUEUED runs of a plan, oldest first; at most ``limit`` (the head of the queue)."""
        ...

    def queue_depth(self, plan: str) -> int:
        """How many runs of the plan are QUEUED."""
        ...

    def active_runs(self, plan: str) -> list[Run]:
        """STARTING and RUNNING runs of a plan."""
        ...

    def due_starts(self, plan: str, now_iso: str) -> list[Run]:
        """STARTING runs without an execution whose next start attempt is due."""
        ...

    def queued_run_id(self, tenant_id: str) -> str | None:
        """The tenant's current QUEUED run (the coalescing pointer)."""
        ...

    def counters(self, tenant_ids: Collection[str] | None = None) -> Counters:
        """The global and plan counters, and the counters of ``tenant_ids`` (None:
        of every tenant; reads grow with the tenant count, so only reconcile does)."""
        ...

    def usage(self, tenant_id: str, month: str) -> dict[str, float]:
        """{"runs", "trainingSeconds", "costEstimateUsd"} recorded for a tenant-month."""
        ...

    def usage_many(self, tenant_ids: Collection[str], month: str) -> dict[str, dict[str, float]]:
        """``usage`` of many tenants (every id asked for, zeros if none recorded):
        one BatchGetItem per 100 tenants on DynamoDB."""
        ...

    def duration_samples(self, plans: Collection[str]) -> dict[str, list[float]]:
        """Recent durations (seconds) of the plans' ended runs, a bounded sample
        per plan (every plan asked for; [] = no history): one BatchGetItem."""
        ...

    def list_rejections(self, limit: int = 50) -> list[Rejection]: ...

    # --- intake
    def create_queued_run(
        self,
        run: Run,
        dedupe_key: str | None,
        dedupe_ttl: int,
        replace_pointer: str | None = None,
    ) -> None:
        """Insert a QUEUED run and point the tenant's pointer at it (the pointer
        must be absent, or name ``replace_pointer``, a run known to have left QUEUED).
        Raises QueuedRunExistsError / DuplicateUploadError."""
        ...

    def add_to_queued_run(
        self,
        tenant_id: str,
        run_id: str,
        obj: TriggerObject | None,
        dedupe_key: str | None,
        dedupe_ttl: int,
        now_iso: str,
    ) -> None:
        """Append an object to a run that is still QUEUED.
        Raises RunNotQueuedError / DuplicateUploadError."""
        ...

    def record_rejection(self, rejection: Rejection, ttl: int) -> None: ...

    # --- dispatch
    def admit(self, run: Run, caps: Caps, now_iso: str, next_attempt_at: str) -> AdmitOutcome:
        """QUEUED -> STARTING + counters +1 under their caps + clear the pointer, atomically."""
        ...

    def set_waiting_reason(self, run: Run, reason: WaitingFor | None) -> None:
        """Store why a QUEUED run waits, None to clear it (no-op if it left QUEUED)."""
        ...

    def move_queued_run(self, run: Run, plan: str) -> bool:
        """A QUEUED run joins ``plan``'s queue (its tenant changed plan), keeping its
        queued time; False if it left QUEUED meanwhile."""
        ...

    def set_stuck_reason(self, run: Run, reason: str) -> None:
        """Show why a STARTING/RUNNING run looks stuck (no-op once it ended)."""
        ...

    def cancel_queued(self, run: Run, reason: str, now_iso: str) -> bool:
        """QUEUED -> FAILED (tenant gone) and clear the pointer."""
        ...

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
        """STARTING -> RUNNING with the execution (and what it trains) recorded;
        ``retry``: the run's latest retry, as started (replaces the last entry).
        False if not STARTING."""
        ...

    def requeue_for_retry(self, run: Run, retry: RunRetry, now_iso: str, plan: str) -> None:
        """FAILED -> QUEUED in ``plan``'s queue (the tenant's plan now) with ``retry``
        appended (its failure, execution and end moved into it; its metrics, model
        and data report cleared) and the tenant's retry pointer set, atomically; the
        usage and cost the run already booked stay. Raises RunNotRetryableError when the
        run is not FAILED with ``len(retry) - 1`` retries, RetryQueuedError when
        another retried run of the tenant is still QUEUED."""
        ...

    def set_training_request(
        self, tenant_id: str, run_id: str, choice: TrainingChoice, now_iso: str
    ) -> bool:
        """A QUEUED run's own training choice (a manual trigger that joined it);
        False when it is no longer QUEUED."""
        ...

    def record_start_failure(
        self, run: Run, attempts: int, next_attempt_at: str, reason: WaitingFor, now_iso: str
    ) -> bool:
        """A STARTING run's start failed and is retried at ``next_attempt_at``;
        ``reason`` is its waiting reason (START_RETRY), not a failure."""
        ...

    # --- status
    def mark_running(self, run: Run, execution_arn: str, now_iso: str) -> bool:
        """An Executing event: STARTING -> RUNNING (never resurrects a terminal run)."""
        ...

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
        """STARTING/RUNNING -> terminal + release the slot + add usage, atomically
        (and ``duration_sample``, seconds, into its plan's durations; clears
        ``waitingFor``). False (and nothing written) if the run was not holding a slot.
        ``training_seconds``/``cost_usd`` are this execution's and go into the usage;
        ``totals`` (seconds, cost) are the run's over its retries, for the run's item
        (default: this execution's), and a retried run is not counted again in the
        month's ``runs``."""
        ...

    def schema_baseline(self, tenant_id: str) -> str | None:
        """The tenant's latest SUCCEEDED run that wrote a schema (the schema-drift
        baseline; ``finish`` sets it in the same transaction), read consistently."""
        ...

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
        """Raises RunNotFoundError."""
        ...

    # --- reconcile
    def set_counter(self, name: str, value: int, expected: int | None) -> bool:
        """Heal one counter ("global", "plan#<p>", "tenant#<t>") if it still reads ``expected``."""
        ...

    def tenant_counters(self, after: str | None, limit: int) -> tuple[dict[str, int], str | None]:
        """At most ``limit`` tenant counters (tenant id -> running), in id order,
        of tenants after ``after`` (None: from the first); and the id to go on
        after, or None when the last one was read. Reconcile heals a slice a tick."""
        ...

    def heal_cursor(self) -> str | None:
        """Where the counter healing goes on (a tenant id), None from the start."""
        ...

    def set_heal_cursor(self, after: str | None) -> None: ...

    def drift_marker(self, name: str) -> tuple[int, int] | None: ...

    def put_drift_marker(self, name: str, observed: int | None, actual: int | None) -> None: ...
