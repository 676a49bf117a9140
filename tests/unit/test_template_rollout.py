"""Tenant stacks follow the deployed tenant template (tenants/rollout.py): the
lifecycle schedule updates outdated stacks a bounded number per run, oldest first,
records the version only once the update is COMPLETE, and isolates failures."""

from __future__ import annotations

import pytest
from trainyard_core.clock import VirtualClock
from trainyard_core.config import Settings
from trainyard_core.models import TenantStatus
from trainyard_core.ports.provisioning import StackState
from trainyard_core.provisioning import template_version
from trainyard_core.store.tenants import InMemoryTenantRepository
from trainyard_core.tenants import TenantService
from trainyard_core.tenants.rollout import RESCAN_AFTER, RETRY_AFTER
from trainyard_core.wiring import Names

from tests.unit.test_tenant_lifecycle import ACCOUNT, InMemoryProvisioner

OLD, NEW = "0ld0ld0ld0ld0ld0", "5eed5eed5eed5eed"


def stack(tenant_id: str) -> str:
    return f"trainyard-tenant-{tenant_id}"


@pytest.fixture
def provisioner() -> InMemoryProvisioner:
    return InMemoryProvisioner()


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def service(provisioner: InMemoryProvisioner, clock: VirtualClock) -> TenantService:
    return TenantService(
        settings=Settings(tenant_stack_updates_per_run=2),
        tenants=InMemoryTenantRepository(),
        provisioner=provisioner,
        account_id=ACCOUNT,
        clock=clock,
        template_version=OLD,
    )


def onboard(service: TenantService, clock: VirtualClock, *tenant_ids: str) -> None:
    """ACTIVE tenants on the OLD template, created in this order (oldest first)."""
    for tenant_id in tenant_ids:
        tenant, _ = service.create(tenant_id, "basic")
        assert tenant.status == TenantStatus.ACTIVE and tenant.template_version == OLD
        clock.advance(60)


def redeploy(service: TenantService, provisioner: InMemoryProvisioner) -> None:
    """A platform deploy with changed tenant templates; stack updates take a while."""
    service.template_version = NEW
    provisioner.complete_immediately = False


def finish(
    provisioner: InMemoryProvisioner, tenant_id: str, status: str = "UPDATE_COMPLETE"
) -> None:
    state = provisioner.stacks[stack(tenant_id)]
    reason = "JobRole UPDATE_FAILED: denied" if "ROLLBACK" in status else None
    provisioner.stacks[stack(tenant_id)] = StackState(status, state.outputs, reason=reason)


def version_of(service: TenantService, tenant_id: str) -> str | None:
    tenant = service.tenants.get(tenant_id)
    assert tenant is not None
    return tenant.template_version


def test_outdated_stacks_are_updated_n_per_run_oldest_first_current_only_once_complete(
    service: TenantService, provisioner: InMemoryProvisioner, clock: VirtualClock
) -> None:
    onboard(service, clock, "eee", "ddd", "ccc", "bbb", "aaa")
    assert service.advance_pending()["stacks_outdated"] == []  # all current: nothing to do
    redeploy(service, provisioner)

    first = service.advance_pending()
    # Two UpdateStack calls per run (the setting), the oldest tenants first, each to its
    # isolation's current template with its current parameters.
    assert first["stacks_updating"] == ["eee", "ddd"]
    assert provisioner.template_swaps == [(stack("eee"), "pool"), (stack("ddd"), "pool")]
    assert sorted(first["stacks_outdated"]) == ["aaa", "bbb", "ccc"]
    # In progress: not current yet.
    assert version_of(service, "eee") == OLD

    second = service.advance_pending()
    # Updates in progress are waited for (not counted), two more start.
    assert second["stacks_updating"] == ["eee", "ddd", "ccc", "bbb"]
    assert second["stacks_updated"] == []
    assert version_of(service, "ddd") == OLD

    finish(provisioner, "eee")
    third = service.advance_pending()
    assert third["stacks_updated"] == ["eee"]
    assert version_of(service, "eee") == NEW
    assert third["stacks_updating"] == ["ddd", "ccc", "bbb", "aaa"]
    assert len(provisioner.template_swaps) == 5  # every stack exactly once

    for tenant_id in ("ddd", "ccc", "bbb", "aaa"):
        finish(provisioner, tenant_id)
    assert sorted(service.advance_pending()["stacks_updated"]) == ["aaa", "bbb", "ccc", "ddd"]
    assert service.tenants.outdated(NEW) == []
    assert service.advance_pending()["stacks_updating"] == []
    assert len(provisioner.template_swaps) == 5
    # The tenants kept working throughout, and their record is unchanged.
    assert all(t.status == TenantStatus.ACTIVE for t in service.tenants.list()[0])


