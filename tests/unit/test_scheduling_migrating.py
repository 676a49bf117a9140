"""The scheduler and a tenant whose data is migrating between isolation models."""

from __future__ import annotations

from datetime import timedelta

from trainyard_core.models import RunStatus, TenantStatus, WaitingCode, iso_ms

from tests.unit.test_scheduling_service import World


def test_a_migrating_tenants_upload_is_accepted_but_waits_for_the_migration() -> None:
    world = World()
    world.tenant("movi", status=TenantStatus.MIGRATING)
    result = world.upload("movi")
    assert result.outcome == "created" and result.run
    world.service.dispatch()
    waiting = world.run(result.run)
    assert waiting.status == RunStatus.QUEUED
    assert waiting.failure_reason is None
    assert waiting.waiting_for is not None and waiting.waiting_for.code == WaitingCode.MIGRATING
    assert "migrated" in waiting.waiting_for.message
    tenant = world.tenants.get("movi")
    assert tenant
    world.tenants.save(tenant.model_copy(update={"status": TenantStatus.ACTIVE}))
    world.service.dispatch()
    assert world.run(result.run).status == RunStatus.RUNNING


def test_objects_created_before_the_tenant_moved_to_its_location_start_no_run() -> None:
    world = World()
    tenant = world.tenant("movi")
    moved_at = world.clock.now().replace(microsecond=400_000)
    world.tenants.save(tenant.model_copy(update={"location_since": iso_ms(moved_at)}))
    bucket = tenant.data_bucket
    assert bucket
    copy = world.service.handle_upload(
        bucket, "data/old.csv", "e1", 10, "v1", event_time=moved_at - timedelta(seconds=1)
    )
    assert copy.outcome == "ignored" and copy.run is None
    # An upload in the same (truncated) second as the move is a real one.
    fresh = world.service.handle_upload(
        bucket, "data/new.csv", "e2", 10, "v2", event_time=moved_at.replace(microsecond=0)
    )
    assert fresh.outcome == "created"
