"""Scheduler orchestration on in-memory stores, a fake pipeline and a virtual clock."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest
from trainyard_core.clock import VirtualClock
from trainyard_core.config import Settings, resolve_settings
from trainyard_core.models import Run, RunStatus, TenantStatus, WaitingCode
from trainyard_core.ports.pipeline import ExecutionInfo
from trainyard_core.scheduling.completion import RunNotFoundYetError
from trainyard_core.scheduling.intake import TenantNotAcceptingError
from trainyard_core.scheduling.service import SchedulerService
from trainyard_core.store.runs_memory import InMemoryRunRepository
from trainyard_core.store.tenants import InMemoryTenantRepository

from trainyard.testing.scheduling import FakePipeline, RecordingMetrics, make_tenant


class World:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.clock = VirtualClock(datetime(2026, 3, 10, 12, 0, tzinfo=UTC))
        self.runs = InMemoryRunRepository()
        self.tenants = InMemoryTenantRepository()
        self.pipeline = FakePipeline()
        self.metrics = RecordingMetrics()
        self.service = SchedulerService(
            self.settings,
            self.runs,
            self.tenants,
            self.pipeline,
            clock=self.clock,
            metrics=self.metrics,
        )

    def tenant(
        self, tenant_id: str, plan: str = "basic", status: TenantStatus = TenantStatus.ACTIVE
    ):
        tenant = make_tenant(tenant_id, plan, status)
        self.tenants.create(tenant)
        return tenant

    def upload(
        self, tenant_id: str, name: str = "train.csv", etag: str = "e1", version: str = "v1"
    ):
        tenant = self.tenants.get(tenant_id)
        assert tenant is not None and tenant.data_bucket
        return self.service.handle_upload(
            tenant.data_bucket, f"data/{name}", etag=etag, size=10, version_id=version
        )

    def started(self, tenant_id: str) -> tuple[Run, str]:
        """A new tenant's upload, dispatched: its run and the execution it started."""
        self.tenant(tenant_id)
        result = self.upload(tenant_id)
        self.service.dispatch()
        assert result.run
        arn = self.run(result.run).execution_arn
        assert arn
        return result.run, arn

    def run(self, run: Run) -> Run:
        got = self.runs.get_run(run.tenant_id, run.run_id)
        assert got is not None
        return got

    def finish(self, run: Run, status: str = "Succeeded", after: float = 600, **kw) -> Run | None:
        self.clock.advance(after)
        current = self.run(run)
        assert current.execution_arn
        self.pipeline.set_status(current.execution_arn, status, kw.get("failure_reason"))
        return self.service.handle_status(
            current.execution_arn, status, display_name=current.display_name, **kw
        )


@pytest.fixture
def world() -> World:
    return World()


# --- intake ----------------------------------------------------------------


def test_an_upload_creates_a_queued_run_listing_the_object(world: World) -> None:
    world.tenant("acme")
    result = world.upload("acme")
    assert result.outcome == "created" and result.run is not None
    run = world.run(result.run)
    assert run.status == RunStatus.QUEUED and run.plan == "basic"
    assert run.trigger.type == "s3"
    assert [(o.key, o.etag, o.version_id) for o in run.trigger.objects] == [
        ("data/train.csv", "e1", "v1")
    ]


def test_uploads_while_a_run_is_queued_join_that_run(world: World) -> None:
    world.tenant("acme", status=TenantStatus.SUSPENDED)  # keeps the run QUEUED
    first = world.upload("acme", "a.csv")
    second = world.upload("acme", "b.csv")
    assert second.outcome == "joined"
    assert first.run and second.run and second.run.run_id == first.run.run_id
    assert [o.key for o in world.run(first.run).trigger.objects] == ["data/a.csv", "data/b.csv"]


def test_a_redelivered_s3_event_is_counted_once(world: World) -> None:
    world.tenant("acme", status=TenantStatus.SUSPENDED)
    first = world.upload("acme", "a.csv", etag="x", version="1")
    again = world.upload("acme", "a.csv", etag="x", version="1")
    overwritten = world.upload("acme", "a.csv", etag="y", version="2")
    assert again.outcome == "duplicate"
    assert overwritten.outcome == "joined"
    assert first.run and len(world.run(first.run).trigger.objects) == 2


