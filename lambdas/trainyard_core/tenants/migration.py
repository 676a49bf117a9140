"""A plan change across isolation models (pool <-> silo) is a migration.

PATCH marks the tenant MIGRATING and asks for an UpdateStack to the other
isolation's template (role, rule and model package group keep their logical
ids, so they update in place and the model history is untouched); once the
stack is updated, the lifecycle schedule (or a read, or a retried PATCH) copies the
tenant's objects to the new location, verifies them, deletes the old ones and
activates the tenant on its new storage. Every step is idempotent, so an
interrupted migration resumes where it stopped.

Nothing moves from under a run: the stack update (which switches the job role and
the upload rule) and the data move wait until the tenant has no STARTING or RUNNING
run (no new one starts while MIGRATING). API requests never move data: only the
lifecycle schedule does (``move``), within its time budget. An upload made at the
old location during the migration is recorded as the object it becomes at the new
one, by its event or, once the upload rule has switched, by the move itself.
"""

from __future__ import annotations

from trainyard_core.config import Isolation
from trainyard_core.errors import Conflict
from trainyard_core.models import Tenant, TenantStatus, TriggerObject, parse_iso
from trainyard_core.ports.provisioning import StackState, StoredObject
from trainyard_core.tenants.base import TenantLifecycle
from trainyard_core.uploads import is_training_file, unstageable_key


class MigrationError(Exception):
    pass


class MigrationPaused(Exception):
    """The time budget ran out mid-move; the next attempt resumes (not a failure)."""


# Time for one move or purge when the caller gives no deadline (the lifecycle
# schedule passes its own remaining time; API requests never move or purge data).
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
        bucket, _, data_prefix = self.names.tenant_location(
            target, tenant.tenant_id, self.account_id
        )
        migrating = self._transition(
            tenant,
            TenantStatus.MIGRATING,
            plan=plan,
            migrating_to=target,
            failure_reason=None,
            migration_started_at=self._now(),
            # Events from the new location resolve to the tenant from now on.
            alt_location=f"{bucket}/{data_prefix}",
            # The template the update asks for (recorded before it, never newer).
            template_requested=self.template_version,
        )
        if self._runs_active(migrating):
            return migrating  # the lifecycle schedule updates the stack once they end
        return self._request_stack_update(migrating)

    def _runs_active(self, tenant: Tenant) -> bool:
        """A STARTING or RUNNING run still reads the old data and writes the old
        output with the old role: the stack and the data wait for it."""
        return self.active_runs is not None and self.active_runs(tenant.tenant_id) > 0

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
            if self._runs_active(tenant):
                return tenant  # the lifecycle schedule updates the stack once they end
            tenant = self._request_stack_update(tenant)
        return self._advance_migration(tenant)  # a request never moves data

    def _advance_migration(
        self,
        tenant: Tenant,
        move_until: float | None = None,
        *,
        move: bool = False,
        requested: bool = False,
    ) -> Tenant:
        """Move the data once the stack serves the new location (idempotent). Only
        with ``move`` (the lifecycle schedule) is a deferred stack update requested
        and data moved; an API request only reads the stack's state."""
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
            if not move or requested or tenant.failure_reason or self._runs_active(tenant):
                # Deferred while runs end (or rejected: a retried PATCH requests it).
                return tenant
            tenant = self._request_stack_update(tenant)
            return self._advance_migration(tenant, move_until, move=move, requested=True)
        if not move or self._runs_active(tenant):
            return tenant  # the lifecycle schedule moves the data, after the runs
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
        left = f"{tenant.data_bucket}/{tenant.data_prefix}" if tenant.data_bucket else None
        return self._transition(
            tenant,
            TenantStatus.ACTIVE,
            # Late events from the location it left still belong to the tenant.
            alt_location=left,
            migration_started_at=None,
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
            template_version=tenant.template_requested,
            template_requested=None,
            template_update_at=None,
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
            current = self.tenants.get(tenant.tenant_id)
            if current is None or current.status != TenantStatus.MIGRATING:
                raise MigrationPaused  # offboarded meanwhile: its purge takes both places
            if self._runs_active(current):
                # A start admitted from a snapshot read before the PATCH: it reads and
                # writes the old location, so the move waits for it (next tick).
                raise MigrationPaused
            objects = self.mover.copy(src_bucket, src_root, dst_bucket, dst_root, out_of_time)
            if not objects:
                break
            bad = self.mover.verify(objects, dst_bucket, dst_root)
            if bad:
                raise MigrationError(f"{len(bad)} object(s) differ after the copy, e.g. {bad[0]!r}")
            # Recorded before the source goes: an accepted upload is never lost.
            self._record_moved_uploads(tenant, objects, dst_bucket, dst_root)
            self.mover.delete(objects, src_bucket, src_root)
            if out_of_time():
                raise MigrationPaused  # what was verified is moved; the rest next time
            rounds += 1
        else:
            raise MigrationError(f"s3://{src_bucket}/{src_root} kept changing during the move")
        if src_root == "":
            # The retained silo bucket is empty now; it goes with the old isolation.
            self.mover.delete_bucket(src_bucket)

    def _record_moved_uploads(
        self, tenant: Tenant, objects: list[StoredObject], dst_bucket: str, dst_root: str
    ) -> None:
        """Uploads made at the old location since the migration began, as the objects
        they now are at the new one. Once the stack update switched the upload rule
        to the new location, such an upload had no event of its own; one made before
        the switch had, and the intake counts the two as one upload."""
        since = parse_iso(tenant.migration_started_at)
        if self.record_upload is None or since is None:
            return
        since = since.replace(microsecond=0)  # S3 times have one-second precision
        data = self.names.silo_data_prefix  # the data prefix relative to the root
        for obj in objects:
            modified = parse_iso(obj.modified)
            relative = obj.key.removeprefix(data)
            if (
                not obj.key.startswith(data)
                or not is_training_file(obj.key)
                or unstageable_key(relative) is not None
            ):
                continue  # pipeline output, or not an upload that starts a run (intake's rule)
            if modified is None or modified < since:
                continue  # there before the migration: its upload was recorded then
            self.record_upload(
                tenant,
                TriggerObject(
                    key=dst_root + obj.key,
                    bucket=dst_bucket,
                    etag=obj.etag.strip('"'),
                    size=obj.size,
                ),
            )

    def _interrupted(self, tenant: Tenant, reason: str) -> Tenant:
        failure = f"{reason}; PATCH the same plan again to resume"
        if tenant.status == TenantStatus.MIGRATING and tenant.failure_reason == failure:
            return tenant  # already says so: the schedule must not rewrite it every minute
        return self._transition(tenant, TenantStatus.MIGRATING, failure_reason=failure)
