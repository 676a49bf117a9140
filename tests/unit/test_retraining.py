"""Scheduled retraining on in-memory stores, a fake data listing and a virtual clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from trainyard_core.clock import VirtualClock
from trainyard_core.config import RetrainingSettings, Settings
from trainyard_core.errors import InvalidRequest
from trainyard_core.models import RunStatus, TenantStatus, iso_ms
from trainyard_core.scheduling.service import SchedulerService
from trainyard_core.store.runs_memory import InMemoryRunRepository
from trainyard_core.store.tenants import InMemoryTenantRepository
from trainyard_core.tenants.retraining import (
    DataObject,
    DataSnapshot,
    Retraining,
    parse_every,
    schedule_for,
)

from trainyard.testing.scheduling import FakePipeline, make_tenant

SETTINGS = RetrainingSettings(min_interval_seconds=3600)
T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


@dataclass
class FakeListing:
    """A tenant's data prefix: key -> (etag, size, written at)."""

    files: dict[str, dict[str, tuple[str, int, datetime]]] = field(default_factory=dict)
    calls: int = 0

    def training_files(self, bucket: str, prefix: str, max_objects: int) -> DataSnapshot:
        self.calls += 1
        objects = [
            DataObject(key, etag, size, at)
            for key, (etag, size, at) in self.files.get(f"{bucket}/{prefix}", {}).items()
            if key.lower().endswith(".csv")
        ]
        return DataSnapshot(objects[:max_objects], truncated=len(objects) > max_objects)


class World:
    def __init__(self) -> None:
        self.clock = VirtualClock(T0)
        self.settings = Settings()
        self.runs = InMemoryRunRepository()
        self.tenants = InMemoryTenantRepository()
        self.pipeline = FakePipeline()
        self.listing = FakeListing()
        self.service = SchedulerService(
            self.settings, self.runs, self.tenants, self.pipeline, clock=self.clock
        )
        self.retraining = Retraining(
            settings=SETTINGS,
            tenants=self.tenants,
            listing=self.listing,
            recent_runs=lambda tenant_id: self.runs.list_runs(tenant_id, limit=50)[0],
            enqueue=self.service.submit_scheduled_run,
            now=self.clock.now,
        )

    def tenant(self, tenant_id: str, every: str | None = "P1D") -> None:
        tenant = make_tenant(tenant_id, "basic", TenantStatus.ACTIVE)
        if every is not None:
            tenant = tenant.model_copy(
                update={"retrain": schedule_for(None, every, self.clock.now(), SETTINGS)}
            )
        self.tenants.create(tenant)

    def write(self, tenant_id: str, key: str, etag: str = "e1") -> None:
        tenant = self.tenants.get(tenant_id)
        assert tenant is not None
        where = f"{tenant.data_bucket}/{tenant.data_prefix}"
        self.listing.files.setdefault(where, {})[key] = (
            etag,
            10,
            self.clock.now(),
        )

    def delete(self, tenant_id: str, key: str) -> None:
        tenant = self.tenants.get(tenant_id)
        assert tenant is not None
        del self.listing.files[f"{tenant.data_bucket}/{tenant.data_prefix}"][key]

    def trained(self, tenant_id: str, status: str = "Succeeded", run: Any = None) -> None:
        """A run on the tenant's data (a new manual one, or ``run`` if queued),
        started 5 s from now and ended 10 minutes later."""
        tenant = self.tenants.get(tenant_id)
        assert tenant is not None
        if run is None:
            run = self.service.submit_manual_run(tenant)
        self.clock.advance(5)
        self.service.dispatch()
        current = self.runs.get_run(tenant_id, run.run_id)
        assert current is not None and current.execution_arn
        self.clock.advance(600)
        self.pipeline.set_status(current.execution_arn, status, None)
        self.service.handle_status(current.execution_arn, status, display_name=current.display_name)

    def runs_of(self, tenant_id: str) -> list:
        return self.runs.list_runs(tenant_id, limit=50)[0]


