"""Offboarding: the stack goes first (no upload rule, no job role left to write into
what is purged); a purge then removes the models and the data from the lifecycle
schedule, resumably."""

from __future__ import annotations

from trainyard_core.models import Tenant, TenantStatus
from trainyard_core.tenants.base import TenantLifecycle
from trainyard_core.tenants.migration import MOVE_BUDGET_SECONDS


class Offboarding(TenantLifecycle):
    def offboard(self, tenant_id: str, *, purge: bool) -> Tenant:
        """Delete the tenant's stack. Its data (bucket or pool prefix) and its model
        package group are retained unless purge is asked for; a purge happens once the
        stack is gone (no upload rule, no job role left to write into what is being
        purged), from the lifecycle schedule, resumably (a large bucket outlasts an
        API call)."""
        tenant = self.get(tenant_id)
        stack_name = tenant.stack_name or self.names.tenant_stack(tenant_id)
        if self.provisioner.describe(stack_name) is not None:
            self.provisioner.delete(stack_name)
        offboarding = self._transition(
            tenant, TenantStatus.OFFBOARDING, purge_requested=purge or tenant.purge_requested
        )
        return self.refresh(offboarding)

    def _purge(self, tenant: Tenant, until: float | None) -> None:
        """Models, then data (idempotent; raises PurgePaused when out of time)."""
        if tenant.model_package_group_name and self.models is not None:
            self.models.purge(tenant.model_package_group_name)
        if tenant.data_bucket and self.purger is not None:
            deadline = until if until is not None else self._monotonic() + MOVE_BUDGET_SECONDS
            # A silo bucket goes entirely; a pool tenant's prefix only.
            self.purger.purge(
                tenant.data_bucket,
                self.root_prefix(tenant.isolation, tenant.tenant_id),
                stop=lambda: self._monotonic() >= deadline,
            )
