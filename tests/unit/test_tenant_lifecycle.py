"""Tenant onboarding rules, driven on in-memory stores (no AWS)."""

from __future__ import annotations

import pytest
from trainyard_core.clock import VirtualClock
from trainyard_core.config import Settings
from trainyard_core.errors import Conflict, InvalidRequest, NotFound
from trainyard_core.models import TenantStatus
from trainyard_core.ports.provisioning import StackState
from trainyard_core.store.tenants import InMemoryTenantRepository
from trainyard_core.tenants import TenantService, validate_tenant_id
from trainyard_core.wiring import Names

ACCOUNT = "123456789012"
NAMES = Names.from_settings(Settings())


def stack_outputs(tenant: str, isolation: str) -> dict[str, str]:
    """What each template outputs (silo: own bucket; pool: a prefix of the pool bucket)."""
    bucket, root, data_prefix = NAMES.tenant_location(isolation, tenant, ACCOUNT)
    return {
        "DataBucketName": bucket,
        "DataPrefix": data_prefix,
        "OutputUri": f"s3://{bucket}/{root}artifacts/",
        "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/trainyard/tenants/tenant-{tenant}",
        "ModelPackageGroupName": f"trainyard-{tenant}",
    }


class InMemoryProvisioner:
    """CloudFormation as the service sees it: stacks with a status and outputs."""

    def __init__(self) -> None:
        self.stacks: dict[str, StackState] = {}
        self.created: list[tuple[str, dict[str, str]]] = []
        self.isolations: dict[str, str] = {}
        self.deleted: list[str] = []
        self.updated: list[tuple[str, dict[str, str]]] = []
        self.template_swaps: list[tuple[str, str]] = []
        self.fail_next_create: str | None = None
        self.fail_next_update: str | None = None
        # Every stack created rolls back with this reason (a resource's failure).
        self.roll_back_with: str | None = None
        self.complete_immediately = True

    def create(
        self,
        stack_name: str,
        parameters: dict[str, str],
        tags: dict[str, str],
        *,
        isolation: str = "silo",
    ) -> None:
        if self.fail_next_create:
            reason, self.fail_next_create = self.fail_next_create, None
            raise RuntimeError(reason)
        self.created.append((stack_name, parameters))
        self.isolations[stack_name] = isolation
        status = "CREATE_COMPLETE" if self.complete_immediately else "CREATE_IN_PROGRESS"
        outputs = stack_outputs(parameters["TenantId"], isolation)
        if self.roll_back_with:
            status, outputs = "ROLLBACK_COMPLETE", {}
        self.stacks[stack_name] = StackState(status, outputs, reason=self.roll_back_with)

    def update(
        self, stack_name: str, parameters: dict[str, str], *, isolation: str | None = None
    ) -> None:
        if self.fail_next_update:
            reason, self.fail_next_update = self.fail_next_update, None
            raise RuntimeError(reason)
        if isolation is None:
            self.updated.append((stack_name, parameters))
            return
        self.template_swaps.append((stack_name, isolation))
        self.isolations[stack_name] = isolation
        status = "UPDATE_COMPLETE" if self.complete_immediately else "UPDATE_IN_PROGRESS"
        outputs = stack_outputs(parameters["TenantId"], isolation)
        self.stacks[stack_name] = StackState(status=status, outputs=outputs)

    def describe(self, stack_name: str) -> StackState | None:
        return self.stacks.get(stack_name)

    def delete(self, stack_name: str) -> None:
        self.deleted.append(stack_name)
        self.stacks.pop(stack_name, None)


@pytest.fixture
def provisioner() -> InMemoryProvisioner:
    return InMemoryProvisioner()


@pytest.fixture
def service(provisioner: InMemoryProvisioner) -> TenantService:
    return TenantService(
        settings=Settings(),
        tenants=InMemoryTenantRepository(),
        provisioner=provisioner,
        account_id="123456789012",
        clock=VirtualClock(),
    )


def test_onboarding_provisions_a_stack_and_activates_the_tenant_with_its_storage(
    service: TenantService, provisioner: InMemoryProvisioner
) -> None:
    tenant, created = service.create("acme", "premium")
    assert created
    assert tenant.status == TenantStatus.ACTIVE
    assert tenant.data_bucket == "trainyard-acme-123456789012"
    assert tenant.data_prefix == "data/"
    assert tenant.model_package_group_name == "trainyard-acme"
    name, params = provisioner.created[0]
    assert name == "trainyard-tenant-acme"
    assert params == {
        "TenantId": "acme",
        "PlanName": "premium",
        "IntakeQueueArn": "arn:aws:sqs:us-east-1:123456789012:trainyard-intake-premium",
    }


