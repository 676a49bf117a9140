"""Scheduled retraining: a tenant's ``retrain.every`` queues a run on its current
data when it is due and the data changed since its last successful run.

No cloud resource per tenant: the tenants table's sparse ``byRetrainDue`` index
(ACTIVE tenants with a schedule, sorted by when they are next due) is read by
the one-minute lifecycle schedule, at most ``checks_per_run`` tenants a run, each
with one bounded listing of its data prefix. Pure domain logic: the tenant
repository, the data listing, the tenant's recent runs and the enqueue are ports.

"Changed since the last successful run" (S = when that run started):
- no successful run among the recent ones, and training files exist; or
- a training file was written after S (and after the tenant took its current
  location: a migration's copies are not new data); or
- the files (key relative to the prefix, ETag, size) differ from a fingerprint
  known to describe the data S trained on: the one taken when the schedule
  queued S, or one taken by a check after S started (a deletion leaves no newer
  object behind, only this shows it).
Not a change: the schedule's own last run failed and the files are what they
were when it was queued (it would fail again; a new upload or a manual run
tries again). A deletion made between an upload-started run and the schedule's
next look is not seen (README, "Scheduled retraining").
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
    r"P(?!$)(?:(?P<w>[0-9]{1,3})W)?(?:(?P<d>[0-9]{1,4})D)?"
    r"(?:T(?=[0-9])(?:(?P<h>[0-9]{1,5})H)?(?:(?P<m>[0-9]{1,6})M)?(?:(?P<s>[0-9]{1,8})S)?)?"
)
_UNITS = {"w": 604_800, "d": 86_400, "h": 3_600, "m": 60, "s": 1}
# A tenant whose check could not finish (a run in progress, an error) is looked
# at again this soon, or a period later if that is sooner: never stuck at the
# head of the index, never a whole week late.
RECHECK_SECONDS = 900
# What a stored period is read as if the settings' bounds changed since it was set.
_SHORTEST_STORED = 1


def _seconds(value: object) -> int | None:
    match = _DURATION_RE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        return None
    return sum(int(n) * _UNITS[unit] for unit, n in match.groupdict().items() if n)


def parse_every(value: object, settings: RetrainingSettings) -> timedelta:
    """``retrain.every`` as a period, or InvalidRequest naming the field."""
    seconds = _seconds(value)
    if seconds is None:
        raise InvalidRequest(
            "retrain.every must be an ISO-8601 duration of weeks, days, hours, minutes "
            f"or seconds, such as 'P7D' or 'PT12H'; got {str(value)[:64]!r}",
            code="InvalidRetrainSchedule",
        )
    longest = settings.max_interval_days * 86_400
    if not settings.min_interval_seconds <= seconds <= longest:
        raise InvalidRequest(
            f"retrain.every must be between {settings.min_interval_seconds} s and "
            f"{settings.max_interval_days} days; got {value!r} ({seconds} s)",
            code="InvalidRetrainSchedule",
        )
    return timedelta(seconds=seconds)


def stored_period(every: str) -> timedelta:
    """A stored schedule's period, whatever the bounds are now (they were checked
    when it was set; a later change of the settings must not break the check)."""
    return timedelta(seconds=max(_SHORTEST_STORED, _seconds(every) or _SHORTEST_STORED))


def schedule_for(
    current: RetrainSchedule | None, every: str, now: datetime, settings: RetrainingSettings
) -> RetrainSchedule:
    """The schedule a PATCH sets: first due one period from now (the same period
    keeps its due time, so repeating a PATCH does not postpone it)."""
    period = parse_every(every, settings)
    if current is not None and stored_period(current.every) == period:
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
    key: str  # relative to the data prefix (a migration moves the prefix, not the data)
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
        """The training files (``uploads.is_training_file``) under the prefix now,
        keys relative to it; at most ``max_objects`` objects listed."""
        ...


@dataclass(frozen=True)
class Decision:
    queue: bool
    outcome: str


def _whole_second(moment: datetime) -> datetime:
    # S3's LastModified has whole seconds: an object written in the second a run
    # started counts as older than the run (it started a run of its own anyway).
    return moment.replace(microsecond=0)


def decide(snapshot: DataSnapshot, recent_runs: Sequence[Run], tenant: Tenant) -> Decision:
    """Whether a due tenant is retrained (pure: the rule in the module docstring).
    ``recent_runs``: the tenant's latest runs, newest first, all terminal."""
    if not snapshot.objects:
        return Decision(False, "no data")
    fingerprint = snapshot.fingerprint
    schedule = tenant.retrain
    latest = recent_runs[0] if recent_runs else None
    if (
        latest is not None
        and schedule is not None
        and latest.run_id == schedule.last_run_id
        and latest.status in (RunStatus.FAILED, RunStatus.STOPPED)
        and tenant.retrain_fingerprint_run_id == latest.run_id
        and tenant.retrain_fingerprint == fingerprint
    ):
        return Decision(False, "unchanged since the last scheduled run, which did not succeed")
    succeeded = next((r for r in recent_runs if r.status == RunStatus.SUCCEEDED), None)
    started = parse_iso(succeeded.started_at or succeeded.queued_at) if succeeded else None
    if succeeded is None or started is None:
        return Decision(True, "queued: no successful run yet")
    since = _whole_second(started)
    located = parse_iso(tenant.location_since)
    newer_than = max(since, _whole_second(located)) if located else since
    newest = snapshot.newest
    if newest is not None and newest > newer_than:
        return Decision(True, "queued: data written since the last successful run")
    seen_at = parse_iso(tenant.retrain_fingerprint_at)
    describes_success = tenant.retrain_fingerprint_run_id == succeeded.run_id or (
        seen_at is not None and seen_at >= started
    )
    if (
        tenant.retrain_fingerprint is not None
        and describes_success
        and tenant.retrain_fingerprint != fingerprint
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
        """Check the tenants due now, soonest due first. A tenant whose check fails is
        reported and looked at again after RECHECK_SECONDS (never left at the head
        of the index, where it would keep the others from being checked)."""
        report = RetrainReport()
        now_iso = iso_ms(self.now()) or ""
        for listed in self.tenants.due_for_retraining(now_iso, self.settings.checks_per_run):
            if time_left is not None and time_left() <= reserve_seconds:
                report.deferred.append(listed.tenant_id)
                continue
            try:
                self._check(listed.tenant_id, report)
            except Exception as exc:  # isolate tenants; logged by the caller
                error = bounded(f"{type(exc).__name__}: {exc}", REASON_MAX_CHARS)
                report.errors.append(f"{listed.tenant_id}: {error}")
                with contextlib.suppress(Exception):  # still due: retried next run
                    self._recheck_later(listed.tenant_id, f"error: {error}")
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
        period = stored_period(schedule.every)
        runs = self.recent_runs(tenant_id)
        if any(not r.status.terminal for r in runs):
            # A queued run takes the current data; a running one may not have read
            # it all: look again soon rather than a whole period later.
            self._save(tenant, now, min(period, _recheck()), "deferred: a run is queued or running")
            report.deferred.append(tenant_id)
            return
        if not tenant.data_bucket or tenant.data_prefix is None:
            self._save(tenant, now, min(period, _recheck()), "deferred: no data location yet")
            report.deferred.append(tenant_id)
            return
        snapshot = self.listing.training_files(
            tenant.data_bucket, tenant.data_prefix, self.settings.max_objects
        )
        decision = decide(snapshot, runs, tenant)
        outcome = decision.outcome
        if snapshot.truncated:
            outcome += f" (only the first {self.settings.max_objects} objects were looked at)"
        run_id = None
        if decision.queue:
            run = self.enqueue(tenant)
            run_id = run.run_id
            report.queued.append(tenant_id)
            report.plans.add(run.plan)
        else:
            report.unchanged.append(tenant_id)
        self._save(tenant, now, period, outcome, fingerprint=snapshot.fingerprint, run_id=run_id)

    def _recheck_later(self, tenant_id: str, outcome: str) -> None:
        tenant = self.tenants.get(tenant_id)
        if tenant is None or tenant.retrain is None:
            return
        period = stored_period(tenant.retrain.every)
        self._save(tenant, self.now(), min(period, _recheck()), outcome)

    def _save(
        self,
        tenant: Tenant,
        now: datetime,
        wait: timedelta,
        outcome: str,
        *,
        fingerprint: str | None = None,
        run_id: str | None = None,
    ) -> None:
        assert tenant.retrain is not None
        update: dict[str, object] = {
            "next_due_at": iso_ms(now + wait),
            "last_checked_at": iso_ms(now),
            "last_outcome": bounded(outcome, REASON_MAX_CHARS),
        }
        tenant_update: dict[str, object] = {}
        if fingerprint is not None:
            tenant_update["retrain_fingerprint"] = fingerprint
            tenant_update["retrain_fingerprint_at"] = iso_ms(now)
            # The run this fingerprint describes the data of (None: no run queued).
            tenant_update["retrain_fingerprint_run_id"] = run_id
        if run_id is not None:
            update["last_run_id"] = run_id
        # Not updatedAt: that is when someone changed the tenant, not when it was looked at.
        tenant_update["retrain"] = tenant.retrain.model_copy(update=update)
        # Changed under us (a PATCH, the lifecycle): it is still due and is checked
        # again next run, where the run just queued defers it (no second run).
        with contextlib.suppress(StaleTenantError):
            self.tenants.save(tenant.model_copy(update=tenant_update))


def _recheck() -> timedelta:
    return timedelta(seconds=RECHECK_SECONDS)
