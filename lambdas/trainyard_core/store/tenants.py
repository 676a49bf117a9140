"""The tenant registry's item layout, and its in-memory twin.

``tenants_dynamodb.py`` stores the same items in the tenants table; the
in-memory repository serves tests and the benchmark.
"""

from __future__ import annotations

import threading
from collections.abc import Collection
from typing import Any

from trainyard_core import limits
from trainyard_core.models import IgnoredUpload, Tenant, TenantStatus
from trainyard_core.ports.tenants import (
    PENDING_STATUSES,
    SETTLED_STATUSES,
    StaleTenantError,
    TenantExistsError,
)
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


_INDEX_ONLY = ("locationKey", "altLocationKey", "lifecycleStatus", "retrainShard", "retrainDueAt")
# byRetrainDue's one partition: a tenant is there while ACTIVE with a schedule
# (a few thousand small index items; each is written once per period).
RETRAIN_SHARD = "due"
# The location attributes, in lookup order (byLocation, then byAltLocation).
_LOCATION_ATTRIBUTES = ("locationKey", "altLocationKey")


# Written only by intake (``record_ignored_upload``), never by create/save, so
# a lifecycle or API write from an earlier read cannot drop a later entry.
INTAKE_OWNED = ("ignoredUploads", "ignoredUploadsSeq")


def tenant_to_item(tenant: Tenant) -> dict[str, Any]:
    item = tenant.model_dump(
        by_alias=True, mode="json", exclude_none=True, exclude={"ignored_uploads"}
    )
    # A reason may quote a dependency's error (CloudFormation, S3): bounded.
    if tenant.failure_reason is not None:
        item["failureReason"] = limits.failure_reason(tenant.failure_reason)
    if tenant.data_bucket and tenant.data_prefix is not None:
        item["locationKey"] = location_key(tenant.data_bucket, tenant.data_prefix)
    if tenant.alt_location:
        # The tenant's other location during and after a migration (byAltLocation).
        item["altLocationKey"] = tenant.alt_location
    if tenant.status in PENDING_STATUSES:
        item["lifecycleStatus"] = tenant.status.value
    if tenant.retrain is not None and tenant.status == TenantStatus.ACTIVE:
        item["retrainShard"] = RETRAIN_SHARD
        item["retrainDueAt"] = tenant.retrain.next_due_at
    return item


def item_to_tenant(item: dict[str, Any]) -> Tenant:
    clean = {
        k: (int(v) if k == "version" else v)
        for k, v in item.items()
        if k not in _INDEX_ONLY and k != "ignoredUploadsSeq"
    }
    return Tenant.model_validate(clean)


def saved_attributes() -> frozenset[str]:
    """Every attribute ``save`` owns (sets or removes): all but the intake's."""
    fields = {f.alias or name for name, f in Tenant.model_fields.items()}
    return frozenset((fields | set(_INDEX_ONLY)) - set(INTAKE_OWNED) - {"tenantId"})


def with_ignored_upload(
    uploads: list[dict[str, Any]], upload: IgnoredUpload
) -> list[dict[str, Any]] | None:
    """The tenant's ignored uploads with ``upload`` appended (newest last, the
    last IGNORED_UPLOADS_MAX, every field bounded); None if it is already there
    (S3 delivers at least once)."""
    entry = upload.model_copy(
        update={
            "key": limits.bounded(upload.key, limits.S3_KEY_MAX_CHARS),
            "reason": limits.bounded(upload.reason, limits.REASON_MAX_CHARS),
            "etag": limits.bounded_or_none(upload.etag, limits.NAME_MAX_CHARS),
        }
    ).model_dump(by_alias=True, mode="json", exclude_none=True)
    if any(u.get("key") == entry["key"] and u.get("etag") == entry.get("etag") for u in uploads):
        return None
    return [*uploads, entry][-limits.IGNORED_UPLOADS_MAX :]


class InMemoryTenantRepository:
    def __init__(self) -> None:
        self._items: dict[str, dict[str, Any]] = {}
        # locationKey / altLocationKey -> tenant id, like the byLocation and
        # byAltLocation indexes (lookups stay O(1)).
        self._by_location: dict[str, dict[str, str]] = {a: {} for a in _LOCATION_ATTRIBUTES}
        self._lock = threading.Lock()

    def _store(self, tenant_id: str, item: dict[str, Any] | None) -> None:
        old = self._items.pop(tenant_id, None)
        for attribute, index in self._by_location.items():
            if old is not None and old.get(attribute):
                index.pop(old[attribute], None)
            if item is not None and item.get(attribute):
                index[item[attribute]] = tenant_id
        if item is not None:
            self._items[tenant_id] = item

    def get(self, tenant_id: str) -> Tenant | None:
        with self._lock:
            item = self._items.get(tenant_id)
        return item_to_tenant(item) if item else None

    def get_many(self, tenant_ids: Collection[str]) -> dict[str, Tenant]:
        with self._lock:
            items = [self._items.get(t) for t in set(tenant_ids)]
        tenants = (item_to_tenant(item) for item in items if item)
        return {tenant.tenant_id: tenant for tenant in tenants}

    def find_by_location(self, bucket: str, key: str) -> Tenant | None:
        candidates = candidate_location_keys(bucket, key)
        for attribute in _LOCATION_ATTRIBUTES:  # own location first (as DynamoDB's)
            for candidate in candidates:
                with self._lock:
                    tenant_id = self._by_location[attribute].get(candidate)
                    item = self._items.get(tenant_id) if tenant_id else None
                if item is not None:
                    return item_to_tenant(item)
        return None

    def create(self, tenant: Tenant) -> None:
        with self._lock:
            if tenant.tenant_id in self._items:
                raise TenantExistsError(tenant.tenant_id)
            item = tenant_to_item(tenant)
            limits.check_item_size(item)  # as DynamoDB would refuse it
            self._store(tenant.tenant_id, item)

    def save(self, tenant: Tenant) -> Tenant:
        with self._lock:
            current = self._items.get(tenant.tenant_id)
            if current is None or int(current.get("version", 0)) != tenant.version:
                raise StaleTenantError(tenant.tenant_id)
            stored = tenant.model_copy(update={"version": tenant.version + 1})
            item = tenant_to_item(stored)
            item.update({k: current[k] for k in INTAKE_OWNED if k in current})
            limits.check_item_size(item)  # as DynamoDB would refuse it
            self._store(tenant.tenant_id, item)
            return stored

    def record_ignored_upload(self, tenant_id: str, upload: IgnoredUpload) -> bool:
        with self._lock:
            current = self._items.get(tenant_id)
            if current is None:
                return False
            uploads = with_ignored_upload(list(current.get("ignoredUploads", [])), upload)
            if uploads is None:
                return True
            item = {**current, "ignoredUploads": uploads}
            limits.check_item_size(item)
            self._items[tenant_id] = item
            return True

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

    def outdated(self, template_version: str) -> list[Tenant]:
        with self._lock:
            items = [
                i
                for i in self._items.values()
                if i["status"] in SETTLED_STATUSES and i.get("templateVersion") != template_version
            ]
        return sorted((item_to_tenant(i) for i in items), key=lambda t: t.tenant_id)

    def due_for_retraining(self, now_iso: str, limit: int) -> list[Tenant]:
        with self._lock:
            items = [
                i
                for i in self._items.values()
                if i.get("retrainShard") == RETRAIN_SHARD and i["retrainDueAt"] <= now_iso
            ]
        items.sort(key=lambda i: (i["retrainDueAt"], i["tenantId"]))
        return [item_to_tenant(i) for i in items[:limit]]
