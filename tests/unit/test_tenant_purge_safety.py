"""Offboarding and re-onboarding that leave nothing for the next tenant: a purge
stops the tenant's executions and waits for them before deleting anything, an id
being offboarded or still holding data is refused with a 409, and the lifecycle
sweep goes on past a tenant that raises (however long its error)."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from trainyard_core.clock import VirtualClock
from trainyard_core.config import Settings
from trainyard_core.errors import Conflict
from trainyard_core.limits import REASON_MAX_CHARS
from trainyard_core.model_registry import RetainedResources
from trainyard_core.models import TenantStatus
from trainyard_core.ports.provisioning import TenantExecution
from trainyard_core.store.tenants import InMemoryTenantRepository
from trainyard_core.tenants import TenantService

from tests.unit.test_tenant_lifecycle import InMemoryProvisioner
from tests.unit.test_tenant_offboarding import Purger, Registry


class Executions:
    """A tenant's executions: each Executing one stops after ``stopping_checks`` looks."""

    def __init__(self, running: dict[str, list[str]], stopping_checks: int = 1) -> None:
        self.status = {arn: "Executing" for arns in running.values() for arn in arns}
        self.owner = {arn: t for t, arns in running.items() for arn in arns}
        self.checks_left = dict.fromkeys(self.status, stopping_checks)
        self.stopped: list[str] = []

    def unfinished(self, tenant_id: str) -> list[TenantExecution]:
        found = []
        for arn, status in self.status.items():
            if self.owner[arn] != tenant_id or status == "Stopped":
                continue
            if status == "Stopping":
                self.checks_left[arn] -= 1
                if self.checks_left[arn] < 0:
                    self.status[arn] = "Stopped"
                    continue
            found.append(TenantExecution(arn.rsplit("/", 1)[-1], arn, self.status[arn]))
        return found

    def stop(self, execution_arn: str) -> None:
        self.stopped.append(execution_arn)
        self.status[execution_arn] = "Stopping"


def _service(
    *, executions: Executions | None = None, retained: dict[str, list[str]] | None = None
) -> tuple[TenantService, Registry, Purger, InMemoryProvisioner]:
    registry, purger, provisioner = Registry(), Purger(), InMemoryProvisioner()
    service = TenantService(
        settings=Settings(),
        tenants=InMemoryTenantRepository(),
        provisioner=provisioner,
        account_id="123456789012",
        clock=VirtualClock(),
        purger=purger,
        models=registry,
        retained=lambda tenant_id: (retained or {}).get(tenant_id, []),
        executions=executions,
    )
    return service, registry, purger, provisioner


def test_a_purge_stops_the_tenants_executions_and_deletes_nothing_until_they_ended() -> None:
    arn = "arn:aws:sagemaker:us-east-1:123456789012:pipeline/p/execution/acme1"
    other = "arn:aws:sagemaker:us-east-1:123456789012:pipeline/p/execution/globex1"
    executions = Executions({"acme": [arn], "globex": [other]}, stopping_checks=1)
    service, registry, purger, _ = _service(executions=executions)
    service.create("acme", "premium")
    service.offboard("acme", purge=True)
    # The request only deletes the stack: nothing stopped, nothing purged inline.
    assert executions.stopped == [] and registry.purged == [] and purger.calls == []

    assert service.advance_pending()["waiting"] == ["acme"]  # stop asked
    assert executions.stopped == [arn]
    assert service.advance_pending()["waiting"] == ["acme"]  # still Stopping
    assert registry.purged == [] and purger.calls == []
    assert service.advance_pending()["advanced"] == ["acme"]  # Stopped: purged, gone
    assert registry.purged == ["trainyard-acme"] and len(purger.calls) == 1
    assert service.tenants.get("acme") is None
    # Another tenant's execution is never touched, and no stop is asked twice.
    assert executions.stopped == [arn] and executions.status[other] == "Executing"


def test_a_purge_waits_for_a_run_whose_start_is_still_in_flight() -> None:
    class Starting(Executions):
        def __init__(self) -> None:
            super().__init__({})
            self.looks = 0

        def unfinished(self, tenant_id: str) -> list[TenantExecution]:
            self.looks += 1
            return [TenantExecution("run-1", None, "Starting")] if self.looks < 3 else []

    executions = Starting()
    service, registry, _, _ = _service(executions=executions)
    service.create("acme", "premium")
    service.offboard("acme", purge=True)
    service.advance_pending()
    service.advance_pending()
    assert registry.purged == [] and executions.stopped == []
    service.advance_pending()
    assert registry.purged == ["trainyard-acme"]


