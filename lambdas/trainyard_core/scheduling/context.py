"""What every scheduler use case works with: the settings, the ports and the clock."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from trainyard_core import limits
from trainyard_core.clock import Clock, SystemClock
from trainyard_core.config import Settings
from trainyard_core.events import Event
from trainyard_core.lineage import InputListingPort
from trainyard_core.models import Run
from trainyard_core.ports.events import EventPublisher, NullEvents
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
        events: EventPublisher | None = None,
        inputs: InputListingPort | None = None,
        definition_version: str | None = None,
    ) -> None:
        self.settings = settings
        self.runs = runs
        self.tenants = tenants
        self.pipeline = pipeline
        self.clock = clock or SystemClock()
        self.metrics = metrics or NullMetrics()
        self.log = logger or logging.getLogger("trainyard.scheduler")
        self.rng = rng or random.Random()
        # Trainyard's own events (trainyard_core/events.py), published after the
        # write they report, only by the caller whose conditional write won.
        self.events: EventPublisher = events or NullEvents()
        # Reconcile asks SageMaker only about runs quiet for this long, so it does
        # not race the status event that is normally seconds behind a change.
        self.describe_min_age_seconds = describe_min_age_seconds
        # Run lineage (trainyard_core/lineage.py): the data prefix's objects listed
        # at each start, and the deployed pipeline definition's version.
        self.inputs = inputs
        self.definition_version = definition_version

    def log_keys(self, run: Run) -> None:
        # Powertools Logger: keep tenant/run ids on every line while handling a record,
        # per thread (the embedded stack runs handlers side by side in one process;
        # the handler removes them after the record).
        append = getattr(self.log, "thread_safe_append_keys", None)
        if append is not None:
            append(tenant_id=run.tenant_id, run_id=run.run_id)

    def emit(self, *events: Event) -> None:
        """Publish after the state change: a publisher that fails must never undo
        or retry the change (ports/events.py), so nothing it raises escapes."""
        try:
            self.events.publish(list(events))
        except Exception:
            self.log.exception("events not published")
            self.metrics.record("EventsNotPublished", len(events))

    @contextmanager
    def isolated(self, step: str, run: Run | None = None, **keys: Any) -> Iterator[None]:
        """One element of a sweep (a run, a counter, a plan) that fails is logged
        with its reason and counted (``SweepErrors``, by step), and the sweep goes
        on: one poison run must not stop reconcile or dispatch for every tenant.
        The element is retried by the next sweep."""
        try:
            yield
        except Exception as exc:
            error = limits.bounded(f"{type(exc).__name__}: {exc}", limits.REASON_MAX_CHARS)
            where = {"tenant_id": run.tenant_id, "run_id": run.run_id} if run else {}
            self.log.error(
                "sweep element failed; the sweep goes on",
                # The traceback repeats the message: only when it is short.
                exc_info=len(str(exc)) <= limits.REASON_MAX_CHARS,
                extra={"step": step, "error": error, **where, **keys},
            )
            self.metrics.record("SweepErrors", 1, dimensions={"step": step})
            # And once without the step: the alarm's metric (an alarm names exact
            # dimensions, and the steps are many).
            self.metrics.record("SweepErrors", 1)
