"""What every tenant use case shares: the ports, the settings and names, the clock,
and the one way a tenant's state changes (``_transition``, optimistic)."""

from __future__ import annotations

import time
from collections.abc import Callable

from trainyard_core.arns import arn
from trainyard_core.clock import Clock, SystemClock
from trainyard_core.config import Settings
from trainyard_core.errors import InvalidRequest
from trainyard_core.models import Tenant, TenantStatus, TriggerObject, iso_ms
from trainyard_core.ports.provisioning import (
    DataMover,
    DataPurger,
    ModelPurger,
    StackProvisioner,
    TenantExecutions,
)
from trainyard_core.ports.tenants import StaleTenantError, TenantRepository
from trainyard_core.wiring import Names


class TenantLifecycle:
    """State and helpers of the tenant use cases (onboarding, provisioning,
    migration, offboarding); ``TenantService`` composes them."""

    def __init__(
        self,
        *,
        settings: Settings,
        tenants: TenantRepository,
        provisioner: StackProvisioner,
        account_id: str,
        clock: Clock | None = None,
        purger: DataPurger | None = None,
        mover: DataMover | None = None,
        sleep: Callable[[float], object] | None = None,
        used_before: Callable[[str], bool] | None = None,
        models: ModelPurger | None = None,
        retained: Callable[[str], list[str]] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        active_runs: Callable[[str], int] | None = None,
        record_upload: Callable[[Tenant, TriggerObject], object] | None = None,
        executions: TenantExecutions | None = None,
        template_version: str | None = None,
    ) -> None:
        self.settings = settings
        # The version of the tenant templates the provisioner creates and updates
        # stacks from (the deployed one); None: not known, no template rollout.
        self.template_version = template_version
        # Whether an id has history (runs) from an earlier, offboarded tenant.
        self.used_before = used_before
        # What an offboarded id still owns (retained group, bucket, pool objects).
        self.retained = retained
        self.models = models
        # How many of a tenant's runs are STARTING or RUNNING (a migration waits for
        # them), and how an upload moved by a migration is recorded (intake).
        self.active_runs = active_runs
        self.record_upload = record_upload
        # The tenant's pipeline executions: offboarding stops them, a purge waits.
        self.executions = executions
        self.names = Names.from_settings(settings)
        self.tenants = tenants
        self.provisioner = provisioner
        self.account_id = account_id
        self.clock = clock or SystemClock()
        self.purger = purger
        self.mover = mover
        # A virtual clock is advanced instead of sleeping (tests, benchmark).
        self._sleep = sleep or getattr(self.clock, "advance", None) or time.sleep
        self._monotonic = monotonic

    # --- helpers
    def _now(self) -> str:
        return iso_ms(self.clock.now()) or ""

    def intake_queue_arn(self, plan: str) -> str:
        return arn("sqs", self.settings.region, self.account_id, self.names.intake_queue(plan))

    def root_prefix(self, isolation: str, tenant_id: str) -> str:
        """Where everything a tenant owns lives in its bucket ("" = the whole bucket)."""
        return self.names.tenant_location(isolation, tenant_id, self.account_id)[1]

    def storage_locations(self, tenant: Tenant) -> list[tuple[str, str]]:
        """(bucket, root prefix) of every place the tenant's objects may be: its
        storage and, mid-migration, the one it moves to (a purge takes both)."""
        found: list[tuple[str, str]] = []
        if tenant.data_bucket:
            found.append((tenant.data_bucket, self.root_prefix(tenant.isolation, tenant.tenant_id)))
        if tenant.migrating_to is not None:
            bucket, root, _ = self.names.tenant_location(
                tenant.migrating_to, tenant.tenant_id, self.account_id
            )
            if (bucket, root) not in found:
                found.append((bucket, root))
        return found

    def stack_parameters(self, tenant_id: str, plan: str) -> dict[str, str]:
        # Both templates take exactly these (wiring.TENANT_STACK_PARAMETERS).
        return {
            "TenantId": tenant_id,
            "PlanName": plan,
            "IntakeQueueArn": self.intake_queue_arn(plan),
        }

    def validate_plan(self, plan: object) -> str:
        if not isinstance(plan, str) or plan not in self.settings.plans:
            known = ", ".join(sorted(self.settings.plans))
            raise InvalidRequest(f"unknown plan {plan!r}; plans are: {known}", code="UnknownPlan")
        return plan

    def _transition(self, tenant: Tenant, status: TenantStatus, **changes: object) -> Tenant:
        updated = tenant.model_copy(update={"status": status, "updated_at": self._now(), **changes})
        try:
            return self.tenants.save(updated)
        except StaleTenantError:
            # Someone else advanced it concurrently; theirs is at least as fresh.
            current = self.tenants.get(tenant.tenant_id)
            return current or updated