def test_a_tenant_stays_provisioning_until_its_stack_completes(
    service: TenantService, provisioner: InMemoryProvisioner
) -> None:
    provisioner.complete_immediately = False
    tenant, _ = service.create("acme", "basic")
    assert tenant.status == TenantStatus.PROVISIONING
    assert tenant.data_bucket is None
    stack = provisioner.stacks["trainyard-tenant-acme"]
    provisioner.stacks["trainyard-tenant-acme"] = StackState("CREATE_COMPLETE", stack.outputs)
    assert service.get("acme").status == TenantStatus.ACTIVE


def test_repeating_the_same_create_returns_the_same_tenant_without_a_second_stack(
    service: TenantService, provisioner: InMemoryProvisioner
) -> None:
    first, created_first = service.create("acme", "basic")
    again, created_again = service.create("acme", "basic")
    assert (created_first, created_again) == (True, False)
    assert again.tenant_id == first.tenant_id and again.created_at == first.created_at
    assert len(provisioner.created) == 1


def test_creating_an_existing_tenant_with_another_plan_conflicts(service: TenantService) -> None:
    service.create("acme", "basic")
    with pytest.raises(Conflict) as err:
        service.create("acme", "premium")
    assert err.value.code == "TenantExists"


def test_a_failed_provisioning_is_recorded_with_its_reason_and_a_retry_works(
    service: TenantService, provisioner: InMemoryProvisioner
) -> None:
    provisioner.fail_next_create = "Throttling: rate exceeded"
    tenant, _ = service.create("acme", "basic")
    assert tenant.status == TenantStatus.FAILED
    assert "rate exceeded" in (tenant.failure_reason or "")
    retried, _ = service.create("acme", "basic")
    assert retried.status == TenantStatus.ACTIVE
    assert retried.failure_reason is None


DENIED = (
    'ModelPackageGroup CREATE_FAILED: Resource handler returned message: "User: '
    "arn:aws:sts::123456789012:assumed-role/trainyard-tenant-stacks/AWSCloudFormation is not "
    "authorized to perform: sagemaker:GetModelPackageGroupPolicy on resource: ... because no "
    'identity-based policy allows the sagemaker:GetModelPackageGroupPolicy action" '
    "(RequestToken: 1, HandlerErrorCode: AccessDenied)"
)
STACK = "trainyard-tenant-acme"


def retrying_service(provisioner: InMemoryProvisioner, attempts: int = 5) -> TenantService:
    return TenantService(
        settings=Settings(provisioning_attempts=attempts, provisioning_retry_seconds=60),
        tenants=InMemoryTenantRepository(),
        provisioner=provisioner,
        account_id=ACCOUNT,
        clock=VirtualClock(),
    )


def test_a_rolled_back_create_is_deleted_and_retried_by_the_lifecycle_schedule(
    service: TenantService, provisioner: InMemoryProvisioner
) -> None:
    provisioner.complete_immediately = False
    service.create("acme", "premium")
    provisioner.stacks[STACK] = StackState("ROLLBACK_COMPLETE", reason=DENIED)
    waiting = service.get("acme")
    # Still provisioning: the failed stack is gone and the reason says which attempt and why.
    assert waiting.status == TenantStatus.PROVISIONING
    assert (waiting.failure_reason or "").startswith("provisioning attempt 1 of 5 failed: ")
    assert "HandlerErrorCode: AccessDenied" in (waiting.failure_reason or "")
    assert provisioner.deleted == [STACK] and STACK not in provisioner.stacks
    # A read does not retry; the lifecycle schedule does, at its next run.
    assert service.get("acme").status == TenantStatus.PROVISIONING
    assert len(provisioner.created) == 1
    provisioner.complete_immediately = True
    assert service.advance_pending()["advanced"] == ["acme"]
    assert len(provisioner.created) == 2
    healed = service.get("acme")
    assert healed.status == TenantStatus.ACTIVE and healed.failure_reason is None
    assert healed.data_bucket == "trainyard-acme-123456789012"