def test_an_upload_while_the_previous_run_trains_starts_a_new_run(world: World) -> None:
    world.tenant("acme")
    first = world.upload("acme", "a.csv")
    world.service.dispatch()
    assert first.run and world.run(first.run).status == RunStatus.RUNNING
    second = world.upload("acme", "b.csv")
    assert second.outcome == "created" and second.run and second.run.run_id != first.run.run_id


def test_non_csv_objects_are_ignored(world: World) -> None:
    world.tenant("acme")
    assert world.upload("acme", "notes.txt").outcome == "ignored"
    assert world.runs.list_runs("acme")[0] == []


def test_an_upload_to_storage_no_tenant_owns_is_rejected_and_recorded(world: World) -> None:
    result = world.service.handle_upload("stranger-bucket", "data/x.csv", etag="e", size=1)
    assert result.outcome == "rejected"
    [rejection] = world.runs.list_rejections()
    assert rejection.bucket == "stranger-bucket" and "no tenant" in rejection.reason


def test_an_upload_of_an_offboarding_tenant_is_rejected_with_the_reason(world: World) -> None:
    world.tenant("leaving", status=TenantStatus.OFFBOARDING)
    assert world.upload("leaving").outcome == "rejected"
    [rejection] = world.runs.list_rejections()
    assert rejection.tenant_id == "leaving" and "OFFBOARDING" in rejection.reason
    assert world.runs.list_runs("leaving")[0] == []


def test_a_manual_run_coalesces_with_a_queued_upload(world: World) -> None:
    tenant = world.tenant("acme", status=TenantStatus.SUSPENDED)
    upload = world.upload("acme")
    manual = world.service.submit_manual_run(tenant)
    assert upload.run and manual.run_id == upload.run.run_id


def test_a_manual_run_that_must_wait_is_answered_with_its_queue_position(
    world: World,
) -> None:
    _fill_basic(world)
    world.tenant("acme")
    run = world.service.submit_manual_run(world.tenants.get("acme"))
    assert run.status == RunStatus.QUEUED and run.queue_position == 1


def test_a_manual_run_for_an_offboarding_tenant_is_refused(world: World) -> None:
    tenant = world.tenant("leaving", status=TenantStatus.OFFBOARDING)
    with pytest.raises(TenantNotAcceptingError):
        world.service.submit_manual_run(tenant)


# --- dispatch --------------------------------------------------------------


def test_dispatch_starts_the_pipeline_with_the_tenants_parameters(world: World) -> None:
    tenant = world.tenant("acme", plan="standard")
    result = world.upload("acme")
    world.service.dispatch()
    assert result.run
    run = world.run(result.run)
    assert run.status == RunStatus.RUNNING and run.execution_arn
    assert run.instance_type == "ml.m5.xlarge" and run.instance_count == 1
    assert run.started_at == "2026-03-10T12:00:00.000Z"
    execution = world.pipeline.executions[run.execution_arn]
    assert execution.token == run.run_id and execution.display_name == run.display_name
    assert execution.parameters == {
        "TenantId": "acme",
        "RunId": run.run_id,
        "InputDataUri": f"s3://{tenant.data_bucket}/data/",
        "OutputUri": tenant.output_uri,
        "ExecutionRoleArn": tenant.role_arn,
        "TrainingInstanceType": "ml.m5.xlarge",
        "TrainingInstanceCount": "1",
        "TrainingVolumeSizeInGB": "30",
        "ModelPackageGroupName": "trainyard-acme",
        "ModelApprovalStatus": "PendingManualApproval",
        "MetricThreshold": "0.6",
        # No successful run yet: no SchemaBaselineUri (the no-baseline marker).
        "SchemaDrift": "warn",
        # A tenant that chose nothing: the settings' default (XGBoost, binary).
        "ProblemType": "binary",
        "Algorithm": "xgboost",
        "Hyperparameters": '{"eta":0.2,"max_depth":4,"num_round":50,"subsample":0.9}',
        "NumRound": "50",
        "MaxDepth": "4",
        "Eta": "0.2",
    }


