"""Bounded items and isolated sweeps (issue 17, items 1 and 8; docs/faults.md).

A failure message is data (a 1 MB CSV cell, a 60,000-column header): it must
end the run FAILED with a bounded reason, never make its item exceed DynamoDB's
400 KB, and one run that cannot be written must not stop a sweep for everyone.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from trainyard_core import limits
from trainyard_core.clock import VirtualClock
from trainyard_core.config import Settings
from trainyard_core.models import IgnoredUpload, Run, RunStatus, TriggerObject
from trainyard_core.ports.runs import dedupe_key
from trainyard_core.scheduling.service import SchedulerService
from trainyard_core.store.runs_dynamodb import DynamoRunRepository
from trainyard_core.store.runs_memory import InMemoryRunRepository
from trainyard_core.store.tenants import InMemoryTenantRepository
from trainyard_core.store.tenants_dynamodb import DynamoTenantRepository
from trainyard_core.uploads import unstageable_key
from trainyard_core.wiring import Names

from trainyard.local.bootstrap import create_tables
from trainyard.testing.scheduling import FakePipeline, RecordingMetrics, make_tenant

MB = 1024 * 1024
HUGE = "1e308," * (MB // 6)  # a 1 MB numeric cell quoted in a pandas error


# --------------------------------------------------------------- the helper


def test_bounded_keeps_the_start_marks_the_cut_and_holds_the_limit() -> None:
    text = "ValueError: could not convert string to float: " + "9" * MB
    cut = limits.bounded(text, 200)
    assert len(cut) <= 200
    assert cut.startswith("ValueError: could not convert")
    assert "truncated" in cut and str(len(text) - len(cut.split(" …[")[0])) in cut
    assert limits.bounded("short", 200) == "short"


def test_the_failure_reason_bound_is_above_every_sagemaker_reason() -> None:
    # botocore sagemaker/2017-07-24: 1300 (Describe), 3072 (summary), 1024 (step).
    assert limits.FAILURE_REASON_MAX_CHARS >= 3072
    assert limits.failure_reason("x" * 3072) == "x" * 3072


# ---------------------------------------------- the 400 KB limit, as AWS has it


@pytest.fixture
def moto_tables(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Names]]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        names = Names.from_settings(Settings())
        create_tables(client, names)
        yield client, names


@pytest.mark.parametrize("size", [300 * 1024, 500 * 1024])
def test_the_item_size_check_refuses_what_dynamodb_refuses(
    moto_tables: tuple[Any, Names], size: int
) -> None:
    client, names = moto_tables
    item = {"pk": "probe", "sk": "probe", "blob": "x" * size}
    ours = limits.item_size(item) <= limits.DYNAMODB_ITEM_MAX_BYTES
    try:
        client.put_item(TableName=names.state_table, Item={k: {"S": v} for k, v in item.items()})
        theirs = True
    except ClientError as exc:
        assert "size" in str(exc).lower()
        theirs = False
    assert ours == theirs == (size < limits.DYNAMODB_ITEM_MAX_BYTES)


def test_the_in_memory_tenant_store_refuses_an_item_over_400_kb() -> None:
    tenants = InMemoryTenantRepository()
    oversized = make_tenant("acme").model_copy(update={"stack_name": "s" * (500 * 1024)})
    with pytest.raises(limits.ItemTooLargeError):
        tenants.create(oversized)
    assert tenants.get("acme") is None


# ----------------------------------------------------- the poison run, in memory


class World:
    def __init__(self, runs: Any | None = None) -> None:
        self.clock = VirtualClock(datetime(2026, 3, 10, 12, 0, tzinfo=UTC))
        self.runs = runs or InMemoryRunRepository()
        self.tenants = InMemoryTenantRepository()
        self.pipeline = FakePipeline()
        self.metrics = RecordingMetrics()
        self.service = SchedulerService(
            Settings(),
            self.runs,
            self.tenants,
            self.pipeline,
            clock=self.clock,
            metrics=self.metrics,
        )

    def started(self, tenant_id: str) -> Run:
        self.tenants.create(make_tenant(tenant_id))
        result = self.service.handle_upload(
            f"trainyard-{tenant_id}-123456789012", "data/train.csv", etag="e", size=1
        )
        self.service.dispatch()
        assert result.run is not None
        run = self.runs.get_run(tenant_id, result.run.run_id)
        assert run is not None and run.status == RunStatus.RUNNING
        return run


def test_a_1mb_failure_reason_ends_the_run_failed_bounded_and_frees_its_slots() -> None:
    world = World()
    run = world.started("poison")
    assert run.execution_arn
    world.clock.advance(600)
    world.pipeline.set_status(run.execution_arn, "Failed", HUGE)
    # The status event was lost: reconcile finds the execution ended.
    world.service.reconcile()
    ended = world.runs.get_run("poison", run.run_id)
    assert ended is not None and ended.status == RunStatus.FAILED
    assert ended.failure_reason is not None
    assert len(ended.failure_reason) <= limits.FAILURE_REASON_MAX_CHARS
    assert ended.failure_reason.startswith("1e308,") and "truncated" in ended.failure_reason
    counters = world.runs.counters()
    assert counters.global_running == 0 and counters.tenants.get("poison", 0) == 0


class _FailingFinish(InMemoryRunRepository):
    """A store whose write of one run's end fails (any reason DynamoDB may give)."""

    def __init__(self, poison: str) -> None:
        super().__init__()
        self.poison = poison

    def finish(self, run: Run, status: RunStatus, **kwargs: Any) -> bool:
        if run.tenant_id == self.poison:
            raise RuntimeError("ValidationException: Item size has exceeded the maximum")
        return super().finish(run, status, **kwargs)


