"""Provisioning: a tenant's stack is created, watched, and a failed create rolled
back, deleted and retried by the lifecycle schedule (bounded, with backoff)."""

from __future__ import annotations

import re
from datetime import timedelta

from trainyard_core.errors import Conflict
from trainyard_core.limits import FAILURE_REASON_MAX_CHARS, bounded
from trainyard_core.models import Tenant, TenantStatus, iso_ms, parse_iso
from trainyard_core.tenants.base import TenantLifecycle
from trainyard_core.wiring import TENANT_TAG_KEY


class Provisioning(TenantLifecycle):
    def _refuse_retained(self, tenant_id: str) -> None:
        """409 if an earlier tenant of this id left models or data (or a bucket of
        its silo name belongs to someone else): the tenant stack would collide with
        them, and a new tenant must never inherit its predecessor's models or data."""
        left = self.retained(tenant_id) if self.retained is not None else []
        if left:
            raise Conflict(
                f"tenantId {tenant_id!r} cannot be given to a new tenant: {', '.join(left)} "
                "remain under it (an earlier tenant of that id offboarded without purge "
                "keeps its data and models); delete them or choose another id",
                code="TenantIdRetired",
            )

    def _provision(self, tenant: Tenant) -> Tenant:
        stack_name = tenant.stack_name or self.names.tenant_stack(tenant.tenant_id)
        state = self.provisioner.describe(stack_name)
        requested = tenant.template_requested
        try:
            retrying = tenant.status == TenantStatus.FAILED
            if state is not None and (state.failed or (retrying and not state.complete)):
                # Partial resources of a failed attempt are removed before retrying.
                self.provisioner.delete(stack_name)
                state = self.provisioner.describe(stack_name)
                if state is not None:
                    # Deletion takes a while in AWS; the lifecycle schedule (or the
                    # next read) creates the stack once it is gone.
                    return self._transition(tenant, TenantStatus.PROVISIONING, failure_reason=None)
            if state is None:
                if tenant.status == TenantStatus.PROVISIONING and self._failed_attempts(tenant):
                    # A retry minutes later: what appeared under the id since the
                    # create was checked (a bucket of that name) fails it with a reason.
                    self._refuse_retained(tenant.tenant_id)
                self.provisioner.create(
                    stack_name,
                    self.stack_parameters(tenant.tenant_id, tenant.plan),
                    {TENANT_TAG_KEY: tenant.tenant_id},
                    isolation=tenant.isolation,
                )
                requested = self.template_version
        except Exception as exc:  # the provisioner's failure becomes the tenant's reason
            # Bounded: a dependency's message must not make the tenant item unwritable.
            reason = bounded(f"provisioning failed: {exc}", FAILURE_REASON_MAX_CHARS)
            return self._transition(tenant, TenantStatus.FAILED, failure_reason=reason)
        if tenant.status != TenantStatus.PROVISIONING:
            tenant = self._transition(
                tenant, TenantStatus.PROVISIONING, failure_reason=None, template_requested=requested
            )
        return self._advance_provisioning(tenant, retry=False, created=True)

    # "provisioning attempt 2 of 5 failed: <why>; ...": the failed stack is deleted
    # before the retry, so the tenant's reason is where the attempts are counted.
    _ATTEMPT = re.compile(r"^provisioning attempt (\d+) of \d+ failed: ")

    def _failed_attempts(self, tenant: Tenant) -> int:
        found = self._ATTEMPT.match(tenant.failure_reason or "")
        return int(found[1]) if found else 0

    def _retry_delay(self, failed_attempts: int) -> float:
        """Wait after the n-th failure: the next lifecycle run, then doubling."""
        if failed_attempts <= 1:
            return 0.0
        return float(self.settings.provisioning_retry_seconds * 2 ** (failed_attempts - 2))

    def _advance_provisioning(
        self, tenant: Tenant, *, retry: bool, created: bool = False
    ) -> Tenant:
        """A PROVISIONING tenant from its stack: ACTIVE when complete; a failed create
        is recorded, deleted and (by the lifecycle schedule, ``retry``) created again."""
        stack_name = tenant.stack_name or self.names.tenant_stack(tenant.tenant_id)
        state = self.provisioner.describe(stack_name)
        failed = self._failed_attempts(tenant)
        if state is None:
            if created:
                return tenant  # just created, not listed yet
            if failed:
                failed_at = parse_iso(tenant.updated_at)
                due = failed_at is None or self.clock.now() >= failed_at + timedelta(
                    seconds=self._retry_delay(failed)
                )
                if not (retry and due):
                    return tenant  # retries are the lifecycle schedule's, after the backoff
            # No stack (yet, or any more after a failed attempt): create it now.
            return self._provision(tenant)
        if state.in_progress:
            return tenant
        if state.complete:
            out = state.outputs
            return self._transition(
                tenant,
                TenantStatus.ACTIVE,
                data_bucket=out.get("DataBucketName"),
                data_prefix=out.get("DataPrefix"),
                output_uri=out.get("OutputUri"),
                role_arn=out.get("RoleArn"),
                model_package_group_name=out.get("ModelPackageGroupName")
                or tenant.model_package_group_name,
                failure_reason=None,
                # The version its create asked for (None: unknown, so outdated).
                template_version=tenant.template_requested,
                template_requested=None,
                template_update_at=None,
            )
        reason = bounded(state.reason or state.status, FAILURE_REASON_MAX_CHARS)
        if state.status == "DELETE_FAILED":
            # Cleaning up a failed attempt failed: something needs a person.
            return self._transition(
                tenant,
                TenantStatus.FAILED,
                failure_reason=f"tenant stack DELETE_FAILED while retrying: {reason}",
            )
        attempt, attempts = failed + 1, self.settings.provisioning_attempts
        failure = f"provisioning attempt {attempt} of {attempts} failed: {reason}"
        if attempt >= attempts:
            # The failed stack stays for inspection; a repeated POST /tenants starts over.
            return self._transition(tenant, TenantStatus.FAILED, failure_reason=failure)
        # Deleted before the failure is recorded: a delete that raises is retried, and
        # the same failed stack is never counted twice.
        self.provisioner.delete(stack_name)
        wait = self._retry_delay(attempt)
        when = f" after {iso_ms(self.clock.now() + timedelta(seconds=wait))}" if wait else ""
        return self._transition(
            tenant,
            TenantStatus.PROVISIONING,
            failure_reason=f"{failure}; the lifecycle schedule retries{when}",
        )
