"""Offboarding with purge removes a tenant's models too, and an id whose data or
models were retained is not handed to a new tenant (its stack would collide with
them, and it would inherit its predecessor's models)."""

from __future__ import annotations

import pytest
from trainyard_core.clock import VirtualClock
from trainyard_core.config import Settings
from trainyard_core.errors import Conflict
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
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def purge(self, bucket: str, prefix: str) -> int:
        self.calls.append((bucket, prefix))
        return 3


def _service(retained: dict[str, list[str]] | None = None) -> tuple[TenantService, Registry]:
    registry = Registry()
    service = TenantService(
        settings=Settings(),
        tenants=InMemoryTenantRepository(),
        provisioner=InMemoryProvisioner(),
        account_id="123456789012",
        clock=VirtualClock(),
        purger=Purger(),
        models=registry,
        retained=lambda tenant_id: (retained or {}).get(tenant_id, []),
    )
    return service, registry


def test_offboarding_with_purge_removes_the_tenants_model_registry() -> None:
    service, registry = _service()
    service.create("acme", "premium")
    service.offboard("acme", purge=True)
    assert registry.purged == ["trainyard-acme"]


def test_offboarding_without_purge_keeps_the_models() -> None:
    service, registry = _service()
    service.create("acme", "premium")
    service.offboard("acme", purge=False)
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