def test_an_in_progress_rollback_is_waited_for_not_deleted(
    service: TenantService, provisioner: InMemoryProvisioner
) -> None:
    provisioner.complete_immediately = False
    service.create("acme", "basic")
    provisioner.stacks[STACK] = StackState("ROLLBACK_IN_PROGRESS", reason="JobRole failed")
    assert service.advance_pending()["waiting"] == ["acme"]
    tenant = service.get("acme")
    assert tenant.status == TenantStatus.PROVISIONING and tenant.failure_reason is None
    assert provisioner.deleted == []


def test_retries_back_off_and_the_last_attempt_fails_the_tenant(
    provisioner: InMemoryProvisioner,
) -> None:
    service = retrying_service(provisioner, attempts=4)
    clock = service.clock
    assert isinstance(clock, VirtualClock)
    provisioner.roll_back_with = "UploadRule CREATE_FAILED: rule already exists"
    tenant, _ = service.create("acme", "basic")
    assert tenant.failure_reason is not None
    assert tenant.failure_reason.startswith("provisioning attempt 1 of 4 failed: UploadRule")
    # The first retry needs no wait beyond the next lifecycle run.
    service.advance_pending()
    assert len(provisioner.created) == 2
    second = service.tenants.get("acme")
    assert second is not None and second.status == TenantStatus.PROVISIONING
    assert (second.failure_reason or "").startswith("provisioning attempt 2 of 4 failed: ")
    assert "retries after 2026-01-01T00:01:00.000Z" in (second.failure_reason or "")
    # Then it waits 60 s, then 120 s: runs before that do nothing.
    for wait, expected_creates in ((59, 2), (1, 3), (119, 3), (1, 4)):
        clock.advance(wait)
        service.advance_pending()
        assert len(provisioner.created) == expected_creates, wait
    failed = service.tenants.get("acme")
    assert failed is not None and failed.status == TenantStatus.FAILED
    assert (failed.failure_reason or "").startswith("provisioning attempt 4 of 4 failed: ")
    # The last failed stack stays for inspection; nothing retries a FAILED tenant.
    assert provisioner.stacks[STACK].status == "ROLLBACK_COMPLETE"
    clock.advance(3600)
    assert service.advance_pending() == {
        "advanced": [],
        "waiting": [],
        "errors": [],
        "deferred": [],
        "stacks_updating": [],
        "stacks_updated": [],
        "stack_update_failures": [],
        "stacks_outdated": [],
    }
    assert len(provisioner.created) == 4
    # A repeated POST starts over, from attempt 1.
    provisioner.roll_back_with = None
    retried, _ = service.create("acme", "basic")
    assert retried.status == TenantStatus.ACTIVE and retried.failure_reason is None
    assert provisioner.deleted.count(STACK) == 4


def test_a_failed_cleanup_of_an_attempt_fails_the_tenant_with_the_reason(
    service: TenantService, provisioner: InMemoryProvisioner
) -> None:
    provisioner.complete_immediately = False
    service.create("acme", "premium")
    provisioner.stacks[STACK] = StackState(
        "DELETE_FAILED",
        reason="DataBucket DELETE_FAILED: The bucket you tried to delete is not empty",
    )
    failed = service.get("acme")
    assert failed.status == TenantStatus.FAILED
    assert "not empty" in (failed.failure_reason or "")
    assert provisioner.deleted == []


def test_unknown_tenants_are_not_found(service: TenantService) -> None:
    with pytest.raises(NotFound):
        service.get("nobody")


def test_unknown_plans_are_rejected_with_the_list_of_plans(service: TenantService) -> None:
    with pytest.raises(InvalidRequest) as err:
        service.create("acme", "gold")
    assert err.value.code == "UnknownPlan"
    assert "basic" in err.value.message


@pytest.mark.parametrize(
    "tenant_id",
    ["ab", "a" * 33, "Acme", "-acme", "acme-", "ac me", "acme_co", "açme", "ac--me", "admin", ""],
)
def test_invalid_tenant_ids_are_rejected(tenant_id: str) -> None:
    with pytest.raises(InvalidRequest):
        validate_tenant_id(tenant_id)


@pytest.mark.parametrize("tenant_id", ["abc", "a" * 32, "acme-co", "0x1", "t-1-2"])
def test_valid_tenant_ids_are_accepted(tenant_id: str) -> None:
    assert validate_tenant_id(tenant_id) == tenant_id


