"""The tenant lifecycle schedule: tenants finish provisioning, migrating and
offboarding on their own, not only when someone reads them, and tenant stacks on
an older tenant template are updated to the deployed one (tenants/rollout.py).

A one-minute EventBridge schedule invokes the onboarding function with a
``Scheduled Event``; its entry point (``onboarding``) routes it here.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from trainyard_handlers import dependencies
from trainyard_handlers.observability import logger, metrics, tracer


class TenantLifecycleError(RuntimeError):
    """A tenant's provisioning, migration or offboarding step raised."""


def is_lifecycle_schedule(event: dict[str, Any]) -> bool:
    return event.get("source") == "aws.events" and event.get("detail-type") == "Scheduled Event"


@tracer.capture_method
def advance_tenants(context: LambdaContext) -> dict[str, Any]:
    report = dependencies.tenant_service().advance_pending(
        time_left=lambda: context.get_remaining_time_in_millis() / 1000.0
    )
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
    if report["errors"]:
        # After every other tenant had its turn: fail the invocation so the
        # <prefix>-onboarding-errors alarm sees it (the next minute retries anyway).
        raise TenantLifecycleError(f"{len(report['errors'])} tenant(s) failed: {report['errors']}")
    return {key: len(ids) for key, ids in report.items()}
