"""Plan changes across isolation models (pool <-> silo), on in-memory fakes:
data and model history survive, retries are safe, interruptions resume."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from trainyard_core.clock import VirtualClock
from trainyard_core.config import Settings
from trainyard_core.errors import Conflict
from trainyard_core.models import Tenant, TenantStatus, parse_iso
from trainyard_core.ports.provisioning import StackState, StoredObject
from trainyard_core.store.tenants import InMemoryTenantRepository
from trainyard_core.tenants import TenantService

from tests.unit.test_tenant_lifecycle import ACCOUNT, InMemoryProvisioner

POOL = f"trainyard-pool-{ACCOUNT}"
SILO = f"trainyard-acme-{ACCOUNT}"


class InMemoryMover:
    """S3 as the mover sees it: buckets of key -> (etag, size); can be told to fail."""

    def __init__(self) -> None:
        self.buckets: dict[str, dict[str, tuple[str, int]]] = {}
        self.copies = 0
        self.fail_copy_after: int | None = None  # copies that succeed before a crash
        self.fail_next_delete = False
        self.corrupt_next_copy = False
        self.modified: dict[tuple[str, str], str] = {}  # (bucket, key) -> ISO time written

    def put(
        self, bucket: str, key: str, etag: str, size: int = 10, modified: str | None = None
    ) -> None:
        self.buckets.setdefault(bucket, {})[key] = (etag, size)
        if modified is not None:
            self.modified[(bucket, key)] = modified

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        return sorted(k for k in self.buckets.get(bucket, {}) if k.startswith(prefix))

    def copy(
        self,
        src_bucket: str,
        src_root: str,
        dst_bucket: str,
        dst_root: str,
        stop: Callable[[], bool] | None = None,
    ) -> list[StoredObject]:
        source = {
            k[len(src_root) :]: v
            for k, v in self.buckets.get(src_bucket, {}).items()
            if k.startswith(src_root)
        }
        dst = self.buckets.setdefault(dst_bucket, {})
        handled: list[StoredObject] = []
        for rel, (etag, size) in sorted(source.items()):
            if handled and stop is not None and stop():
                break
            handled.append(
                StoredObject(rel, etag, size, self.modified.get((src_bucket, src_root + rel)))
            )
            if dst.get(dst_root + rel, (None,))[0] == etag:
                continue
            if self.fail_copy_after is not None and self.copies >= self.fail_copy_after:
                self.fail_copy_after = None
                raise RuntimeError("connection reset while copying")
            if self.corrupt_next_copy:
                self.corrupt_next_copy = False
                etag = "garbled"
            dst[dst_root + rel] = (etag, size)
            self.copies += 1
            self.on_copy()
        return handled

    def on_copy(self) -> None:
        """Called after each copied object (a test can advance time here)."""

    def verify(self, objects: list[StoredObject], dst_bucket: str, dst_root: str) -> list[str]:
        dst = self.buckets.get(dst_bucket, {})
        return [o.key for o in objects if dst.get(dst_root + o.key) != (o.etag, o.size)]

    def delete(self, objects: list[StoredObject], src_bucket: str, src_root: str) -> int:
        if self.fail_next_delete:
            self.fail_next_delete = False
            raise RuntimeError("SlowDown")
        src = self.buckets.get(src_bucket, {})
        doomed = [
            src_root + o.key for o in objects if src.get(src_root + o.key, (None,))[0] == o.etag
        ]
        for key in doomed:
            del src[key]
        return len(doomed)

    def delete_bucket(self, bucket: str) -> None:
        assert not self.buckets.get(bucket), "bucket still holds objects"
        self.buckets.pop(bucket, None)


@pytest.fixture
def provisioner() -> InMemoryProvisioner:
    return InMemoryProvisioner()


@pytest.fixture
def mover() -> InMemoryMover:
    return InMemoryMover()


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def service(
    provisioner: InMemoryProvisioner, mover: InMemoryMover, clock: VirtualClock
) -> TenantService:
    return TenantService(
        settings=Settings(),
        tenants=InMemoryTenantRepository(),
        provisioner=provisioner,
        account_id=ACCOUNT,
        clock=clock,
        mover=mover,
    )


def _pool_tenant_with_history(service: TenantService, mover: InMemoryMover) -> None:
    service.create("acme", "basic")
    mover.put(POOL, "tenants/acme/data/a.csv", "e-a")
    mover.put(POOL, "tenants/acme/data/b.csv", "e-b")
    mover.put(POOL, "tenants/acme/artifacts/run1/model.tar.gz", "e-m")
    mover.put(POOL, "tenants/other/data/x.csv", "e-x")  # a neighbour's data


def _scheduled(service: TenantService, tenant_id: str = "acme") -> Tenant:
    """One lifecycle-schedule pass (the only place data moves), then the tenant."""
    service.advance_pending()
    tenant = service.tenants.get(tenant_id)
    assert tenant is not None
    return tenant


def test_new_basic_tenants_live_in_a_prefix_of_the_pool_bucket(service: TenantService) -> None:
    tenant, _ = service.create("acme", "basic")
    assert tenant.isolation == "pool"
    assert (tenant.data_bucket, tenant.data_prefix) == (POOL, "tenants/acme/data/")
    assert tenant.output_uri == f"s3://{POOL}/tenants/acme/artifacts/"


def test_upsell_to_premium_moves_the_data_into_a_silo_bucket_and_keeps_the_model_group(
    service: TenantService, provisioner: InMemoryProvisioner, mover: InMemoryMover
) -> None:
    _pool_tenant_with_history(service, mover)
    migrating = service.update("acme", plan="premium", status=None)
    assert migrating.status == TenantStatus.MIGRATING
    assert migrating.migrating_to == "silo" and migrating.plan == "premium"
    # Until the move is verified, the tenant still reads from (and owns) the old location.
    assert migrating.data_bucket == POOL
    assert provisioner.template_swaps == [("trainyard-tenant-acme", "silo")]

    moved = _scheduled(service)
    assert moved.status == TenantStatus.ACTIVE
    assert (moved.isolation, moved.migrating_to) == ("silo", None)
    assert (moved.data_bucket, moved.data_prefix) == (SILO, "data/")
    assert moved.output_uri == f"s3://{SILO}/artifacts/"
    assert moved.model_package_group_name == "trainyard-acme"
    assert mover.keys(SILO) == ["artifacts/run1/model.tar.gz", "data/a.csv", "data/b.csv"]
    assert mover.keys(POOL, "tenants/acme/") == []
    assert mover.keys(POOL, "tenants/other/") == ["tenants/other/data/x.csv"]


def test_downgrade_to_basic_moves_the_data_into_the_pool_and_removes_the_silo_bucket(
    service: TenantService, mover: InMemoryMover
) -> None:
    service.create("acme", "premium")
    mover.put(SILO, "data/a.csv", "e-a")
    mover.put(SILO, "artifacts/run1/model.tar.gz", "e-m")
    service.update("acme", plan="basic", status=None)
    moved = _scheduled(service)
    assert moved.status == TenantStatus.ACTIVE and moved.isolation == "pool"
    assert (moved.data_bucket, moved.data_prefix) == (POOL, "tenants/acme/data/")
    assert mover.keys(POOL) == [
        "tenants/acme/artifacts/run1/model.tar.gz",
        "tenants/acme/data/a.csv",
    ]
    assert SILO not in mover.buckets


def test_an_interrupted_copy_leaves_the_tenant_migrating_with_a_reason_and_a_retry_finishes(
    service: TenantService, mover: InMemoryMover
) -> None:
    _pool_tenant_with_history(service, mover)
    mover.fail_copy_after = 1
    service.update("acme", plan="premium", status=None)
    stuck = _scheduled(service)
    assert stuck.status == TenantStatus.MIGRATING
    assert "connection reset" in (stuck.failure_reason or "")
    assert "PATCH the same plan again" in (stuck.failure_reason or "")
    # Nothing was deleted before a verified copy.
    assert len(mover.keys(POOL, "tenants/acme/")) == 3

    service.update("acme", plan="premium", status=None)
    done = _scheduled(service)
    assert done.status == TenantStatus.ACTIVE and done.failure_reason is None
    assert mover.keys(SILO) == ["artifacts/run1/model.tar.gz", "data/a.csv", "data/b.csv"]
    assert mover.keys(POOL, "tenants/acme/") == []
    assert mover.copies == 3  # the object copied before the crash was not copied again


def test_a_failed_delete_after_a_verified_copy_resumes_without_duplicates(
    service: TenantService, mover: InMemoryMover
) -> None:
    _pool_tenant_with_history(service, mover)
    mover.fail_next_delete = True
    service.update("acme", plan="premium", status=None)
    assert "SlowDown" in (_scheduled(service).failure_reason or "")
    done = _scheduled(service)
    assert done.status == TenantStatus.ACTIVE
    assert len(mover.keys(SILO)) == 3 and mover.copies == 3
    assert mover.keys(POOL, "tenants/acme/") == []


def test_a_copy_that_does_not_verify_deletes_nothing(
    service: TenantService, mover: InMemoryMover
) -> None:
    _pool_tenant_with_history(service, mover)
    mover.corrupt_next_copy = True
    service.update("acme", plan="premium", status=None)
    stuck = _scheduled(service)
    assert stuck.status == TenantStatus.MIGRATING and "differ" in (stuck.failure_reason or "")
    assert len(mover.keys(POOL, "tenants/acme/")) == 3
    assert _scheduled(service).status == TenantStatus.ACTIVE
    assert mover.buckets[SILO]["data/a.csv"][0] == "e-a"


def test_a_failed_stack_update_keeps_the_data_in_place_and_a_retry_updates_again(
    service: TenantService, provisioner: InMemoryProvisioner, mover: InMemoryMover
) -> None:
    _pool_tenant_with_history(service, mover)
    provisioner.fail_next_update = "Throttling: rate exceeded"
    stuck = service.update("acme", plan="premium", status=None)
    assert stuck.status == TenantStatus.MIGRATING
    assert "rate exceeded" in (stuck.failure_reason or "")
    assert service.get("acme").status == TenantStatus.MIGRATING  # reads do not re-deploy
    assert _scheduled(service).status == TenantStatus.MIGRATING  # nor does the schedule
    assert mover.keys(SILO) == []
    service.update("acme", plan="premium", status=None)
    assert _scheduled(service).status == TenantStatus.ACTIVE


def test_the_data_moves_only_after_the_stack_update_completes(
    service: TenantService, provisioner: InMemoryProvisioner, mover: InMemoryMover
) -> None:
    _pool_tenant_with_history(service, mover)
    provisioner.complete_immediately = False
    service.update("acme", plan="premium", status=None)
    assert service.get("acme").status == TenantStatus.MIGRATING
    assert mover.keys(SILO) == []
    state = provisioner.stacks["trainyard-tenant-acme"]
    provisioner.stacks["trainyard-tenant-acme"] = type(state)("UPDATE_COMPLETE", state.outputs)
    assert _scheduled(service).status == TenantStatus.ACTIVE


def test_while_migrating_only_a_retry_of_the_same_plan_change_is_accepted(
    service: TenantService, provisioner: InMemoryProvisioner, mover: InMemoryMover
) -> None:
    _pool_tenant_with_history(service, mover)
    provisioner.complete_immediately = False
    service.update("acme", plan="premium", status=None)
    for plan, status in (("standard", None), (None, "SUSPENDED")):
        with pytest.raises(Conflict) as err:
            service.update("acme", plan=plan, status=status)
        assert err.value.code == "TenantMigrating"


def test_a_suspended_tenant_is_resumed_before_it_can_change_isolation(
    service: TenantService,
) -> None:
    service.create("acme", "basic")
    service.update("acme", plan=None, status="SUSPENDED")
    with pytest.raises(Conflict):
        service.update("acme", plan="premium", status=None)


def test_the_new_location_is_owned_from_a_later_second_than_the_last_copy(
    service: TenantService, mover: InMemoryMover, clock: VirtualClock
) -> None:
    # The intake ignores objects created before location_since (whole seconds),
    # so the migration's copies must all fall in an earlier second.
    _pool_tenant_with_history(service, mover)
    clock.advance(0.25)
    last_copy = clock.now()
    service.update("acme", plan="premium", status=None)
    moved = _scheduled(service)
    since = parse_iso(moved.location_since)
    assert since is not None
    assert since.replace(microsecond=0) > last_copy.replace(microsecond=0)
    assert since - last_copy < timedelta(seconds=1)


def test_the_lifecycle_schedule_finishes_a_migration_nobody_reads_and_resumes_a_cut_copy(
    service: TenantService, mover: InMemoryMover
) -> None:
    _pool_tenant_with_history(service, mover)
    mover.fail_copy_after = 1
    service.update("acme", plan="premium", status=None)
    first = service.advance_pending()
    assert first["waiting"] == ["acme"]  # the copy was cut short: still MIGRATING, with why
    stuck = service.tenants.get("acme")
    assert stuck is not None and "connection reset" in (stuck.failure_reason or "")
    assert service.advance_pending()["advanced"] == ["acme"]
    moved = service.tenants.get("acme")
    assert moved is not None and moved.status == TenantStatus.ACTIVE
    assert (moved.isolation, moved.data_bucket) == ("silo", SILO)
    assert mover.keys(SILO) == ["artifacts/run1/model.tar.gz", "data/a.csv", "data/b.csv"]
    assert mover.keys(POOL, "tenants/acme/") == [] and mover.copies == 3


def test_a_move_longer_than_its_time_budget_pauses_without_a_failure_and_resumes(
    provisioner: InMemoryProvisioner, mover: InMemoryMover, clock: VirtualClock
) -> None:
    now = [0.0]
    service = TenantService(
        settings=Settings(),
        tenants=InMemoryTenantRepository(),
        provisioner=provisioner,
        account_id=ACCOUNT,
        clock=clock,
        mover=mover,
        monotonic=lambda: now[0],
    )
    _pool_tenant_with_history(service, mover)

    def tick() -> None:
        now[0] += 10.0  # each object takes 10 s to copy

    mover.on_copy = tick  # type: ignore[method-assign]
    service.update("acme", plan="premium", status=None)
    # 15 s left minus the 5 s reserve: time for one object, then the move pauses.
    report = service.advance_pending(time_left=lambda: 15.0)
    assert report["waiting"] == ["acme"] and report["errors"] == []
    paused = service.tenants.get("acme")
    assert paused is not None and paused.status == TenantStatus.MIGRATING
    assert paused.failure_reason is None  # out of time is not a failure
    assert mover.keys(SILO) == ["artifacts/run1/model.tar.gz"]  # verified, moved ...
    assert mover.keys(POOL, "tenants/acme/") == [  # ... and gone from the old place
        "tenants/acme/data/a.csv",
        "tenants/acme/data/b.csv",
    ]
    assert service.advance_pending(time_left=lambda: 60.0)["advanced"] == ["acme"]
    assert mover.keys(SILO) == ["artifacts/run1/model.tar.gz", "data/a.csv", "data/b.csv"]
    assert mover.keys(POOL, "tenants/acme/") == [] and mover.copies == 3


def test_a_rolled_back_migration_is_reported_once_not_rewritten_every_minute(
    service: TenantService, provisioner: InMemoryProvisioner, mover: InMemoryMover
) -> None:
    _pool_tenant_with_history(service, mover)
    provisioner.complete_immediately = False
    service.update("acme", plan="premium", status=None)
    stack = provisioner.stacks["trainyard-tenant-acme"]
    provisioner.stacks["trainyard-tenant-acme"] = StackState(
        "UPDATE_ROLLBACK_COMPLETE", stack.outputs, reason="bucket name taken"
    )
    service.advance_pending()
    reported = service.tenants.get("acme")
    assert reported is not None and "UPDATE_ROLLBACK_COMPLETE" in (reported.failure_reason or "")
    for _ in range(3):
        assert service.advance_pending()["waiting"] == ["acme"]
    again = service.tenants.get("acme")
    assert again is not None and again.version == reported.version
    assert len(mover.keys(POOL, "tenants/acme/")) == 3  # nothing moved off the old storage