def test_tenant_listing_pages_through_everyone(service: TenantService) -> None:
    for i in range(5):
        service.create(f"tenant-{i}", "basic")
    seen: list[str] = []
    token = None
    while True:
        page, token = service.list(limit=2, next_token=token)
        seen += [t.tenant_id for t in page]
        if not token:
            break
    assert seen == [f"tenant-{i}" for i in range(5)]


def test_suspending_and_resuming_a_tenant(service: TenantService) -> None:
    service.create("acme", "basic")
    assert service.update("acme", plan=None, status="SUSPENDED").status == TenantStatus.SUSPENDED
    assert service.update("acme", plan=None, status="ACTIVE").status == TenantStatus.ACTIVE
    with pytest.raises(InvalidRequest):
        service.update("acme", plan=None, status="DELETED")


def test_a_plan_change_repoints_the_tenant_rule_to_the_new_plan_queue(
    service: TenantService, provisioner: InMemoryProvisioner
) -> None:
    service.create("acme", "basic")
    tenant = service.update("acme", plan="standard", status=None)
    assert tenant.plan == "standard"
    # Both plans are pool: same template, the data stays where it is.
    assert tenant.data_bucket == "trainyard-pool-123456789012"
    assert tenant.data_prefix == "tenants/acme/data/"
    assert provisioner.template_swaps == []
    assert provisioner.updated == [
        (
            "trainyard-tenant-acme",
            {
                "TenantId": "acme",
                "PlanName": "standard",
                "IntakeQueueArn": "arn:aws:sqs:us-east-1:123456789012:trainyard-intake-standard",
            },
        )
    ]


class RecordingPurger:
    def __init__(self) -> None:
        self.purged: list[tuple[str, str]] = []

    def purge(self, bucket: str, prefix: str, stop: object = None) -> int:
        self.purged.append((bucket, prefix))
        return 1


def test_offboarding_deletes_the_stack_and_keeps_data_unless_purge_is_asked(
    provisioner: InMemoryProvisioner,
) -> None:
    purger = RecordingPurger()
    service = TenantService(
        settings=Settings(),
        tenants=InMemoryTenantRepository(),
        provisioner=provisioner,
        account_id="123456789012",
        clock=VirtualClock(),
        purger=purger,
    )
    service.create("keep", "premium")
    service.create("wipe", "premium")
    service.create("pooled", "basic")
    service.offboard("keep", purge=False)
    service.offboard("wipe", purge=True)
    service.offboard("pooled", purge=True)
    assert provisioner.deleted == [
        "trainyard-tenant-keep",
        "trainyard-tenant-wipe",
        "trainyard-tenant-pooled",
    ]
    # Nothing is purged while a request answers: the lifecycle schedule does it, once
    # the stack (upload rule, job role) is gone.
    assert purger.purged == []
    service.advance_pending()
    # A silo tenant's whole bucket goes; a pool tenant's prefix only, never the pool bucket.
    assert sorted(purger.purged) == [
        ("trainyard-pool-123456789012", "tenants/pooled/"),
        ("trainyard-wipe-123456789012", ""),
    ]
    with pytest.raises(NotFound):
        service.get("keep")


def test_a_retry_after_a_create_that_left_a_stuck_stack_deletes_and_recreates_it(
    service: TenantService, provisioner: InMemoryProvisioner
) -> None:
    provisioner.fail_next_create = "BucketAlreadyExists"
    failed, _ = service.create("acme", "premium")
    assert failed.status == TenantStatus.FAILED
    # The failed attempt left a stack behind that never finished.
    provisioner.stacks["trainyard-tenant-acme"] = StackState("CREATE_IN_PROGRESS")
    retried, _ = service.create("acme", "premium")
    assert provisioner.deleted == ["trainyard-tenant-acme"]
    assert retried.status == TenantStatus.ACTIVE


