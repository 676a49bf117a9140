"""Intake: an upload (or a manual run) joins the tenant's QUEUED run or starts one.

The tenant comes from the registry only, never from the event; S3's
at-least-once delivery is de-duplicated on the object version. The tenant's rule
delivers every object created under its data prefix: a training file is one whose
name ends in ``.csv`` in any case (``train.CSV``); anything else is recorded on
the tenant (``ignoredUploads`` in ``GET /tenants/{id}``), so an upload that starts
no run says so where the tenant looks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from trainyard_core import events
from trainyard_core.errors import Conflict
from trainyard_core.models import (
    IgnoredUpload,
    Run,
    RunStatus,
    Tenant,
    TenantStatus,
    Trigger,
    TriggerObject,
    iso_ms,
    new_run_id,
    parse_iso,
)
from trainyard_core.ports.runs import (
    DuplicateUploadError,
    QueuedRunExistsError,
    Rejection,
    RunNotQueuedError,
    dedupe_key,
)
from trainyard_core.scheduling.context import SchedulerContext
from trainyard_core.scheduling.queues import with_positions
from trainyard_core.training import TrainingChoice
from trainyard_core.uploads import is_training_file, unstageable_key

DEDUPE_TTL_DAYS = 7
REJECTION_TTL_DAYS = 30
# Tenants whose uploads are accepted (a SUSPENDED or MIGRATING tenant's runs wait).
ACCEPTING = (TenantStatus.ACTIVE, TenantStatus.SUSPENDED, TenantStatus.MIGRATING)

IntakeOutcome = Literal["created", "joined", "duplicate", "ignored", "rejected"]
NOT_TRAINING_DATA = "not a training file: only *.csv uploads (any case) start a run"
UNSTAGEABLE = (
    "this key cannot be a file in a training job ({why}): delete or rename the "
    "object, every run of the tenant fails while it exists"
)


class TenantNotAcceptingError(Conflict):
    """The tenant is not ACTIVE/SUSPENDED (the API answers 409)."""

    code = "TenantNotAccepting"


@dataclass(frozen=True)
class IntakeResult:
    outcome: IntakeOutcome
    run: Run | None = None
    reason: str | None = None


def handle_upload(
    ctx: SchedulerContext,
    bucket: str,
    key: str,
    etag: str | None = None,
    size: int | None = None,
    version_id: str | None = None,
    event_time: datetime | None = None,
) -> IntakeResult:
    # The tenant comes from the registry only: an event cannot claim one.
    tenant = ctx.tenants.find_by_location(bucket, key)
    if tenant is None:
        return _reject(ctx, "no tenant owns this storage location", bucket, key, None)
    if tenant.status not in ACCEPTING:
        return _reject(
            ctx,
            f"tenant {tenant.tenant_id} is {tenant.status.value}; upload not accepted",
            bucket,
            key,
            tenant.tenant_id,
        )
    located = _locate(tenant, bucket, key)
    if located is None:
        # At the new location of a migrating tenant: the migration's own copy (an
        # upload made during the migration is recorded from where it was made).
        ctx.log.info(
            "ignoring object at the new location of a migrating tenant (migration copy)",
            extra={"tenant_id": tenant.tenant_id, "bucket": bucket, "key": key},
        )
        return IntakeResult("ignored", reason="migration copy at the tenant's new location")
    if located != (bucket, key):
        if not is_training_file(key):
            return _ignore(ctx, tenant, located[1], size, etag, NOT_TRAINING_DATA)
        # Uploaded at the location a migration moves (or moved) the tenant from: the
        # object is (or will be) at the new location; record it as it is there.
        obj = TriggerObject(key=located[1], etag=etag, size=size, bucket=located[0])
        return record_moved_upload(ctx, tenant, obj)
    if _predates_location(tenant, event_time):
        ctx.log.info(
            "ignoring object created before the tenant moved here (migration copy)",
            extra={"tenant_id": tenant.tenant_id, "bucket": bucket, "key": key},
        )
        return IntakeResult("ignored", reason="object predates the tenant's current location")
    if not is_training_file(key):
        return _ignore(ctx, tenant, key, size, etag, NOT_TRAINING_DATA)
    relative = key.removeprefix(tenant.data_prefix or "")
    unusable = unstageable_key(relative)
    if unusable is not None:
        return _ignore(ctx, tenant, key, size, etag, UNSTAGEABLE.format(why=unusable))
    obj = TriggerObject(key=key, etag=etag, size=size, bucket=bucket, version_id=version_id)
    return _enqueue(ctx, tenant, "s3", obj, dedupe_key(bucket, key, etag, version_id))


def record_moved_upload(ctx: SchedulerContext, tenant: Tenant, obj: TriggerObject) -> IntakeResult:
    """An upload made at the location a migration moves the tenant from, recorded
    with its bucket and key at the new location. Its event and the migration that
    moves it may both report it: the same content at the same new key is one upload
    (no version id: the copy has another one)."""
    assert obj.bucket is not None
    if _recorded_before_the_move(ctx, tenant.tenant_id, obj):
        return IntakeResult("duplicate", reason="already recorded at the old location")
    return _enqueue(ctx, tenant, "s3", obj, dedupe_key(obj.bucket, obj.key, obj.etag, None))


# The migration reports objects changed since it began; S3 times have one-second
# precision, so an upload made in the same second just before it is reported too.
_RECENT_RUNS = 20


def _recorded_before_the_move(ctx: SchedulerContext, tenant_id: str, obj: TriggerObject) -> bool:
    """The same content under the same key below the tenant's old root is already in
    one of its recent runs (recorded from its own event, before the move)."""
    if not obj.etag:
        return False
    runs, _ = ctx.runs.list_runs(tenant_id, limit=_RECENT_RUNS)

    def same_key(old: str) -> bool:
        return old == obj.key or old.endswith("/" + obj.key) or obj.key.endswith("/" + old)

    return any(
        o.etag == obj.etag and o.bucket != obj.bucket and same_key(o.key)
        for run in runs
        for o in run.trigger.objects
    )


def _locate(tenant: Tenant, bucket: str, key: str) -> tuple[str, str] | None:
    """Where an object at (bucket, key) is once the tenant's migration is done:
    the same place, or its key at the other location (a migrating tenant's current
    location, or the location a migrated tenant left); None for an object at the
    new location of a migrating tenant (the migration's copy)."""
    here = f"{bucket}/{key}"
    current = f"{tenant.data_bucket}/{tenant.data_prefix}" if tenant.data_bucket else None
    migrating = tenant.status == TenantStatus.MIGRATING
    if current is not None and here.startswith(current):
        if migrating and tenant.alt_location:
            return _translate(here[len(current) :], tenant.alt_location)
        return bucket, key
    if tenant.alt_location and here.startswith(tenant.alt_location):
        if migrating or current is None:
            return None
        return _translate(here[len(tenant.alt_location) :], current)
    return bucket, key


def _translate(relative: str, location: str) -> tuple[str, str]:
    new_bucket, _, prefix = location.partition("/")
    return new_bucket, prefix + relative


def submit_manual_run(
    ctx: SchedulerContext,
    tenant: Tenant,
    training: TrainingChoice | None = None,
    data_bytes: int | None = None,
) -> Run:
    """POST /tenants/{id}/runs: a run on the tenant's current data (coalesced; a run
    already queued takes ``training``, the run's own validated choice).
    ``data_bytes``: the tenant's data volume, the run's measure for auto and sizing."""
    if tenant.status not in ACCEPTING:
        raise TenantNotAcceptingError(f"tenant {tenant.tenant_id} is {tenant.status.value}")
    result = _enqueue(ctx, tenant, "manual", None, None, training=training, data_bytes=data_bytes)
    assert result.run is not None
    # The 202 shows where it waits, like GET does.
    return with_positions(ctx, [result.run])[0]


def submit_scheduled_run(ctx: SchedulerContext, tenant: Tenant) -> Run:
    """The tenant's retrain schedule (tenants/retraining.py): a run on its current
    data, like a manual run (coalesced with a queued one), marked ``schedule``."""
    if tenant.status not in ACCEPTING:
        raise TenantNotAcceptingError(f"tenant {tenant.tenant_id} is {tenant.status.value}")
    result = _enqueue(ctx, tenant, "schedule", None, None)
    assert result.run is not None
    return result.run


def _enqueue(
    ctx: SchedulerContext,
    tenant: Tenant,
    kind: Literal["s3", "manual", "schedule"],
    obj: TriggerObject | None,
    dkey: str | None,
    *,
    training: TrainingChoice | None = None,
    data_bytes: int | None = None,
) -> IntakeResult:
    now = ctx.clock.now()
    ttl = int((now + timedelta(days=DEDUPE_TTL_DAYS)).timestamp())
    stale: str | None = None
    # Each lap loses at most one race (the queued run just started, or another
    # intake created the queued run first); a few laps always suffice.
    for _ in range(6):
        pointer = ctx.runs.queued_run_id(tenant.tenant_id)
        if pointer is not None and pointer != stale:
            try:
                ctx.runs.add_to_queued_run(
                    tenant.tenant_id, pointer, obj, dkey, ttl, iso_ms(now) or ""
                )
            except RunNotQueuedError:
                stale = pointer  # it left QUEUED under us: start a new run
                continue
            except DuplicateUploadError:
                return _duplicate(ctx, tenant, obj)
            if training is not None and not ctx.runs.set_training_request(
                tenant.tenant_id, pointer, training, iso_ms(now) or ""
            ):
                stale = pointer  # it started under us: this request gets a run of its own
                continue
            run = ctx.runs.get_run(tenant.tenant_id, pointer)
            ctx.log.info(
                "upload joined queued run",
                extra={"tenant_id": tenant.tenant_id, "run_id": pointer, "trigger": kind},
            )
            return IntakeResult("joined", run)
        run = Run(
            run_id=new_run_id(now),
            tenant_id=tenant.tenant_id,
            plan=tenant.plan,
            status=RunStatus.QUEUED,
            trigger=Trigger(type=kind, objects=[obj] if obj else [], data_bytes=data_bytes),
            training_request=training,
            queued_at=iso_ms(now) or "",
            updated_at=iso_ms(now),
        )
        try:
            ctx.runs.create_queued_run(run, dkey, ttl, replace_pointer=stale)
        except QueuedRunExistsError:
            stale = None
            continue
        except DuplicateUploadError:
            return _duplicate(ctx, tenant, obj)
        ctx.log.info(
            "run queued",
            extra={"tenant_id": tenant.tenant_id, "run_id": run.run_id, "trigger": kind},
        )
        # Only the intake that created the run says so (a joined upload is no new run).
        ctx.emit(events.run_event(events.RUN_QUEUED, run, run.queued_at))
        return IntakeResult("created", run)
    raise RuntimeError(f"could not queue a run for {tenant.tenant_id}: contention")


def _duplicate(ctx: SchedulerContext, tenant: Tenant, obj: TriggerObject | None) -> IntakeResult:
    ctx.log.info(
        "duplicate upload event ignored",
        extra={"tenant_id": tenant.tenant_id, "key": obj.key if obj else None},
    )
    return IntakeResult("duplicate", reason="already accepted")


def _ignore(
    ctx: SchedulerContext,
    tenant: Tenant,
    key: str,
    size: int | None,
    etag: str | None,
    reason: str,
) -> IntakeResult:
    ctx.log.info(
        "upload ignored",
        extra={"tenant_id": tenant.tenant_id, "key": key, "reason": reason},
    )
    upload = IgnoredUpload(
        key=key, size=size, reason=reason, at=iso_ms(ctx.clock.now()) or "", etag=etag
    )
    # An AWS error raises: the event is retried (then dead-lettered with the reason
    # logged). Lost races in a burst are not worth a retry of the shared queue's
    # batch: logged above and counted.
    if not ctx.tenants.record_ignored_upload(tenant.tenant_id, upload):
        ctx.log.warning(
            "ignored upload not recorded on the tenant (contention or tenant gone)",
            extra={"tenant_id": tenant.tenant_id, "key": key},
        )
        ctx.metrics.record("IgnoredUploadsNotRecorded", 1)
    ctx.metrics.record("UploadsIgnored", 1)
    return IntakeResult("ignored", reason=reason)


def _reject(
    ctx: SchedulerContext, reason: str, bucket: str, key: str, tenant_id: str | None
) -> IntakeResult:
    now = ctx.clock.now()
    ctx.log.warning(
        "upload rejected",
        extra={"reason": reason, "bucket": bucket, "key": key, "tenant_id": tenant_id},
    )
    ctx.runs.record_rejection(
        Rejection(at=iso_ms(now) or "", reason=reason, bucket=bucket, key=key, tenant_id=tenant_id),
        int((now + timedelta(days=REJECTION_TTL_DAYS)).timestamp()),
    )
    ctx.metrics.record("UploadsRejected", 1)
    return IntakeResult("rejected", reason=reason)


def _predates_location(tenant: Tenant, event_time: datetime | None) -> bool:
    """An object created at the tenant's location before the tenant took it (a
    migration's copy) is no upload. S3 event times have one-second precision and
    the migration switches in a later second than its last copy, so whole seconds
    are compared."""
    since = parse_iso(tenant.location_since)
    if since is None or event_time is None:
        return False
    if event_time.tzinfo is None:
        event_time = event_time.replace(tzinfo=since.tzinfo)
    return event_time < since.replace(microsecond=0)