def test_a_suspended_tenants_upload_waits_and_starts_after_reactivation(world: World) -> None:
    world.tenant("sleepy", status=TenantStatus.SUSPENDED)
    result = world.upload("sleepy")
    world.service.dispatch()
    assert result.run
    waiting = world.run(result.run)
    assert waiting.status == RunStatus.QUEUED and waiting.failure_reason is None
    assert waiting.waiting_for is not None and waiting.waiting_for.code == WaitingCode.SUSPENDED
    tenant = world.tenants.get("sleepy")
    assert tenant
    world.tenants.save(tenant.model_copy(update={"status": TenantStatus.ACTIVE}))
    world.service.dispatch()
    started = world.run(result.run)
    assert started.status == RunStatus.RUNNING and started.failure_reason is None
    assert started.waiting_for is None


def test_a_tenant_over_budget_waits_until_next_month(world: World) -> None:
    world.tenant("spender")  # basic: 10 h/month
    first = world.upload("spender", "a.csv")
    world.service.dispatch()
    assert first.run
    world.finish(first.run, after=11 * 3600)  # 11 h of training, over the budget
    second = world.upload("spender", "b.csv")
    world.service.dispatch()
    assert second.run
    waiting = world.run(second.run)
    assert waiting.status == RunStatus.QUEUED
    assert waiting.failure_reason is None
    assert waiting.waiting_for is not None and waiting.waiting_for.code == WaitingCode.BUDGET
    assert "budget" in waiting.waiting_for.message
    shown = world.service.get_run("spender", second.run.run_id)
    assert shown is not None and shown.estimated_start_at is None  # held back: no estimate
    world.clock.set(datetime(2026, 4, 1, 0, 1, tzinfo=UTC))
    world.service.dispatch()
    assert world.run(second.run).status == RunStatus.RUNNING


def test_a_finished_run_frees_its_slot_for_the_next_tenant_at_once() -> None:
    world = World(resolve_settings({"globalMaxConcurrentRuns": 1}))
    world.tenant("first")
    world.tenant("second")
    a = world.upload("first")
    world.clock.advance(1)
    b = world.upload("second")
    world.service.dispatch()
    assert a.run and b.run
    assert world.run(b.run).status == RunStatus.QUEUED
    assert world.service.get_run("second", b.run.run_id).queue_position == 1  # type: ignore[union-attr]
    world.finish(a.run)
    world.service.dispatch()  # the handler dispatches after every batch
    assert world.run(b.run).status == RunStatus.RUNNING
    assert world.metrics.values("DispatchDelay")[-1] == pytest.approx(600)


def test_a_throttled_start_is_retried_with_backoff_and_keeps_its_slot(world: World) -> None:
    world.tenant("acme")
    result = world.upload("acme")
    world.pipeline.throttle_next = 1
    world.service.dispatch()
    assert result.run
    starting = world.run(result.run)
    assert starting.status == RunStatus.STARTING and starting.start_attempts == 1
    assert starting.failure_reason is None  # not a failure (yet)
    assert starting.waiting_for is not None
    assert starting.waiting_for.code == WaitingCode.START_RETRY
    assert "retrying" in starting.waiting_for.message
    assert world.runs.counters().global_running == 1
    assert world.metrics.values("StartsThrottled") == [1]
    world.service.dispatch()  # not due yet
    assert world.run(result.run).status == RunStatus.STARTING
    world.clock.advance(5)
    world.service.dispatch()
    running = world.run(result.run)
    assert running.status == RunStatus.RUNNING and running.failure_reason is None
    assert running.waiting_for is None
    assert len(world.pipeline.executions) == 1


def test_a_run_that_cannot_start_fails_after_max_attempts_and_releases_its_slot() -> None:
    world = World(resolve_settings({"maxStartAttempts": 3}))
    world.tenant("acme")
    result = world.upload("acme")
    world.pipeline.throttle_next = 10
    for _ in range(5):
        world.service.dispatch()
        world.clock.advance(120)
    assert result.run
    failed = world.run(result.run)
    assert failed.status == RunStatus.FAILED
    assert "after 3 attempt(s)" in (failed.failure_reason or "")
    assert world.runs.counters().global_running == 0
    assert world.pipeline.start_calls == 3


def test_a_non_retryable_start_error_fails_the_run_at_once(world: World) -> None:
    world.tenant("acme")
    result = world.upload("acme")
    world.pipeline.fail_next = 1
    world.service.dispatch()
    assert result.run
    failed = world.run(result.run)
    assert failed.status == RunStatus.FAILED and "ValidationException" in (
        failed.failure_reason or ""
    )
    assert world.runs.counters().global_running == 0


