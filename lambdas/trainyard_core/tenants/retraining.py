"""Scheduled retraining: a tenant's ``retrain.every`` queues a run on its current
data when it is due and the data changed since its last successful run.

No cloud resource per tenant: the tenants table's sparse ``byRetrainDue`` index
(ACTIVE tenants with a schedule, sorted by when they are next due) is read by
the one-minute lifecycle schedule, at most ``checks_per_run`` tenants a run, each
with one bounded listing of its data prefix. Pure domain logic: the tenant
repository, the data listing, the tenant's recent runs and the enqueue are ports.

"Changed since the last successful run" (S = when that run started):
- no successful run among the recent ones, and training files exist; or
- a training file was written after S; or
- the files differ from what an earlier check saw *after* S (a deletion, which
  leaves no newer object behind).
A deletion before the schedule first looked after S is not seen (docs/README,
"Scheduled retraining").
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from trainyard_core.config import RetrainingSettings
from trainyard_core.errors import InvalidRequest
from trainyard_core.limits import REASON_MAX_CHARS, bounded
from trainyard_core.models import (
    RetrainSchedule,
    Run,
    RunStatus,
    Tenant,
    TenantStatus,
    iso_ms,
    parse_iso,
)
from trainyard_core.ports.tenants import StaleTenantError, TenantRepository

# ISO-8601 durations of weeks, days, hours, minutes, seconds (no months/years:
# they have no fixed length). "P7D", "PT12H", "P1DT6H", "PT90S".
_DURATION_RE = re.compile(
    r"^P(?!$)(?:(?P<w>[0-9]{1,3})W)?(?:(?P<d>[0-9]{1,4})D)?"
    r"(?:T(?=[0-9])(?:(?P<h>[0-9]{1,5})H)?(?:(?P<m>[0-9]{1,6})M)?(?:(?P<s>[0-9]{1,8})S)?)?$"
)
_UNITS = {"w": 604_800, "d": 86_400, "h": 3_600, "m": 60, "s": 1}


def parse_every(value: object, settings: RetrainingSettings) -> timedelta:
    """``retrain.every`` as a period, or InvalidRequest naming the field."""
    match = _DURATION_RE.match(value) if isinstance(value, str) else None
    if match is None:
        raise InvalidRequest(
            "retrain.every must be an ISO-8601 duration of weeks, days, hours, minutes "
            f"or seconds, such as 'P7D' or 'PT12H'; got {str(value)[:64]!r}",
            code="InvalidRetrainSchedule",
        )
    seconds = sum(int(n) * _UNITS[unit] for unit, n in match.groupdict().items() if n)
    longest = settings.max_interval_days * 86_400
    if not settings.min_interval_seconds <= seconds <= longest:
        raise InvalidRequest(
            f"retrain.every must be between {settings.min_interval_seconds} s and "
            f"{settings.max_interval_days} days; got {value!r} ({seconds} s)",
            code="InvalidRetrainSchedule",
        )
    return timedelta(seconds=seconds)


def schedule_for(
    current: RetrainSchedule | None, every: str, now: datetime, settings: RetrainingSettings
) -> RetrainSchedule:
    """The schedule a PATCH sets: first due one period from now (an unchanged period
    keeps its due time, so repeating a PATCH does not postpone it)."""
    period = parse_every(every, settings)
    if current is not None and current.every == every:
        return current
    return RetrainSchedule(
        every=every,
        next_due_at=iso_ms(now + period) or "",
        last_checked_at=current.last_checked_at if current else None,
        last_outcome=current.last_outcome if current else None,
        last_run_id=current.last_run_id if current else None,
    )


@dataclass(frozen=True)
class DataObject:
    key: str
    etag: str
    size: int
    last_modified: datetime


@dataclass(frozen=True)
class DataSnapshot:
    objects: Sequence[DataObject]
    truncated: bool = False  # more objects than the listing's bound

    @property
    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for obj in sorted(self.objects, key=lambda o: o.key):
            digest.update(f"{obj.key}\0{obj.etag}\0{obj.size}\n".encode())
        return digest.hexdigest()

    @property
    def newest(self) -> datetime | None:
        return max((o.last_modified for o in self.objects), default=None)


class DataListing(Protocol):
    def training_files(self, bucket: str, prefix: str, max_objects: int) -> DataSnapshot:
        """The training files (``uploads.is_training_file``) under the prefix now."""
        ...


@dataclass(frozen=True)
class Decision:
    queue: bool
    outcome: str


def decide(snapshot: DataSnapshot, recent_runs: Sequence[Run], tenant: Tenant) -> Decision:
    """Whether a due tenant is retrained (pure: the rule in the module docstring)."""
    if not snapshot.objects:
        return Decision(False, "no data")
    succeeded = next((r for r in recent_runs if r.status == RunStatus.SUCCEEDED), None)
    since = parse_iso(succeeded.started_at or succeeded.queued_at) if succeeded else None
    if since is None:
        return Decision(True, "queued: no successful run yet")
    newest = snapshot.newest
    if newest is not None and newest > since:
        return Decision(True, "queued: data written since the last successful run")
    seen_at = parse_iso(tenant.retrain_fingerprint_at)
    if (
        tenant.retrain_fingerprint is not None
        and seen_at is not None
        and seen_at >= since
        and tenant.retrain_fingerprint != snapshot.fingerprint
    ):
        return Decision(True, "queued: data removed or replaced since the last successful run")
    return Decision(False, "unchanged since the last successful run")


@dataclass
class RetrainReport:
    queued: list[str] = field(default_factory=list)
    # The plans of the runs queued (the caller wakes their schedulers).
    plans: set[str] = field(default_factory=set)
    unchanged: list[str] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class Retraining:
    def __init__(
        self,
        *,
        settings: RetrainingSettings,
        tenants: TenantRepository,
        listing: DataListing,
        recent_runs: Callable[[str], list[Run]],
        enqueue: Callable[[Tenant], Run],
        now: Callable[[], datetime],
    ) -> None:
        self.settings = settings
        self.tenants = tenants
        self.listing = listing
        self.recent_runs = recent_runs
        self.enqueue = enqueue
        self.now = now

    def run_due(
        self, time_left: Callable[[], float] | None = None, reserve_seconds: float = 5.0
    ) -> RetrainReport:
        """Check the tenants due now, oldest due first; one tenant's error does not
        stop the others (it is reported and checked again next run)."""
        report = RetrainReport()
        now_iso = iso_ms(self.now()) or ""
        for listed in self.tenants.due_for_retraining(now_iso, self.settings.checks_per_run):
            if time_left is not None and time_left() <= reserve_seconds:
                report.deferred.append(listed.tenant_id)
                continue
            try:
                self._check(listed.tenant_id, report)
            except Exception as exc:  # isolate tenants; logged by the caller
                error = f"{listed.tenant_id}: {type(exc).__name__}: {exc}"
                report.errors.append(bounded(error, REASON_MAX_CHARS))
        return report

    def _check(self, tenant_id: str, report: RetrainReport) -> None:
        # The index lags the table: act on the consistent read.
        tenant = self.tenants.get(tenant_id)
        now = self.now()
        if tenant is None or tenant.retrain is None or tenant.status != TenantStatus.ACTIVE:
            return
        schedule = tenant.retrain
        due = parse_iso(schedule.next_due_at)
        if due is not None and due > now:
            return
        period = parse_every(schedule.every, self.settings)
        runs = self.recent_runs(tenant_id)
        if any(not r.status.terminal for r in runs):
            # A run waiting or training takes the current data anyway; look again
            # next period instead of queueing behind it.
            self._save(tenant, schedule, now, period, "deferred: a run is queued or running")
            report.deferred.append(tenant_id)
            return
        if not tenant.data_bucket or tenant.data_prefix is None:
            return
        snapshot = self.listing.training_files(
            tenant.data_bucket, tenant.data_prefix, self.settings.max_objects
        )
        decision = decide(snapshot, runs, tenant)
        run_id = schedule.last_run_id
        if decision.queue:
            run = self.enqueue(tenant)
            run_id = run.run_id
            report.queued.append(tenant_id)
            report.plans.add(run.plan)
        else:
            report.unchanged.append(tenant_id)
        self._save(
            tenant,
            schedule,
            now,
            period,
            decision.outcome,
            fingerprint=snapshot.fingerprint,
            run_id=run_id,
        )

    def _save(
        self,
        tenant: Tenant,
        schedule: RetrainSchedule,
        now: datetime,
        period: timedelta,
        outcome: str,
        *,
        fingerprint: str | None = None,
        run_id: str | None = None,
    ) -> None:
        update: dict[str, object] = {
            "next_due_at": iso_ms(now + period),
            "last_checked_at": iso_ms(now),
            "last_outcome": outcome,
        }
        if run_id is not None:
            update["last_run_id"] = run_id
        tenant_update: dict[str, object] = {
            "retrain": schedule.model_copy(update=update),
            "updated_at": iso_ms(now),
        }
        if fingerprint is not None:
            tenant_update["retrain_fingerprint"] = fingerprint
            tenant_update["retrain_fingerprint_at"] = iso_ms(now)
        changed = tenant.model_copy(update=tenant_update)
        # Changed under us (a PATCH, the lifecycle): it is still due and is checked
        # again next run, where the run just queued defers it (no second run).
        with contextlib.suppress(StaleTenantError):
            self.tenants.save(changed)