def test_reconcile_isolates_a_run_it_cannot_end_and_still_heals_and_dispatches() -> None:
    world = World(_FailingFinish("poison"))
    poison = world.started("poison")
    other = world.started("other")
    assert poison.execution_arn and other.execution_arn
    world.clock.advance(600)
    world.pipeline.set_status(poison.execution_arn, "Failed", "boom")
    world.pipeline.set_status(other.execution_arn, "Succeeded")
    # A drifted counter to heal and a new tenant's upload waiting to be dispatched.
    world.runs.set_counter("plan#premium", 3, expected=None)
    world.tenants.create(make_tenant("waiting"))
    queued = world.service.handle_upload(
        "trainyard-waiting-123456789012", "data/train.csv", etag="e", size=1
    )
    assert queued.run is not None

    report = world.service.reconcile()

    assert report.finished == [other.run_id]  # the other run still ended
    assert report.healed_counters.get("plan#premium") is None  # lowering waits one tick
    assert world.runs.drift_marker("plan#premium") == (3, 0)  # healing went on
    waiting = world.runs.get_run("waiting", queued.run.run_id)
    assert waiting is not None and waiting.status == RunStatus.RUNNING  # dispatch went on
    assert ("SweepErrors", 1.0, {"step": "recover-execution"}) in [
        (m[0], m[1], m[3]) for m in world.metrics.points
    ]


def test_dispatch_isolates_a_run_it_cannot_start() -> None:
    world = World()
    for tenant_id in ("broken", "fine"):
        world.tenants.create(make_tenant(tenant_id))
        world.service.handle_upload(
            f"trainyard-{tenant_id}-123456789012", "data/train.csv", etag="e", size=1
        )
    original = world.pipeline.start

    def start(**kwargs: Any) -> str:
        if kwargs["parameters"]["TenantId"] == "broken":
            raise KeyError("a bug in one run's start")
        return original(**kwargs)

    world.pipeline.start = start  # type: ignore[method-assign]
    report = world.service.dispatch()
    assert [r.tenant_id for r in report.started] == ["fine"]


# ------------------------------------------------- lists that grow with uploads


@pytest.fixture(params=["dynamodb", "memory"])
def run_store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    if request.param == "memory":
        yield InMemoryRunRepository()
        return
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        names = Names.from_settings(Settings())
        create_tables(client, names)
        yield DynamoRunRepository(names.runs_table, names.state_table, client=client)