def test_a_start_lost_in_a_crash_is_restarted_with_the_same_token(world: World) -> None:
    world.tenant("acme")
    result = world.upload("acme")
    assert result.run
    # Simulate a scheduler that admitted the run and crashed before starting it.
    world.service._admit(world.run(result.run), world.clock.now())
    world.service.dispatch()
    assert world.run(result.run).status == RunStatus.STARTING  # not yet considered stuck
    world.clock.advance(world.settings.starting_timeout_seconds + 1)
    world.service.reconcile()
    run = world.run(result.run)
    assert run.status == RunStatus.RUNNING
    assert world.pipeline.execution_for_run(run.run_id) is not None
    assert len(world.pipeline.executions) == 1


# --- status events ---------------------------------------------------------


def test_success_records_duration_cost_and_usage(world: World) -> None:
    world.tenant("acme", plan="standard")  # ml.m5.xlarge at $0.23/h
    result = world.upload("acme")
    world.service.dispatch()
    assert result.run
    done = world.finish(result.run, after=1800)
    assert done and done.status == RunStatus.SUCCEEDED
    assert done.ended_at == "2026-03-10T12:30:00.000Z"
    assert done.training_seconds == 1800
    assert done.cost_estimate_usd == pytest.approx(0.115)
    usage = world.service.usage("acme", "2026-03")
    assert usage["runs"] == 1 and usage["trainingHours"] == 0.5 and usage["budgetHours"] == 50
    assert world.runs.counters().global_running == 0


def test_duplicate_and_out_of_order_status_events_are_harmless(world: World) -> None:
    world.tenant("acme")
    result = world.upload("acme")
    world.service.dispatch()
    assert result.run
    done = world.finish(result.run)
    assert done
    arn = done.execution_arn
    assert arn
    world.service.handle_status(arn, "Succeeded")
    world.service.handle_status(arn, "Executing")
    world.service.handle_status(arn, "Failed", failure_reason="late")
    final = world.run(result.run)
    assert final.status == RunStatus.SUCCEEDED and final.failure_reason is None
    assert world.service.usage("acme", "2026-03")["runs"] == 1
    assert world.runs.counters().global_running == 0


def test_a_failure_without_a_reason_in_the_event_is_described(world: World) -> None:
    run, arn = world.started("acme")
    world.pipeline.set_status(arn, "Failed", "Step Train failed: AlgorithmError")
    world.service.handle_status(arn, "Failed")
    failed = world.run(run)
    assert failed.status == RunStatus.FAILED
    assert failed.failure_reason == "Step Train failed: AlgorithmError"
    assert world.metrics.values("RunsFailed") == [1]


def test_a_status_event_that_outruns_the_start_record_is_matched_by_display_name(
    world: World,
) -> None:
    world.tenant("acme")
    result = world.upload("acme")
    assert result.run
    world.service._admit(world.run(result.run), world.clock.now())
    starting = world.run(result.run)
    done = world.service.handle_status(
        "arn:aws:sagemaker:us-east-1:1:pipeline/p/execution/abc",
        "Succeeded",
        display_name=starting.display_name,
    )
    assert done and done.status == RunStatus.SUCCEEDED
    assert done.execution_arn == "arn:aws:sagemaker:us-east-1:1:pipeline/p/execution/abc"


def test_an_event_for_another_execution_of_a_finished_run_changes_nothing(world: World) -> None:
    world.tenant("acme")
    result = world.upload("acme")
    world.service.dispatch()
    assert result.run
    done = world.finish(result.run)
    assert done and done.status == RunStatus.SUCCEEDED
    other = "arn:aws:sagemaker:us-east-1:1:pipeline/p/execution/duplicate"
    world.service.handle_status(other, "Failed", display_name=done.display_name)
    assert world.run(result.run) == done


def test_an_unmatched_status_event_is_retried_unless_it_is_not_ours(world: World) -> None:
    with pytest.raises(RunNotFoundYetError):
        world.service.handle_status("arn:x", "Succeeded", display_name="acme-0123456789ab")
    assert world.service.handle_status("arn:y", "Succeeded", display_name="Console_Run_1") is None


def _fill_basic(world: World) -> None:
    for i in range(world.settings.plans["basic"].max_concurrent_runs):
        world.tenant(f"busy{i}")
        world.upload(f"busy{i}")
    world.service.dispatch()


