"""The scheduler's face: one method per event, each carried out by its use case.

``intake`` (uploads, manual runs), ``completion`` (pipeline status events),
``dispatch`` (admission and starts), ``reconcile`` (missed events, stuck runs,
counter healing) and ``queries`` (read models), over the shared ``context``.
Used by the scheduler Lambda (and the API for manual runs and reads). All AWS
access goes through the ports, so the same code runs on DynamoDB + SageMaker,
on moto, and on in-memory fakes with a virtual clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from trainyard_core.models import Run, Tenant, TriggerObject
from trainyard_core.ports.runs import AdmitOutcome
from trainyard_core.scheduling import (
    completion,
    dispatch,
    intake,
    queries,
    queues,
    reconcile,
    retry,
)
from trainyard_core.scheduling.context import SchedulerContext
from trainyard_core.scheduling.dispatch import DispatchReport
from trainyard_core.scheduling.intake import IntakeResult
from trainyard_core.scheduling.policy import Snapshot
from trainyard_core.scheduling.reconcile import ReconcileReport
from trainyard_core.training import TrainingChoice


class SchedulerService(SchedulerContext):
    # --- intake
    def handle_upload(
        self,
        bucket: str,
        key: str,
        etag: str | None = None,
        size: int | None = None,
        version_id: str | None = None,
        event_time: datetime | None = None,
    ) -> IntakeResult:
        return intake.handle_upload(self, bucket, key, etag, size, version_id, event_time)

    def record_moved_upload(self, tenant: Tenant, obj: TriggerObject) -> IntakeResult:
        return intake.record_moved_upload(self, tenant, obj)

    def submit_manual_run(
        self,
        tenant: Tenant,
        training: TrainingChoice | None = None,
        data_bytes: int | None = None,
    ) -> Run:
        return intake.submit_manual_run(self, tenant, training, data_bytes)

    def submit_scheduled_run(self, tenant: Tenant) -> Run:
        return intake.submit_scheduled_run(self, tenant)

    def retry_run(
        self,
        tenant_id: str,
        run_id: str,
        reason: str | None = None,
        requested_by: str | None = None,
    ) -> Run:
        return retry.request_retry(self, tenant_id, run_id, reason, requested_by)

    # --- completion
    def handle_status(
        self,
        execution_arn: str,
        status: str,
        *,
        display_name: str | None = None,
        failure_reason: str | None = None,
        event_time: datetime | None = None,
    ) -> Run | None:
        return completion.handle_status(
            self,
            execution_arn,
            status,
            display_name=display_name,
            failure_reason=failure_reason,
            event_time=event_time,
        )

    # --- dispatch and reconcile
    def dispatch(self) -> DispatchReport:
        return dispatch.dispatch(self)

    def reconcile(self) -> ReconcileReport:
        return reconcile.reconcile(self)

    def heal_counters(self) -> dict[str, int]:
        return reconcile.heal_counters(self)

    # --- plan changes and reads
    def follow_plan_change(self, tenant_id: str) -> Run | None:
        return queues.follow_plan_change(self, tenant_id)

    def get_run(self, tenant_id: str, run_id: str) -> Run | None:
        return queries.get_run(self, tenant_id, run_id)

    def list_runs(
        self, tenant_id: str, limit: int = 50, next_token: str | None = None
    ) -> tuple[list[Run], str | None]:
        return queries.list_runs(self, tenant_id, limit, next_token)

    def queue_overview(self) -> dict[str, dict[str, Any]]:
        return queries.queue_overview(self)

    def usage(self, tenant_id: str, month: str) -> dict[str, Any]:
        return queries.usage(self, tenant_id, month)

    # --- single steps, for tests that play a crashed or outdated scheduler
    def _admit(self, run: Run, now: datetime) -> AdmitOutcome:
        return dispatch.admit(self, run, now)

    def _snapshot(self, limit: int | None = None, plans: Iterable[str] | None = None) -> Snapshot:
        return queues.read_snapshot(self, limit, plans)
