"""Template rollout: tenant stacks follow the deployed tenant template.

Every tenant records the template version its stack was last created or updated
from (``Tenant.template_version``), made current only once that operation is
COMPLETE. A redeploy that changes a tenant template ships both templates under a
new version (``templates/<version>/``); the lifecycle schedule then updates the
stacks of ACTIVE and SUSPENDED tenants on another version (or none recorded) with
UpdateStack to their isolation's current template and their current parameters:
at most ``tenant_stack_updates_per_run`` UpdateStack calls per run, oldest tenants
first, after the pending tenants had their turn. PROVISIONING, MIGRATING and
OFFBOARDING tenants are left to their own flows, which use the current template
and record the version they asked for (``template_requested``).

An update in progress is waited for (a later run reads the stack's status). A
failed one (rejected, or rolled back: UPDATE_ROLLBACK_COMPLETE leaves the old stack
serving) is reported, and the tenant keeps working on its old stack; it is tried
again after ``RETRY_AFTER``, behind the tenants not tried yet.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import datetime, timedelta

from trainyard_core.limits import REASON_MAX_CHARS, bounded
from trainyard_core.models import Tenant, parse_iso
from trainyard_core.ports.tenants import SETTLED_STATUSES, StaleTenantError
from trainyard_core.tenants.base import TenantLifecycle

# After a scan found every tenant on the current template.
RESCAN_AFTER = timedelta(minutes=15)
RETRY_AFTER = timedelta(minutes=15)


def _failed_at(tenant: Tenant) -> str | None:
    """When the rollout's last update of this tenant failed (None: it did not)."""
    return tenant.template_update_at if tenant.template_requested is None else None


def _order(tenant: Tenant) -> tuple[bool, str, str, str]:
    # Never failed first, oldest tenants first; then the least recently failed.
    failed_at = _failed_at(tenant)
    return (failed_at is not None, failed_at or "", tenant.created_at, tenant.tenant_id)


def empty_report() -> dict[str, list[str]]:
    return {
        "stacks_updating": [],
        "stacks_updated": [],
        "stack_update_failures": [],
        "stacks_outdated": [],
    }


class TemplateRollout(TenantLifecycle):
    def update_outdated_stacks(
        self, time_left: Callable[[], float] | None = None, reserve_seconds: float = 5.0
    ) -> dict[str, list[str]]:
        """One run of the rollout. Returns {"stacks_updating": ids whose update was
        started or is in progress, "stacks_updated": ids now on the current template,
        "stack_update_failures": "<id>: <why>" for each failed update (or error),
        "stacks_outdated": ids still on an older template, not updated this run}."""
        report = empty_report()
        version = self.template_version
        if version is None:
            return report
        # Finding outdated tenants is a whole-table scan ("not this version" has no
        # index): once a scan found none for this version, the next comes only after
        # RESCAN_AFTER (a tenant that finishes a migration on an older template waits
        # that long), not every minute. Per container: a deploy brings new ones.
        now = self.clock.now()
        complete: dict[str, datetime] = self.__dict__.setdefault("_rollout_complete_until", {})
        if version in complete and now < complete[version]:
            return report
        listed = self.tenants.outdated(version)
        if not listed:
            # A tenant still provisioning or migrating may settle on an older template:
            # the rollout is complete only when none is (an index query, cheap).
            if not self.tenants.pending():
                complete[version] = now + RESCAN_AFTER
            return report
        complete.pop(version, None)
        # Updates asked for on earlier runs first (a DescribeStacks each), then the
        # rest in rollout order, at most ``budget`` UpdateStack calls.
        in_flight = sorted((t for t in listed if t.template_requested == version), key=_order)
        waiting = sorted((t for t in listed if t.template_requested != version), key=_order)
        budget = self.settings.tenant_stack_updates_per_run
        for tenant in [*in_flight, *waiting]:
            starts = tenant.template_requested != version
            out_of_time = time_left is not None and time_left() - reserve_seconds <= 0
            if out_of_time or (starts and (budget <= 0 or not self._due(tenant))):
                report["stacks_outdated"].append(tenant.tenant_id)
                continue
            try:
                outcome, called = self._roll_out(tenant.tenant_id, version)
            except Exception as exc:  # one tenant's error never stops the others
                outcome, called = f"failed: {type(exc).__name__}: {exc}", False
            budget -= called
            if outcome.startswith("failed: "):
                error = f"{tenant.tenant_id}: {outcome.removeprefix('failed: ')}"
                report["stack_update_failures"].append(bounded(error, REASON_MAX_CHARS))
            elif outcome != "skipped":
                report[f"stacks_{outcome}"].append(tenant.tenant_id)
        return report

    def _due(self, tenant: Tenant) -> bool:
        failed_at = parse_iso(_failed_at(tenant))
        return failed_at is None or self.clock.now() >= failed_at + RETRY_AFTER

    def _roll_out(self, tenant_id: str, version: str) -> tuple[str, bool]:
        """(outcome, whether UpdateStack was called). The outcome: "updating",
        "updated", "outdated" (its stack is busy with another operation), "skipped"
        (current already, or no longer ACTIVE/SUSPENDED) or "failed: <why>"."""
        # The listing is eventually consistent: act on the consistent read.
        tenant = self.tenants.get(tenant_id)
        if (
            tenant is None
            or tenant.status not in SETTLED_STATUSES
            or tenant.template_version == version
        ):
            return "skipped", False
        stack_name = tenant.stack_name or self.names.tenant_stack(tenant_id)
        state = self.provisioner.describe(stack_name)
        if state is None:
            self._failed(tenant)
            return "failed: the tenant stack does not exist", False
        if tenant.template_requested == version:
            # Asked for on an earlier run: how did it end?
            if state.in_progress:
                return "updating", False
            if state.complete:
                out = state.outputs
                self._save(
                    tenant,
                    template_version=version,
                    template_requested=None,
                    template_update_at=None,
                    output_uri=out.get("OutputUri") or tenant.output_uri,
                    role_arn=out.get("RoleArn") or tenant.role_arn,
                    model_package_group_name=out.get("ModelPackageGroupName")
                    or tenant.model_package_group_name,
                )
                return "updated", False
            # e.g. UPDATE_ROLLBACK_COMPLETE: the old stack still serves the tenant.
            self._failed(tenant)
            return f"failed: tenant stack {state.status}: {state.reason or state.status}", False
        if state.in_progress:
            return "outdated", False  # another operation (a plan change) first
        try:
            self.provisioner.update(
                stack_name,
                self.stack_parameters(tenant_id, tenant.plan),
                isolation=tenant.isolation,
            )
        except Exception as exc:  # rejected (validation, a stuck stack): tried again later
            self._failed(tenant)
            return f"failed: UpdateStack: {exc}", True
        self._save(tenant, template_requested=version, template_update_at=self._now())
        return "updating", True

    def _failed(self, tenant: Tenant) -> None:
        """The tenant stays on its old stack and is tried again after RETRY_AFTER."""
        self._save(tenant, template_requested=None, template_update_at=self._now())

    def _save(self, tenant: Tenant, **changes: object) -> None:
        """Bookkeeping only (not the tenant's status or ``updated_at``). A tenant
        changed concurrently keeps its write: the next run looks again."""
        with contextlib.suppress(StaleTenantError):
            self.tenants.save(tenant.model_copy(update=changes))
