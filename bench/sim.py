"""Discrete-event simulation: the real scheduler vs the timer-polling baseline.

Trainyard side: the production ``SchedulerService`` on ``InMemoryRunRepository``
/ ``InMemoryTenantRepository`` with a ``VirtualClock``, wired the way the
Lambdas are:

- status events and upload events reach one SQS queue; the scheduler Lambda
  is invoked by the event source mapping with batches of up to 10 messages
  after a batching window of 1 s (``infra/lambdas.py``), handles every record
  (``handle_upload`` / ``handle_status``) and then calls ``dispatch()`` once;
- a manual run (``POST /tenants/{id}/runs``) calls ``submit_manual_run`` in
  the API Lambda and sends a "Dispatch Requested" message to that queue;
- the one-minute schedule calls ``reconcile()``.

Two intake modes: ``paced`` (default) turns every request into its own run:
a tenant's next request is submitted as a manual run as soon as its previous
run has left QUEUED (so nothing coalesces, and the run count equals the
baseline's); its wait before submission counts in its delay. ``upload`` sends
every request as an S3 upload (distinct keys) and lets Trainyard coalesce.

Each Lambda invocation is timed with ``time.process_time``.
"""

from __future__ import annotations

import heapq
import itertools
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from trainyard_core.clock import VirtualClock
from trainyard_core.config import Settings
from trainyard_core.models import Tenant
from trainyard_core.ports.runs import AdmitOutcome
from trainyard_core.scheduling.completion import RunNotFoundYetError
from trainyard_core.scheduling.service import SchedulerService
from trainyard_core.store.runs_memory import InMemoryRunRepository
from trainyard_core.store.tenants import InMemoryTenantRepository

from bench.baseline import BaselineScheduler
from bench.model import ApiCalls, ModelConfig, SageMakerModel
from trainyard.testing.scheduling import make_tenant

T0 = datetime(2026, 1, 1, tzinfo=UTC)
BATCH_SIZE = 10  # infra/lambdas.py QUEUE_BATCH_SIZE
BATCH_WINDOW_S = 1.0  # infra/lambdas.py QUEUE_BATCH_WINDOW
RECONCILE_S = 60.0
API_TO_SQS_S = 0.05  # SendMessage from the API Lambda until the message is receivable
VISIBILITY_RETRY_S = 30.0  # a record that failed comes back after its visibility timeout

Mode = Literal["paced", "upload"]


@dataclass(frozen=True)
class Request:
    """One training request: a tenant wants a model trained on its data."""

    rid: int
    tenant: str
    plan: str
    at: float  # seconds after T0
    duration: float  # pipeline execution time once Executing
    fails: bool = False


@dataclass
class Scenario:
    name: str
    title: str
    settings: Settings
    tenants: dict[str, str]  # tenant id -> plan
    requests: list[Request]
    model: ModelConfig
    seed: int = 1
    heavy_tenant: str | None = None  # the noisy neighbour, excluded from "worst victim"
    focus_plan: str | None = None  # where Jain's index is computed (None: every plan)
    # Only requests arriving before this are simulated for Trainyard (sampling at scale).
    trainyard_window_s: float | None = None
    notes: str = ""


@dataclass
class Outcome:
    policy: str
    scenario: str
    requests: list[Request]
    start: dict[int, float]  # request id -> start of the execution that served it
    end: dict[int, float]
    run_of: dict[int, str]  # request id -> run (execution token)
    executions: list[tuple[str, str, float, float]]  # (tenant, plan, start, end)
    calls: ApiCalls
    # (sim time, QUEUED runs in the store before the invocation, CPU seconds)
    invocations: list[tuple[float, int, float]] = field(default_factory=list)
    reconcile_cpu: list[tuple[int, float]] = field(default_factory=list)
    wall_seconds: float = 0.0
    unstarted: int = 0

    @property
    def runs_started(self) -> int:
        return len(self.executions)


