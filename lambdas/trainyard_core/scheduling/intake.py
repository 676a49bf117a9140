"""Intake: an upload (or a manual run) joins the tenant's QUEUED run or starts one.

The tenant comes from the registry only, never from the event; S3's
at-least-once delivery is de-duplicated on the object version.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from trainyard_core.errors import Conflict
from trainyard_core.models import (
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

DEDUPE_TTL_DAYS = 7
REJECTION_TTL_DAYS = 30
# Tenants whose uploads are accepted (a SUSPENDED or MIGRATING tenant's runs wait).
ACCEPTING = (TenantStatus.ACTIVE, TenantStatus.SUSPENDED, TenantStatus.MIGRATING)

IntakeOutcome = Literal["created", "joined", "duplicate", "ignored", "rejected"]


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
    if not key.lower().endswith(".csv"):
        ctx.log.info("ignoring non-CSV object", extra={"bucket": bucket, "key": key})
        return IntakeResult("ignored", reason="not a .csv object")
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
    if _predates_location(tenant, event_time):
        ctx.log.info(
            "ignoring object created before the tenant moved here (migration copy)",
            extra={"tenant_id": tenant.tenant_id, "bucket": bucket, "key": key},
        )
        return IntakeResult("ignored", reason="object predates the tenant's current location")
    obj = TriggerObject(key=key, etag=etag, size=size, bucket=bucket, version_id=version_id)
    return _enqueue(ctx, tenant, "s3", obj, dedupe_key(bucket, key, etag, version_id))


def submit_manual_run(ctx: SchedulerContext, tenant: Tenant) -> Run:
    """POST /tenants/{id}/runs: a run on the tenant's current data (coalesced)."""
    if tenant.status not in ACCEPTING:
        raise TenantNotAcceptingError(f"tenant {tenant.tenant_id} is {tenant.status.value}")
    result = _enqueue(ctx, tenant, "manual", None, None)
    assert result.run is not None
    # The 202 shows where it waits, like GET does.
    return with_positions(ctx, [result.run])[0]


def _enqueue(
    ctx: SchedulerContext,
    tenant: Tenant,
    kind: Literal["s3", "manual"],
    obj: TriggerObject | None,
    dkey: str | None,
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
            trigger=Trigger(type=kind, objects=[obj] if obj else []),
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
        return IntakeResult("created", run)
    raise RuntimeError(f"could not queue a run for {tenant.tenant_id}: contention")


def _duplicate(ctx: SchedulerContext, tenant: Tenant, obj: TriggerObject | None) -> IntakeResult:
    ctx.log.info(
        "duplicate upload event ignored",
        extra={"tenant_id": tenant.tenant_id, "key": obj.key if obj else None},
    )
    return IntakeResult("duplicate", reason="already accepted")


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
