"""A plan change across isolation models (pool <-> silo) is a migration.

PATCH marks the tenant MIGRATING and asks for an UpdateStack to the other
isolation's template (role, rule and model package group keep their logical
ids, so they update in place and the model history is untouched); once the
stack is updated, the lifecycle schedule (or a read, or a retried PATCH) copies the
tenant's objects to the new location, verifies them, deletes the old ones and
activates the tenant on its new storage. Every step is idempotent, so an
interrupted migration resumes where it stopped.
"""

from __future__ import annotations

from trainyard_core.config import Isolation
from trainyard_core.errors import Conflict
from trainyard_core.models import Tenant, TenantStatus
from trainyard_core.ports.provisioning import StackState
from trainyard_core.tenants.base import TenantLifecycle


class MigrationError(Exception):
    pass


class MigrationPaused(Exception):
    """The time budget ran out mid-move; the next attempt resumes (not a failure)."""


# Data moved per API-driven attempt (a GET or PATCH must answer within API
# Gateway's 29 s); the lifecycle schedule passes its own remaining time.
MOVE_BUDGET_SECONDS = 15.0


# Laps of copy/verify/delete before giving up on a source that keeps changing.
MAX_MOVE_ROUNDS = 5


class Migration(TenantLifecycle):
    def _start_migration(
        self, tenant: Tenant, plan: str, target: Isolation, status: str | None
    ) -> Tenant:
        if tenant.status != TenantStatus.ACTIVE or status == TenantStatus.SUSPENDED.value:
            # The migration ends ACTIVE; a suspended tenant is resumed first, explicitly.
            raise Conflict(
                f"moving tenant {tenant.tenant_id!r} to {target} storage needs it ACTIVE; "
                "resume it first, then change the plan",
                code="TenantNotUpdatable",
            )
        if self.mover is None:
            raise Conflict(
                "this deployment cannot move tenant data between isolation models",
                code="IsolationChangeUnsupported",
            )
        migrating = self._transition(
            tenant, TenantStatus.MIGRATING, plan=plan, migrating_to=target, failure_reason=None
        )
        return self._request_stack_update(migrating)

    def _request_stack_update(self, tenant: Tenant) -> Tenant:
        assert tenant.migrating_to is not None
        try:
            self.provisioner.update(
                tenant.stack_name or self.names.tenant_stack(tenant.tenant_id),
                self.stack_parameters(tenant.tenant_id, tenant.plan),
                isolation=tenant.migrating_to,
            )
        except Exception as exc:  # stays MIGRATING; a retried PATCH tries again
            return self._interrupted(tenant, f"tenant stack update failed: {exc}")
        if tenant.failure_reason:
            tenant = self._transition(tenant, TenantStatus.MIGRATING, failure_reason=None)
        return tenant

    def _stack_at_target(self, tenant: Tenant, state: StackState) -> bool:
        assert tenant.migrating_to is not None
        bucket, _, data_prefix = self.names.tenant_location(
            tenant.migrating_to, tenant.tenant_id, self.account_id
        )
        out = state.outputs
        return out.get("DataBucketName") == bucket and out.get("DataPrefix") == data_prefix

    def _resume_migration(self, tenant: Tenant) -> Tenant:
        state = self.provisioner.describe(tenant.stack_name or "")
        if state is not None and state.in_progress:
            return tenant
        if state is None or not (state.complete and self._stack_at_target(tenant, state)):
            tenant = self._request_stack_update(tenant)
        return self._advance_migration(tenant)

    def _advance_migration(self, tenant: Tenant, move_until: float | None = None) -> Tenant:
        """Move the data once the stack serves the new location (idempotent)."""
        if move_until is None:
            move_until = self._monotonic() + MOVE_BUDGET_SECONDS
        state = self.provisioner.describe(tenant.stack_name or "")
        if state is None:
            return self._interrupted(tenant, "the tenant stack does not exist")
        if state.in_progress:
            return tenant
        if not state.complete:
            # e.g. UPDATE_ROLLBACK_COMPLETE: the old stack still serves the old location.
            reason = state.reason or state.status
            return self._interrupted(tenant, f"tenant stack {state.status}: {reason}")
        if not self._stack_at_target(tenant, state):
            return tenant  # the update was not accepted yet; a retried PATCH requests it
        assert tenant.migrating_to is not None
        dst_bucket, dst_root, _ = self.names.tenant_location(
            tenant.migrating_to, tenant.tenant_id, self.account_id
        )
        try:
            self._move_objects(tenant, dst_bucket, dst_root, move_until)
        except MigrationPaused:
            return tenant  # out of time, nothing wrong: the next attempt carries on
        except Exception as exc:  # partial progress is kept; the next attempt resumes
            return self._interrupted(tenant, f"data migration interrupted: {exc}")
        # Copies made above are not uploads: the intake ignores objects created at
        # the new location before location_since. S3 event times have one-second
        # precision, so the switch happens in a later second than the last copy.
        now = self.clock.now()
        self._sleep(1 - now.microsecond / 1_000_000)
        out = state.outputs
        return self._transition(
            tenant,
            TenantStatus.ACTIVE,
            isolation=tenant.migrating_to,
            migrating_to=None,
            data_bucket=out.get("DataBucketName"),
            data_prefix=out.get("DataPrefix"),
            output_uri=out.get("OutputUri"),
            role_arn=out.get("RoleArn") or tenant.role_arn,
            model_package_group_name=out.get("ModelPackageGroupName")
            or tenant.model_package_group_name,
            location_since=self._now(),
            failure_reason=None,
        )

    def _move_objects(
        self, tenant: Tenant, dst_bucket: str, dst_root: str, move_until: float
    ) -> None:
        assert self.mover is not None
        src_bucket = tenant.data_bucket
        if not src_bucket:
            return  # never had storage: nothing to move
        src_root = self.root_prefix(tenant.isolation, tenant.tenant_id)

        # Copy, verify, then delete exactly what was verified; repeat until the old
        # location is empty, so an upload landing there mid-move is carried over too.
        def out_of_time() -> bool:
            return self._monotonic() >= move_until

        rounds = 0
        while rounds < MAX_MOVE_ROUNDS:
            objects = self.mover.copy(src_bucket, src_root, dst_bucket, dst_root, out_of_time)
            if not objects:
                break
            bad = self.mover.verify(objects, dst_bucket, dst_root)
            if bad:
                raise MigrationError(f"{len(bad)} object(s) differ after the copy, e.g. {bad[0]!r}")
            self.mover.delete(objects, src_bucket, src_root)
            if out_of_time():
                raise MigrationPaused  # what was verified is moved; the rest next time
            rounds += 1
        else:
            raise MigrationError(f"s3://{src_bucket}/{src_root} kept changing during the move")
        if src_root == "":
            # The retained silo bucket is empty now; it goes with the old isolation.
            self.mover.delete_bucket(src_bucket)

    def _interrupted(self, tenant: Tenant, reason: str) -> Tenant:
        failure = f"{reason}; PATCH the same plan again to resume"
        if tenant.status == TenantStatus.MIGRATING and tenant.failure_reason == failure:
            return tenant  # already says so: the schedule must not rewrite it every minute
        return self._transition(tenant, TenantStatus.MIGRATING, failure_reason=failure)
