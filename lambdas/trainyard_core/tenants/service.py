"""Tenant lifecycle: idempotent onboarding and the state machine that finishes it.

Pure domain logic: it talks to a TenantRepository and the provisioning ports
(``trainyard_core.ports.provisioning``), never to boto3, so tests run it on
in-memory fakes. One module per use case: provisioning, migration, offboarding;
this one holds the commands and queries the API calls and the lifecycle schedule.
"""

from __future__ import annotations

from collections.abc import Callable

from trainyard_core.errors import Conflict, InvalidRequest, NotFound
from trainyard_core.limits import REASON_MAX_CHARS, bounded
from trainyard_core.models import Tenant, TenantStatus
from trainyard_core.ports.tenants import PENDING_STATUSES, StaleTenantError, TenantExistsError
from trainyard_core.tenants.migration import Migration
from trainyard_core.tenants.offboarding import Offboarding
from trainyard_core.tenants.provisioning import Provisioning
from trainyard_core.tenants.retraining import parse_every, schedule_for
from trainyard_core.tenants.rollout import TemplateRollout, empty_report
from trainyard_core.tenants.validation import validate_tenant_id
from trainyard_core.training import TrainingChoice, validate_choice


class _Keep:
    """PATCH left ``retrain`` out (None removes the schedule)."""


KEEP = _Keep()
RetrainChange = dict[str, object] | None | _Keep