def test_a_queued_run_lists_its_first_uploads_and_counts_the_rest(run_store: Any) -> None:
    from trainyard_core.models import Trigger, new_run_id

    now = "2026-03-10T12:00:00.000Z"
    key = "data/" + "k" * 1000  # near S3's 1024-byte maximum
    run = Run(
        run_id=new_run_id(),
        tenant_id="acme",
        plan="basic",
        status=RunStatus.QUEUED,
        trigger=Trigger(type="s3", objects=[TriggerObject(key=f"{key}0", etag="e")]),
        queued_at=now,
    )
    run_store.create_queued_run(run, None, 1_900_000_000)
    total = limits.TRIGGER_OBJECTS_MAX + 30
    for i in range(1, total):
        obj = TriggerObject(key=f"{key}{i}", etag="e", bucket="b")
        run_store.add_to_queued_run(
            "acme", run.run_id, obj, dedupe_key("b", obj.key, "e", None), 1_900_000_000, now
        )
    stored = run_store.get_run("acme", run.run_id)
    assert len(stored.trigger.objects) == limits.TRIGGER_OBJECTS_MAX
    assert stored.trigger.objects_omitted == total - limits.TRIGGER_OBJECTS_MAX
    assert stored.trigger.objects[-1].key == f"{key}{limits.TRIGGER_OBJECTS_MAX - 1}"


@pytest.fixture(params=["dynamodb", "memory"])
def tenant_store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    if request.param == "memory":
        yield InMemoryTenantRepository()
        return
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        names = Names.from_settings(Settings())
        create_tables(boto3.client("dynamodb", region_name="us-east-1"), names)
        yield DynamoTenantRepository(
            names.tenants_table, resource=boto3.resource("dynamodb", region_name="us-east-1")
        )


def _ignored(key: str, etag: str = "e") -> IgnoredUpload:
    return IgnoredUpload(key=key, size=3, reason="not a training file", at="t", etag=etag)


def test_ignored_uploads_are_bounded_deduplicated_and_survive_a_stale_save(
    tenant_store: Any,
) -> None:
    tenant_store.create(make_tenant("acme"))
    earlier = tenant_store.get("acme")  # e.g. a PATCH read before the uploads came
    for i in range(limits.IGNORED_UPLOADS_MAX + 5):
        assert tenant_store.record_ignored_upload("acme", _ignored(f"data/{i}.xlsx"))
    tenant_store.record_ignored_upload("acme", _ignored("data/24.xlsx"))  # redelivered
    tenant_store.save(earlier.model_copy(update={"plan": "premium"}))
    now = tenant_store.get("acme")
    assert now.plan == "premium"
    keys = [u.key for u in now.ignored_uploads]
    assert len(keys) == limits.IGNORED_UPLOADS_MAX and keys[-1] == "data/24.xlsx"
    assert keys[0] == "data/5.xlsx"
    assert tenant_store.record_ignored_upload("nobody", _ignored("data/x.xlsx")) is False


def test_an_upper_case_csv_starts_a_run_and_anything_else_is_shown_on_the_tenant() -> None:
    world = World()
    world.tenants.create(make_tenant("acme"))
    bucket = "trainyard-acme-123456789012"
    csv = world.service.handle_upload(bucket, "data/train.CSV", etag="e1", size=10)
    xlsx = world.service.handle_upload(bucket, "data/customer-list.xlsx", etag="e2", size=20)
    assert csv.outcome == "created"
    assert xlsx.outcome == "ignored"
    tenant = world.tenants.get("acme")
    assert tenant is not None
    [ignored] = tenant.ignored_uploads
    assert (ignored.key, ignored.size) == ("data/customer-list.xlsx", 20)
    assert "csv" in ignored.reason
    assert "ignoredUploads" in tenant.api_dict()


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("../escape.csv", "'.' or '..'"),
        ("a/./b.csv", "'.' or '..'"),
        ("a//b.csv", "empty path segment"),
        ("x" * 300 + ".csv", "bytes long"),
    ],
)
def test_a_key_that_cannot_be_a_file_is_shown_on_the_tenant_at_upload(name: str, why: str) -> None:
    # A training job stages each object at its key below the prefix (File mode): such
    # a key fails every run while it exists, so it is refused at upload, visibly.
    world = World()
    world.tenants.create(make_tenant("acme"))
    result = world.service.handle_upload(
        "trainyard-acme-123456789012", f"data/{name}", etag="e1", size=10
    )
    assert result.outcome == "ignored"
    assert world.runs.queued_run_id("acme") is None
    tenant = world.tenants.get("acme")
    assert tenant is not None
    [ignored] = tenant.ignored_uploads
    assert ignored.key == f"data/{name}"
    assert why in ignored.reason and "delete or rename" in ignored.reason
    assert unstageable_key("part-1.csv") is None
    assert unstageable_key("2026/01/part-1.csv") is None
