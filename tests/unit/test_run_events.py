"""Run events from the domain (MemoryEvents): each lifecycle transition is reported
exactly once, by whichever caller's conditional write made it, whatever repeats or
races (S3's and SageMaker's at-least-once events, reconcile, a crashed start)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest
from trainyard_core.clock import VirtualClock
from trainyard_core.config import Settings
from trainyard_core.events import Event
from trainyard_core.models import RunStatus
from trainyard_core.ports.events import MemoryEvents
from trainyard_core.scheduling.service import SchedulerService
from trainyard_core.store.runs_memory import InMemoryRunRepository
from trainyard_core.store.tenants import InMemoryTenantRepository

from trainyard.testing.scheduling import FakePipeline, RecordingMetrics, SchedulerCrash, make_tenant


class World:
    def __init__(self) -> None:
        self.clock = VirtualClock(datetime(2026, 3, 10, 12, 0, tzinfo=UTC))
        self.runs = InMemoryRunRepository()
        self.tenants = InMemoryTenantRepository()
        self.pipeline = FakePipeline()
        self.events = MemoryEvents()
        self.metrics = RecordingMetrics()
        self.service = SchedulerService(
            Settings(),
            self.runs,
            self.tenants,
            self.pipeline,
            clock=self.clock,
            metrics=self.metrics,
            events=self.events,
            describe_min_age_seconds=0,
        )
        self.tenants.create(make_tenant("acme"))

    def upload(self, name: str = "a.csv", etag: str = "e1"):
        return self.service.handle_upload(
            "trainyard-acme-123456789012", f"data/{name}", etag=etag, size=10, version_id=etag
        )

    def names(self, run_id: str | None = None) -> list[str]:
        return [
            e.type.name
            for e in self.events.published
            if run_id is None or e.detail.get("runId") == run_id
        ]

    def one(self, name: str) -> Event:
        found = [e for e in self.events.published if e.type.name == name]
        assert len(found) == 1, self.names()
        return found[0]


@pytest.fixture
def world() -> World:
    return World()


def test_a_new_queued_run_is_announced_once_and_a_joining_upload_is_not(world: World) -> None:
    first = world.upload("a.csv", "e1")
    world.upload("b.csv", "e2")  # joins the QUEUED run
    world.upload("a.csv", "e1")  # S3 delivered the first event again
    world.service.submit_manual_run(world.tenants.get("acme"))  # coalesced too
    assert first.outcome == "created"
    assert world.names() == ["run.queued"]
    detail = world.one("run.queued").envelope()
    assert detail["runId"] == first.run.run_id
    assert detail["tenantId"] == "acme" and detail["plan"] == "basic"
    assert detail["status"] == "QUEUED" and detail["queuedAt"] == first.run.queued_at
    assert detail["version"] == "1" and detail["event"] == "run.queued"


def test_a_manual_run_is_announced_when_it_creates_the_run(world: World) -> None:
    run = world.service.submit_manual_run(world.tenants.get("acme"))
    assert world.names(run.run_id) == ["run.queued"]
    assert world.one("run.queued").detail["trigger"] == "manual"


def test_a_lifecycle_with_repeated_status_events_and_reconcile_reports_each_step_once(
    world: World,
) -> None:
    run = world.upload().run
    world.service.dispatch()
    started = world.runs.get_run("acme", run.run_id)
    assert started.status == RunStatus.RUNNING and started.execution_arn
    arn = started.execution_arn
    # SageMaker's Executing event arrives after dispatch recorded the start: no news.
    world.service.handle_status(arn, "Executing", display_name=started.display_name)
    world.runs.record_results(
        "acme", run.run_id, {"auc": 0.91}, "arn:aws:sagemaker:pkg/1", "2026-03-10T12:05:00.000Z"
    )
    world.clock.advance(600)
    world.pipeline.set_status(arn, "Succeeded")
    for _ in range(2):  # at-least-once delivery
        world.service.handle_status(arn, "Succeeded", display_name=started.display_name)
    world.service.reconcile()  # and the safety net finds it ended too

    assert Counter(world.names(run.run_id)) == {
        "run.queued": 1,
        "run.started": 1,
        "run.succeeded": 1,
    }
    assert world.names(run.run_id) == ["run.queued", "run.started", "run.succeeded"]
    start = world.one("run.started").detail
    assert start["status"] == "RUNNING" and start["executionArn"] == arn
    assert start["startedAt"] == started.started_at
    end = world.one("run.succeeded").detail
    assert end["status"] == "SUCCEEDED" and end["failureReason"] is None
    assert end["metrics"] == {"auc": 0.91}
    assert end["modelPackageArn"] == "arn:aws:sagemaker:pkg/1"
    assert end["startedAt"] == started.started_at and end["endedAt"] >= end["startedAt"]


def test_a_missed_end_found_by_reconcile_is_reported_once_with_the_reason(world: World) -> None:
    run = world.upload().run
    world.service.dispatch()
    arn = world.runs.get_run("acme", run.run_id).execution_arn
    world.clock.advance(300)
    world.pipeline.set_status(arn, "Failed", "AlgorithmError: bad label column")
    world.service.reconcile()
    world.service.reconcile()
    # The event arrives late, after reconcile ended the run.
    world.service.handle_status(arn, "Failed", failure_reason="late copy")
    failed = world.one("run.failed").detail
    assert failed["runId"] == run.run_id and failed["status"] == "FAILED"
    assert "bad label column" in failed["failureReason"]
    assert "run.succeeded" not in world.names()


def test_a_start_the_executing_event_beat_is_reported_once_by_the_event(world: World) -> None:
    run = world.upload().run
    world.pipeline.crash_next = "after"  # SageMaker started it; the scheduler died
    with pytest.raises(SchedulerCrash):
        world.service.dispatch()
    assert world.names(run.run_id) == ["run.queued"]
    execution = world.pipeline.execution_for_run(run.run_id)
    world.service.handle_status(execution.arn, "Executing", display_name=execution.display_name)
    assert world.names(run.run_id) == ["run.queued", "run.started"]
    # The crashed start is retried (same token, same execution): it finds the run RUNNING.
    world.clock.advance(120)
    world.service.reconcile()
    world.service.dispatch()
    assert world.names(run.run_id) == ["run.queued", "run.started"]


def test_a_stopped_run_is_a_run_failed_whose_status_says_stopped(world: World) -> None:
    run = world.upload().run
    world.service.dispatch()
    current = world.runs.get_run("acme", run.run_id)
    world.pipeline.set_status(current.execution_arn, "Stopped")
    world.service.handle_status(current.execution_arn, "Stopped")
    failed = world.one("run.failed").detail
    assert failed["status"] == "STOPPED" and failed["failureReason"]


def test_a_publisher_that_fails_never_undoes_or_blocks_the_transition(world: World) -> None:
    class Broken:
        def publish(self, events: list[Event]) -> None:
            raise RuntimeError("bus unreachable")

    world.service.events = Broken()
    result = world.upload()
    world.service.dispatch()
    run = world.runs.get_run("acme", result.run.run_id)
    assert run.status == RunStatus.RUNNING
    assert world.metrics.values("EventsNotPublished") == [1, 1]
