"""The DynamoDB tenant registry on moto, against the same table schema as CDK."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from trainyard_core.config import Settings
from trainyard_core.models import Tenant, TenantStatus
from trainyard_core.store.dynamodb import batch_get
from trainyard_core.store.tenants import InMemoryTenantRepository
from trainyard_core.store.tenants_dynamodb import DynamoTenantRepository
from trainyard_core.wiring import Names

from trainyard.local.bootstrap import create_tables


@pytest.fixture
def repo(monkeypatch: pytest.MonkeyPatch) -> Iterator[DynamoTenantRepository]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        names = Names.from_settings(Settings())
        create_tables(boto3.client("dynamodb", region_name="us-east-1"), names)
        yield DynamoTenantRepository(
            names.tenants_table, resource=boto3.resource("dynamodb", region_name="us-east-1")
        )


def tenant(tenant_id: str, status: TenantStatus) -> Tenant:
    return Tenant(
        tenant_id=tenant_id,
        plan="basic",
        status=status,
        isolation="pool",
        created_at="2026-01-01T00:00:00.000Z",
        updated_at="2026-01-01T00:00:00.000Z",
    )


def test_only_tenants_in_a_transitional_state_are_pending(repo: DynamoTenantRepository) -> None:
    for tenant_id, status in (
        ("prov", TenantStatus.PROVISIONING),
        ("move", TenantStatus.MIGRATING),
        ("gone", TenantStatus.OFFBOARDING),
        ("live", TenantStatus.ACTIVE),
        ("nap", TenantStatus.SUSPENDED),
        ("broke", TenantStatus.FAILED),
    ):
        repo.create(tenant(tenant_id, status))
    assert [t.tenant_id for t in repo.pending()] == ["gone", "move", "prov"]
    # Leaving the state drops the tenant from the (sparse) index.
    prov = repo.get("prov")
    assert prov is not None
    repo.save(prov.model_copy(update={"status": TenantStatus.ACTIVE}))
    assert [t.tenant_id for t in repo.pending()] == ["gone", "move"]
    # The index attribute never leaks into the tenant.
    assert repo.get("move") == repo.pending()[1]


def test_outdated_lists_active_and_suspended_tenants_on_another_or_no_template_version(
    repo: DynamoTenantRepository,
) -> None:
    from trainyard_core.store.tenants import InMemoryTenantRepository

    memory = InMemoryTenantRepository()
    for tenant_id, status, version in (
        ("current", TenantStatus.ACTIVE, "v2"),
        ("old", TenantStatus.ACTIVE, "v1"),
        ("legacy", TenantStatus.SUSPENDED, None),
        ("napping", TenantStatus.SUSPENDED, "v1"),
        ("prov", TenantStatus.PROVISIONING, None),
        ("move", TenantStatus.MIGRATING, "v1"),
        ("broke", TenantStatus.FAILED, "v1"),
    ):
        record = tenant(tenant_id, status).model_copy(update={"template_version": version})
        repo.create(record)
        memory.create(record)
    for store in (repo, memory):
        assert [t.tenant_id for t in store.outdated("v2")] == ["legacy", "napping", "old"]
    # The version is stored and read back (and removed when cleared).
    old = repo.get("old")
    assert old is not None and old.template_version == "v1"
    repo.save(old.model_copy(update={"template_version": "v2", "template_requested": None}))
    assert [t.tenant_id for t in repo.outdated("v2")] == ["legacy", "napping"]


@pytest.fixture(params=["dynamodb", "memory"])
def registry(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
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


def test_many_tenants_are_read_by_id_in_batches_leaving_out_unknown_ones(registry: Any) -> None:
    # 130 known + 20 unknown ids (and a duplicate): two BatchGetItem calls of <= 100 keys.
    for i in range(130):
        registry.create(tenant(f"t{i:03d}", TenantStatus.ACTIVE))
    ids = [f"t{i:03d}" for i in range(150)] + ["t000"]
    found = registry.get_many(ids)
    assert sorted(found) == [f"t{i:03d}" for i in range(130)]
    assert found["t042"] == registry.get("t042")
    assert registry.get_many([]) == {}


def test_unprocessed_keys_are_asked_again_with_backoff_as_consistent_reads() -> None:
    calls: list[dict[str, Any]] = []
    slept: list[float] = []

    def batch_get_item(RequestItems: dict[str, Any]) -> dict[str, Any]:
        calls.append(RequestItems)
        keys = RequestItems["t"]["Keys"]
        if len(calls) == 1:  # throttled, or past 16 MB: half comes back unprocessed
            return {"Responses": {"t": keys[:1]}, "UnprocessedKeys": {"t": {"Keys": keys[1:]}}}
        return {"Responses": {"t": keys}}

    keys = [{"id": "a"}, {"id": "b"}, {"id": "c"}]
    assert batch_get(batch_get_item, "t", keys, sleep=slept.append) == keys
    assert len(calls) == 2 and calls[1]["t"] == {"Keys": keys[1:], "ConsistentRead": True}
    assert len(slept) == 1 and slept[0] > 0


def test_the_retrain_index_returns_due_active_tenants_soonest_first_bounded(
    repo: DynamoTenantRepository,
) -> None:
    from trainyard_core.models import RetrainSchedule

    def scheduled(tenant_id: str, due: str, status: TenantStatus = TenantStatus.ACTIVE) -> None:
        repo.create(
            tenant(tenant_id, status).model_copy(
                update={"retrain": RetrainSchedule(every="P1D", next_due_at=due)}
            )
        )

    scheduled("late", "2026-01-03T00:00:00.000Z")
    scheduled("soon", "2026-01-01T00:00:00.000Z")
    scheduled("mid", "2026-01-02T00:00:00.000Z")
    scheduled("future", "2026-02-01T00:00:00.000Z")
    scheduled("nap", "2026-01-01T00:00:00.000Z", TenantStatus.SUSPENDED)
    repo.create(tenant("plain", TenantStatus.ACTIVE))
    now = "2026-01-15T00:00:00.000Z"
    assert [t.tenant_id for t in repo.due_for_retraining(now, 10)] == ["soon", "mid", "late"]
    assert [t.tenant_id for t in repo.due_for_retraining(now, 2)] == ["soon", "mid"]
    # Suspending, or removing the schedule, takes the tenant out of the index.
    soon = repo.get("soon")
    assert soon is not None
    repo.save(soon.model_copy(update={"status": TenantStatus.SUSPENDED}))
    mid = repo.get("mid")
    assert mid is not None
    repo.save(mid.model_copy(update={"retrain": None}))
    assert [t.tenant_id for t in repo.due_for_retraining(now, 10)] == ["late"]
    late = repo.get("late")
    assert late is not None and late.retrain is not None  # index attributes never leak
    assert repo.due_for_retraining(now, 10)[0] == late