class EventLoop:
    def __init__(self, on_time: Callable[[float], None] | None = None) -> None:
        self.now = 0.0
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._on_time = on_time
        self.stopped = False

    def schedule(self, at: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._heap, (max(at, self.now), next(self._seq), fn))

    def run(self, until: float = float("inf")) -> None:
        while self._heap and not self.stopped:
            at, _, fn = heapq.heappop(self._heap)
            if at > until:
                break
            self.now = at
            if self._on_time is not None:
                self._on_time(at)
            fn()


class _QuietLogger:
    """The service logs a line per transition; at 10^5 runs that is noise, not signal."""

    def _noop(self, *args: Any, **kwargs: Any) -> None:
        return None

    info = warning = error = exception = debug = _noop


def _s3_delay(rng: random.Random, cfg: ModelConfig) -> float:
    # S3 -> EventBridge -> SQS: typically about a second.
    return cfg.event_delay_min_s + rng.expovariate(1.0 / cfg.event_delay_mean_s)


def _window(sc: Scenario) -> list[Request]:
    if sc.trainyard_window_s is None:
        return sc.requests
    return [r for r in sc.requests if r.at < sc.trainyard_window_s]


def _collect(
    policy: str,
    sc: Scenario,
    requests: list[Request],
    model: SageMakerModel,
    run_of: dict[int, str],
) -> Outcome:
    start: dict[int, float] = {}
    end: dict[int, float] = {}
    executions: list[tuple[str, str, float, float]] = []
    by_token = {ex.token: ex for ex in model.executions.values()}
    token_owner: dict[str, Request] = {}
    for req in requests:
        token = run_of.get(req.rid)
        ex = by_token.get(token) if token else None
        if ex is None:
            continue
        token_owner.setdefault(token, req)  # type: ignore[arg-type]
        start[req.rid] = ex.started
        if ex.ended is not None:
            end[req.rid] = ex.ended
    for token, req in token_owner.items():
        ex = by_token[token]
        executions.append((req.tenant, req.plan, ex.started, ex.ended or float("inf")))
    return Outcome(
        policy=policy,
        scenario=sc.name,
        requests=requests,
        start=start,
        end=end,
        run_of=dict(run_of),
        executions=executions,
        calls=model.calls,
        unstarted=sum(1 for r in requests if r.rid not in start),
    )


# ---------------------------------------------------------------------------
# Trainyard
# ---------------------------------------------------------------------------


