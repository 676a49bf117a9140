"""Tenant lifecycle (see ``service``): onboarding, provisioning, migration between
isolation models, offboarding — one module per use case over the ports."""

from trainyard_core.tenants.service import TenantService
from trainyard_core.tenants.validation import validate_tenant_id

__all__ = ["TenantService", "validate_tenant_id"]
