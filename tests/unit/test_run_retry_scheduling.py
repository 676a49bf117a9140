"""Retrying a FAILED run, on in-memory stores, a fake SageMaker and a virtual clock."""

from __future__ import annotations

from datetime import timedelta

import pytest
from trainyard_core.config import Settings
from trainyard_core.errors import DomainError
from trainyard_core.models import RetryMode, RunStatus

from .test_scheduling_service import World


def _failed_run(world: World, tenant: str = "acme"):
    run, arn = world.started(tenant)
    world.finish(run, "Failed", failure_reason="AlgorithmError: boom")
    failed = world.run(run)
    assert failed.status == RunStatus.FAILED
    return failed, arn


def test_a_retried_run_resumes_its_failed_execution_under_the_caps() -> None:
    world = World()
    failed, arn = _failed_run(world)
    world.clock.advance(60)
    queued = world.service.retry_run("acme", failed.run_id, "try again", "arn:aws:iam::1:user/o")
    assert queued.status == RunStatus.QUEUED and queued.retries[0].requested_by.endswith("/o")

    world.service.dispatch()

    running = world.run(failed)
    assert running.status == RunStatus.RUNNING and running.execution_arn == arn
    assert running.retries[0].mode == RetryMode.RESUMED
    assert world.pipeline.retry_calls == 1 and world.pipeline.start_calls == 1
    assert world.runs.counters().global_running == 1  # it holds a slot like any run
    done = world.finish(running, "Succeeded", after=300)
    assert done is not None and done.status == RunStatus.SUCCEEDED
    assert done.training_seconds == pytest.approx(600 + 300, abs=1)
    assert world.runs.usage("acme", world.clock.now().strftime("%Y-%m"))["runs"] == 1


def test_a_late_failed_event_from_before_the_retry_does_not_end_the_retried_run() -> None:
    world = World()
    failed, arn = _failed_run(world)
    failed_at = world.clock.now()
    world.clock.advance(60)
    world.service.retry_run("acme", failed.run_id, None)
    world.service.dispatch()
    # EventBridge delivers the first execution's Failed event again, late.
    world.service.handle_status(
        arn, "Failed", failure_reason="AlgorithmError: boom", event_time=failed_at
    )
    assert world.run(failed).status == RunStatus.RUNNING
    world.service.handle_status(arn, "Succeeded", event_time=world.clock.now() + timedelta(1))
    assert world.run(failed).status == RunStatus.SUCCEEDED


def test_an_execution_sagemaker_will_not_retry_is_restarted_as_a_new_one() -> None:
    world = World()
    failed, arn = _failed_run(world)
    world.pipeline.executions[arn].status = "Succeeded"  # e.g. not retryable any more
    world.service.retry_run("acme", failed.run_id, None)
    world.service.dispatch()
    running = world.run(failed)
    assert running.status == RunStatus.RUNNING and running.execution_arn != arn
    retry = running.retries[0]
    assert retry.mode == RetryMode.RESTARTED and "ValidationException" in retry.fallback_reason
    assert world.pipeline.executions[running.execution_arn].token.endswith("-restart-1")


def test_only_a_failed_run_is_retried_and_only_so_often() -> None:
    world = World(Settings(max_run_retries=1))
    failed, _ = _failed_run(world)
    with pytest.raises(DomainError) as missing:
        world.service.retry_run("acme", "0" * 32, None)
    assert missing.value.status == 404
    world.service.retry_run("acme", failed.run_id, None)
    with pytest.raises(DomainError) as queued:
        world.service.retry_run("acme", failed.run_id, None)
    assert (queued.value.status, queued.value.code) == (409, "RunNotRetryable")
    world.service.dispatch()
    world.finish(world.run(failed), "Failed", failure_reason="again")
    with pytest.raises(DomainError) as limit:
        world.service.retry_run("acme", failed.run_id, None)
    assert (limit.value.status, limit.value.code) == (409, "RetryLimitReached")


def test_a_run_retried_after_a_plan_change_queues_in_the_new_plan_and_restarts() -> None:
    world = World()
    failed, arn = _failed_run(world)
    tenant = world.tenants.get("acme")
    assert tenant is not None
    world.tenants.save(tenant.model_copy(update={"plan": "standard"}))
    queued = world.service.retry_run("acme", failed.run_id, None)
    assert queued.plan == "standard" and queued.metrics == {} and queued.model_package_arn is None
    world.service.dispatch()
    running = world.run(failed)
    assert running.status == RunStatus.RUNNING and running.execution_arn != arn
    retry = running.retries[0]
    assert retry.mode == RetryMode.RESTARTED and "plan changed" in retry.fallback_reason
    assert world.pipeline.retry_calls == 0