@pytest.fixture
def world() -> World:
    return World()


def test_a_due_tenant_whose_data_changed_is_retrained_once(world: World) -> None:
    world.tenant("acme")
    world.write("acme", "a.csv")
    world.trained("acme")
    world.clock.advance(3600)
    world.write("acme", "b.csv")  # e.g. written while uploads were coalesced

    world.clock.advance(86_400)
    report = world.retraining.run_due()
    assert report.queued == ["acme"]
    runs = world.runs_of("acme")
    assert [r.trigger.type for r in runs] == ["schedule", "manual"]
    assert runs[0].status == RunStatus.QUEUED
    tenant = world.tenants.get("acme")
    assert tenant is not None and tenant.retrain is not None
    assert tenant.retrain.last_run_id == runs[0].run_id
    assert tenant.retrain.next_due_at == iso_ms(world.clock.now() + timedelta(days=1))

    # Checked again at once: not due, nothing more queued.
    assert world.retraining.run_due().queued == []
    assert len(world.runs_of("acme")) == 2


def test_an_unchanged_tenant_is_not_retrained_and_waits_a_period(world: World) -> None:
    world.tenant("calm")
    world.write("calm", "a.csv")
    world.trained("calm")
    world.clock.advance(86_400)
    report = world.retraining.run_due()
    assert report.queued == [] and report.unchanged == ["calm"]
    assert len(world.runs_of("calm")) == 1
    tenant = world.tenants.get("calm")
    assert tenant is not None and tenant.retrain is not None
    assert tenant.retrain.last_outcome == "unchanged since the last successful run"
    world.clock.advance(86_400)
    assert world.retraining.run_due().unchanged == ["calm"]
    assert len(world.runs_of("calm")) == 1


def test_a_deletion_seen_after_the_last_success_is_a_change(world: World) -> None:
    world.tenant("trim")
    world.write("trim", "a.csv")
    world.write("trim", "b.csv")
    world.trained("trim")
    world.clock.advance(86_400)
    assert world.retraining.run_due().unchanged == ["trim"]  # the schedule has seen the data
    world.delete("trim", "b.csv")  # no newer object: only the fingerprint shows it
    world.clock.advance(86_400)
    assert world.retraining.run_due().queued == ["trim"]


def test_a_run_that_succeeded_after_the_change_means_unchanged(world: World) -> None:
    world.tenant("fresh")
    world.write("fresh", "a.csv")
    world.clock.advance(60)
    world.trained("fresh")  # started after the write
    world.clock.advance(86_400)
    assert world.retraining.run_due().unchanged == ["fresh"]


def test_a_tenant_that_never_trained_successfully_is_retrained(world: World) -> None:
    world.tenant("newbie")
    world.write("newbie", "a.csv")
    world.trained("newbie", status="Failed")
    world.clock.advance(86_400)
    assert world.retraining.run_due().queued == ["newbie"]


def test_no_data_queues_nothing(world: World) -> None:
    world.tenant("empty")
    world.clock.advance(86_400)
    report = world.retraining.run_due()
    assert report.queued == [] and world.runs_of("empty") == []


def test_a_tenant_with_a_run_in_progress_is_deferred_without_listing(world: World) -> None:
    world.tenant("busy")
    world.write("busy", "a.csv")
    tenant = world.tenants.get("busy")
    assert tenant is not None
    world.service.submit_manual_run(tenant)
    world.clock.advance(86_400)
    report = world.retraining.run_due()
    assert report.deferred == ["busy"] and world.listing.calls == 0
    assert len(world.runs_of("busy")) == 1


def test_suspended_and_unscheduled_tenants_are_not_in_the_due_index(world: World) -> None:
    world.tenant("plain", every=None)
    world.tenant("paused")
    tenant = world.tenants.get("paused")
    assert tenant is not None
    world.tenants.save(tenant.model_copy(update={"status": TenantStatus.SUSPENDED}))
    world.write("plain", "a.csv")
    world.write("paused", "a.csv")
    world.clock.advance(86_400 * 3)
    assert world.tenants.due_for_retraining(iso_ms(world.clock.now()) or "", 100) == []
    assert world.retraining.run_due().queued == []