def test_the_lifecycle_schedule_finishes_provisioning_nobody_is_watching(
    service: TenantService, provisioner: InMemoryProvisioner
) -> None:
    provisioner.complete_immediately = False
    service.create("acme", "basic")
    service.create("globex", "basic")
    assert [t.tenant_id for t in service.tenants.pending()] == ["acme", "globex"]
    # Nothing finished yet: the schedule leaves both waiting.
    assert service.advance_pending()["waiting"] == ["acme", "globex"]
    stack = provisioner.stacks["trainyard-tenant-acme"]
    provisioner.stacks["trainyard-tenant-acme"] = StackState("CREATE_COMPLETE", stack.outputs)
    report = service.advance_pending()
    assert report["advanced"] == ["acme"] and report["waiting"] == ["globex"]
    # Read the registry directly: no GET was needed for acme to become usable.
    acme = service.tenants.get("acme")
    assert acme is not None and acme.status == TenantStatus.ACTIVE and acme.data_bucket
    assert [t.tenant_id for t in service.tenants.pending()] == ["globex"]


def test_the_lifecycle_schedule_removes_offboarded_tenants_once_their_stack_is_gone(
    service: TenantService, provisioner: InMemoryProvisioner
) -> None:
    service.create("acme", "premium")
    # CloudFormation takes its time deleting the stack.
    original_delete = provisioner.delete
    provisioner.delete = lambda name: provisioner.deleted.append(name)  # type: ignore[method-assign]
    service.offboard("acme", purge=False)
    assert service.advance_pending()["waiting"] == ["acme"]
    original_delete("trainyard-tenant-acme")
    assert service.advance_pending()["advanced"] == ["acme"]
    assert service.tenants.get("acme") is None
    assert service.tenants.pending() == []


def test_one_tenant_failing_does_not_stop_the_schedule_and_a_short_budget_defers_the_rest(
    service: TenantService, provisioner: InMemoryProvisioner
) -> None:
    provisioner.complete_immediately = False
    for tenant_id in ("aaa", "bbb", "ccc"):
        service.create(tenant_id, "basic")
        stack = provisioner.stacks[f"trainyard-tenant-{tenant_id}"]
        provisioner.stacks[f"trainyard-tenant-{tenant_id}"] = StackState(
            "CREATE_COMPLETE", stack.outputs
        )
    original = provisioner.describe

    def flaky(stack_name: str) -> StackState | None:
        if stack_name == "trainyard-tenant-aaa":
            raise RuntimeError("Throttling: Rate exceeded")
        return original(stack_name)

    provisioner.describe = flaky  # type: ignore[method-assign]
    # Enough time for two tenants only.
    budget = iter([60.0, 60.0, 1.0])
    report = service.advance_pending(time_left=lambda: next(budget))
    assert report["errors"] == ["aaa: RuntimeError: Throttling: Rate exceeded"]
    assert report["advanced"] == ["bbb"]
    assert report["deferred"] == ["ccc"]
    provisioner.describe = original  # type: ignore[method-assign]
    assert sorted(service.advance_pending()["advanced"]) == ["aaa", "ccc"]
    assert service.tenants.pending() == []


def test_a_bad_retrain_schedule_with_a_plan_change_changes_nothing(
    service: TenantService, provisioner: InMemoryProvisioner
) -> None:
    service.create("acme", "basic")
    before = service.get("acme")
    with pytest.raises(InvalidRequest) as refused:
        service.update("acme", plan="standard", status="SUSPENDED", retrain={"every": "weekly"})
    assert refused.value.code == "InvalidRetrainSchedule"
    after = service.get("acme")
    assert (after.plan, after.status, after.version) == (before.plan, before.status, before.version)


def test_a_retrain_schedule_survives_suspension_and_is_due_again_once_active(
    service: TenantService,
) -> None:
    service.create("acme", "basic")
    set_ = service.update("acme", plan=None, status=None, retrain={"every": "PT1H"})
    assert set_.retrain is not None and set_.retrain.every == "PT1H"
    due_at = set_.retrain.next_due_at
    later = "2999-01-01T00:00:00.000Z"
    service.update("acme", plan=None, status="SUSPENDED")
    assert service.tenants.due_for_retraining(later, 10) == []  # out of the index
    resumed = service.update("acme", plan=None, status="ACTIVE")
    assert resumed.retrain is not None and resumed.retrain.next_due_at == due_at
    assert [t.tenant_id for t in service.tenants.due_for_retraining(later, 10)] == ["acme"]
    # Combined with a plan change in the same PATCH, and removed with None.
    both = service.update("acme", plan="standard", status=None, retrain={"every": "P1D"})
    assert both.plan == "standard" and both.retrain is not None and both.retrain.every == "P1D"
    off = service.update("acme", plan=None, status=None, retrain=None)
    assert off.retrain is None
    assert service.tenants.due_for_retraining(later, 10) == []
