"""Offboarding: the stack goes first (no upload rule, no job role left to write into
what is purged); a purge then stops the tenant's pipeline executions, waits until
they have ended (a running one would go on writing artifacts and registering a
model), and removes the models and the data: all from the lifecycle schedule,
resumably."""

from __future__ import annotations

from trainyard_core.models import Tenant, TenantStatus
from trainyard_core.ports.provisioning import PurgePaused
from trainyard_core.tenants.base import TenantLifecycle
from trainyard_core.tenants.migration import MOVE_BUDGET_SECONDS


class Offboarding(TenantLifecycle):
    def offboard(self, tenant_id: str, *, purge: bool) -> Tenant:
        """Delete the tenant's stack. Its data (bucket or pool prefix) and its model
        package group are retained unless purge is asked for; a purge happens once the
        stack is gone (no upload rule, no job role left to write into what is being
        purged) and the tenant's executions have been stopped, from the lifecycle
        schedule, resumably (a large bucket outlasts an API call)."""
        tenant = self.get(tenant_id)
        stack_name = tenant.stack_name or self.names.tenant_stack(tenant_id)
        if self.provisioner.describe(stack_name) is not None:
            self.provisioner.delete(stack_name)
        offboarding = self._transition(
            tenant, TenantStatus.OFFBOARDING, purge_requested=purge or tenant.purge_requested
        )
        return self.refresh(offboarding)

    def _advance_offboarding(self, tenant: Tenant, until: float | None, *, retry: bool) -> Tenant:
        """An OFFBOARDING tenant: once its stack is gone (and, if asked, it is purged)
        it leaves the registry; its run history stays. Only the lifecycle schedule
        (``retry``) stops executions and purges; a request only reads."""
        running = 0
        if tenant.purge_requested and retry:
            # Models and data deleted under a running execution come back: its steps
            # go on writing artifacts (copies of the rows) and register a model
            # package. Asked while the stack is still being deleted too.
            running = self._stop_executions(tenant)
        if self.provisioner.describe(tenant.stack_name or "") is not None:
            return tenant
        if tenant.purge_requested:
            if not retry or running:
                # Purges run on the lifecycle schedule, not in a request, and only
                # once every execution has ended; the next run looks again.
                return tenant
            try:
                self._purge(tenant, until)
            except PurgePaused:
                return tenant  # the next run carries on
        self.tenants.delete(tenant.tenant_id)
        return tenant

    def _stop_executions(self, tenant: Tenant) -> int:
        """Ask every executing run of the tenant to stop; returns how many have not
        ended yet (Stopping, or admitted with the start still in flight)."""
        if self.executions is None:
            return 0
        unfinished = self.executions.unfinished(tenant.tenant_id)
        for execution in unfinished:
            if execution.execution_arn and execution.status == "Executing":
                self.executions.stop(execution.execution_arn)
        return len(unfinished)

    def _purge(self, tenant: Tenant, until: float | None) -> None:
        """Models, then data, once the executions have ended (idempotent; raises
        PurgePaused when out of time)."""
        if tenant.model_package_group_name and self.models is not None:
            self.models.purge(tenant.model_package_group_name)
        if self.purger is not None:
            deadline = until if until is not None else self._monotonic() + MOVE_BUDGET_SECONDS
            # A silo bucket goes entirely; a pool tenant's prefix only. Mid-migration
            # both the old and the new location hold objects (storage_locations).
            for bucket, root in self.storage_locations(tenant):
                self.purger.purge(bucket, root, stop=lambda: self._monotonic() >= deadline)