def test_at_most_checks_per_run_tenants_are_checked_soonest_due_first(world: World) -> None:
    world.retraining.settings = RetrainingSettings(checks_per_run=2)
    for i in range(5):
        world.tenant(f"t-{i}")
        world.write(f"t-{i}", "a.csv")
        world.clock.advance(1)
    world.clock.advance(86_400)
    assert world.retraining.run_due().queued == ["t-0", "t-1"]
    assert world.retraining.run_due().queued == ["t-2", "t-3"]
    assert world.retraining.run_due().queued == ["t-4"]


def test_one_tenants_error_does_not_stop_the_others(world: World) -> None:
    world.tenant("bad")
    world.tenant("good")
    world.write("good", "a.csv")
    world.write("bad", "a.csv")
    original = world.listing.training_files

    def flaky(bucket: str, prefix: str, max_objects: int) -> DataSnapshot:
        if "bad" in prefix or "bad" in bucket:
            raise RuntimeError("AccessDenied")
        return original(bucket, prefix, max_objects)

    world.listing.training_files = flaky  # type: ignore[method-assign]
    world.clock.advance(86_400)
    report = world.retraining.run_due()
    assert report.queued == ["good"]
    assert report.errors and report.errors[0].startswith("bad: RuntimeError")


@pytest.mark.parametrize(
    ("every", "seconds"),
    [("P7D", 604_800), ("PT12H", 43_200), ("P1DT6H", 108_000), ("P2W", 1_209_600), ("PT90M", 5400)],
)
def test_retrain_periods_are_iso_8601_durations(every: str, seconds: int) -> None:
    assert parse_every(every, SETTINGS) == timedelta(seconds=seconds)


@pytest.mark.parametrize("every", ["7d", "P", "PT", "P1M", "P1Y", "PT1.5H", "PT59M", "P400D", 7])
def test_a_period_that_is_not_a_duration_or_out_of_bounds_is_a_400(every: object) -> None:
    with pytest.raises(InvalidRequest) as refused:
        parse_every(every, SETTINGS)
    assert refused.value.code == "InvalidRetrainSchedule"


@given(st.text(max_size=40))
def test_any_text_is_a_period_or_a_400_never_a_crash(text: str) -> None:
    try:
        period = parse_every(text, SETTINGS)
    except InvalidRequest:
        return
    assert SETTINGS.min_interval_seconds <= period.total_seconds() <= 366 * 86_400


def test_repeating_a_patch_does_not_postpone_the_due_time() -> None:
    first = schedule_for(None, "P1D", T0, SETTINGS)
    again = schedule_for(first, "P1D", T0 + timedelta(hours=5), SETTINGS)
    assert again.next_due_at == first.next_due_at
    changed = schedule_for(first, "P2D", T0 + timedelta(hours=5), SETTINGS)
    assert changed.next_due_at == iso_ms(T0 + timedelta(hours=5, days=2))


def _scheduled(world: World, tenant_id: str) -> Any:
    return next(r for r in world.runs_of(tenant_id) if r.trigger.type == "schedule")


def test_a_deletion_after_a_scheduled_run_is_retrained_on_next_period(world: World) -> None:
    """The fingerprint taken when the schedule queued a run describes that run's data."""
    world.tenant("shrink")
    world.write("shrink", "a.csv")
    world.write("shrink", "b.csv")
    world.clock.advance(86_400)
    assert world.retraining.run_due().queued == ["shrink"]  # never trained successfully
    world.trained("shrink", run=_scheduled(world, "shrink"))
    world.clock.advance(3 * 86_400)
    world.delete("shrink", "b.csv")
    world.clock.advance(4 * 86_400)
    assert world.retraining.run_due().queued == ["shrink"]