def test_a_failed_update_is_isolated_the_tenant_keeps_its_stack_and_it_is_retried_later(
    service: TenantService, provisioner: InMemoryProvisioner, clock: VirtualClock
) -> None:
    onboard(service, clock, "acme", "globex", "initech")
    redeploy(service, provisioner)
    provisioner.fail_next_update = "ValidationError: Stack is in UPDATE_ROLLBACK_FAILED state"

    first = service.advance_pending()
    # acme's UpdateStack was rejected; globex still had its turn.
    assert first["stack_update_failures"] == [
        "acme: UpdateStack: ValidationError: Stack is in UPDATE_ROLLBACK_FAILED state"
    ]
    assert first["stacks_updating"] == ["globex"]
    assert first["errors"] == []  # not a lifecycle error: nothing is broken
    # globex's update rolls back (UPDATE_ROLLBACK_COMPLETE: the old stack serves on).
    finish(provisioner, "globex", "UPDATE_ROLLBACK_COMPLETE")
    second = service.advance_pending()
    assert second["stack_update_failures"] == [
        "globex: tenant stack UPDATE_ROLLBACK_COMPLETE: JobRole UPDATE_FAILED: denied"
    ]
    # The failed ones wait; the tenant not tried yet goes first.
    assert second["stacks_updating"] == ["initech"]
    for tenant_id in ("acme", "globex"):
        tenant = service.get(tenant_id)
        assert tenant.status == TenantStatus.ACTIVE and tenant.failure_reason is None
        assert tenant.template_version == OLD
    finish(provisioner, "initech")
    assert service.advance_pending()["stacks_updated"] == ["initech"]
    assert sorted(service.advance_pending()["stacks_outdated"]) == ["acme", "globex"]

    # Retried after RETRY_AFTER, the least recently failed first.
    clock.advance(RETRY_AFTER.total_seconds())
    retried = service.advance_pending()
    assert retried["stacks_updating"] == ["acme", "globex"]
    finish(provisioner, "acme")
    finish(provisioner, "globex")
    assert sorted(service.advance_pending()["stacks_updated"]) == ["acme", "globex"]
    assert service.tenants.outdated(NEW) == []


def test_an_unexpected_error_on_one_tenant_does_not_stop_the_others(
    service: TenantService, provisioner: InMemoryProvisioner, clock: VirtualClock
) -> None:
    onboard(service, clock, "acme", "globex")
    redeploy(service, provisioner)
    original = provisioner.describe

    def flaky(stack_name: str) -> StackState | None:
        if stack_name == stack("acme"):
            raise RuntimeError("Throttling: Rate exceeded")
        return original(stack_name)

    provisioner.describe = flaky  # type: ignore[method-assign]
    report = service.advance_pending()
    assert report["stack_update_failures"] == ["acme: RuntimeError: Throttling: Rate exceeded"]
    assert report["stacks_updating"] == ["globex"]
    provisioner.describe = original  # type: ignore[method-assign]
    # No backoff for an error before UpdateStack: the next run tries again.
    assert service.advance_pending()["stacks_updating"] == ["globex", "acme"]