class TrainyardSim:
    def __init__(self, sc: Scenario, mode: Mode = "paced") -> None:
        self.sc = sc
        self.mode = mode
        self.requests = _window(sc)
        self.clock = VirtualClock(T0)
        self.loop = EventLoop(on_time=lambda t: self.clock.set(T0 + timedelta(seconds=t)))
        self.rng = random.Random(sc.seed)
        self.runs = InMemoryRunRepository()
        self.tenants = InMemoryTenantRepository()
        self.tenant_objs: dict[str, Tenant] = {}
        for tenant_id, plan in sc.tenants.items():
            tenant = make_tenant(tenant_id, plan)
            self.tenants.create(tenant)
            self.tenant_objs[tenant_id] = tenant
        self.requests_of_run: dict[str, list[Request]] = {}
        self.run_of: dict[int, str] = {}
        self.model = SageMakerModel(
            config=sc.model,
            now=lambda: self.loop.now,
            schedule=self.loop.schedule,
            work=self._work,
            rng=random.Random(sc.seed + 1),
            on_status=self._on_status,
        )
        self.service = SchedulerService(
            sc.settings,
            self.runs,
            self.tenants,
            self.model,
            clock=self.clock,
            logger=_QuietLogger(),
            rng=random.Random(sc.seed + 2),
        )
        # Observe admissions without touching the store's code: the paced client
        # submits a tenant's next request once its queued run was admitted.
        self._admitted: list[Any] = []
        admit = self.runs.admit

        def observed_admit(run: Any, caps: Any, now_iso: str, next_at: str) -> AdmitOutcome:
            outcome = admit(run, caps, now_iso, next_at)
            if outcome == AdmitOutcome.ADMITTED:
                self._admitted.append(run)
            return outcome

        self.runs.admit = observed_admit  # type: ignore[method-assign]
        self.sqs: deque[tuple[Any, ...]] = deque()
        self.next_invoke: float | None = None
        self.blocked: dict[str, str] = {}  # tenant -> its QUEUED run (paced mode)
        self.outbox: dict[str, deque[Request]] = {}
        self.queued = 0  # QUEUED runs in the store (for CPU vs backlog)
        self.outcome_invocations: list[tuple[float, int, float]] = []
        self.reconcile_cpu: list[tuple[int, float]] = []
        self.last_arrival = max((r.at for r in self.requests), default=0.0)

    # --- the modelled world
    def _work(self, run_id: str, parameters: dict[str, str]) -> tuple[float, bool]:
        first = self.requests_of_run[run_id][0]
        return first.duration, first.fails

    def _on_status(self, arn: str, status: str, display: str | None, reason: str | None) -> None:
        self._send(("status", arn, status, display))

    def _send(self, msg: tuple[Any, ...]) -> None:
        self.sqs.append(msg)
        target = self.loop.now if len(self.sqs) >= BATCH_SIZE else self.loop.now + BATCH_WINDOW_S
        if self.next_invoke is None or target < self.next_invoke:
            self.next_invoke = target
            self.loop.schedule(target, lambda t=target: self._invoke(t))

    def _arrive(self, req: Request) -> None:
        if self.mode == "upload":
            tenant = self.tenant_objs[req.tenant]
            key = f"{tenant.data_prefix}req-{req.rid:08d}.csv"
            msg = ("upload", tenant.data_bucket, key, f"{req.rid:032x}", req)
            self.loop.schedule(
                self.loop.now + _s3_delay(self.rng, self.sc.model), lambda: self._send(msg)
            )
            return
        if req.tenant in self.blocked:
            self.outbox.setdefault(req.tenant, deque()).append(req)
        else:
            self._submit(req)

    def _submit(self, req: Request) -> None:
        # POST /tenants/{id}/runs: the API Lambda queues the run, then asks for a dispatch.
        run = self.service.submit_manual_run(self.tenant_objs[req.tenant])
        assert run.run_id not in self.requests_of_run, "paced requests must not coalesce"
        self.requests_of_run[run.run_id] = [req]
        self.run_of[req.rid] = run.run_id
        self.blocked[req.tenant] = run.run_id
        self.queued += 1
        self.loop.schedule(self.loop.now + API_TO_SQS_S, lambda: self._send(("dispatch",)))

    # --- the scheduler Lambda
    def _invoke(self, scheduled_for: float) -> None:
        if self.next_invoke != scheduled_for:
            return  # superseded by an earlier invocation
        self.next_invoke = None
        batch = [self.sqs.popleft() for _ in range(min(BATCH_SIZE, len(self.sqs)))]
        backlog = self.queued
        cpu = time.process_time()
        for msg in batch:
            kind = msg[0]
            if kind == "status":
                _, arn, status, display = msg
                try:
                    self.service.handle_status(arn, status, display_name=display)
                except RunNotFoundYetError:
                    # Batch item failure: the message comes back after its visibility timeout.
                    self.loop.schedule(
                        self.loop.now + VISIBILITY_RETRY_S, lambda m=msg: self._send(m)
                    )
            elif kind == "upload":
                _, bucket, key, etag, req = msg
                result = self.service.handle_upload(bucket, key, etag=etag, size=1024)
                if result.run is not None:
                    self.run_of[req.rid] = result.run.run_id
                    self.requests_of_run.setdefault(result.run.run_id, []).append(req)
                    if result.outcome == "created":
                        self.queued += 1
        self.service.dispatch()
        self.outcome_invocations.append((self.loop.now, backlog, time.process_time() - cpu))
        self._after_invocation()
        if self.sqs and self.next_invoke is None:
            self.next_invoke = self.loop.now
            self.loop.schedule(self.loop.now, lambda t=self.loop.now: self._invoke(t))

    def _reconcile(self) -> None:
        backlog = self.queued
        cpu = time.process_time()
        self.service.reconcile()
        self.reconcile_cpu.append((backlog, time.process_time() - cpu))
        self._after_invocation()
        if not self._finished():
            self.loop.schedule(self.loop.now + RECONCILE_S, self._reconcile)

    def _after_invocation(self) -> None:
        admitted, self._admitted = self._admitted, []
        for run in admitted:
            self.queued -= 1
            if self.blocked.get(run.tenant_id) == run.run_id:
                del self.blocked[run.tenant_id]
                pending = self.outbox.get(run.tenant_id)
                if pending:
                    self._submit(pending.popleft())

    def _finished(self) -> bool:
        return (
            self.loop.now > self.last_arrival
            and self.queued == 0
            and not self.blocked
            and self.model.running == 0
            and self.runs.counters().global_running == 0
        )

    def run(self) -> Outcome:
        wall = time.perf_counter()
        for req in self.requests:
            self.loop.schedule(req.at, lambda r=req: self._arrive(r))
        self.loop.schedule(RECONCILE_S, self._reconcile)
        self.loop.run()
        out = _collect("trainyard", self.sc, self.requests, self.model, self.run_of)
        out.invocations = self.outcome_invocations
        out.reconcile_cpu = self.reconcile_cpu
        out.wall_seconds = time.perf_counter() - wall
        return out


