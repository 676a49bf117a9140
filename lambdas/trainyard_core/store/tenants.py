"""The tenant registry's item layout, and its in-memory twin.

``tenants_dynamodb.py`` stores the same items in the tenants table; the
in-memory repository serves tests and the benchmark.
"""

from __future__ import annotations

import threading
from typing import Any

from trainyard_core.models import Tenant
from trainyard_core.ports.tenants import PENDING_STATUSES, StaleTenantError, TenantExistsError
from trainyard_core.store.tokens import InvalidTokenError, decode_token, encode_token


def location_key(bucket: str, prefix: str) -> str:
    return f"{bucket}/{prefix}"


def candidate_location_keys(bucket: str, key: str, max_depth: int = 4) -> list[str]:
    """Every "<bucket>/<prefix>" a tenant could own for this object, longest first.

    A silo tenant owns "<bucket>/data/", a pool tenant "<bucket>/tenants/<id>/";
    trying each '/'-prefix of the key covers both without a scan.
    """
    parts = key.split("/")[:-1]
    prefixes = ["/".join(parts[:i]) + "/" for i in range(1, min(len(parts), max_depth) + 1)]
    return [location_key(bucket, p) for p in reversed(prefixes)] + [location_key(bucket, "")]


_INDEX_ONLY = ("locationKey", "lifecycleStatus")


def tenant_to_item(tenant: Tenant) -> dict[str, Any]:
    item = tenant.model_dump(by_alias=True, mode="json", exclude_none=True)
    if tenant.data_bucket and tenant.data_prefix is not None:
        item["locationKey"] = location_key(tenant.data_bucket, tenant.data_prefix)
    if tenant.status in PENDING_STATUSES:
        item["lifecycleStatus"] = tenant.status.value
    return item


def item_to_tenant(item: dict[str, Any]) -> Tenant:
    clean = {k: (int(v) if k == "version" else v) for k, v in item.items() if k not in _INDEX_ONLY}
    return Tenant.model_validate(clean)


class InMemoryTenantRepository:
    def __init__(self) -> None:
        self._items: dict[str, dict[str, Any]] = {}
        # locationKey -> tenant id, like the byLocation index (lookups stay O(1)).
        self._by_location: dict[str, str] = {}
        self._lock = threading.Lock()

    def _store(self, tenant_id: str, item: dict[str, Any] | None) -> None:
        old = self._items.pop(tenant_id, None)
        if old is not None and old.get("locationKey"):
            self._by_location.pop(old["locationKey"], None)
        if item is not None:
            self._items[tenant_id] = item
            if item.get("locationKey"):
                self._by_location[item["locationKey"]] = tenant_id

    def get(self, tenant_id: str) -> Tenant | None:
        with self._lock:
            item = self._items.get(tenant_id)
        return item_to_tenant(item) if item else None

    def find_by_location(self, bucket: str, key: str) -> Tenant | None:
        for candidate in candidate_location_keys(bucket, key):
            with self._lock:
                tenant_id = self._by_location.get(candidate)
                item = self._items.get(tenant_id) if tenant_id else None
            if item is not None:
                return item_to_tenant(item)
        return None

    def create(self, tenant: Tenant) -> None:
        with self._lock:
            if tenant.tenant_id in self._items:
                raise TenantExistsError(tenant.tenant_id)
            self._store(tenant.tenant_id, tenant_to_item(tenant))

    def save(self, tenant: Tenant) -> Tenant:
        with self._lock:
            current = self._items.get(tenant.tenant_id)
            if current is None or int(current.get("version", 0)) != tenant.version:
                raise StaleTenantError(tenant.tenant_id)
            stored = tenant.model_copy(update={"version": tenant.version + 1})
            self._store(tenant.tenant_id, tenant_to_item(stored))
            return stored

    def list(
        self, limit: int = 50, next_token: str | None = None
    ) -> tuple[list[Tenant], str | None]:
        start = decode_token(next_token) if next_token else ""
        if not isinstance(start, str):
            raise InvalidTokenError("nextToken is not a token this API returned")
        with self._lock:
            ids = sorted(i for i in self._items if i > start)
        page = ids[:limit]
        token = encode_token(page[-1]) if len(ids) > limit else None
        return [t for t in (self.get(i) for i in page) if t], token

    def delete(self, tenant_id: str) -> None:
        with self._lock:
            self._store(tenant_id, None)

    def pending(self) -> list[Tenant]:
        with self._lock:
            items = [i for i in self._items.values() if i.get("lifecycleStatus")]
        return sorted((item_to_tenant(i) for i in items), key=lambda t: t.tenant_id)