def test_an_upgrade_moves_the_waiting_run_to_the_new_plan_and_it_starts_there(
    world: World,
) -> None:
    _fill_basic(world)  # basic is full: acme's run waits
    tenant = world.tenant("acme")
    result = world.upload("acme")
    world.service.dispatch()
    assert result.run and world.run(result.run).status == RunStatus.QUEUED
    world.tenants.save(tenant.model_copy(update={"plan": "premium"}))
    moved = world.service.follow_plan_change("acme")
    assert moved is not None and moved.plan == "premium"
    world.service.dispatch()
    run = world.run(result.run)
    assert run.status == RunStatus.RUNNING and run.plan == "premium"
    execution = world.pipeline.execution_for_run(run.run_id)
    assert execution is not None
    premium = world.settings.plans["premium"]
    assert execution.parameters["TrainingInstanceType"] == premium.training_instance_type
    assert world.service.follow_plan_change("acme") is None  # nothing left to move


def test_a_waiting_run_follows_a_plan_change_even_if_the_move_was_missed(world: World) -> None:
    _fill_basic(world)
    tenant = world.tenant("acme")
    result = world.upload("acme")
    world.tenants.save(tenant.model_copy(update={"plan": "standard"}))  # API crashed before
    world.service.dispatch()
    run = world.run(result.run)
    assert run.plan == "standard" and run.status == RunStatus.RUNNING


# --- reconcile -------------------------------------------------------------


def test_reconcile_recovers_a_lost_completion_event(world: World) -> None:
    run, arn = world.started("acme")
    started = world.clock.now()
    world.clock.advance(20)
    ended = world.clock.now()
    world.pipeline.set_status(arn, "Succeeded", ended_at=ended)  # ...and the event never arrives
    world.clock.advance(30)
    world.service.reconcile()
    assert world.run(run).status == RunStatus.RUNNING  # too fresh: the event may come
    world.clock.advance(60)
    report = world.service.reconcile()
    assert report.finished == [run.run_id]
    done = world.run(run)
    assert done.status == RunStatus.SUCCEEDED
    # Duration and cost end when the execution ended, not when reconcile noticed.
    assert done.training_seconds == pytest.approx((ended - started).total_seconds(), abs=1)
    assert done.ended_at is not None and done.ended_at.startswith(ended.strftime("%Y-%m-%dT%H:%M"))