# ---------------------------------------------------------------------------
# Baseline
# ---------------------------------------------------------------------------


class BaselineSim:
    def __init__(self, sc: Scenario, requests: list[Request] | None = None) -> None:
        self.sc = sc
        self.requests = sc.requests if requests is None else requests
        self.loop = EventLoop()
        self.rng = random.Random(sc.seed)
        self.by_rid = {r.rid: r for r in self.requests}
        self.run_of: dict[int, str] = {}
        self.model = SageMakerModel(
            config=sc.model,
            # The timer Lambda's calls happen while it runs, not all at the tick.
            now=lambda: self.loop.now + self.scheduler.elapsed,
            schedule=self.loop.schedule,
            work=lambda run_id, _p: (
                self.by_rid[int(run_id)].duration,
                self.by_rid[int(run_id)].fails,
            ),
            rng=random.Random(sc.seed + 1),
            on_status=None,
        )
        self.scheduler = BaselineScheduler(sc.settings, self.model, self._started)
        self.pending = len(self.requests)
        self.last_arrival = max((r.at for r in self.requests), default=0.0)

    def _started(self, rid: int, arn: str) -> None:
        self.run_of[rid] = self.model.executions[arn].token
        self.pending -= 1

    def _tick(self) -> None:
        self.scheduler.tick()
        self.scheduler.elapsed = 0.0  # between invocations, model time is loop time
        done = (
            self.loop.now > self.last_arrival and self.pending == 0 and not self.scheduler.running
        )
        if not done:
            self.loop.schedule(self.loop.now + RECONCILE_S, self._tick)

    def run(self) -> Outcome:
        wall = time.perf_counter()
        for req in self.requests:
            delay = _s3_delay(self.rng, self.sc.model)
            self.loop.schedule(
                req.at + delay,
                lambda r=req: self.scheduler.enqueue(r.rid, r.tenant, r.plan),
            )
        self.loop.schedule(RECONCILE_S, self._tick)
        self.loop.run()
        out = _collect("baseline", self.sc, self.requests, self.model, self.run_of)
        out.wall_seconds = time.perf_counter() - wall
        return out


def run_trainyard(sc: Scenario, mode: Mode = "paced") -> Outcome:
    return TrainyardSim(sc, mode).run()


def run_baseline(sc: Scenario, window_only: bool = True) -> Outcome:
    return BaselineSim(sc, _window(sc) if window_only else sc.requests).run()
