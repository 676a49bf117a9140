"""Tenant lifecycle: validation, idempotent onboarding, provisioning state.

Pure domain logic: it talks to a TenantRepository and StackProvisioner /
DataPurger / DataMover ports, never to boto3, so tests run it on in-memory fakes.

A plan change across isolation models (pool <-> silo) is a migration:
PATCH marks the tenant MIGRATING and asks for an UpdateStack to the other
isolation's template (role, rule and model package group keep their logical
ids, so they update in place and the model history is untouched); once the
stack is updated, the lifecycle schedule (or a read, or a retried PATCH) copies the tenant's
objects to the new location, verifies them, deletes the old ones and
activates the tenant on its new storage. Every step is idempotent, so an
interrupted migration resumes where it stopped.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol

from trainyard_core.arns import arn
from trainyard_core.clock import Clock, SystemClock
from trainyard_core.config import Isolation, Settings
from trainyard_core.errors import Conflict, InvalidRequest, NotFound
from trainyard_core.models import (
    RESERVED_TENANT_IDS,
    TENANT_ID_MAX,
    TENANT_ID_MIN,
    TENANT_ID_RE,
    Tenant,
    TenantStatus,
    iso_ms,
    parse_iso,
)
from trainyard_core.store.tenants import (
    PENDING_STATUSES,
    StaleTenantError,
    TenantExistsError,
    TenantRepository,
)
from trainyard_core.wiring import TENANT_TAG_KEY, Names


@dataclass(frozen=True)
class StackState:
    status: str  # CloudFormation stack status, e.g. CREATE_COMPLETE
    outputs: dict[str, str] = field(default_factory=dict)
    reason: str | None = None

    @property
    def complete(self) -> bool:
        return self.status in ("CREATE_COMPLETE", "UPDATE_COMPLETE")

    @property
    def in_progress(self) -> bool:
        # Rollbacks and cleanups in progress too: CloudFormation accepts no new
        # operation (a DeleteStack to retry, say) until they end.
        return self.status.endswith("_IN_PROGRESS")

    @property
    def failed(self) -> bool:
        return not self.in_progress and (
            self.status.endswith("_FAILED") or "ROLLBACK" in self.status
        )


class StackProvisioner(Protocol):
    def create(
        self,
        stack_name: str,
        parameters: dict[str, str],
        tags: dict[str, str],
        *,
        isolation: Isolation = "silo",
    ) -> None:
        """Create the stack from the template of that isolation model."""

    def describe(self, stack_name: str) -> StackState | None:
        """None when the stack does not exist."""

    def update(
        self, stack_name: str, parameters: dict[str, str], *, isolation: Isolation | None = None
    ) -> None:
        """Update parameters; with an isolation, also switch to that template."""

    def delete(self, stack_name: str) -> None: ...


class DataPurger(Protocol):
    def purge(self, bucket: str, prefix: str, stop: Callable[[], bool] | None = None) -> int:
        """Delete every object (and version) under prefix; returns how many.
        An empty prefix means the whole bucket, which is then deleted too. Once
        ``stop()`` is true it raises PurgePaused (what is deleted stays deleted)."""


@dataclass(frozen=True)
class StoredObject:
    key: str  # relative to the tenant's root prefix, identical at both locations
    etag: str
    size: int


class DataMover(Protocol):
    """Moves a tenant's objects between locations (bucket + root prefix)."""

    def copy(
        self,
        src_bucket: str,
        src_root: str,
        dst_bucket: str,
        dst_root: str,
        stop: Callable[[], bool] | None = None,
    ) -> list[StoredObject]:
        """Copy every current object under src_root to the same relative key under
        dst_root, skipping those already there with the same ETag. Returns the
        source objects now at the destination (copied or already present); [] only
        if there are none. Once ``stop()`` is true it returns early, after at least
        one object."""

    def verify(self, objects: list[StoredObject], dst_bucket: str, dst_root: str) -> list[str]:
        """Relative keys that are missing or differ at the destination."""

    def delete(self, objects: list[StoredObject], src_bucket: str, src_root: str) -> int:
        """Delete (every version of) the source objects that are still as copied."""

    def delete_bucket(self, bucket: str) -> None:
        """Remove an emptied bucket; refuses (raises) while it holds current objects."""


class ModelPurger(Protocol):
    def purge(self, group: str) -> int:
        """Delete the group's model packages and the group itself (idempotent)."""


class MigrationError(Exception):
    pass


