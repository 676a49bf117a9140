"""The tenant repository: what the domain needs from the tenant registry.

Implemented by ``store/tenants_dynamodb.py`` (the tenants table) and
``store/tenants.py`` (in memory, for tests and the benchmark).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol

from trainyard_core.models import IgnoredUpload, Tenant, TenantStatus


class TenantExistsError(Exception):
    pass


class StaleTenantError(Exception):
    """The tenant changed since it was read (optimistic locking on ``version``)."""


# States that finish on their own (a stack operation, a data move): the
# lifecycle schedule advances tenants in them without anyone reading them.
PENDING_STATUSES = (TenantStatus.PROVISIONING, TenantStatus.MIGRATING, TenantStatus.OFFBOARDING)
# States whose stack the template rollout updates (the others' flows pass the template).
SETTLED_STATUSES = (TenantStatus.ACTIVE, TenantStatus.SUSPENDED)


class TenantRepository(Protocol):
    def get(self, tenant_id: str) -> Tenant | None: ...

    def get_many(self, tenant_ids: Collection[str]) -> dict[str, Tenant]:
        """Consistent reads of many tenants, by id (absent ids are left out). On
        DynamoDB one BatchGetItem per 100 ids, so a dispatch's reads do not grow
        with the number of waiting tenants one request each."""
        ...

    def find_by_location(self, bucket: str, key: str) -> Tenant | None: ...

    def create(self, tenant: Tenant) -> None:
        """Insert; raises TenantExistsError if the id is taken."""

    def save(self, tenant: Tenant) -> Tenant:
        """Write back a tenant read earlier; raises StaleTenantError if it changed.
        Returns the stored tenant with its version bumped."""

    def list(
        self, limit: int = 50, next_token: str | None = None
    ) -> tuple[list[Tenant], str | None]: ...

    def delete(self, tenant_id: str) -> None: ...

    def record_ignored_upload(self, tenant_id: str, upload: IgnoredUpload) -> bool:
        """Append to the tenant's recent ignored uploads (bounded, de-duplicated on
        key and ETag) without touching anything ``save`` writes; False if there is
        no such tenant or concurrent writers kept winning (best effort)."""
        ...

    def pending(self) -> list[Tenant]:
        """Tenants in a state of PENDING_STATUSES (provisioning, migrating, offboarding)."""
        ...

    def outdated(self, template_version: str) -> list[Tenant]:
        """ACTIVE and SUSPENDED tenants whose ``template_version`` is not this one
        (or none): their stacks are on an older tenant template."""
        ...

    def due_for_retraining(self, now_iso: str, limit: int) -> list[Tenant]:
        """ACTIVE tenants with a retrain schedule next due at or before ``now_iso``,
        soonest due first, at most ``limit`` (the sparse byRetrainDue index)."""
        ...
