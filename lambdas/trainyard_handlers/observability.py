"""The Powertools logger, metrics and tracer every handler module logs through.

One set for all modules: Powertools names them by the function's service
(``POWERTOOLS_SERVICE_NAME``) and shares their state per service anyway, so the
API routers, the lifecycle schedule and the function's entry point add keys and
metrics to the same invocation.

Keys about a request (``tenant_id``, ``run_id``) belong to that request only: entry
points use ``inject_lambda_context(clear_state=True)`` (a warm container's next
invocation starts without them) and the API routers add them with
``thread_safe_append_keys`` (per thread: the embedded stack serves requests on
threads beside other functions' invocations in one process).
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

logger = Logger()
metrics = Metrics()
tracer = Tracer()


class PowertoolsMetricsSink:
    """MetricsSink on Powertools EMF: per-plan metrics get their own dimension set."""

    def record(
        self, name: str, value: float, unit: str = "Count", dimensions: dict[str, str] | None = None
    ) -> None:
        if is_metrics_disabled():
            # single_metric flushes on its own and ignores POWERTOOLS_METRICS_DISABLED.
            return
        metric_unit = (
            MetricUnit(unit) if unit in MetricUnit._value2member_map_ else MetricUnit.Count
        )
        if dimensions:
            with single_metric(
                name=name,
                unit=metric_unit,
                value=value,
                namespace=metrics.namespace,
                default_dimensions=dimensions,
            ):
                pass
        else:
            metrics.add_metric(name=name, unit=metric_unit, value=value)