def test_offboarding_without_purge_lets_running_executions_end_on_their_own() -> None:
    arn = "arn:aws:sagemaker:us-east-1:123456789012:pipeline/p/execution/acme1"
    executions = Executions({"acme": [arn]})
    service, _, _, _ = _service(executions=executions)
    service.create("acme", "premium")
    service.offboard("acme", purge=False)
    service.advance_pending()
    assert executions.stopped == [] and service.tenants.get("acme") is None


def test_creating_an_id_that_is_still_being_offboarded_is_refused_not_reported_as_existing() -> (
    None
):
    service, _, _, provisioner = _service()
    service.create("acme", "premium")
    provisioner.delete = lambda name: None  # type: ignore[method-assign]  # deletion takes time
    assert service.offboard("acme", purge=False).status == TenantStatus.OFFBOARDING
    with pytest.raises(Conflict) as refused:
        service.create("acme", "premium")
    assert refused.value.code == "TenantOffboarding"


def test_a_retried_create_of_a_failed_tenant_refuses_data_that_appeared_under_its_id() -> None:
    left: dict[str, list[str]] = {}
    service, _, _, provisioner = _service(retained=left)
    provisioner.fail_next_create = "BucketAlreadyExists"
    tenant, _ = service.create("acme", "premium")
    assert tenant.status == TenantStatus.FAILED
    left["acme"] = ["bucket trainyard-acme-123456789012 (with data)"]
    with pytest.raises(Conflict) as refused:
        service.create("acme", "premium")
    assert refused.value.code == "TenantIdRetired"
    assert "trainyard-acme-123456789012" in refused.value.message


def test_a_failed_tenant_can_always_be_removed_with_or_without_purge() -> None:
    for purge in (False, True):
        service, _, purger, provisioner = _service()
        provisioner.roll_back_with = "DataBucket CREATE_FAILED: trainyard-acme-1 already exists"
        service.settings = service.settings.model_copy(update={"provisioning_attempts": 1})
        tenant, _ = service.create("acme", "premium")
        assert tenant.status == TenantStatus.FAILED
        assert service.offboard("acme", purge=purge).status == TenantStatus.OFFBOARDING
        service.advance_pending()
        assert service.tenants.get("acme") is None
        # It never owned a bucket: a purge must not delete the one of that name.
        assert purger.calls == []


def test_a_silo_bucket_name_owned_by_another_account_refuses_the_id_with_a_409_reason() -> None:
    s3 = boto3.client(
        "s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )

    class NoRegistry:
        def package_count(self, group: str) -> int:
            return 0

        def exists(self, group: str) -> bool:
            return False

    with Stubber(s3) as stub:
        stub.add_client_error("head_bucket", "403", "Forbidden", http_status_code=403)
        stub.add_response("list_object_versions", {"Versions": []})
        found = RetainedResources(registry=NoRegistry(), s3=s3).of(  # type: ignore[arg-type]
            group="trainyard-acme",
            silo_bucket="trainyard-acme-123456789012",
            pool_bucket="trainyard-pool-123456789012",
            pool_prefix="tenants/acme/",
        )
    assert found == ["bucket name trainyard-acme-123456789012 (taken by another AWS account)"]


def test_the_lifecycle_sweep_goes_on_past_a_tenant_that_raises_a_huge_error() -> None:
    service, _, _, provisioner = _service()
    provisioner.complete_immediately = False
    for tenant_id in ("acme", "bad", "globex"):
        service.create(tenant_id, "premium")
    real_describe = provisioner.describe

    def describe(stack_name: str) -> Any:
        if stack_name.endswith("-bad"):
            raise RuntimeError("x" * 1_000_000)  # e.g. a dependency quoting a 1 MB input
        return real_describe(stack_name)

    provisioner.describe = describe  # type: ignore[method-assign]
    for stack in list(provisioner.stacks):
        if not stack.endswith("-bad"):
            provisioner.stacks[stack] = provisioner.stacks[stack].__class__(
                "CREATE_COMPLETE", provisioner.stacks[stack].outputs
            )
    report = service.advance_pending()
    assert sorted(report["advanced"]) == ["acme", "globex"]
    assert len(report["errors"]) == 1 and report["errors"][0].startswith("bad: RuntimeError: x")
    assert len(report["errors"][0]) <= REASON_MAX_CHARS
