"""The tenant lifecycle schedule: tenants finish provisioning, migrating and
offboarding on their own, not only when someone reads them, and tenant stacks on
an older tenant template are updated to the deployed one (tenants/rollout.py).

A one-minute EventBridge schedule invokes the onboarding function with a
``Scheduled Event``; its entry point (``onboarding``) routes it here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from trainyard_core.limits import REASON_MAX_CHARS, bounded

from trainyard_handlers import dependencies
from trainyard_handlers.observability import logger, metrics, tracer

# What each part of a lifecycle run leaves for what comes after it (seconds).
RESERVE_SECONDS = 5.0


class TenantLifecycleError(RuntimeError):
    """A tenant's provisioning, migration or offboarding step raised."""


def is_lifecycle_schedule(event: dict[str, Any]) -> bool:
    return event.get("source") == "aws.events" and event.get("detail-type") == "Scheduled Event"


@tracer.capture_method
def advance_tenants(context: LambdaContext) -> dict[str, Any]:
    def time_left() -> float:
        return context.get_remaining_time_in_millis() / 1000.0

    # Retrain checks first, within their own budget: a long data move (which uses
    # all the time it is given) must not starve them, nor they the lifecycle.
    started = time.monotonic()
    budget = dependencies.settings().retraining.budget_seconds

    def retrain_time_left() -> float:
        return min(time_left(), budget - (time.monotonic() - started) + RESERVE_SECONDS)

    retrained = _retrain_due(retrain_time_left)
    report = dependencies.tenant_service().advance_pending(time_left=time_left)
    report.update(retrained)
    for error in report["errors"]:
        tenant_id, _, reason = error.partition(": ")
        logger.error(
            "tenant lifecycle step failed", extra={"tenant_id": tenant_id, "reason": reason}
        )
    for failure in report["stack_update_failures"]:
        # Not an invocation error: the tenant keeps its old stack, retried later.
        tenant_id, _, reason = failure.partition(": ")
        logger.error("tenant stack update failed", extra={"tenant_id": tenant_id, "reason": reason})
    if report["advanced"] or report["errors"] or report["deferred"]:
        pending = {k: report[k] for k in ("advanced", "waiting", "errors", "deferred")}
        logger.info("tenant lifecycle advanced", extra={"report": pending})
    if report["stacks_updating"] or report["stacks_updated"]:
        logger.info(
            "tenant stacks updating to the current template",
            extra={
                "updating": report["stacks_updating"],
                "updated": report["stacks_updated"],
                "outdated": len(report["stacks_outdated"]),
            },
        )
    metrics.add_metric("TenantsPending", MetricUnit.Count, len(report["waiting"]))
    outdated = len(report["stacks_outdated"]) + len(report["stacks_updating"])
    metrics.add_metric("TenantStacksOutdated", MetricUnit.Count, outdated)
    metrics.add_metric(
        "TenantStackUpdateFailures", MetricUnit.Count, len(report["stack_update_failures"])
    )
    report["errors"] = report["errors"] + report.pop("retrain_errors")
    if report["errors"]:
        # After every other tenant had its turn: fail the invocation so the
        # <prefix>-onboarding-errors alarm sees it (the next minute retries anyway).
        raise TenantLifecycleError(f"{len(report['errors'])} tenant(s) failed: {report['errors']}")
    return {key: len(ids) for key, ids in report.items()}


def _retrain_due(time_left: Callable[[], float]) -> dict[str, list[str]]:
    """Scheduled retraining in the time given (tenants/retraining.py); a failure to
    read the due tenants (the index still backfilling, throttling) is reported like
    a tenant's error, after the lifecycle has had its turn."""
    try:
        retrain = dependencies.retraining().run_due(time_left, reserve_seconds=RESERVE_SECONDS)
    except Exception as exc:
        logger.exception("retrain checks failed")
        error = bounded(f"retraining: {type(exc).__name__}: {exc}", REASON_MAX_CHARS)
        return {
            "retrain_queued": [],
            "retrain_unchanged": [],
            "retrain_deferred": [],
            "retrain_errors": [error],
        }
    for error in retrain.errors:
        tenant_id, _, reason = error.partition(": ")
        logger.error("retrain check failed", extra={"tenant_id": tenant_id, "reason": reason})
    if retrain.queued:
        logger.info("retraining queued", extra={"tenants": retrain.queued})
        # The runs start now, not at the scheduler's next one-minute reconcile.
        for plan in sorted(retrain.plans):
            try:
                dependencies.intake_queue().request_dispatch(plan)
            except Exception:
                logger.exception("could not request an immediate dispatch")
    metrics.add_metric("RetrainsQueued", MetricUnit.Count, len(retrain.queued))
    return {
        "retrain_queued": retrain.queued,
        "retrain_unchanged": retrain.unchanged,
        "retrain_deferred": retrain.deferred,
        "retrain_errors": retrain.errors,
    }
