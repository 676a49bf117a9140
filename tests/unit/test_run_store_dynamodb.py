"""The run/state repository: DynamoDB (moto) and in-memory behave the same."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from trainyard_core.config import Settings
from trainyard_core.models import (
    RetryMode,
    Run,
    RunRetry,
    RunStatus,
    Trigger,
    TriggerObject,
    WaitingCode,
    WaitingFor,
    new_run_id,
)
from trainyard_core.ports.runs import (
    AdmitOutcome,
    Caps,
    DuplicateUploadError,
    QueuedRunExistsError,
    RetryQueuedError,
    RunNotFoundError,
    RunNotQueuedError,
    RunNotRetryableError,
    dedupe_key,
    tenant_counter,
)
from trainyard_core.store.run_items import DURATION_SAMPLES, item_to_run, run_to_item
from trainyard_core.store.runs_dynamodb import DynamoRunRepository
from trainyard_core.store.runs_memory import InMemoryRunRepository
from trainyard_core.wiring import Names

from trainyard.local.bootstrap import create_tables

NOW = "2026-03-10T12:00:00.000Z"
TTL = 1_900_000_000
CAPS = Caps(global_cap=2, plan_cap=2, tenant_cap=1)


@pytest.fixture(params=["dynamodb", "memory"])
def store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    if request.param == "memory":
        yield InMemoryRunRepository()
        return
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        names = Names.from_settings(Settings())
        create_tables(client, names)
        yield DynamoRunRepository(names.runs_table, names.state_table, client=client)


def queued_run(tenant: str = "acme", plan: str = "basic", key: str = "data/a.csv") -> Run:
    return Run(
        run_id=new_run_id(),
        tenant_id=tenant,
        plan=plan,
        status=RunStatus.QUEUED,
        trigger=Trigger(type="s3", objects=[TriggerObject(key=key, etag="e", size=3)]),
        queued_at=NOW,
    )


def enqueue(store: Any, run: Run) -> Run:
    store.create_queued_run(
        run, dedupe_key(run.tenant_id, run.trigger.objects[0].key, "e", None), TTL
    )
    return run


def admit(store: Any, run: Run, caps: Caps = CAPS) -> AdmitOutcome:
    return store.admit(run, caps, NOW, "2026-03-10T12:02:00.000Z")


def test_a_queued_run_is_stored_indexed_and_pointed_at(store: Any) -> None:
    run = enqueue(store, queued_run())
    assert store.get_run("acme", run.run_id) == run
    assert [r.run_id for r in store.queued_runs("basic")] == [run.run_id]
    assert store.queued_run_id("acme") == run.run_id


def test_a_second_queued_run_for_the_same_tenant_is_refused(store: Any) -> None:
    enqueue(store, queued_run())
    with pytest.raises(QueuedRunExistsError):
        enqueue(store, queued_run(key="data/b.csv"))


def test_the_same_object_version_is_accepted_only_once(store: Any) -> None:
    run = enqueue(store, queued_run())
    obj = TriggerObject(key="data/a.csv", etag="e", size=3)
    with pytest.raises(DuplicateUploadError):
        store.add_to_queued_run(
            "acme", run.run_id, obj, dedupe_key("acme", "data/a.csv", "e", None), TTL, NOW
        )
    stored = store.get_run("acme", run.run_id)
    assert len(stored.trigger.objects) == 1


def test_uploads_join_the_queued_run_but_not_one_that_started(store: Any) -> None:
    run = enqueue(store, queued_run())
    second = TriggerObject(key="data/b.csv", etag="f", size=4, version_id="v2")
    store.add_to_queued_run(
        "acme", run.run_id, second, dedupe_key("b", "data/b.csv", "f", "v2"), TTL, NOW
    )
    assert [o.key for o in store.get_run("acme", run.run_id).trigger.objects] == [
        "data/a.csv",
        "data/b.csv",
    ]
    assert admit(store, run) == AdmitOutcome.ADMITTED
    assert store.queued_run_id("acme") is None
    third = TriggerObject(key="data/c.csv", etag="g", size=5)
    with pytest.raises(RunNotQueuedError):
        store.add_to_queued_run(
            "acme", run.run_id, third, dedupe_key("b", "data/c.csv", "g", None), TTL, NOW
        )
    # A refused join leaves no dedupe marker behind: the retry can create a new run.
    fresh = queued_run(key="data/c.csv")
    store.create_queued_run(fresh, dedupe_key("b", "data/c.csv", "g", None), TTL)
    assert store.queued_run_id("acme") == fresh.run_id


def test_a_stale_pointer_can_be_taken_over_but_a_live_one_cannot(store: Any) -> None:
    live = enqueue(store, queued_run())
    with pytest.raises(QueuedRunExistsError):
        store.create_queued_run(queued_run(key="data/x.csv"), None, TTL, replace_pointer="other")
    store.create_queued_run(queued_run(key="data/y.csv"), None, TTL, replace_pointer=live.run_id)


def test_admission_moves_the_run_to_starting_and_counts_the_slot(store: Any) -> None:
    run = enqueue(store, queued_run())
    assert admit(store, run) == AdmitOutcome.ADMITTED
    admitted = store.get_run("acme", run.run_id)
    assert admitted.status == RunStatus.STARTING
    assert store.queued_runs("basic") == []
    assert [r.run_id for r in store.active_runs("basic")] == [run.run_id]
    counters = store.counters()
    assert (counters.global_running, counters.plans["basic"], counters.tenants["acme"]) == (1, 1, 1)


def test_admission_stamps_when_the_tenant_was_last_served_and_healing_keeps_it(
    store: Any,
) -> None:
    run = enqueue(store, queued_run())
    assert store.counters().last_admitted == {}
    assert admit(store, run) == AdmitOutcome.ADMITTED
    assert store.counters().last_admitted == {"acme": NOW}
    # Reconcile heals the running count without forgetting the fair-order stamp.
    assert store.set_counter(tenant_counter("acme"), 0, expected=1)
    assert store.counters().last_admitted == {"acme": NOW}
    assert store.counters().tenants["acme"] == 0


def test_counters_for_some_tenants_read_the_slots_and_only_those_tenants(store: Any) -> None:
    caps = Caps(global_cap=5, plan_cap=5, tenant_cap=1)
    for tenant in ("t1", "t2", "t3"):
        assert admit(store, enqueue(store, queued_run(tenant)), caps) == AdmitOutcome.ADMITTED
    some = store.counters({"t1", "t3", "never-ran"})
    assert (some.global_running, some.plans) == (3, {"basic": 3})
    assert some.tenants == {"t1": 1, "t3": 1}
    assert set(some.last_admitted) == {"t1", "t3"}
    slots_only = store.counters(())
    assert (slots_only.global_running, slots_only.plans, slots_only.tenants) == (
        3,
        {"basic": 3},
        {},
    )
    assert set(store.counters().tenants) == {"t1", "t2", "t3"}


def test_admission_refuses_to_exceed_any_cap_and_leaves_the_run_queued(store: Any) -> None:
    first = enqueue(store, queued_run("t1"))
    second = enqueue(store, queued_run("t2"))
    third = enqueue(store, queued_run("t3"))
    tight = Caps(global_cap=2, plan_cap=1, tenant_cap=1)
    assert admit(store, first, tight) == AdmitOutcome.ADMITTED
    assert admit(store, second, tight) == AdmitOutcome.CAP_REACHED  # plan cap
    assert store.get_run("t2", second.run_id).status == RunStatus.QUEUED
    assert store.queued_run_id("t2") == second.run_id
    assert admit(store, second, Caps(2, 5, 1)) == AdmitOutcome.ADMITTED
    assert admit(store, third, Caps(2, 5, 1)) == AdmitOutcome.CAP_REACHED  # global cap
    assert store.counters().global_running == 2


def test_a_run_is_admitted_only_once(store: Any) -> None:
    run = enqueue(store, queued_run())
    assert admit(store, run) == AdmitOutcome.ADMITTED
    assert admit(store, run, Caps(10, 10, 10)) == AdmitOutcome.NOT_QUEUED
    assert store.counters().global_running == 1


def test_starting_then_finishing_releases_the_slot_and_adds_usage_once(store: Any) -> None:
    run = enqueue(store, queued_run())
    admit(store, run)
    arn = "arn:aws:sagemaker:us-east-1:1:pipeline/p/execution/x1"
    assert store.mark_started(run, arn, NOW, "ml.m5.large", 1)
    assert store.find_by_execution(arn).status == RunStatus.RUNNING
    kwargs = dict(
        ended_at="2026-03-10T13:00:00.000Z",
        month="2026-03",
        training_seconds=3600.0,
        cost_usd=0.115,
        failure_reason=None,
    )
    assert store.finish(run, RunStatus.SUCCEEDED, **kwargs)
    assert not store.finish(run, RunStatus.FAILED, **kwargs)  # duplicate / late event
    assert not store.mark_running(run, arn, NOW)  # never resurrected
    done = store.get_run("acme", run.run_id)
    assert done.status == RunStatus.SUCCEEDED and done.cost_estimate_usd == pytest.approx(0.115)
    assert store.active_runs("basic") == []
    assert store.counters().global_running == 0
    assert store.usage("acme", "2026-03") == {
        "runs": 1,
        "trainingSeconds": 3600.0,
        "costEstimateUsd": pytest.approx(0.115),
    }


def test_a_queued_run_moves_to_another_plans_queue_keeping_its_place(store: Any) -> None:
    early = enqueue(store, queued_run(tenant="acme", plan="basic"))
    later = queued_run(tenant="zeta", plan="premium").model_copy(
        update={"queued_at": "2026-03-10T12:00:30.000Z"}
    )
    late = enqueue(store, later)
    assert store.move_queued_run(early, "premium")
    assert store.queued_runs("basic") == []
    assert [r.run_id for r in store.queued_runs("premium")] == [early.run_id, late.run_id]
    assert store.get_run("acme", early.run_id).plan == "premium"
    admit(store, late, Caps(global_cap=20, plan_cap=12, tenant_cap=4))
    assert not store.move_queued_run(late, "basic")  # started: it stays where it runs
    assert store.get_run("zeta", late.run_id).plan == "premium"


def test_a_stuck_note_shows_on_an_active_run_but_never_on_an_ended_one(store: Any) -> None:
    run = enqueue(store, queued_run())
    store.set_stuck_reason(run, "stuck")  # QUEUED: not ours to note
    assert store.get_run("acme", run.run_id).failure_reason is None
    admit(store, run)
    arn = "arn:aws:sagemaker:us-east-1:1:pipeline/p/execution/x1"
    assert store.mark_started(run, arn, NOW, "ml.m5.large", 1)
    store.set_stuck_reason(run, "executing too long")
    current = store.get_run("acme", run.run_id)
    assert current.status == RunStatus.RUNNING
    assert current.failure_reason == "executing too long"
    assert store.finish(
        current,
        RunStatus.SUCCEEDED,
        ended_at="2026-03-10T13:00:00.000Z",
        month="2026-03",
        training_seconds=1.0,
        cost_usd=0.0,
        failure_reason=None,
    )
    store.set_stuck_reason(run, "late note")
    assert store.get_run("acme", run.run_id).failure_reason is None


def test_a_failed_start_attempt_keeps_the_run_starting_until_due(store: Any) -> None:
    run = enqueue(store, queued_run())
    admit(store, run)
    assert store.due_starts("basic", "2026-03-10T12:01:00.000Z") == []
    retry = WaitingFor(code=WaitingCode.START_RETRY, message="throttled")
    assert store.record_start_failure(run, 1, "2026-03-10T12:00:05.000Z", retry, NOW)
    [due] = store.due_starts("basic", "2026-03-10T12:00:05.000Z")
    assert due.start_attempts == 1 and due.waiting_for == retry and due.failure_reason is None


def test_results_are_recorded_idempotently_and_unknown_runs_raise(store: Any) -> None:
    run = enqueue(store, queued_run())
    for _ in range(2):
        stored = store.record_results("acme", run.run_id, {"auc": 0.8125}, "arn:pkg/1", NOW)
    assert stored.metrics == {"auc": 0.8125} and stored.model_package_arn == "arn:pkg/1"
    assert store.get_run("acme", run.run_id).metrics == {"auc": 0.8125}
    with pytest.raises(RunNotFoundError):
        store.record_results("acme", "0" * 32, {"auc": 0.5}, None, NOW)


def test_runs_list_newest_first_across_pages(store: Any) -> None:
    ids = []
    for i in range(5):
        run = queued_run(key=f"data/{i}.csv").model_copy(update={"run_id": f"{i:032x}"})
        store.create_queued_run(run, None, TTL, replace_pointer=ids[-1] if ids else None)
        ids.append(run.run_id)
    seen, token = [], None
    while True:
        page, token = store.list_runs("acme", limit=2, next_token=token)
        seen += [r.run_id for r in page]
        if not token:
            break
    assert seen == ids[::-1]


def test_counters_can_be_healed_only_from_the_value_observed(store: Any) -> None:
    assert store.set_counter("global", 3, expected=None)
    assert not store.set_counter("global", 0, expected=2)
    assert store.set_counter("global", 0, expected=3)
    assert store.counters().global_running == 0


def test_usage_of_many_tenants_is_read_in_one_batch_with_zeros_for_the_unrecorded(
    store: Any,
) -> None:
    for tenant in ("a", "b"):
        run = enqueue(store, queued_run(tenant))
        admit(store, run, Caps(5, 5, 1))
        store.finish(
            store.get_run(tenant, run.run_id),
            RunStatus.SUCCEEDED,
            ended_at=NOW,
            month="2026-03",
            training_seconds=60.0,
            cost_usd=0.5,
            failure_reason=None,
        )
    # 150 ids: more than one BatchGetItem's 100 keys.
    ids = ["a", "b", *(f"idle-{i:03d}" for i in range(148))]
    usage = store.usage_many(ids, "2026-03")
    assert set(usage) == set(ids)
    assert usage["a"] == store.usage("a", "2026-03") == usage["b"]
    assert usage["a"]["trainingSeconds"] == 60.0
    assert usage["idle-007"] == {"runs": 0, "trainingSeconds": 0.0, "costEstimateUsd": 0.0}
    assert store.usage_many([], "2026-03") == {}


def test_tenant_counters_are_read_a_slice_at_a_time_in_id_order(store: Any) -> None:
    for i in range(7):
        store.set_counter(tenant_counter(f"t{i}"), i, None)
    store.set_counter("global", 9, None)
    store.set_counter("plan#basic", 9, None)
    first, cursor = store.tenant_counters(None, 3)
    assert first == {"t0": 0, "t1": 1, "t2": 2} and cursor == "t2"
    second, cursor = store.tenant_counters(cursor, 3)
    assert second == {"t3": 3, "t4": 4, "t5": 5} and cursor == "t5"
    last, cursor = store.tenant_counters(cursor, 3)
    assert last == {"t6": 6} and cursor is None


def test_the_heal_cursor_is_kept_until_cleared(store: Any) -> None:
    assert store.heal_cursor() is None
    store.set_heal_cursor("t5")
    assert store.heal_cursor() == "t5"
    store.set_heal_cursor(None)
    assert store.heal_cursor() is None


def test_a_waiting_reason_is_stored_apart_from_failures_and_cleared_on_admission(
    store: Any,
) -> None:
    run = enqueue(store, queued_run())
    reason = WaitingFor(code=WaitingCode.SUSPENDED, message="tenant is SUSPENDED")
    store.set_waiting_reason(run, reason)
    stored = store.get_run("acme", run.run_id)
    assert stored.waiting_for == reason and stored.failure_reason is None
    assert store.queued_runs("basic")[0].waiting_for == reason  # what dispatch compares
    store.set_waiting_reason(run, None)
    assert store.get_run("acme", run.run_id).waiting_for is None
    store.set_waiting_reason(run, reason)
    admit(store, run)
    assert store.get_run("acme", run.run_id).waiting_for is None
    store.set_waiting_reason(run, reason)  # no longer QUEUED: not written
    assert store.get_run("acme", run.run_id).waiting_for is None


def test_ended_runs_leave_a_bounded_duration_sample_per_plan(store: Any) -> None:
    assert store.duration_samples(["basic", "premium"]) == {"basic": [], "premium": []}
    for seconds in range(100, 100 + 3 * DURATION_SAMPLES):
        run = enqueue(store, queued_run(key=f"data/{seconds}.csv"))
        admit(store, run, Caps(100, 100, 100))
        assert store.finish(
            run,
            RunStatus.SUCCEEDED,
            ended_at="2026-03-10T13:00:00.000Z",
            month="2026-03",
            training_seconds=float(seconds),
            cost_usd=0.0,
            failure_reason=None,
            duration_sample=float(seconds),
        )
    samples = store.duration_samples(["basic", "premium"])
    assert samples["premium"] == []
    assert 0 < len(samples["basic"]) <= DURATION_SAMPLES
    assert set(samples["basic"]) <= set(map(float, range(100, 100 + 3 * DURATION_SAMPLES)))


def test_a_waiting_reason_written_before_waiting_for_existed_is_not_a_failure() -> None:
    item = run_to_item(queued_run())
    item["failureReason"] = "Waiting: tenant is SUSPENDED; the run starts when it is reactivated"
    assert item_to_run(item).failure_reason is None


def _failed(store: Any, key: str = "data/a.csv") -> Run:
    run = enqueue(store, queued_run(key=key))
    admit(store, run)
    arn = f"arn:aws:sagemaker:us-east-1:1:pipeline/p/execution/{run.run_id[-8:]}"
    assert store.mark_started(run, arn, NOW, "ml.m5.large", 1)
    kwargs = dict(month="2026-03", training_seconds=600.0, cost_usd=0.02)
    assert store.finish(
        run, RunStatus.FAILED, ended_at="2026-03-10T12:10:00.000Z", failure_reason="boom", **kwargs
    )
    return store.get_run("acme", run.run_id)


def test_a_failed_run_requeued_for_retry_keeps_its_usage_and_records_the_failure(
    store: Any,
) -> None:
    failed = _failed(store)
    later = "2026-03-10T12:20:00.000Z"
    retry = RunRetry(
        attempt=1,
        requested_at=later,
        previous_failure_reason=failed.failure_reason,
        previous_execution_arn=failed.execution_arn,
        previous_ended_at=failed.ended_at,
    )
    store.requeue_for_retry(failed, retry, later, "basic")
    queued = store.get_run("acme", failed.run_id)
    assert queued.status == RunStatus.QUEUED and queued.queued_at == later
    assert queued.failure_reason is None and queued.execution_arn is None
    assert queued.ended_at is None and queued.started_at is None
    assert queued.retries == [retry]
    assert [r.run_id for r in store.queued_runs("basic")] == [failed.run_id]
    # It holds no slot and is not the tenant's upload run (uploads queue their own).
    assert store.counters().global_running == 0 and store.queued_run_id("acme") is None
    # The same retry twice, or a second retried run of the tenant while this one waits.
    with pytest.raises(RunNotRetryableError):
        store.requeue_for_retry(failed, retry, later, "basic")
    other = _failed(store, "data/b.csv")
    with pytest.raises(RetryQueuedError):
        store.requeue_for_retry(other, retry.model_copy(update={"attempt": 1}), later, "basic")

    # Started again (the retry recorded as resumed), then ended: usage adds the
    # execution's time, the month still counts one run, the run shows its total.
    assert admit(store, queued) == AdmitOutcome.ADMITTED
    started = store.get_run("acme", failed.run_id)
    resumed = retry.model_copy(
        update={"mode": RetryMode.RESUMED, "execution_arn": failed.execution_arn}
    )
    assert store.mark_started(started, failed.execution_arn, later, "ml.m5.large", 1, retry=resumed)
    running = store.get_run("acme", failed.run_id)
    assert running.retries == [resumed] and running.status == RunStatus.RUNNING
    assert store.finish(
        running,
        RunStatus.SUCCEEDED,
        ended_at="2026-03-10T12:30:00.000Z",
        month="2026-03",
        training_seconds=300.0,
        cost_usd=0.01,
        failure_reason=None,
        totals=(900.0, 0.03),
    )
    done = store.get_run("acme", failed.run_id)
    assert done.training_seconds == 900.0 and done.cost_estimate_usd == pytest.approx(0.03)
    usage = store.usage("acme", "2026-03")
    assert usage["runs"] == 2  # the two runs of _failed; the retry is not a third
    assert usage["trainingSeconds"] == 600.0 + 600.0 + 300.0
    # The retry pointer left with the admission: the other failed run may retry now.
    store.requeue_for_retry(other, retry.model_copy(update={"attempt": 1}), later, "basic")


def test_a_start_an_executing_event_beat_still_records_its_training_and_instances(
    store: Any,
) -> None:
    from trainyard_core.training import AlgorithmChoice, RunTraining

    run = enqueue(store, queued_run())
    assert admit(store, run) == AdmitOutcome.ADMITTED
    arn = "arn:aws:sagemaker:us-east-1:1:pipeline/p/execution/x1"
    assert store.mark_running(run, arn, NOW)  # the Executing event came first
    training = RunTraining(
        algorithm="xgboost",
        chosen_by=AlgorithmChoice(mode="default"),
        problem_type="binary",
        hyperparameters={"eta": "0.2"},
        instance_type="ml.m5.2xlarge",
        instance_count=2,
        volume_size_gb=50,
        input_bytes=10,
        metric_threshold=0.6,
        schema_baseline_run_id="r0",
    )
    assert not store.mark_started(run, arn, NOW, "ml.m5.2xlarge", 2, training)
    got = store.get_run("acme", run.run_id)
    assert got.status == RunStatus.RUNNING and got.execution_arn == arn
    # What the cost and the run's record depend on is there all the same.
    assert (got.instance_type, got.instance_count) == ("ml.m5.2xlarge", 2)
    assert got.training == training
    # A start of another execution does not overwrite this one's record.
    other = training.model_copy(update={"instance_type": "ml.c5.xlarge"})
    assert not store.mark_started(run, arn + "-other", NOW, "ml.c5.xlarge", 1, other)
    got = store.get_run("acme", run.run_id)
    assert got.execution_arn == arn and got.training == training
    assert got.instance_type == "ml.m5.2xlarge"


def test_a_success_that_wrote_a_schema_becomes_the_tenants_schema_baseline(store: Any) -> None:
    def ended(report: dict[str, Any] | None, status: RunStatus, key: str) -> Run:
        run = enqueue(store, queued_run(key=key))
        assert admit(store, run) == AdmitOutcome.ADMITTED
        arn = f"arn:aws:sagemaker:us-east-1:1:pipeline/p/execution/{key[-5:]}"
        assert store.mark_started(run, arn, NOW, "ml.m5.large", 1)
        if report is not None:
            store.record_results("acme", run.run_id, {"auc": 0.9}, None, NOW, report)
        current = store.get_run("acme", run.run_id)
        kwargs = dict(ended_at=NOW, month="2026-03", training_seconds=1.0, cost_usd=0.0)
        assert store.finish(current, status, failure_reason=None, **kwargs)
        return run

    assert store.schema_baseline("acme") is None
    first = ended({"rows": 9, "schemaDrift": {"baseline": False}}, RunStatus.SUCCEEDED, "d/a.csv")
    assert store.schema_baseline("acme") == first.run_id
    # A failure, and a success from before the check (no schema written): no baseline.
    ended({"rows": 9, "schemaDrift": {"baseline": True}}, RunStatus.FAILED, "d/b.csv")
    ended({"rows": 9}, RunStatus.SUCCEEDED, "d/c.csv")
    assert store.schema_baseline("acme") == first.run_id
    latest = ended({"schemaDrift": {"baseline": True}}, RunStatus.SUCCEEDED, "d/d.csv")
    assert store.schema_baseline("acme") == latest.run_id
    assert store.schema_baseline("other") is None
