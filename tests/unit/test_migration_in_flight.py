"""A migration while the tenant is in use, on in-memory fakes: the tenant service
and the scheduler share one tenant registry and one run store, as in AWS."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from trainyard_core.clock import VirtualClock
from trainyard_core.config import Settings
from trainyard_core.models import RunStatus, TenantStatus, iso_ms
from trainyard_core.scheduling.service import SchedulerService
from trainyard_core.store.runs_memory import InMemoryRunRepository
from trainyard_core.store.tenants import InMemoryTenantRepository
from trainyard_core.tenants import TenantService

from tests.unit.test_tenant_lifecycle import ACCOUNT, InMemoryProvisioner
from tests.unit.test_tenant_migration import POOL, SILO, InMemoryMover
from trainyard.testing.scheduling import FakePipeline, RecordingMetrics


class World:
    def __init__(self) -> None:
        self.settings = Settings()
        self.clock = VirtualClock(datetime(2026, 3, 10, 12, 0, tzinfo=UTC))
        self.tenants = InMemoryTenantRepository()
        self.runs = InMemoryRunRepository()
        self.provisioner = InMemoryProvisioner()
        self.mover = InMemoryMover()
        self.purged: list[tuple[str, str]] = []
        self.scheduler = SchedulerService(
            self.settings,
            self.runs,
            self.tenants,
            FakePipeline(),
            clock=self.clock,
            metrics=RecordingMetrics(),
        )
        self.service = TenantService(
            settings=self.settings,
            tenants=self.tenants,
            provisioner=self.provisioner,
            account_id=ACCOUNT,
            clock=self.clock,
            mover=self.mover,
            purger=self,
            active_runs=lambda tid: sum(
                1
                for p in self.settings.plans
                for r in self.runs.active_runs(p)
                if r.tenant_id == tid
            ),
            record_upload=self.scheduler.record_moved_upload,
        )

    def purge(self, bucket: str, prefix: str, stop: object = None) -> int:
        self.purged.append((bucket, prefix))
        return 1

    def upload(self, bucket: str, key: str, etag: str) -> str:
        """S3 accepts the object (now); returns the intake's outcome of its event."""
        self.mover.put(bucket, key, etag, modified=iso_ms(self.clock.now()))
        return self.scheduler.handle_upload(
            bucket, key, etag=etag, size=10, version_id="v1"
        ).outcome

    def recorded(self, tenant_id: str = "acme") -> list[tuple[str | None, str]]:
        runs, _ = self.runs.list_runs(tenant_id, limit=50)
        return sorted((o.bucket, o.key) for r in runs for o in r.trigger.objects)

    def tenant(self, tenant_id: str = "acme"):
        tenant = self.tenants.get(tenant_id)
        assert tenant is not None
        return tenant


@pytest.fixture
def world() -> World:
    w = World()
    w.service.create("acme", "basic")
    w.mover.put(POOL, "tenants/acme/data/old.csv", "e-old", modified="2026-01-01T00:00:00+00:00")
    return w


def test_a_migration_waits_for_the_tenants_running_run_before_it_touches_the_stack_or_the_data(
    world: World,
) -> None:
    assert world.upload(POOL, "tenants/acme/data/a.csv", "e-a") == "created"
    world.scheduler.dispatch()
    [run] = world.runs.active_runs("basic")
    world.service.update("acme", plan="premium", status=None)
    assert world.tenant().status == TenantStatus.MIGRATING
    world.service.advance_pending()
    # The running run still reads the old data with the old role and writes there.
    assert world.provisioner.template_swaps == []
    assert world.mover.keys(SILO) == [] and world.mover.copies == 0

    world.runs.finish(
        run,
        RunStatus.SUCCEEDED,
        ended_at=iso_ms(world.clock.now()) or "",
        month="2026-03",
        training_seconds=60.0,
        cost_usd=0.01,
        failure_reason=None,
    )
    world.service.advance_pending()
    assert world.provisioner.template_swaps == [("trainyard-tenant-acme", "silo")]
    assert world.tenant().status == TenantStatus.ACTIVE
    assert world.mover.keys(POOL, "tenants/acme/") == []


def test_uploads_at_the_old_location_during_a_migration_are_recorded_as_the_objects_they_become(
    world: World,
) -> None:
    world.provisioner.complete_immediately = False
    world.clock.advance(5)
    world.service.update("acme", plan="premium", status=None)
    # Before the upload rule switches: the event comes from the old location.
    assert world.upload(POOL, "tenants/acme/data/before.csv", "e-1") == "created"
    # After it switched: no event at all; the move records it.
    world.mover.put(POOL, "tenants/acme/data/after.csv", "e-2", modified=iso_ms(world.clock.now()))
    # A copy of the migration at the new location is no upload.
    assert world.scheduler.handle_upload(SILO, "data/old.csv", etag="e-old").outcome == "ignored"

    stack = world.provisioner.stacks["trainyard-tenant-acme"]
    world.provisioner.stacks["trainyard-tenant-acme"] = type(stack)(
        "UPDATE_COMPLETE", stack.outputs
    )
    world.service.advance_pending()
    assert world.tenant().status == TenantStatus.ACTIVE
    # A late event of the first upload, from the location the tenant left: the same upload.
    late = world.scheduler.handle_upload(POOL, "tenants/acme/data/before.csv", etag="e-1")
    assert late.outcome == "duplicate"
    # Each once, under its key at the new location; the object from before is no upload.
    assert world.recorded() == [(SILO, "data/after.csv"), (SILO, "data/before.csv")]
    assert world.runs.list_rejections() == []


def test_an_upload_in_the_same_second_just_before_the_plan_change_is_recorded_once(
    world: World,
) -> None:
    # S3's LastModified has one-second precision: the move reports an object uploaded
    # (and recorded from its event) in the second the migration began.
    world.clock.advance(0.2)
    assert world.upload(POOL, "tenants/acme/data/first.csv", "e-1") == "created"
    world.clock.advance(0.5)
    world.provisioner.complete_immediately = False
    world.service.update("acme", plan="premium", status=None)
    stack = world.provisioner.stacks["trainyard-tenant-acme"]
    world.provisioner.stacks["trainyard-tenant-acme"] = type(stack)(
        "UPDATE_COMPLETE", stack.outputs
    )
    world.service.advance_pending()
    assert world.tenant().status == TenantStatus.ACTIVE
    assert world.recorded() == [(POOL, "tenants/acme/data/first.csv")]


def test_reads_retries_and_offboarding_of_a_migrating_tenant_move_and_purge_nothing_inline(
    world: World,
) -> None:
    for i in range(40):
        world.mover.put(POOL, f"tenants/acme/artifacts/part-{i}", f"e{i}")
    world.service.update("acme", plan="premium", status=None)
    world.service.get("acme")
    world.service.update("acme", plan="premium", status=None)
    world.service.list(limit=10, next_token=None)
    world.service.offboard("acme", purge=True)
    assert world.mover.copies == 0 and world.purged == []
    assert len(world.mover.keys(POOL, "tenants/acme/")) == 41


def test_a_purge_asked_for_mid_migration_removes_the_old_and_the_new_location(
    world: World,
) -> None:
    world.provisioner.complete_immediately = False
    world.service.update("acme", plan="premium", status=None)
    world.service.offboard("acme", purge=True)  # the stack goes at once here
    world.service.advance_pending()
    assert world.purged == [(POOL, "tenants/acme/"), (SILO, "")]
    assert world.tenants.get("acme") is None
