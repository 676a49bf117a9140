"""Tenant ids: what a tenant may be called."""

from __future__ import annotations

from trainyard_core.errors import InvalidRequest
from trainyard_core.models import RESERVED_TENANT_IDS, TENANT_ID_MAX, TENANT_ID_MIN, TENANT_ID_RE


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
