"""Scheduler orchestration: intake, status events, dispatch, reconcile, reads.

Used by the scheduler Lambda (and the API for manual runs and reads). All AWS
access goes through the ports, so the same code runs on DynamoDB + SageMaker,
on moto, and on in-memory fakes with a virtual clock.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from trainyard_core.clock import Clock, SystemClock
from trainyard_core.config import Settings
from trainyard_core.errors import Conflict
from trainyard_core.models import (
    Run,
    RunStatus,
    Tenant,
    TenantStatus,
    Trigger,
    TriggerObject,
    iso_ms,
    new_run_id,
    parse_iso,
)
from trainyard_core.scheduling.policy import (
    Snapshot,
    TenantView,
    backoff_seconds,
    cost_usd,
    plan_dispatch,
    queue_positions,
)
from trainyard_core.scheduling.ports import (
    AdmitOutcome,
    Caps,
    DuplicateUploadError,
    ExecutionInfo,
    MetricsSink,
    NullMetrics,
    PipelinePort,
    QueuedRunExistsError,
    Rejection,
    RunNotQueuedError,
    RunRepository,
    StartError,
)
from trainyard_core.store.runs import GLOBAL, dedupe_key, plan_counter, tenant_counter
from trainyard_core.store.tenants import TenantRepository

DEDUPE_TTL_DAYS = 7
REJECTION_TTL_DAYS = 30
# Tenants whose uploads are accepted (a SUSPENDED or MIGRATING tenant's runs wait).
ACCEPTING = (TenantStatus.ACTIVE, TenantStatus.SUSPENDED, TenantStatus.MIGRATING)
TERMINAL_EXECUTION_STATUS = {
    "Succeeded": RunStatus.SUCCEEDED,
    "Failed": RunStatus.FAILED,
    "Stopped": RunStatus.STOPPED,
}
_DISPLAY_NAME_RE = re.compile(r"^(?P<tenant>[a-z0-9][a-z0-9-]*[a-z0-9])-(?P<suffix>[0-9a-f]{12})$")

IntakeOutcome = Literal["created", "joined", "duplicate", "ignored", "rejected"]


class RunNotFoundYetError(Exception):
    """A status event for an execution we cannot match (yet): retry later."""


class TenantNotAcceptingError(Conflict):
    """The tenant is not ACTIVE/SUSPENDED (the API answers 409)."""

    code = "TenantNotAccepting"


@dataclass(frozen=True)
class IntakeResult:
    outcome: IntakeOutcome
    run: Run | None = None
    reason: str | None = None


@dataclass
class DispatchReport:
    started: list[Run] = field(default_factory=list)
    start_failures: int = 0
    queued_by_plan: dict[str, int] = field(default_factory=dict)
    running_by_plan: dict[str, int] = field(default_factory=dict)


@dataclass
class ReconcileReport:
    finished: list[str] = field(default_factory=list)
    healed_counters: dict[str, int] = field(default_factory=dict)
    dispatch: DispatchReport | None = None
    # run id -> why it looks stuck (still active; an operator should look).
    stuck: dict[str, str] = field(default_factory=dict)


def month_of(moment: datetime) -> str:
    return moment.strftime("%Y-%m")


class SchedulerService:
    def __init__(
        self,
        settings: Settings,
        runs: RunRepository,
        tenants: TenantRepository,
        pipeline: PipelinePort | None = None,
        *,
        clock: Clock | None = None,
        metrics: MetricsSink | None = None,
        logger: Any | None = None,
        rng: random.Random | None = None,
        describe_min_age_seconds: float = 60.0,
    ) -> None:
        self.settings = settings
        self.runs = runs
        self.tenants = tenants
        self.pipeline = pipeline
        self.clock = clock or SystemClock()
        self.metrics = metrics or NullMetrics()
        self.log = logger or logging.getLogger("trainyard.scheduler")
        self.rng = rng or random.Random()
        # Reconcile asks SageMaker only about runs quiet for this long, so it does
        # not race the status event that is normally seconds behind a change.
        self.describe_min_age_seconds = describe_min_age_seconds

    # ------------------------------------------------------------------ intake
    def handle_upload(
        self,
        bucket: str,
        key: str,
        etag: str | None = None,
        size: int | None = None,
        version_id: str | None = None,
        event_time: datetime | None = None,
    ) -> IntakeResult:
        if not key.lower().endswith(".csv"):
            self.log.info("ignoring non-CSV object", extra={"bucket": bucket, "key": key})
            return IntakeResult("ignored", reason="not a .csv object")
        # The tenant comes from the registry only: an event cannot claim one.
        tenant = self.tenants.find_by_location(bucket, key)
        if tenant is None:
            return self._reject("no tenant owns this storage location", bucket, key, None)
        if tenant.status not in ACCEPTING:
            return self._reject(
                f"tenant {tenant.tenant_id} is {tenant.status.value}; upload not accepted",
                bucket,
                key,
                tenant.tenant_id,
            )
        if _predates_location(tenant, event_time):
            self.log.info(
                "ignoring object created before the tenant moved here (migration copy)",
                extra={"tenant_id": tenant.tenant_id, "bucket": bucket, "key": key},
            )
            return IntakeResult("ignored", reason="object predates the tenant's current location")
        obj = TriggerObject(key=key, etag=etag, size=size, bucket=bucket, version_id=version_id)
        return self._enqueue(tenant, "s3", obj, dedupe_key(bucket, key, etag, version_id))

    def submit_manual_run(self, tenant: Tenant) -> Run:
        """POST /tenants/{id}/runs: a run on the tenant's current data (coalesced)."""
        if tenant.status not in ACCEPTING:
            raise TenantNotAcceptingError(f"tenant {tenant.tenant_id} is {tenant.status.value}")
        result = self._enqueue(tenant, "manual", None, None)
        assert result.run is not None
        # The 202 shows where it waits, like GET does.
        return self._with_positions([result.run])[0]

    def _enqueue(
        self,
        tenant: Tenant,
        kind: Literal["s3", "manual"],
        obj: TriggerObject | None,
        dkey: str | None,
    ) -> IntakeResult:
        now = self.clock.now()
        ttl = int((now + timedelta(days=DEDUPE_TTL_DAYS)).timestamp())
        stale: str | None = None
        # Each lap loses at most one race (the queued run just started, or another
        # intake created the queued run first); a few laps always suffice.
        for _ in range(6):
            pointer = self.runs.queued_run_id(tenant.tenant_id)
            if pointer is not None and pointer != stale:
                try:
                    self.runs.add_to_queued_run(
                        tenant.tenant_id, pointer, obj, dkey, ttl, iso_ms(now) or ""
                    )
                except RunNotQueuedError:
                    stale = pointer  # it left QUEUED under us: start a new run
                    continue
                except DuplicateUploadError:
                    return self._duplicate(tenant, obj)
                run = self.runs.get_run(tenant.tenant_id, pointer)
                self.log.info(
                    "upload joined queued run",
                    extra={"tenant_id": tenant.tenant_id, "run_id": pointer, "trigger": kind},
                )
                return IntakeResult("joined", run)
            run = Run(
                run_id=new_run_id(now),
                tenant_id=tenant.tenant_id,
                plan=tenant.plan,
                status=RunStatus.QUEUED,
                trigger=Trigger(type=kind, objects=[obj] if obj else []),
                queued_at=iso_ms(now) or "",
                updated_at=iso_ms(now),
            )
            try:
                self.runs.create_queued_run(run, dkey, ttl, replace_pointer=stale)
            except QueuedRunExistsError:
                stale = None
                continue
            except DuplicateUploadError:
                return self._duplicate(tenant, obj)
            self.log.info(
                "run queued",
                extra={"tenant_id": tenant.tenant_id, "run_id": run.run_id, "trigger": kind},
            )
            return IntakeResult("created", run)
        raise RuntimeError(f"could not queue a run for {tenant.tenant_id}: contention")

    def _duplicate(self, tenant: Tenant, obj: TriggerObject | None) -> IntakeResult:
        self.log.info(
            "duplicate upload event ignored",
            extra={"tenant_id": tenant.tenant_id, "key": obj.key if obj else None},
        )
        return IntakeResult("duplicate", reason="already accepted")

    def _reject(self, reason: str, bucket: str, key: str, tenant_id: str | None) -> IntakeResult:
        now = self.clock.now()
        self.log.warning(
            "upload rejected",
            extra={"reason": reason, "bucket": bucket, "key": key, "tenant_id": tenant_id},
        )
        self.runs.record_rejection(
            Rejection(
                at=iso_ms(now) or "", reason=reason, bucket=bucket, key=key, tenant_id=tenant_id
            ),
            int((now + timedelta(days=REJECTION_TTL_DAYS)).timestamp()),
        )
        self.metrics.record("UploadsRejected", 1)
        return IntakeResult("rejected", reason=reason)

    # ------------------------------------------------------------------ status
    def handle_status(
        self,
        execution_arn: str,
        status: str,
        *,
        display_name: str | None = None,
        failure_reason: str | None = None,
        event_time: datetime | None = None,
    ) -> Run | None:
        """Apply one pipeline status change. Returns the run after the change, or
        None when the event is not about one of our runs (acked)."""
        run = self.runs.find_by_execution(execution_arn)
        if run is None and display_name:
            run = self._find_by_display_name(display_name)
            if run is not None and run.execution_arn and run.execution_arn != execution_arn:
                # Not the execution this run is tracking (e.g. a duplicate start on a
                # backend without token idempotency): never let it move the run.
                self.log.warning(
                    "status event for an untracked execution of a run ignored",
                    extra={"execution_arn": execution_arn, "tracked": run.execution_arn},
                )
                return run
            if run is None and not _DISPLAY_NAME_RE.match(display_name):
                self.log.warning(
                    "status event for a foreign execution ignored",
                    extra={"execution_arn": execution_arn, "display_name": display_name},
                )
                return None
        if run is None:
            # Usually the event outran our own record of the start: retry later.
            raise RunNotFoundYetError(execution_arn)
        self._log_keys(run)
        if status in TERMINAL_EXECUTION_STATUS:
            self._finish(
                run, TERMINAL_EXECUTION_STATUS[status], execution_arn, failure_reason, event_time
            )
        elif status == "Executing":
            self.runs.mark_running(run, execution_arn, iso_ms(self.clock.now()) or "")
        else:
            self.log.info("pipeline status noted", extra={"status": status})
        return self.runs.get_run(run.tenant_id, run.run_id)

    def _find_by_display_name(self, display_name: str) -> Run | None:
        match = _DISPLAY_NAME_RE.match(display_name)
        if not match:
            return None
        runs, _ = self.runs.list_runs(match["tenant"], limit=50)
        for run in runs:
            if run.run_id.endswith(match["suffix"]) and run.status != RunStatus.QUEUED:
                return run
        return None

    def _finish(
        self,
        run: Run,
        status: RunStatus,
        execution_arn: str | None,
        failure_reason: str | None,
        event_time: datetime | None,
    ) -> bool:
        if not run.status.holds_slot:
            self.log.info(
                "late or duplicate terminal event ignored", extra={"status": run.status.value}
            )
            return False
        now = self.clock.now()
        ended = min(event_time, now) if event_time else now
        started = parse_iso(run.started_at)
        if started is not None and ended < started:
            ended = started
        seconds = max(0.0, (ended - started).total_seconds()) if started else 0.0
        plan = self.settings.plans.get(run.plan)
        instance_type = run.instance_type or (plan.training_instance_type if plan else None)
        count = run.instance_count or (plan.training_instance_count if plan else 1)
        if status == RunStatus.FAILED and not failure_reason and execution_arn and self.pipeline:
            info = self.pipeline.describe(execution_arn)
            failure_reason = (info.failure_reason if info else None) or None
        if status == RunStatus.FAILED and not failure_reason:
            failure_reason = "pipeline execution failed"
        if status == RunStatus.STOPPED and not failure_reason:
            failure_reason = "pipeline execution was stopped"
        done = self.runs.finish(
            run,
            status,
            ended_at=iso_ms(ended) or "",
            month=month_of(ended),
            training_seconds=round(seconds, 3),
            cost_usd=cost_usd(self.settings, instance_type, count, seconds) if started else 0.0,
            failure_reason=failure_reason if status != RunStatus.SUCCEEDED else None,
            execution_arn=execution_arn,
        )
        if done:
            self.log.info(
                "run finished",
                extra={
                    "status": status.value,
                    "training_seconds": seconds,
                    "reason": failure_reason,
                },
            )
            if status == RunStatus.FAILED:
                self.metrics.record("RunsFailed", 1, dimensions={"plan": run.plan})
            elif status == RunStatus.SUCCEEDED:
                self.metrics.record("RunsSucceeded", 1, dimensions={"plan": run.plan})
        return done

    # ------------------------------------------------------------------ dispatch
    def dispatch(self) -> DispatchReport:
        report = DispatchReport()
        now = self.clock.now()
        for plan in self.settings.plans:
            for run in self.runs.due_starts(plan, iso_ms(now) or ""):
                self._start(run, report)

        # Work per invocation is bounded by the caps, not by the backlog: with every
        # slot taken there is nothing to decide, and otherwise only the head of each
        # plan's queue can be admitted now (a tenant has at most one QUEUED run).
        counters = self.runs.counters(())  # global and plans only: cheap
        if counters.global_running >= self.settings.global_max_concurrent_runs:
            self._record_depths(report, None, counters)
            return report
        window = self._window()
        # A CAP_REACHED means a concurrent scheduler took capacity: re-plan on
        # fresh data (bounded) rather than trust our stale snapshot.
        snapshot = self._snapshot(window)
        for _ in range(3):
            decision = plan_dispatch(self.settings, snapshot)
            if not decision.admissions and self._window_full(snapshot, window):
                # Every run at the head must wait (suspended, over budget): look past
                # it rather than starve the tenants behind. Rare, so a full read is fine.
                snapshot = self._snapshot(None)
                decision = plan_dispatch(self.settings, snapshot)
            for run, reason in decision.waiting.values():
                self.runs.set_waiting_reason(run, reason)
                if reason:
                    self.log.info(
                        "run waits",
                        extra={"tenant_id": run.tenant_id, "run_id": run.run_id, "reason": reason},
                    )
            for run, reason in decision.cancellations:
                if self.runs.cancel_queued(run, reason, iso_ms(now) or ""):
                    self.log.warning(
                        "queued run cancelled", extra={"run_id": run.run_id, "reason": reason}
                    )
            contended = False
            for run in decision.admissions:
                outcome = self._admit(run, now)
                if outcome == AdmitOutcome.CAP_REACHED:
                    contended = True
                    break
                if outcome == AdmitOutcome.ADMITTED:
                    admitted = self.runs.get_run(run.tenant_id, run.run_id)
                    if admitted is not None:
                        self._start(admitted, report)
            if not contended:
                break
            snapshot = self._snapshot(window)
        self._record_depths(report, window, self.runs.counters(()))
        return report

    def _window_full(self, snapshot: Snapshot, window: int) -> bool:
        per_plan: dict[str, int] = {}
        for run in snapshot.queued:
            per_plan[run.plan] = per_plan.get(run.plan, 0) + 1
        return any(n >= window for n in per_plan.values())

    def _window(self) -> int:
        # Enough of each queue's head to fill every slot of the plan several times
        # over, so runs that must wait (suspended, over budget) cannot hide the rest.
        caps = [p.max_concurrent_runs for p in self.settings.plans.values()]
        return max(100, 4 * max(caps))

    def _record_depths(self, report: DispatchReport, window: int | None, counters: Any) -> None:
        for plan in self.settings.plans:
            running = counters.plans.get(plan, 0)
            report.running_by_plan[plan] = running
            self.metrics.record("RunningRuns", running, dimensions={"plan": plan})
            if window is None:
                continue
            head = self.runs.queued_runs(plan, limit=window)
            if len(head) < window:  # exact; a longer backlog is counted by reconcile
                report.queued_by_plan[plan] = len(head)
                self.metrics.record("QueueDepth", len(head), dimensions={"plan": plan})

    def _admit(self, run: Run, now: datetime) -> AdmitOutcome:
        plan = self.settings.plans[run.plan]
        caps = Caps(
            global_cap=self.settings.global_max_concurrent_runs,
            plan_cap=plan.max_concurrent_runs,
            tenant_cap=plan.max_concurrent_runs_per_tenant,
        )
        # If we crash between admission and start, reconcile restarts it after this.
        deadline = now + timedelta(seconds=self.settings.starting_timeout_seconds)
        outcome = self.runs.admit(run, caps, iso_ms(now) or "", iso_ms(deadline) or "")
        if outcome == AdmitOutcome.ADMITTED:
            queued_at = parse_iso(run.queued_at)
            if queued_at is not None:
                delay = max(0.0, (now - queued_at).total_seconds())
                self.metrics.record("DispatchDelay", delay, "Seconds", {"plan": run.plan})
        return outcome

    def _start(self, run: Run, report: DispatchReport) -> None:
        self._log_keys(run)
        now = self.clock.now()
        tenant = self.tenants.get(run.tenant_id)
        plan = self.settings.plans.get(run.plan)
        missing = _missing_start_inputs(tenant, plan is not None)
        if missing or self.pipeline is None:
            reason = f"cannot start: {missing or 'no pipeline configured'}"
            self._fail_start(run, reason, report)
            return
        assert tenant is not None and plan is not None
        parameters = {
            "TenantId": tenant.tenant_id,
            "RunId": run.run_id,
            "InputDataUri": f"s3://{tenant.data_bucket}/{tenant.data_prefix}",
            "OutputUri": tenant.output_uri or "",
            "ExecutionRoleArn": tenant.role_arn or "",
            "TrainingInstanceType": plan.training_instance_type,
            "TrainingInstanceCount": str(plan.training_instance_count),
            "ModelPackageGroupName": tenant.model_package_group_name or "",
            "ModelApprovalStatus": self.settings.model_approval_status,
            "MetricThreshold": str(self.settings.metric_threshold),
        }
        try:
            # ClientRequestToken = run id: a repeated start (crash, reconcile,
            # concurrent retry) returns the same execution instead of a second one.
            arn = self.pipeline.start(
                display_name=run.display_name,
                client_request_token=run.client_request_token,
                parameters=parameters,
            )
        except StartError as exc:
            attempts = run.start_attempts + 1
            if exc.throttled:
                self.metrics.record("StartsThrottled", 1, dimensions={"plan": run.plan})
            report.start_failures += 1
            if not exc.retryable or attempts >= self.settings.max_start_attempts:
                self._fail_start(
                    run, f"could not start the pipeline after {attempts} attempt(s): {exc}", report
                )
                return
            delay = backoff_seconds(attempts, jitter=self.rng.random())
            self.runs.record_start_failure(
                run,
                attempts,
                iso_ms(now + timedelta(seconds=delay)) or "",
                f"start attempt {attempts} failed ({exc}); retrying",
                iso_ms(now) or "",
            )
            self.log.warning(
                "pipeline start failed; will retry", extra={"attempt": attempts, "error": str(exc)}
            )
            return
        if self.runs.mark_started(
            run, arn, iso_ms(now) or "", plan.training_instance_type, plan.training_instance_count
        ):
            self.metrics.record("RunsStarted", 1, dimensions={"plan": run.plan})
            self.log.info("pipeline execution started", extra={"execution_arn": arn})
        report.started.append(run)

    def _fail_start(self, run: Run, reason: str, report: DispatchReport) -> None:
        self.log.error("run failed to start", extra={"reason": reason})
        self._finish(run, RunStatus.FAILED, None, reason, None)

    # ------------------------------------------------------------------ reconcile
    def reconcile(self) -> ReconcileReport:
        report = ReconcileReport()
        now = self.clock.now()
        if self.pipeline is not None:
            candidates = []
            for plan in self.settings.plans:
                for run in self.runs.active_runs(plan):
                    if not run.execution_arn:
                        continue  # due starts are retried by dispatch
                    changed = parse_iso(run.updated_at or run.started_at)
                    if changed and (now - changed).total_seconds() < self.describe_min_age_seconds:
                        continue
                    candidates.append(run)
            listed = self._list_statuses(candidates)
            for run in candidates:
                assert run.execution_arn
                info = listed.get(run.execution_arn)
                if info is None or (info.status == "Failed" and not info.failure_reason):
                    # Not in the listing (or no reason given): ask for this one only.
                    info = self.pipeline.describe(run.execution_arn) or info
                if info is None:
                    self._stuck(
                        run,
                        f"pipeline execution {run.execution_arn} is unknown to SageMaker; "
                        "stop the run's execution or fail the run by hand",
                        report,
                    )
                    continue
                self._log_keys(run)
                if info.status in TERMINAL_EXECUTION_STATUS and info.last_modified is None:
                    # The listing has no end time: ask (lost events are rare), so
                    # duration and cost end when the execution did, not now. The
                    # answer is fresher than the listing, so it decides.
                    info = self.pipeline.describe(run.execution_arn) or info
                if info.status in TERMINAL_EXECUTION_STATUS:
                    self.log.info("missed status event recovered", extra={"status": info.status})
                    if self._finish(
                        run,
                        TERMINAL_EXECUTION_STATUS[info.status],
                        run.execution_arn,
                        info.failure_reason,
                        info.last_modified,
                    ):
                        report.finished.append(run.run_id)
                    continue
                if info.status == "Executing" and run.status == RunStatus.STARTING:
                    self.runs.mark_running(run, run.execution_arn, iso_ms(now) or "")
                started = parse_iso(run.started_at)
                limit = self.settings.stuck_run_hours
                if started and (now - started).total_seconds() > limit * 3600:
                    self._stuck(
                        run,
                        f"executing since {run.started_at}, longer than stuck_run_hours "
                        f"({limit:g} h); check the execution in SageMaker, stop it if it hangs",
                        report,
                    )
            stuck_by_plan = {plan: 0 for plan in self.settings.plans}
            for run in candidates:
                if run.run_id in report.stuck:
                    stuck_by_plan[run.plan] = stuck_by_plan.get(run.plan, 0) + 1
            for plan, count in stuck_by_plan.items():
                # Every minute, zeros included, so the RunsStuck alarm clears by itself.
                self.metrics.record("RunsStuck", count, dimensions={"plan": plan})
        report.healed_counters = self.heal_counters()
        report.dispatch = self.dispatch()
        for plan in self.settings.plans:
            if plan not in report.dispatch.queued_by_plan:
                # Dispatch only counts short queues; the full depth once a minute.
                depth = self.runs.queue_depth(plan)
                report.dispatch.queued_by_plan[plan] = depth
                self.metrics.record("QueueDepth", depth, dimensions={"plan": plan})
        return report

    def _stuck(self, run: Run, reason: str, report: ReconcileReport) -> None:
        report.stuck[run.run_id] = reason
        self.log.warning("run stuck", extra={"run_id": run.run_id, "reason": reason})
        if run.failure_reason != reason:
            self.runs.set_stuck_reason(run, reason)

    def _list_statuses(self, runs: list[Run]) -> dict[str, ExecutionInfo]:
        """One ListPipelineExecutions sweep covering every run to reconcile."""
        lister = getattr(self.pipeline, "list_statuses", None)
        starts = [parse_iso(r.started_at) for r in runs]
        known = [s for s in starts if s is not None]
        if not runs or lister is None or len(known) < len(runs):
            return {}
        # Margin: the run records its start after SageMaker created the execution.
        return lister(min(known) - timedelta(minutes=5))

    def heal_counters(self) -> dict[str, int]:
        """Recount slots from the active runs. Raising a counter is safe at once
        (worst case: briefly admit less); lowering one only when the same drift is
        seen twice in a row, so a lagging index read cannot cause over-admission."""
        counters = self.runs.counters()
        active = [r for plan in self.settings.plans for r in self.runs.active_runs(plan)]
        actual: dict[str, int] = {GLOBAL: len(active)}
        for run in active:
            actual[plan_counter(run.plan)] = actual.get(plan_counter(run.plan), 0) + 1
            actual[tenant_counter(run.tenant_id)] = actual.get(tenant_counter(run.tenant_id), 0) + 1
        observed: dict[str, int] = {GLOBAL: counters.global_running}
        observed.update({plan_counter(p): v for p, v in counters.plans.items()})
        observed.update({tenant_counter(t): v for t, v in counters.tenants.items()})
        healed: dict[str, int] = {}
        for name in sorted(set(actual) | set(observed)):
            have, want = observed.get(name, 0), actual.get(name, 0)
            if have == want:
                continue
            if have < want or self.runs.drift_marker(name) == (have, want):
                if self.runs.set_counter(name, want, expected=have):
                    healed[name] = want
                    self.log.warning(
                        "slot counter healed", extra={"counter": name, "was": have, "now": want}
                    )
                self.runs.put_drift_marker(name, None, None)
            else:
                self.runs.put_drift_marker(name, have, want)
        return healed

    # ------------------------------------------------------------------ reads
    def get_run(self, tenant_id: str, run_id: str) -> Run | None:
        run = self.runs.get_run(tenant_id, run_id)
        if run is not None and run.status == RunStatus.QUEUED:
            run = self._with_positions([run])[0]
        return run

    def list_runs(
        self, tenant_id: str, limit: int = 50, next_token: str | None = None
    ) -> tuple[list[Run], str | None]:
        runs, token = self.runs.list_runs(tenant_id, limit, next_token)
        if any(r.status == RunStatus.QUEUED for r in runs):
            runs = self._with_positions(runs)
        return runs, token

    def queue_overview(self) -> dict[str, dict[str, Any]]:
        snapshot = self._snapshot()
        positions = queue_positions(self.settings, snapshot)
        out: dict[str, dict[str, Any]] = {}
        for name, plan in self.settings.plans.items():
            queued = sorted(
                (r for r in snapshot.queued if r.plan == name),
                key=lambda r: positions.get(r.run_id, 0),
            )
            out[name] = {
                "queued": len(queued),
                "running": sum(1 for r in snapshot.active if r.plan == name),
                "cap": plan.max_concurrent_runs,
                "runs": [
                    {
                        "runId": r.run_id,
                        "tenantId": r.tenant_id,
                        "queuePosition": positions.get(r.run_id),
                        "queuedAt": r.queued_at,
                        **({"waitingReason": r.failure_reason} if r.failure_reason else {}),
                    }
                    for r in queued
                ],
            }
        return out

    def usage(self, tenant_id: str, month: str) -> dict[str, Any]:
        if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", month):
            raise ValueError("month must be YYYY-MM")
        recorded = self.runs.usage(tenant_id, month)
        tenant = self.tenants.get(tenant_id)
        plan = self.settings.plans.get(tenant.plan) if tenant else None
        return {
            "tenantId": tenant_id,
            "month": month,
            "runs": int(recorded["runs"]),
            "trainingSeconds": round(recorded["trainingSeconds"], 3),
            "trainingHours": round(recorded["trainingSeconds"] / 3600.0, 4),
            "costEstimateUsd": round(recorded["costEstimateUsd"], 4),
            "budgetHours": plan.monthly_training_hours if plan else None,
        }

    # ------------------------------------------------------------------ helpers
    def _snapshot(self, limit: int | None = None, plans: Iterable[str] | None = None) -> Snapshot:
        queued: list[Run] = []
        active: list[Run] = []
        for plan in self.settings.plans if plans is None else plans:
            queued.extend(self.runs.queued_runs(plan, limit=limit))
            active.extend(self.runs.active_runs(plan))
        month = month_of(self.clock.now())
        waiting_tenants = {r.tenant_id for r in queued}
        # Only the queued tenants' counters: their last admission feeds the fair order.
        last_admitted = self.runs.counters(waiting_tenants).last_admitted
        views: dict[str, TenantView] = {}
        plan_of: dict[str, str] = {}
        for tenant_id in waiting_tenants:
            tenant = self.tenants.get(tenant_id)
            if tenant is None:
                views[tenant_id] = TenantView(status=None)
                continue
            plan_of[tenant_id] = tenant.plan
            plan = self.settings.plans.get(tenant.plan)
            budget = plan.monthly_training_hours if plan else None
            used = (
                self.runs.usage(tenant_id, month)["trainingSeconds"] / 3600.0
                if budget is not None
                else 0.0
            )
            views[tenant_id] = TenantView(
                tenant.status, used, budget, month, last_admitted.get(tenant_id, "")
            )
        # Safety net for a plan change whose move was not made (the API calls
        # follow_plan_change): a waiting run goes by its tenant's plan now.
        queued = [
            self._follow_plan(r, plan_of[r.tenant_id]) if r.tenant_id in plan_of else r
            for r in queued
        ]
        return Snapshot(queued=queued, active=active, tenants=views)

    def _follow_plan(self, run: Run, plan: str) -> Run:
        if run.plan == plan or plan not in self.settings.plans:
            return run
        if self.runs.move_queued_run(run, plan):
            self.log.info(
                "queued run moved to the tenant's new plan",
                extra={
                    "tenant_id": run.tenant_id,
                    "run_id": run.run_id,
                    "from": run.plan,
                    "to": plan,
                },
            )
            return run.model_copy(update={"plan": plan})
        return run

    def follow_plan_change(self, tenant_id: str) -> Run | None:
        """After a plan change: the tenant's QUEUED run (if any) moves to the new
        plan's queue, so it starts under the new plan's caps, weight and instance."""
        tenant = self.tenants.get(tenant_id)
        run_id = self.runs.queued_run_id(tenant_id)
        run = self.runs.get_run(tenant_id, run_id) if run_id else None
        if tenant is None or run is None or run.status != RunStatus.QUEUED:
            return None
        moved = self._follow_plan(run, tenant.plan)
        return moved if moved.plan != run.plan else None

    def _with_positions(self, runs: list[Run]) -> list[Run]:
        waiting_in = {r.plan for r in runs if r.status == RunStatus.QUEUED}
        if not waiting_in:
            return runs
        # A position is within the run's own plan: read only those queues.
        plans = [p for p in self.settings.plans if p in waiting_in]
        positions = queue_positions(self.settings, self._snapshot(plans=plans))
        return [
            r.model_copy(update={"queue_position": positions.get(r.run_id)})
            if r.status == RunStatus.QUEUED
            else r
            for r in runs
        ]

    def _log_keys(self, run: Run) -> None:
        # Powertools Logger: keep tenant/run ids on every line while handling a record.
        append = getattr(self.log, "append_keys", None)
        if append is not None:
            append(tenant_id=run.tenant_id, run_id=run.run_id)


def _predates_location(tenant: Tenant, event_time: datetime | None) -> bool:
    """An object created at the tenant's location before the tenant took it (a
    migration's copy) is no upload. S3 event times have one-second precision and
    the migration switches in a later second than its last copy, so whole seconds
    are compared."""
    since = parse_iso(tenant.location_since)
    if since is None or event_time is None:
        return False
    if event_time.tzinfo is None:
        event_time = event_time.replace(tzinfo=since.tzinfo)
    return event_time < since.replace(microsecond=0)


def _missing_start_inputs(tenant: Tenant | None, plan_known: bool) -> str | None:
    if tenant is None:
        return "tenant no longer exists"
    if not plan_known:
        return "plan is not configured"
    for attr in (
        "data_bucket",
        "data_prefix",
        "role_arn",
        "output_uri",
        "model_package_group_name",
    ):
        if getattr(tenant, attr) in (None, ""):
            return f"tenant has no {attr}"
    return None