class MigrationPaused(Exception):
    """The time budget ran out mid-move; the next attempt resumes (not a failure)."""


class PurgePaused(Exception):
    """The time budget ran out mid-purge; the next lifecycle run resumes it."""


# Data moved per API-driven attempt (a GET or PATCH must answer within API
# Gateway's 29 s); the lifecycle schedule passes its own remaining time.
MOVE_BUDGET_SECONDS = 15.0


# Laps of copy/verify/delete before giving up on a source that keeps changing.
MAX_MOVE_ROUNDS = 5


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


class TenantService:
    def __init__(
        self,
        *,
        settings: Settings,
        tenants: TenantRepository,
        provisioner: StackProvisioner,
        account_id: str,
        clock: Clock | None = None,
        purger: DataPurger | None = None,
        mover: DataMover | None = None,
        sleep: Callable[[float], object] | None = None,
        used_before: Callable[[str], bool] | None = None,
        models: ModelPurger | None = None,
        retained: Callable[[str], list[str]] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        # Whether an id has history (runs) from an earlier, offboarded tenant.
        self.used_before = used_before
        # What an offboarded id still owns (retained group, bucket, pool objects).
        self.retained = retained
        self.models = models
        self.names = Names.from_settings(settings)
        self.tenants = tenants
        self.provisioner = provisioner
        self.account_id = account_id
        self.clock = clock or SystemClock()
        self.purger = purger
        self.mover = mover
        # A virtual clock is advanced instead of sleeping (tests, benchmark).
        self._sleep = sleep or getattr(self.clock, "advance", None) or time.sleep
        self._monotonic = monotonic

    # --- helpers
    def _now(self) -> str:
        return iso_ms(self.clock.now()) or ""

    def intake_queue_arn(self, plan: str) -> str:
        return arn("sqs", self.settings.region, self.account_id, self.names.intake_queue(plan))

    def root_prefix(self, isolation: str, tenant_id: str) -> str:
        """Where everything a tenant owns lives in its bucket ("" = the whole bucket)."""
        return self.names.tenant_location(isolation, tenant_id, self.account_id)[1]

    def stack_parameters(self, tenant_id: str, plan: str) -> dict[str, str]:
        # Both templates take exactly these (wiring.TENANT_STACK_PARAMETERS).
        return {
            "TenantId": tenant_id,
            "PlanName": plan,
            "IntakeQueueArn": self.intake_queue_arn(plan),
        }

    def validate_plan(self, plan: object) -> str:
        if not isinstance(plan, str) or plan not in self.settings.plans:
            known = ", ".join(sorted(self.settings.plans))
            raise InvalidRequest(f"unknown plan {plan!r}; plans are: {known}", code="UnknownPlan")
        return plan

    # --- queries
    def get(self, tenant_id: str) -> Tenant:
        tenant = self.tenants.get(tenant_id)
        if tenant is None:
            raise NotFound(f"tenant {tenant_id!r} does not exist", code="TenantNotFound")
        return self.refresh(tenant)

    def list(self, limit: int, next_token: str | None) -> tuple[list[Tenant], str | None]:
        tenants, token = self.tenants.list(limit=limit, next_token=next_token)
        return [self.refresh(t) for t in tenants], token

    # --- commands
    def create(self, tenant_id: str, plan: str) -> tuple[Tenant, bool]:
        """Returns (tenant, created). Repeating an identical create is idempotent."""
        validate_tenant_id(tenant_id)
        self.validate_plan(plan)
        existing = self.tenants.get(tenant_id)
        if existing is not None:
            return self._same_or_conflict(existing, plan), False
        if self.used_before is not None and self.used_before(tenant_id):
            # Runs, usage and retained data are keyed by the id: a new tenant under an
            # old id would see (and, in the pool, read) what its predecessor left.
            raise Conflict(
                f"tenantId {tenant_id!r} belonged to an offboarded tenant whose run "
                "history, usage and retained data stay under that id; choose another id",
                code="TenantIdRetired",
            )
        left = self.retained(tenant_id) if self.retained is not None else []
        if left:
            # The tenant stack would collide with them, and a new tenant must never
            # inherit its predecessor's models or data.
            raise Conflict(
                f"tenantId {tenant_id!r} still owns {', '.join(left)}, kept when an earlier "
                "tenant of that id was offboarded without purge; delete them or choose "
                "another id",
                code="TenantIdRetired",
            )
        now = self._now()
        tenant = Tenant(
            tenant_id=tenant_id,
            plan=plan,
            status=TenantStatus.PROVISIONING,
            isolation=self.settings.plan(plan).isolation,
            stack_name=self.names.tenant_stack(tenant_id),
            model_package_group_name=self.names.model_package_group(tenant_id),
            created_at=now,
            updated_at=now,
        )
        try:
            self.tenants.create(tenant)
        except TenantExistsError:
            # Lost a race with an identical request: same rules as above.
            current = self.tenants.get(tenant_id)
            assert current is not None
            return self._same_or_conflict(current, plan), False
        return self._provision(tenant), True

    def _same_or_conflict(self, existing: Tenant, plan: str) -> Tenant:
        if existing.plan != plan:
            raise Conflict(
                f"tenant {existing.tenant_id!r} already exists with plan {existing.plan!r}",
                code="TenantExists",
            )
        if existing.status == TenantStatus.FAILED:
            # A retried create of a failed tenant provisions again.
            return self._provision(existing)
        return self.refresh(existing)

    def _provision(self, tenant: Tenant) -> Tenant:
        stack_name = tenant.stack_name or self.names.tenant_stack(tenant.tenant_id)
        state = self.provisioner.describe(stack_name)
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
                self.provisioner.create(
                    stack_name,
                    self.stack_parameters(tenant.tenant_id, tenant.plan),
                    {TENANT_TAG_KEY: tenant.tenant_id},
                    isolation=tenant.isolation,
                )
        except Exception as exc:  # the provisioner's failure becomes the tenant's reason
            return self._transition(
                tenant, TenantStatus.FAILED, failure_reason=f"provisioning failed: {exc}"
            )
        if tenant.status != TenantStatus.PROVISIONING:
            tenant = self._transition(tenant, TenantStatus.PROVISIONING, failure_reason=None)
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
            )
        reason = state.reason or state.status
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

    def update(self, tenant_id: str, *, plan: str | None, status: str | None) -> Tenant:
        tenant = self.get(tenant_id)
        if plan is None and status is None:
            raise InvalidRequest("nothing to update: give plan and/or status", code="EmptyUpdate")
        if tenant.status == TenantStatus.MIGRATING:
            if status is not None or (plan is not None and plan != tenant.plan):
                raise Conflict(
                    f"tenant {tenant_id!r} is migrating to plan {tenant.plan!r}; only a retry "
                    "of that plan change is accepted until it completes",
                    code="TenantMigrating",
                )
            # A retried PATCH resumes an interrupted migration.
            return self._resume_migration(tenant)
        if tenant.status not in (TenantStatus.ACTIVE, TenantStatus.SUSPENDED):
            raise Conflict(
                f"tenant {tenant_id!r} is {tenant.status.value}; only ACTIVE or SUSPENDED "
                "tenants can be updated",
                code="TenantNotUpdatable",
            )
        if status is not None and status not in (
            TenantStatus.ACTIVE.value,
            TenantStatus.SUSPENDED.value,
        ):
            raise InvalidRequest("status must be ACTIVE or SUSPENDED", code="InvalidStatus")
        changes: dict[str, object] = {}
        if plan is not None and plan != tenant.plan:
            self.validate_plan(plan)
            target = self.settings.plan(plan).isolation
            if target != tenant.isolation:
                return self._start_migration(tenant, plan, target, status)
            # The tenant's rule must feed the new plan's intake queue; data stays put.
            self.provisioner.update(
                tenant.stack_name or self.names.tenant_stack(tenant_id),
                self.stack_parameters(tenant_id, plan),
            )
            changes["plan"] = plan
        new_status = TenantStatus(status) if status is not None else tenant.status
        return self._transition(tenant, new_status, **changes)

    # --- migration between isolation models
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

    def offboard(self, tenant_id: str, *, purge: bool) -> Tenant:
        """Delete the tenant's stack. Its data (bucket or pool prefix) and its model
        package group are retained unless purge is asked for; a purge happens once the
        stack is gone (no upload rule, no job role left to write into what is being
        purged), from the lifecycle schedule, resumably (a large bucket outlasts an
        API call)."""
        tenant = self.get(tenant_id)
        stack_name = tenant.stack_name or self.names.tenant_stack(tenant_id)
        if self.provisioner.describe(stack_name) is not None:
            self.provisioner.delete(stack_name)
        offboarding = self._transition(
            tenant, TenantStatus.OFFBOARDING, purge_requested=purge or tenant.purge_requested
        )
        return self.refresh(offboarding)

    def _purge(self, tenant: Tenant, until: float | None) -> None:
        """Models, then data (idempotent; raises PurgePaused when out of time)."""
        if tenant.model_package_group_name and self.models is not None:
            self.models.purge(tenant.model_package_group_name)
        if tenant.data_bucket and self.purger is not None:
            deadline = until if until is not None else self._monotonic() + MOVE_BUDGET_SECONDS
            # A silo bucket goes entirely; a pool tenant's prefix only.
            self.purger.purge(
                tenant.data_bucket,
                self.root_prefix(tenant.isolation, tenant.tenant_id),
                stop=lambda: self._monotonic() >= deadline,
            )

    def refresh(
        self, tenant: Tenant, *, move_until: float | None = None, retry: bool = False
    ) -> Tenant:
        """Advance a PROVISIONING, MIGRATING or OFFBOARDING tenant from its stack's
        state (idempotent). A data move stops at ``move_until`` (monotonic time;
        default: MOVE_BUDGET_SECONDS from now) and resumes on the next call. Only with
        ``retry`` (the lifecycle schedule) is a failed provisioning attempt retried and
        an offboarded tenant's purge run."""
        if tenant.status == TenantStatus.MIGRATING:
            return self._advance_migration(tenant, move_until)
        if tenant.status == TenantStatus.OFFBOARDING:
            if self.provisioner.describe(tenant.stack_name or "") is not None:
                return tenant
            if tenant.purge_requested:
                if not retry:
                    return tenant  # purges run on the lifecycle schedule, not in a request
                try:
                    self._purge(tenant, move_until)
                except PurgePaused:
                    return tenant  # the next run carries on
            # Stack gone (and purged if asked): the tenant leaves the registry; its run
            # history stays.
            self.tenants.delete(tenant.tenant_id)
            return tenant
        if tenant.status != TenantStatus.PROVISIONING:
            return tenant
        return self._advance_provisioning(tenant, retry=retry)

    def advance_pending(
        self, time_left: Callable[[], float] | None = None, reserve_seconds: float = 5.0
    ) -> dict[str, list[str]]:
        """The lifecycle schedule: advance every PROVISIONING, MIGRATING and
        OFFBOARDING tenant without waiting for someone to read it. Quick stack
        checks come first and data moves last, so a long move cannot hold up the
        others; a move stops ``reserve_seconds`` before ``time_left`` runs out and
        resumes on the next call. One tenant's failure does not stop the others.

        Returns {"advanced": ids whose status changed, "waiting": ids still
        pending, "errors": "<id>: <error>" for each tenant that raised,
        "deferred": ids not reached}."""
        report: dict[str, list[str]] = {"advanced": [], "waiting": [], "errors": [], "deferred": []}
        pending = sorted(
            self.tenants.pending(),
            key=lambda t: (t.status == TenantStatus.MIGRATING, t.updated_at, t.tenant_id),
        )
        for listed in pending:
            remaining = time_left() - reserve_seconds if time_left is not None else None
            if remaining is not None and remaining <= 0:
                report["deferred"].append(listed.tenant_id)
                continue
            move_until = self._monotonic() + remaining if remaining is not None else None
            try:
                # The index lags the table: act on the consistent read.
                tenant = self.tenants.get(listed.tenant_id)
                if tenant is None or tenant.status not in PENDING_STATUSES:
                    continue
                after = self.refresh(tenant, move_until=move_until, retry=True)
                gone = (
                    after.status == TenantStatus.OFFBOARDING
                    and self.tenants.get(tenant.tenant_id) is None
                )
            except Exception as exc:  # isolate tenants from each other; logged by the caller
                report["errors"].append(f"{listed.tenant_id}: {type(exc).__name__}: {exc}")
                continue
            if gone or after.status != tenant.status:
                report["advanced"].append(tenant.tenant_id)
            else:
                report["waiting"].append(tenant.tenant_id)
        return report

    def _transition(self, tenant: Tenant, status: TenantStatus, **changes: object) -> Tenant:
        updated = tenant.model_copy(update={"status": status, "updated_at": self._now(), **changes})
        try:
            return self.tenants.save(updated)
        except StaleTenantError:
            # Someone else advanced it concurrently; theirs is at least as fresh.
            current = self.tenants.get(tenant.tenant_id)
            return current or updated
