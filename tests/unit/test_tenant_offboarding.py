"""Offboarding with purge removes a tenant's models too, and an id whose data or
models were retained is not handed to a new tenant (its stack would collide with
them, and it would inherit its predecessor's models)."""

from __future__ import annotations

from typing import Any

import pytest
from trainyard_core.clock import VirtualClock
from trainyard_core.config import Settings
from trainyard_core.errors import Conflict
from trainyard_core.models import TenantStatus
from trainyard_core.ports.provisioning import PurgePaused
from trainyard_core.store.tenants import InMemoryTenantRepository
from trainyard_core.tenants import TenantService

from tests.unit.test_tenant_lifecycle import InMemoryProvisioner


class Registry:
    def __init__(self) -> None:
        self.purged: list[str] = []

    def purge(self, group: str) -> int:
        self.purged.append(group)
        return 2


class Purger:
    """Deletes one page of versions per call; ``pages`` long."""

    def __init__(self, pages: int = 1) -> None:
        self.calls: list[tuple[str, str]] = []
        self.pages = pages

    def purge(self, bucket: str, prefix: str, stop: Any = None) -> int:
        self.calls.append((bucket, prefix))
        self.pages -= 1
        if self.pages > 0 and stop is not None:
            raise PurgePaused("one page deleted")
        return 3


def _service(
    retained: dict[str, list[str]] | None = None,
    purger: Purger | None = None,
    provisioner: InMemoryProvisioner | None = None,
) -> tuple[TenantService, Registry]:
    registry = Registry()
    service = TenantService(
        settings=Settings(),
        tenants=InMemoryTenantRepository(),
        provisioner=provisioner or InMemoryProvisioner(),
        account_id="123456789012",
        clock=VirtualClock(),
        purger=purger or Purger(),
        models=registry,
        retained=lambda tenant_id: (retained or {}).get(tenant_id, []),
    )
    return service, registry


def test_offboarding_with_purge_removes_the_models_once_the_stack_is_gone() -> None:
    provisioner = InMemoryProvisioner()
    service, registry = _service(provisioner=provisioner)
    service.create("acme", "premium")
    stack = provisioner.stacks["trainyard-tenant-acme"]
    provisioner.delete = lambda name: None  # type: ignore[method-assign]  # deletion takes time
    tenant = service.offboard("acme", purge=True)
    assert tenant.status == TenantStatus.OFFBOARDING
    service.advance_pending()
    # While the stack (its upload rule and job role) exists, nothing is purged.
    assert registry.purged == [] and provisioner.stacks["trainyard-tenant-acme"] == stack
    provisioner.stacks.pop("trainyard-tenant-acme")
    service.advance_pending()
    assert registry.purged == ["trainyard-acme"]
    assert service.tenants.get("acme") is None


def test_a_purge_that_runs_out_of_time_resumes_on_the_next_lifecycle_run() -> None:
    purger = Purger(pages=3)
    service, _ = _service(purger=purger)
    service.create("acme", "premium")
    service.offboard("acme", purge=True)
    assert service.advance_pending()["waiting"] == ["acme"]
    assert service.advance_pending()["waiting"] == ["acme"]
    assert service.advance_pending()["advanced"] == ["acme"]
    assert len(purger.calls) == 3 and service.tenants.get("acme") is None


def test_offboarding_without_purge_keeps_the_models() -> None:
    service, registry = _service()
    service.create("acme", "premium")
    service.offboard("acme", purge=False)
    service.advance_pending()
    assert registry.purged == []


def test_an_id_whose_models_or_data_were_retained_is_not_given_to_a_new_tenant() -> None:
    left = {"acme": ["model package group trainyard-acme", "bucket trainyard-acme-123456789012"]}
    service, _ = _service(retained=left)
    with pytest.raises(Conflict) as refused:
        service.create("acme", "premium")
    assert refused.value.code == "TenantIdRetired"
    assert "model package group trainyard-acme" in str(refused.value)
    tenant, created = service.create("globex", "premium")
    assert created and tenant.tenant_id == "globex"
