"""What every scheduler use case works with: the settings, the ports and the clock."""

from __future__ import annotations

import logging
import random
from datetime import datetime
from typing import Any

from trainyard_core.clock import Clock, SystemClock
from trainyard_core.config import Settings
from trainyard_core.models import Run
from trainyard_core.ports.metrics import MetricsSink, NullMetrics
from trainyard_core.ports.pipeline import PipelinePort
from trainyard_core.ports.runs import RunRepository
from trainyard_core.ports.tenants import TenantRepository


def month_of(moment: datetime) -> str:
    """The month usage is booked under (and budgets are counted in)."""
    return moment.strftime("%Y-%m")


class SchedulerContext:
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

    def log_keys(self, run: Run) -> None:
        # Powertools Logger: keep tenant/run ids on every line while handling a record.
        append = getattr(self.log, "append_keys", None)
        if append is not None:
            append(tenant_id=run.tenant_id, run_id=run.run_id)