def test_a_stack_busy_with_another_operation_is_waited_for(
    service: TenantService, provisioner: InMemoryProvisioner, clock: VirtualClock
) -> None:
    onboard(service, clock, "acme")
    redeploy(service, provisioner)
    finish(provisioner, "acme", "UPDATE_IN_PROGRESS")  # e.g. a plan change's update
    report = service.advance_pending()
    assert report["stacks_outdated"] == ["acme"] and report["stack_update_failures"] == []
    assert provisioner.template_swaps == []
    finish(provisioner, "acme")
    assert service.advance_pending()["stacks_updating"] == ["acme"]


def test_pending_tenants_are_left_to_their_flows_which_record_the_version_they_used(
    service: TenantService, provisioner: InMemoryProvisioner, clock: VirtualClock
) -> None:
    provisioner.complete_immediately = False
    tenant, _ = service.create("acme", "basic")
    assert tenant.status == TenantStatus.PROVISIONING and tenant.template_requested == OLD
    # Deployed while acme's create (from the OLD template) is still running.
    service.template_version = NEW
    report = service.advance_pending()
    assert report["waiting"] == ["acme"] and report["stacks_updating"] == []
    finish(provisioner, "acme", "CREATE_COMPLETE")
    assert service.advance_pending()["advanced"] == ["acme"]
    # The version its create used, not the one current when it completed: outdated.
    assert version_of(service, "acme") == OLD
    assert service.advance_pending()["stacks_updating"] == ["acme"]
    # A tenant created now records the current version once ACTIVE.
    provisioner.complete_immediately = True
    created, _ = service.create("globex", "basic")
    assert created.template_version == NEW and created.template_requested is None


def test_tenants_from_before_versions_were_recorded_are_outdated(
    service: TenantService, provisioner: InMemoryProvisioner, clock: VirtualClock
) -> None:
    onboard(service, clock, "acme")
    legacy = service.tenants.get("acme")
    assert legacy is not None
    service.tenants.save(legacy.model_copy(update={"template_version": None}))
    assert [t.tenant_id for t in service.tenants.outdated(OLD)] == ["acme"]
    provisioner.complete_immediately = False
    assert service.advance_pending()["stacks_updating"] == ["acme"]
    finish(provisioner, "acme")
    assert service.advance_pending()["stacks_updated"] == ["acme"]
    assert version_of(service, "acme") == OLD


def test_suspended_tenants_are_updated_too_without_changing_their_record(
    service: TenantService, provisioner: InMemoryProvisioner, clock: VirtualClock
) -> None:
    onboard(service, clock, "acme")
    before = service.update("acme", plan=None, status="SUSPENDED")
    redeploy(service, provisioner)
    assert service.advance_pending()["stacks_updating"] == ["acme"]
    finish(provisioner, "acme")
    service.advance_pending()
    after = service.get("acme")
    assert after.template_version == NEW
    assert after.status == TenantStatus.SUSPENDED and after.updated_at == before.updated_at
    assert after.api_dict() == before.api_dict()  # internal bookkeeping only


def test_no_version_known_means_no_rollout(
    service: TenantService, provisioner: InMemoryProvisioner, clock: VirtualClock
) -> None:
    onboard(service, clock, "acme")
    service.template_version = None
    assert service.advance_pending()["stacks_outdated"] == []
    assert provisioner.template_swaps == []


def test_the_version_is_the_prefix_the_templates_were_shipped_under() -> None:
    names = Names.from_settings(Settings())
    base = "https://trainyard-platform-123456789012.s3.us-east-1.amazonaws.com/"
    urls = {iso: base + names.tenant_template_key(iso, NEW) for iso in ("silo", "pool")}
    assert template_version(urls, names) == NEW
    assert (
        template_version({**urls, "pool": base + names.tenant_template_key("pool", OLD)}, names)
        is None
    )
    assert template_version({"silo": base + "tenant-stack.template.json"}, names) is None