def test_reconcile_trusts_describe_over_a_stale_listing_that_says_finished(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The listing (eventually consistent, no end time) says Succeeded; Describe,
    # asked for the end time, says the execution is still running: the run goes on.
    run, _ = world.started("acme")
    world.clock.advance(120)
    listing = world.pipeline.list_statuses

    def stale(since: datetime) -> dict[str, ExecutionInfo]:
        return {a: dataclasses.replace(i, status="Succeeded") for a, i in listing(since).items()}

    monkeypatch.setattr(world.pipeline, "list_statuses", stale)
    report = world.service.reconcile()
    assert report.finished == []
    assert world.run(run).status == RunStatus.RUNNING
    assert world.pipeline.describe_calls == 1


def test_reconcile_checks_many_runs_with_one_listing_not_one_describe_each() -> None:
    world = World()
    tenants = [f"t{i:02d}" for i in range(12)]
    for tenant_id in tenants:
        world.tenant(tenant_id, "premium")
        world.upload(tenant_id)
    world.service.dispatch()
    running = [r for r in world.runs.all_runs() if r.status == RunStatus.RUNNING]
    assert len(running) == 12
    for run in running[:5]:  # five completion events are lost
        assert run.execution_arn
        world.pipeline.set_status(run.execution_arn, "Succeeded")
    world.clock.advance(120)
    describes_before = world.pipeline.describe_calls
    report = world.service.reconcile()
    assert sorted(report.finished) == sorted(r.run_id for r in running[:5])
    assert world.pipeline.list_calls == 1
    # Only the five that ended are described (for their end time), not all twelve.
    assert world.pipeline.describe_calls == describes_before + 5


def test_a_run_executing_past_the_stuck_limit_is_reported_with_a_reason(world: World) -> None:
    world.tenant("acme")
    result = world.upload("acme")
    world.service.dispatch()
    assert result.run
    world.clock.advance(3600)
    assert world.service.reconcile().stuck == {}
    assert world.metrics.values("RunsStuck")[-3:] == [0, 0, 0]  # one per plan, zeros too
    world.clock.advance(world.settings.stuck_run_hours * 3600)
    report = world.service.reconcile()
    run = world.run(result.run)
    assert run.status == RunStatus.RUNNING  # still holds its slot: only an operator decides
    assert run.failure_reason == report.stuck[run.run_id]
    assert "stuck_run_hours" in (run.failure_reason or "")
    stuck = [(v, d) for n, v, _, d in world.metrics.points if n == "RunsStuck"][-3:]
    assert (1, {"plan": "basic"}) in stuck
    world.pipeline.set_status(run.execution_arn or "", "Succeeded")
    world.service.handle_status(run.execution_arn or "", "Succeeded", display_name=run.display_name)
    done = world.run(result.run)
    assert done.status == RunStatus.SUCCEEDED and done.failure_reason is None


def test_a_run_whose_execution_sagemaker_does_not_know_is_reported_stuck(world: World) -> None:
    run, arn = world.started("acme")
    del world.pipeline.executions[arn]  # e.g. deleted by hand in another tool
    world.clock.advance(120)
    report = world.service.reconcile()
    run = world.run(run)
    assert run.status == RunStatus.RUNNING
    assert "unknown to SageMaker" in (report.stuck[run.run_id])
    assert run.failure_reason == report.stuck[run.run_id]


def test_reconcile_heals_a_counter_that_drifted(world: World) -> None:
    world.runs.set_counter("global", 5, expected=None)
    world.runs.set_counter("tenant#ghost", -1, expected=None)
    world.service.reconcile()
    counters = world.runs.counters()
    assert counters.tenants["ghost"] == 0  # raised at once
    assert counters.global_running == 5  # lowered only when seen twice
    world.service.reconcile()
    assert world.runs.counters().global_running == 0


# --- reads -----------------------------------------------------------------


def test_queue_overview_lists_backlog_per_plan_in_dispatch_order() -> None:
    world = World(resolve_settings({"plans": {"basic": {"maxConcurrentRuns": 1}}}))
    for name in ("a", "b", "c"):
        world.tenant(f"tenant-{name}")
        world.upload(f"tenant-{name}")
        world.clock.advance(1)
    world.service.dispatch()
    basic = world.service.queue_overview()["basic"]
    assert basic["queued"] == 2 and basic["running"] == 1 and basic["cap"] == 1
    assert [(r["tenantId"], r["queuePosition"]) for r in basic["runs"]] == [
        ("tenant-b", 1),
        ("tenant-c", 2),
    ]


def test_runs_are_listed_newest_first_with_paging(world: World) -> None:
    world.tenant("acme")
    ids = []
    for i in range(3):
        result = world.upload("acme", f"{i}.csv")
        world.service.dispatch()
        assert result.run
        ids.append(result.run.run_id)
        world.finish(result.run, after=60)
    page, token = world.service.list_runs("acme", limit=2)
    assert [r.run_id for r in page] == ids[::-1][:2] and token
    rest, token = world.service.list_runs("acme", limit=2, next_token=token)
    assert [r.run_id for r in rest] == ids[:1] and token is None


def test_dispatch_reads_only_the_head_of_a_long_queue() -> None:
    world = World()
    reads: list[int | None] = []
    original = world.runs.queued_runs

    def counting(plan: str, limit: int | None = None):  # type: ignore[no-untyped-def]
        reads.append(limit)
        return original(plan, limit)

    world.runs.queued_runs = counting  # type: ignore[method-assign]
    for i in range(600):
        world.tenant(f"t{i:03d}", "basic")
        world.upload(f"t{i:03d}")
    reads.clear()
    report = world.service.dispatch()
    assert len(report.started) == world.settings.plans["basic"].max_concurrent_runs
    assert reads and all(limit is not None and limit <= 100 for limit in reads)


def test_tenants_behind_a_head_of_waiting_runs_are_not_starved() -> None:
    world = World()
    for i in range(120):  # a long head of suspended tenants' runs...
        world.tenant(f"s{i:03d}", "basic", TenantStatus.SUSPENDED)
        world.upload(f"s{i:03d}")
    world.clock.advance(1)
    world.tenant("late", "basic")  # ...and one active tenant behind them
    result = world.upload("late")
    world.service.dispatch()
    assert result.run is not None
    assert world.run(result.run).status == RunStatus.RUNNING