class TenantService(Provisioning, Migration, Offboarding, TemplateRollout):
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
        self._refuse_retained(tenant_id)
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
            # What the create below uses (recorded before it: never newer than the stack).
            template_requested=self.template_version,
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
        if existing.status == TenantStatus.OFFBOARDING:
            # Not "already exists": the record goes once the stack is deleted (and
            # the purge is done), and a 200 would read as the tenant being created.
            raise Conflict(
                f"tenant {existing.tenant_id!r} is being offboarded; create it again once "
                "GET /tenants/{tenantId} answers 404",
                code="TenantOffboarding",
            )
        if existing.plan != plan:
            raise Conflict(
                f"tenant {existing.tenant_id!r} already exists with plan {existing.plan!r}",
                code="TenantExists",
            )
        if existing.status == TenantStatus.FAILED:
            # A retried create of a failed tenant provisions again; what appeared
            # under the id since (a bucket of that name, say) is refused as at create.
            self._refuse_retained(existing.tenant_id)
            return self._provision(existing)
        return self.refresh(existing)

    def update(
        self,
        tenant_id: str,
        *,
        plan: str | None,
        status: str | None,
        retrain: RetrainChange = KEEP,
        training: TrainingChoice | None = None,
    ) -> Tenant:
        """PATCH: a plan change, a suspension or resumption, the training choice
        (validated against the catalog and the plan) and/or the retrain
        schedule (``{"every": ...}`` to set, None to remove, KEEP to leave). The
        schedule is checked before anything changes: a 400 changes nothing."""
        every = self._retrain_every(retrain)
        if plan is None and status is None and training is None:
            if retrain is KEEP:
                raise InvalidRequest(
                    "nothing to update: give plan, status, training and/or retrain",
                    code="EmptyUpdate",
                )
            return self._set_retrain(tenant_id, every)
        updated = self._update(tenant_id, plan=plan, status=status, training=training)
        if retrain is KEEP:
            return updated
        # A plan change across isolation models has made it MIGRATING: the schedule is
        # stored all the same (the index holds only ACTIVE tenants).
        return self._set_retrain(tenant_id, every, migrating_ok=True)

    def _retrain_every(self, retrain: RetrainChange) -> str | None:
        if retrain is KEEP or retrain is None:
            return None
        assert isinstance(retrain, dict)
        unknown = sorted(set(retrain) - {"every"})
        if unknown:
            raise InvalidRequest(
                f"retrain accepts only 'every'; unknown: {unknown}",
                code="InvalidRetrainSchedule",
            )
        every = retrain.get("every")
        parse_every(every, self.settings.retraining)
        return str(every)

    def _set_retrain(self, tenant_id: str, every: str | None, migrating_ok: bool = False) -> Tenant:
        """Set (``every``) or remove (None) the retrain schedule (tenants/retraining.py)."""
        allowed = (TenantStatus.ACTIVE, TenantStatus.SUSPENDED)
        for _ in range(4):  # a concurrent writer (the lifecycle schedule) may win a lap
            tenant = self.get(tenant_id)
            if tenant.status == TenantStatus.MIGRATING and not migrating_ok:
                raise Conflict(
                    f"tenant {tenant_id!r} is migrating to plan {tenant.plan!r}; only a retry "
                    "of that plan change is accepted until it completes",
                    code="TenantMigrating",
                )
            if tenant.status not in allowed and tenant.status != TenantStatus.MIGRATING:
                raise Conflict(
                    f"tenant {tenant_id!r} is {tenant.status.value}; only ACTIVE or SUSPENDED "
                    "tenants can be updated",
                    code="TenantNotUpdatable",
                )
            schedule = (
                None
                if every is None
                else schedule_for(tenant.retrain, every, self.clock.now(), self.settings.retraining)
            )
            if schedule == tenant.retrain:
                return tenant
            try:
                return self.tenants.save(
                    tenant.model_copy(update={"retrain": schedule, "updated_at": self._now()})
                )
            except StaleTenantError:
                continue
        raise Conflict(
            f"tenant {tenant_id!r} kept changing; retry the update", code="ConcurrentUpdate"
        )

    def _update(
        self,
        tenant_id: str,
        *,
        plan: str | None,
        status: str | None,
        training: TrainingChoice | None,
    ) -> Tenant:
        tenant = self.get(tenant_id)
        if tenant.status == TenantStatus.MIGRATING:
            changes_plan = plan is not None and plan != tenant.plan
            if status is not None or changes_plan or training is not None:
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
        target_plan = plan if plan is not None else tenant.plan
        if training is not None or target_plan != tenant.plan:
            # Checked against the plan it will have: a plan change that the stored
            # choice does not fit (an algorithm of the old plan only) is refused too.
            chosen = validate_choice(
                self.settings, target_plan, training or TrainingChoice(), base=tenant.training
            )
            if training is not None:
                changes["training"] = chosen
        if plan is not None and plan != tenant.plan:
            target = self.settings.plan(plan).isolation
            if target != tenant.isolation:
                if "training" in changes:
                    tenant = self._transition(tenant, tenant.status, training=changes["training"])
                return self._start_migration(tenant, plan, target, status)
            # The tenant's rule must feed the new plan's intake queue; data stays put.
            self.provisioner.update(
                tenant.stack_name or self.names.tenant_stack(tenant_id),
                self.stack_parameters(tenant_id, plan),
            )
            changes["plan"] = plan
        new_status = TenantStatus(status) if status is not None else tenant.status
        return self._transition(tenant, new_status, **changes)

    def refresh(
        self, tenant: Tenant, *, move_until: float | None = None, retry: bool = False
    ) -> Tenant:
        """Advance a PROVISIONING, MIGRATING or OFFBOARDING tenant from its stack's
        state (idempotent). A data move stops at ``move_until`` (monotonic time;
        default: MOVE_BUDGET_SECONDS from now) and resumes on the next call. Only with
        ``retry`` (the lifecycle schedule) is a failed provisioning attempt retried and
        an offboarded tenant's purge run."""
        if tenant.status == TenantStatus.MIGRATING:
            # Only the lifecycle schedule (retry) moves data; a request reads state.
            return self._advance_migration(tenant, move_until, move=retry)
        if tenant.status == TenantStatus.OFFBOARDING:
            return self._advance_offboarding(tenant, move_until, retry=retry)
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
        Then, in the time left, ACTIVE and SUSPENDED tenants' stacks on an older
        tenant template are updated (``update_outdated_stacks``, tenants/rollout.py).

        Returns {"advanced": ids whose status changed, "waiting": ids still
        pending, "errors": "<id>: <error>" for each tenant that raised,
        "deferred": ids not reached} and the rollout's report (its keys)."""
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
                # Bounded: a huge message (a dependency's, a tenant's data) must not make
                # the report, the log line or the invocation error unwritable.
                error = f"{listed.tenant_id}: {type(exc).__name__}: {exc}"
                report["errors"].append(bounded(error, REASON_MAX_CHARS))
                continue
            if gone or after.status != tenant.status:
                report["advanced"].append(tenant.tenant_id)
            else:
                report["waiting"].append(tenant.tenant_id)
        # Last: new tenants' provisioning never waits for the rollout.
        report.update(empty_report())
        try:
            report.update(self.update_outdated_stacks(time_left, reserve_seconds))
        except Exception as exc:  # listing the outdated tenants failed; the next run retries
            error = f"rollout: {type(exc).__name__}: {exc}"
            report["errors"].append(bounded(error, REASON_MAX_CHARS))
        return report