def test_a_migration_is_not_updated_by_the_rollout_and_records_the_version_it_asked_for(
    provisioner: InMemoryProvisioner, clock: VirtualClock
) -> None:
    from tests.unit.test_tenant_migration import InMemoryMover

    service = TenantService(
        settings=Settings(),
        tenants=InMemoryTenantRepository(),
        provisioner=provisioner,
        account_id=ACCOUNT,
        clock=clock,
        mover=InMemoryMover(),
        template_version=OLD,
    )
    onboard(service, clock, "acme")  # basic: pool
    provisioner.complete_immediately = False
    migrating = service.update("acme", plan="premium", status=None)  # premium: silo
    assert migrating.status == TenantStatus.MIGRATING and migrating.template_requested == OLD
    service.template_version = NEW  # deployed mid-migration
    report = service.advance_pending()
    assert report["stacks_updating"] == [] and report["stacks_outdated"] == []
    assert provisioner.template_swaps == [(stack("acme"), "silo")]  # the migration's own
    finish(provisioner, "acme")
    assert service.advance_pending()["advanced"] == ["acme"]
    moved = service.get("acme")
    assert moved.status == TenantStatus.ACTIVE and moved.isolation == "silo"
    # Its update used the OLD template: recorded so, and the rollout takes it from there.
    assert moved.template_version == OLD
    assert service.advance_pending()["stacks_updating"] == ["acme"]
    assert provisioner.template_swaps[-1] == (stack("acme"), "silo")


def test_the_schedule_logs_a_failed_update_without_failing_the_invocation(
    monkeypatch: pytest.MonkeyPatch, service: TenantService, provisioner: InMemoryProvisioner
) -> None:
    from trainyard_handlers import dependencies, lifecycle

    logged: list[tuple[str, dict[str, object]]] = []
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    monkeypatch.setattr(lifecycle.metrics, "namespace", "Trainyard")
    monkeypatch.setattr(lifecycle.logger, "error", lambda msg, extra: logged.append((msg, extra)))
    onboard(service, VirtualClock(), "acme", "globex")
    redeploy(service, provisioner)
    provisioner.fail_next_update = "ValidationError: denied"
    dependencies.tenant_service.override(service)

    class Context:
        def get_remaining_time_in_millis(self) -> int:
            return 60_000

    try:
        counts = lifecycle.advance_tenants(Context())  # type: ignore[arg-type]
    finally:
        dependencies.tenant_service.reset()
    assert counts["stack_update_failures"] == 1 and counts["stacks_updating"] == 1
    assert logged == [
        (
            "tenant stack update failed",
            {"tenant_id": "acme", "reason": "UpdateStack: ValidationError: denied"},
        )
    ]


def test_once_every_stack_is_current_the_table_is_scanned_again_only_after_a_while(
    service: TenantService, provisioner: InMemoryProvisioner, clock: VirtualClock
) -> None:
    # Finding outdated tenants is a whole-table scan in DynamoDB: not every minute.
    onboard(service, clock, "aaa")
    scans: list[str] = []
    outdated = service.tenants.outdated

    def counted(version: str) -> list:  # type: ignore[type-arg]
        scans.append(version)
        return outdated(version)

    service.tenants.outdated = counted  # type: ignore[method-assign]
    for _ in range(5):
        service.update_outdated_stacks()
        clock.advance(60)
    assert scans == [OLD]
    clock.advance(RESCAN_AFTER.total_seconds())
    service.update_outdated_stacks()
    assert scans == [OLD, OLD]
    redeploy(service, provisioner)
    service.update_outdated_stacks()  # a new version is looked for at once
    assert scans == [OLD, OLD, NEW]
    assert service.tenants.get("aaa").template_requested == NEW  # type: ignore[union-attr]