def test_a_scheduled_run_that_failed_is_not_repeated_on_the_same_data(world: World) -> None:
    world.tenant("broken")
    world.write("broken", "a.csv")
    world.clock.advance(86_400)
    assert world.retraining.run_due().queued == ["broken"]
    world.trained("broken", status="Failed", run=_scheduled(world, "broken"))
    world.clock.advance(86_400)
    report = world.retraining.run_due()
    assert report.queued == [] and report.unchanged == ["broken"]
    tenant = world.tenants.get("broken")
    assert tenant is not None and tenant.retrain is not None
    assert "did not succeed" in (tenant.retrain.last_outcome or "")
    world.write("broken", "a.csv", etag="fixed")  # the tenant fixes its data
    world.clock.advance(86_400)
    assert world.retraining.run_due().queued == ["broken"]


def test_a_tenant_whose_check_fails_is_rechecked_later_and_does_not_block_others(
    world: World,
) -> None:
    world.retraining.settings = RetrainingSettings(checks_per_run=2)
    for name in ("bad-1", "bad-2", "good-1", "good-2"):
        world.tenant(name)
        world.write(name, "a.csv")
        world.clock.advance(1)
    original = world.listing.training_files

    def denied(bucket: str, prefix: str, max_objects: int) -> DataSnapshot:
        if "bad" in bucket + prefix:
            raise RuntimeError("AccessDenied")
        return original(bucket, prefix, max_objects)

    world.listing.training_files = denied  # type: ignore[method-assign]
    world.clock.advance(86_400)
    first = world.retraining.run_due()
    assert len(first.errors) == 2 and first.queued == []
    second = world.retraining.run_due()
    assert second.queued == ["good-1", "good-2"]
    tenant = world.tenants.get("bad-1")
    assert tenant is not None and tenant.retrain is not None
    assert tenant.retrain.last_outcome == "error: RuntimeError: AccessDenied"
    assert tenant.retrain.next_due_at == iso_ms(world.clock.now() + timedelta(seconds=900))


def test_a_busy_tenant_is_looked_at_again_soon_not_a_period_later(world: World) -> None:
    world.tenant("busy-weekly", every="P7D")
    world.write("busy-weekly", "a.csv")
    tenant = world.tenants.get("busy-weekly")
    assert tenant is not None
    world.service.submit_manual_run(tenant)
    world.clock.advance(7 * 86_400)
    assert world.retraining.run_due().deferred == ["busy-weekly"]
    after = world.tenants.get("busy-weekly")
    assert after is not None and after.retrain is not None
    assert after.retrain.next_due_at == iso_ms(world.clock.now() + timedelta(minutes=15))


def test_a_schedule_outside_todays_bounds_is_still_checked(world: World) -> None:
    world.tenant("old-rules", every="PT1H")
    world.write("old-rules", "a.csv")
    world.retraining.settings = RetrainingSettings(min_interval_seconds=86_400)
    world.clock.advance(3600)
    assert world.retraining.run_due().queued == ["old-rules"]


def test_a_migrations_copies_are_not_new_data(world: World) -> None:
    world.tenant("mover")
    world.write("mover", "a.csv")
    world.trained("mover")
    world.clock.advance(3600)
    tenant = world.tenants.get("mover")
    assert tenant is not None
    # The move copies the file to the new location, then the tenant takes it.
    world.write("mover", "a.csv")
    moved = world.tenants.save(
        tenant.model_copy(update={"location_since": iso_ms(world.clock.now())})
    )
    assert moved.location_since
    world.clock.advance(86_400)
    assert world.retraining.run_due().unchanged == ["mover"]


@pytest.mark.parametrize("every", ["P7D\n", " P7D", "p7d"])
def test_a_period_with_anything_around_it_is_a_400(every: str) -> None:
    with pytest.raises(InvalidRequest):
        parse_every(every, SETTINGS)
