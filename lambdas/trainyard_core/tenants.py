"""Tenant lifecycle: validation, idempotent onboarding, provisioning state.

Pure domain logic: it talks to a TenantRepository and a StackProvisioner port,
never to boto3, so tests run it on in-memory fakes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from trainyard_core.clock import Clock, SystemClock
from trainyard_core.config import Settings
from trainyard_core.errors import Conflict, InvalidRequest, NotFound
from trainyard_core.models import (
    RESERVED_TENANT_IDS,
    TENANT_ID_MAX,
    TENANT_ID_MIN,
    TENANT_ID_RE,
    Tenant,
    TenantStatus,
    iso_ms,
)
from trainyard_core.store.tenants import StaleTenantError, TenantExistsError, TenantRepository
from trainyard_core.wiring import TENANT_TAG_KEY, Names


@dataclass(frozen=True)
class StackState:
    status: str  # CloudFormation stack status, e.g. CREATE_COMPLETE
    outputs: dict[str, str] = field(default_factory=dict)
    reason: str | None = None

    @property
    def complete(self) -> bool:
        return self.status in ("CREATE_COMPLETE", "UPDATE_COMPLETE")

    @property
    def failed(self) -> bool:
        return self.status.endswith("_FAILED") or "ROLLBACK" in self.status

    @property
    def in_progress(self) -> bool:
        return self.status.endswith("_IN_PROGRESS") and not self.failed


class StackProvisioner(Protocol):
    def create(self, stack_name: str, parameters: dict[str, str], tags: dict[str, str]) -> None: ...

    def describe(self, stack_name: str) -> StackState | None:
        """None when the stack does not exist."""

    def update(self, stack_name: str, parameters: dict[str, str]) -> None:
        """Update parameters, keeping the template."""

    def delete(self, stack_name: str) -> None: ...


class DataPurger(Protocol):
    def purge(self, bucket: str, prefix: str) -> int:
        """Delete every object (and version) under prefix; returns how many."""


def validate_tenant_id(tenant_id: object) -> str:
    if not isinstance(tenant_id, str):
        raise InvalidRequest("tenantId must be a string", code="InvalidTenantId")
    if not TENANT_ID_MIN <= len(tenant_id) <= TENANT_ID_MAX:
        raise InvalidRequest(
            f"tenantId must be {TENANT_ID_MIN}-{TENANT_ID_MAX} characters", code="InvalidTenantId"
        )
    if not TENANT_ID_RE.fullmatch(tenant_id) or "--" in tenant_id:
        raise InvalidRequest(
            "tenantId may contain only lowercase letters, digits and single hyphens, "
            "and must start and end with a letter or digit",
            code="InvalidTenantId",
        )
    if tenant_id in RESERVED_TENANT_IDS:
        raise InvalidRequest(f"tenantId {tenant_id!r} is reserved", code="ReservedTenantId")
    return tenant_id


class TenantService:
    def __init__(
        self,
        *,
        settings: Settings,
        tenants: TenantRepository,
        provisioner: StackProvisioner,
        account_id: str,
        clock: Clock | None = None,
        purger: DataPurger | None = None,
    ) -> None:
        self.settings = settings
        self.names = Names.from_settings(settings)
        self.tenants = tenants
        self.provisioner = provisioner
        self.account_id = account_id
        self.clock = clock or SystemClock()
        self.purger = purger

    # --- helpers
    def _now(self) -> str:
        return iso_ms(self.clock.now()) or ""

    def intake_queue_arn(self, plan: str) -> str:
        return (
            f"arn:aws:sqs:{self.settings.region}:{self.account_id}:{self.names.intake_queue(plan)}"
        )

    def validate_plan(self, plan: object) -> str:
        if not isinstance(plan, str) or plan not in self.settings.plans:
            known = ", ".join(sorted(self.settings.plans))
            raise InvalidRequest(f"unknown plan {plan!r}; plans are: {known}", code="UnknownPlan")
        return plan

    # --- queries
    def get(self, tenant_id: str) -> Tenant:
        tenant = self.tenants.get(tenant_id)
        if tenant is None:
            raise NotFound(f"tenant {tenant_id!r} does not exist", code="TenantNotFound")
        return self.refresh(tenant)

    def list(self, limit: int, next_token: str | None) -> tuple[list[Tenant], str | None]:
        tenants, token = self.tenants.list(limit=limit, next_token=next_token)
        return [self.refresh(t) for t in tenants], token

    # --- commands
    def create(self, tenant_id: str, plan: str) -> tuple[Tenant, bool]:
        """Returns (tenant, created). Repeating an identical create is idempotent."""
        validate_tenant_id(tenant_id)
        self.validate_plan(plan)
        existing = self.tenants.get(tenant_id)
        if existing is not None:
            return self._same_or_conflict(existing, plan), False
        now = self._now()
        tenant = Tenant(
            tenant_id=tenant_id,
            plan=plan,
            status=TenantStatus.PROVISIONING,
            isolation=self.settings.plan(plan).isolation,
            stack_name=self.names.tenant_stack(tenant_id),
            model_package_group_name=self.names.model_package_group(tenant_id),
            created_at=now,
            updated_at=now,
        )
        try:
            self.tenants.create(tenant)
        except TenantExistsError:
            # Lost a race with an identical request: same rules as above.
            current = self.tenants.get(tenant_id)
            assert current is not None
            return self._same_or_conflict(current, plan), False
        return self._provision(tenant), True

    def _same_or_conflict(self, existing: Tenant, plan: str) -> Tenant:
        if existing.plan != plan:
            raise Conflict(
                f"tenant {existing.tenant_id!r} already exists with plan {existing.plan!r}",
                code="TenantExists",
            )
        if existing.status == TenantStatus.FAILED:
            # A retried create of a failed tenant provisions again.
            return self._provision(existing)
        return self.refresh(existing)

    def _provision(self, tenant: Tenant) -> Tenant:
        stack_name = tenant.stack_name or self.names.tenant_stack(tenant.tenant_id)
        state = self.provisioner.describe(stack_name)
        try:
            if state is not None and state.failed:
                # Partial resources of a failed attempt are removed before retrying.
                self.provisioner.delete(stack_name)
                state = None
            if state is None:
                self.provisioner.create(
                    stack_name,
                    {
                        "TenantId": tenant.tenant_id,
                        "PlanName": tenant.plan,
                        "IntakeQueueArn": self.intake_queue_arn(tenant.plan),
                    },
                    {TENANT_TAG_KEY: tenant.tenant_id},
                )
        except Exception as exc:  # the provisioner's failure becomes the tenant's reason
            return self._transition(
                tenant, TenantStatus.FAILED, failure_reason=f"provisioning failed: {exc}"
            )
        if tenant.status != TenantStatus.PROVISIONING:
            tenant = self._transition(tenant, TenantStatus.PROVISIONING, failure_reason=None)
        return self.refresh(tenant)

    def update(self, tenant_id: str, *, plan: str | None, status: str | None) -> Tenant:
        tenant = self.get(tenant_id)
        if plan is None and status is None:
            raise InvalidRequest("nothing to update: give plan and/or status", code="EmptyUpdate")
        if tenant.status not in (TenantStatus.ACTIVE, TenantStatus.SUSPENDED):
            raise Conflict(
                f"tenant {tenant_id!r} is {tenant.status.value}; only ACTIVE or SUSPENDED "
                "tenants can be updated",
                code="TenantNotUpdatable",
            )
        changes: dict[str, object] = {}
        if plan is not None and plan != tenant.plan:
            self.validate_plan(plan)
            if self.settings.plan(plan).isolation != tenant.isolation:
                raise Conflict(
                    f"moving from {tenant.isolation} to {self.settings.plan(plan).isolation} "
                    "isolation needs a data migration, which this deployment does not offer yet",
                    code="IsolationChangeUnsupported",
                )
            # The tenant's rule must feed the new plan's intake queue; data stays put.
            self.provisioner.update(
                tenant.stack_name or self.names.tenant_stack(tenant_id),
                {
                    "TenantId": tenant_id,
                    "PlanName": plan,
                    "IntakeQueueArn": self.intake_queue_arn(plan),
                },
            )
            changes["plan"] = plan
        new_status = tenant.status
        if status is not None:
            if status not in (TenantStatus.ACTIVE.value, TenantStatus.SUSPENDED.value):
                raise InvalidRequest("status must be ACTIVE or SUSPENDED", code="InvalidStatus")
            new_status = TenantStatus(status)
        return self._transition(tenant, new_status, **changes)

    def offboard(self, tenant_id: str, *, purge: bool) -> Tenant:
        """Delete the tenant's stack. Its bucket is retained unless purge is asked for."""
        tenant = self.get(tenant_id)
        if purge and tenant.data_bucket and self.purger is not None:
            self.purger.purge(tenant.data_bucket, "")
        stack_name = tenant.stack_name or self.names.tenant_stack(tenant_id)
        if self.provisioner.describe(stack_name) is not None:
            self.provisioner.delete(stack_name)
        offboarding = self._transition(tenant, TenantStatus.OFFBOARDING)
        return self.refresh(offboarding)

    def refresh(self, tenant: Tenant) -> Tenant:
        """Advance a PROVISIONING or OFFBOARDING tenant from its stack's state (idempotent)."""
        if tenant.status == TenantStatus.OFFBOARDING:
            if self.provisioner.describe(tenant.stack_name or "") is None:
                # Stack gone: the tenant leaves the registry; its run history stays.
                self.tenants.delete(tenant.tenant_id)
            return tenant
        if tenant.status != TenantStatus.PROVISIONING:
            return tenant
        state = self.provisioner.describe(tenant.stack_name or "")
        if state is None or state.in_progress:
            return tenant
        if state.complete:
            out = state.outputs
            return self._transition(
                tenant,
                TenantStatus.ACTIVE,
                data_bucket=out.get("DataBucketName"),
                data_prefix=out.get("DataPrefix"),
                output_uri=out.get("OutputUri"),
                role_arn=out.get("RoleArn"),
                model_package_group_name=out.get("ModelPackageGroupName")
                or tenant.model_package_group_name,
                failure_reason=None,
            )
        reason = state.reason or state.status
        return self._transition(
            tenant, TenantStatus.FAILED, failure_reason=f"tenant stack {state.status}: {reason}"
        )

    def _transition(self, tenant: Tenant, status: TenantStatus, **changes: object) -> Tenant:
        updated = tenant.model_copy(update={"status": status, "updated_at": self._now(), **changes})
        try:
            return self.tenants.save(updated)
        except StaleTenantError:
            # Someone else advanced it concurrently; theirs is at least as fresh.
            current = self.tenants.get(tenant.tenant_id)
            return current or updated
