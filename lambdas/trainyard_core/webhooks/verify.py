"""An event off the bus is a claim; Trainyard's own records say whether it is true.

EventBridge reserves only ``aws.*`` sources: any principal in the account allowed
``events:PutEvents`` on the default bus can put an event with source ``trainyard``
and any detail. So the deliverer signs nothing it has not checked:

- ``run.*``: the tenant has a run of that ``runId`` (a consistent read of the runs
  table) and its status agrees with the event: ``run.succeeded`` <=> SUCCEEDED,
  ``run.failed`` <=> FAILED or STOPPED (a stopped run is a run.failed),
  ``run.started`` => RUNNING or later, having started; ``run.queued`` => it exists;
- ``model.*``: ``modelPackageArn`` names a version in the tenant's own model
  package group in this account and region, SageMaker describes it
  (``DescribeModelPackage``) in that group, for that tenant, and its approval
  status agrees: ``model.approved`` => Approved, ``model.rejected`` => Rejected,
  ``model.registered`` => it exists.

The body delivered is built from the record, not from the event's detail: the
run as stored, shown as it was at the event (a ``run.queued`` delivered after
the run ended still says QUEUED, without the later times), and the model
package as SageMaker describes it now. Only ``tenantId``, ``occurredAt`` and
the ids looked up come from the event.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from trainyard_core import events as catalogue
from trainyard_core import limits
from trainyard_core.models import RunStatus
from trainyard_core.ports.webhooks import ModelReader, RunReader


class EventRefused(Exception):
    """The event does not match Trainyard's records: never delivered."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = limits.bounded(reason, limits.REASON_MAX_CHARS)


_END_STATUSES = {
    catalogue.RUN_SUCCEEDED.name: {RunStatus.SUCCEEDED},
    catalogue.RUN_FAILED.name: {RunStatus.FAILED, RunStatus.STOPPED},
}
_STARTED = {RunStatus.RUNNING, RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.STOPPED}
_MODEL_STATUS = {
    catalogue.MODEL_APPROVED.name: "Approved",
    catalogue.MODEL_REJECTED.name: "Rejected",
}
# What a run looked like at each event the run reached later: a run.queued says
# QUEUED and a run.started RUNNING, without what only a later transition wrote.
_AS_QUEUED = {
    "status": RunStatus.QUEUED.value,
    "startedAt": None,
    "endedAt": None,
    "executionArn": None,
    "metrics": {},
    "modelPackageArn": None,
}
_AS_STARTED = {
    "status": RunStatus.RUNNING.value,
    "endedAt": None,
    "metrics": {},
    "modelPackageArn": None,
}
_RUN_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_VERSION = re.compile(r"^[1-9][0-9]{0,9}$")


class EventVerifier:
    """``body`` is the verified event's detail, or ``EventRefused``. A read that
    fails (throttling, AccessDenied) raises as it is: the queue retries it."""

    def __init__(
        self,
        *,
        runs: RunReader,
        models: ModelReader,
        model_group: Callable[[str], str],
        model_package_arn_prefix: str,
    ) -> None:
        self.runs = runs
        self.models = models
        self.model_group = model_group
        # arn:<partition>:sagemaker:<region>:<account>:model-package/ (this deployment's)
        self.package_prefix = model_package_arn_prefix

    def body(
        self, kind: catalogue.EventType, tenant_id: str, occurred_at: str, detail: dict[str, Any]
    ) -> dict[str, Any]:
        if kind.name.startswith("run."):
            return self._run(kind, tenant_id, occurred_at, detail)
        return self._model(kind, tenant_id, occurred_at, detail)

    def _run(
        self, kind: catalogue.EventType, tenant_id: str, occurred_at: str, detail: dict[str, Any]
    ) -> dict[str, Any]:
        run_id = detail.get("runId")
        if not isinstance(run_id, str) or not _RUN_ID.match(run_id):
            raise EventRefused(f"{kind.name} without a valid runId")
        run = self.runs.get_run(tenant_id, run_id)
        if run is None:
            raise EventRefused(f"{kind.name}: tenant {tenant_id!r} has no run {run_id!r}")
        status = run.status
        if kind.name in _END_STATUSES:
            if status not in _END_STATUSES[kind.name]:
                raise EventRefused(f"{kind.name}: run {run_id} is {status.value}")
            changes: dict[str, Any] = {"failureReason": run.failure_reason}
        elif kind is catalogue.RUN_STARTED:
            if status not in _STARTED or run.started_at is None:
                raise EventRefused(f"{kind.name}: run {run_id} is {status.value}, never started")
            changes = {**_AS_STARTED, "failureReason": None}
        else:  # run.queued: any run was queued once
            changes = {**_AS_QUEUED, "failureReason": None}
        return catalogue.run_event(kind, run, occurred_at, **changes).envelope()

    def _model(
        self, kind: catalogue.EventType, tenant_id: str, occurred_at: str, detail: dict[str, Any]
    ) -> dict[str, Any]:
        arn = detail.get("modelPackageArn")
        group = self.model_group(tenant_id)
        prefix = f"{self.package_prefix}{group}/"
        # Checked before any call: an ARN of another group, account or region is
        # refused here, not described (nor refused by IAM and retried).
        if (
            not isinstance(arn, str)
            or not arn.startswith(prefix)
            or not _VERSION.match(arn[len(prefix) :])
        ):
            raise EventRefused(f"{kind.name}: modelPackageArn is not a version in group {group}")
        model = self.models.get_by_arn(arn)
        if model is None:
            raise EventRefused(f"{kind.name}: no model package {arn}")
        if model.model_package_group_name != group or model.tenant_id not in (None, tenant_id):
            raise EventRefused(f"{kind.name}: {arn} is not a model of tenant {tenant_id!r}")
        wanted = _MODEL_STATUS.get(kind.name)
        if wanted is not None and model.status != wanted:
            raise EventRefused(f"{kind.name}: {arn} is {model.status}, not {wanted}")
        return catalogue.model_event(kind, model, occurred_at, tenant_id).envelope()
