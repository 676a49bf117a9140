"""Discrete-event simulation: the real scheduler vs seed-design baselines.

Trainyard side: the production ``SchedulerService`` on ``InMemoryRunRepository``
/ ``InMemoryTenantRepository`` with a ``VirtualClock``, in the deployed
topology (``infra/queues.py``, ``infra/lambdas.py``, ``wiring.py``):

- uploads go S3 -> the tenant's rule -> the plan's intake queue; status
  changes EventBridge -> the status queue. Each of the four queues has its own
  event source mapping (batches of up to 10 after the queue's batching window,
  ``wiring.batching_window_seconds``) and up to
  ``ESM_CONCURRENCY`` concurrent invocations; each invocation handles its
  records (``handle_upload`` / ``handle_status``) and calls ``dispatch()``;
- the one-minute schedule calls ``reconcile()``, concurrently with the rest;
- concurrent invocations interleave in virtual time (``bench.strands``): each
  DynamoDB / SageMaker request is counted and pauses its invocation for its
  latency (``bench.counting``), so two can race for the global counter;
- a record that fails comes back after the deployed visibility timeout
  (360 s), at most 5 receives, then the dead-letter queue.

Two intake modes: ``paced`` (default) turns every request into its own run:
a tenant's next upload is made as soon as its previous run has left QUEUED
(so nothing coalesces and the run count equals the baselines'); the wait
before the upload counts in its delay. ``upload`` sends every request as its
own upload at once and lets Trainyard coalesce. Both go through the same S3
event path as every baseline's requests.

Each invocation's CPU is what it used while running (``Strands.cpu_seconds``).
"""

from __future__ import annotations

import heapq
import itertools
import random
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from trainyard_core import wiring
from trainyard_core.clock import VirtualClock
from trainyard_core.config import Settings
from trainyard_core.models import Tenant
from trainyard_core.ports.pipeline import StartError
from trainyard_core.ports.runs import AdmitOutcome
from trainyard_core.scheduling.completion import RunNotFoundYetError
from trainyard_core.scheduling.service import SchedulerService
from trainyard_core.store.runs_memory import InMemoryRunRepository
from trainyard_core.store.tenants import InMemoryTenantRepository

from bench.counting import (
    PIPELINE_COSTS,
    RUN_COSTS,
    SDK_THROTTLE_RETRIES_S,
    TENANT_COSTS,
    CountingProxy,
    Latencies,
    Ledger,
)
from bench.model import ApiCalls, ModelConfig, SageMakerModel
from bench.strands import Strands
from trainyard.testing.scheduling import make_tenant

T0 = datetime(2026, 1, 1, tzinfo=UTC)
# The deployed event source mappings (wiring.py, read by CDK and the local runtime).
BATCH_SIZE = wiring.QUEUE_BATCH_SIZE
INTAKE_WINDOW_S = float(wiring.INTAKE_BATCHING_WINDOW_SECONDS)
STATUS_WINDOW_S = float(wiring.STATUS_BATCHING_WINDOW_SECONDS)
RECONCILE_S = 60.0
# infra/queues.py: visibility timeout = 6 x the scheduler Lambda's 60 s timeout
# (wiring.py), maxReceiveCount 5: a failed record comes back after 360 s.
VISIBILITY_RETRY_S = 360.0
MAX_RECEIVE_COUNT = 5
# An SQS event source mapping starts with 5 concurrent batches per queue (the
# scheduler function has no reserved concurrency): each queue's trigger runs up
# to this many invocations at once.
ESM_CONCURRENCY = 5

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
    ledger: Ledger = field(default_factory=Ledger)
    admit_outcomes: dict[str, int] = field(default_factory=dict)
    max_concurrency: int = 1
    dlq: int = 0
    # request id -> when its upload was made, where a paced client made it after
    # its arrival (Trainyard's: one QUEUED run per tenant); absent = at arrival.
    uploaded: dict[int, float] = field(default_factory=dict)
    # request id -> when its upload's message reached the policy's queue (after
    # the S3 -> EventBridge -> SQS path, the same model for every policy).
    delivered: dict[int, float] = field(default_factory=dict)

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

    def next_at(self) -> float:
        return self._heap[0][0] if self._heap else float("inf")

    def advance(self, at: float) -> None:
        """Move the clock without an event (an invocation waiting on a request)."""
        self.now = max(self.now, at)
        if self._on_time is not None:
            self._on_time(self.now)

    def run(self, until: float = float("inf")) -> None:
        while self._heap and not self.stopped:
            at, _, fn = heapq.heappop(self._heap)
            if at > until:
                break
            self.now = max(self.now, at)
            if self._on_time is not None:
                self._on_time(self.now)
            fn()


class _QuietLogger:
    """The service logs a line per transition; at 10^5 runs that is noise, not signal."""

    def _noop(self, *args: Any, **kwargs: Any) -> None:
        return None

    info = warning = error = exception = debug = _noop


def _leg(rng: random.Random, minimum: float, mean: float) -> float:
    return minimum + (rng.expovariate(1.0 / mean) if mean > 0 else 0.0)


def _s3_delay(rng: random.Random, cfg: ModelConfig) -> float:
    """S3 object created -> EventBridge -> the plan's SQS queue, then -> Lambda."""
    return _leg(rng, cfg.s3_delay_min_s, cfg.s3_delay_mean_s) + _sqs_delay(rng, cfg)


def _sqs_delay(rng: random.Random, cfg: ModelConfig) -> float:
    return _leg(rng, cfg.sqs_delay_min_s, cfg.sqs_delay_mean_s)


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


class SdkRetries:
    """The pipeline port as the deployed Lambda's boto3 client behaves: a throttled
    start is retried by the SDK (``SDK_THROTTLE_RETRIES_S``, the invocation waits)
    before ``StartError`` reaches the scheduler, as the baselines' starts are."""

    def __init__(self, port: Any, pause: Callable[[float], None]) -> None:
        self._port, self._pause = port, pause

    def start(self, **kwargs: Any) -> str:
        for backoff in (*SDK_THROTTLE_RETRIES_S, None):
            try:
                return str(self._port.start(**kwargs))
            except StartError as exc:
                if not exc.throttled or backoff is None:
                    raise
                self._pause(backoff)
        raise AssertionError("unreachable")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._port, name)


class QueueTrigger:
    """One SQS queue and its Lambda event source mapping: batches of up to
    ``batch`` messages after a batching ``window``, up to ``concurrency``
    invocations in flight at once (each its own strand)."""

    def __init__(
        self,
        loop: EventLoop,
        strands: Strands,
        handler: Callable[[QueueTrigger, list[tuple[Any, int]]], None],
        name: str,
        window_s: float,
        batch: int,
        concurrency: int,
    ) -> None:
        self.loop, self.strands, self.handler = loop, strands, handler
        self.name, self.window, self.batch, self.concurrency = name, window_s, batch, concurrency
        self.messages: deque[tuple[Any, int, float]] = deque()  # (msg, receives, visible at)
        self.inflight = 0
        self.max_inflight = 0
        self._timer: float | None = None

    def deliver(self, msg: Any, receives: int = 0) -> None:
        self.messages.append((msg, receives, self.loop.now))
        self._kick()

    def _kick(self) -> None:
        while self.messages and self.inflight < self.concurrency:
            due = self.messages[0][2] + self.window
            if len(self.messages) < self.batch and self.loop.now < due:
                if self._timer is None or self._timer > due:
                    self._timer = due
                    self.loop.schedule(due, self._fire)
                return
            batch = [
                (m, r)
                for m, r, _ in (
                    self.messages.popleft() for _ in range(min(self.batch, len(self.messages)))
                )
            ]
            self.inflight += 1
            self.max_inflight = max(self.max_inflight, self.inflight)
            self.strands.spawn(lambda b=batch: self.handler(self, b), on_done=self._done)

    def _fire(self) -> None:
        self._timer = None
        self._kick()

    def _done(self) -> None:
        self.inflight -= 1
        self._kick()


# ---------------------------------------------------------------------------
# Trainyard
# ---------------------------------------------------------------------------


class TrainyardSim:
    """The production scheduler in the deployed topology: one intake queue per
    plan and the status queue, each with its own event source mapping (batch
    10, the queue's batching window, up to ``ESM_CONCURRENCY`` concurrent invocations), the
    one-minute reconcile schedule as another concurrent invocation; every
    DynamoDB and SageMaker request counted and charged its latency."""

    def __init__(
        self,
        sc: Scenario,
        mode: Mode = "paced",
        latencies: Latencies | None = None,
        intake_window_s: float = INTAKE_WINDOW_S,
        status_window_s: float = STATUS_WINDOW_S,
        requests: list[Request] | None = None,
    ) -> None:
        self.sc = sc
        self.mode = mode
        self.lat = latencies or Latencies()
        self.requests = _window(sc) if requests is None else requests
        self.clock = VirtualClock(T0)
        self.loop = EventLoop(on_time=lambda t: self.clock.set(T0 + timedelta(seconds=t)))
        self.strands = Strands(self.loop)
        self.ledger = Ledger()
        self.rng = random.Random(sc.seed)
        self.raw_runs = InMemoryRunRepository()
        self.raw_tenants = InMemoryTenantRepository()
        self.tenant_objs: dict[str, Tenant] = {}
        for tenant_id, plan in sc.tenants.items():
            tenant = make_tenant(tenant_id, plan)
            self.raw_tenants.create(tenant)
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
        self.admit_outcomes: Counter[str] = Counter()
        admit = self.raw_runs.admit

        def observed_admit(run: Any, caps: Any, now_iso: str, next_at: str) -> AdmitOutcome:
            outcome = admit(run, caps, now_iso, next_at)
            self.admit_outcomes[str(outcome)] += 1
            if outcome == AdmitOutcome.ADMITTED:
                self._left_queued(run)
            return outcome

        self.raw_runs.admit = observed_admit  # type: ignore[method-assign]
        pause = self.strands.pause
        runs = CountingProxy(
            self.raw_runs, self.ledger, "dynamodb", RUN_COSTS, self.lat.dynamodb_s, pause
        )
        tenants = CountingProxy(
            self.raw_tenants, self.ledger, "dynamodb", TENANT_COSTS, self.lat.dynamodb_s, pause
        )
        pipeline = SdkRetries(
            CountingProxy(
                self.model, self.ledger, "sagemaker", PIPELINE_COSTS, self.lat.sagemaker_s, pause
            ),
            pause,
        )
        self.service = SchedulerService(
            sc.settings,
            runs,  # type: ignore[arg-type]
            tenants,  # type: ignore[arg-type]
            pipeline,  # type: ignore[arg-type]
            clock=self.clock,
            logger=_QuietLogger(),
            rng=random.Random(sc.seed + 2),
        )
        self.intake = {
            plan: QueueTrigger(
                self.loop,
                self.strands,
                self._handle,
                f"intake-{plan}",
                intake_window_s,
                BATCH_SIZE,
                ESM_CONCURRENCY,
            )
            for plan in sc.settings.plans
        }
        self.status = QueueTrigger(
            self.loop,
            self.strands,
            self._handle,
            "status",
            status_window_s,
            BATCH_SIZE,
            ESM_CONCURRENCY,
        )
        self.blocked: set[str] = set()  # tenants with an upload in flight or a QUEUED run
        self.outbox: dict[str, deque[Request]] = {}
        self.pending_of_tenant: dict[str, Request] = {}
        self.uploaded: dict[int, float] = {}
        self.delivered: dict[int, float] = {}
        self.queued = 0
        self.dlq = 0
        self.redelivered = 0
        self.outcome_invocations: list[tuple[float, int, float]] = []
        self.reconcile_cpu: list[tuple[int, float]] = []
        self.last_arrival = max((r.at for r in self.requests), default=0.0)

    # --- the modelled world
    def _work(self, run_id: str, parameters: dict[str, str]) -> tuple[float, bool]:
        first = self.requests_of_run[run_id][0]
        return first.duration, first.fails

    def _on_status(self, arn: str, status: str, display: str | None, reason: str | None) -> None:
        # EventBridge -> the status queue (the EventBridge leg is in the model), -> Lambda.
        msg = ("status", arn, status, display)
        self.loop.schedule(
            self.loop.now + _sqs_delay(self.rng, self.sc.model), lambda: self.status.deliver(msg)
        )

    def _arrive(self, req: Request) -> None:
        if self.mode == "paced" and req.tenant in self.blocked:
            self.outbox.setdefault(req.tenant, deque()).append(req)
            return
        self._upload(req)

    def _upload(self, req: Request) -> None:
        """The tenant's upload: S3 -> its rule -> the plan's intake queue -> Lambda."""
        tenant = self.tenant_objs[req.tenant]
        key = f"{tenant.data_prefix}req-{req.rid:08d}.csv"
        msg = ("upload", tenant.data_bucket, key, f"{req.rid:032x}", req)
        if self.mode == "paced":
            self.blocked.add(req.tenant)
            self.uploaded[req.rid] = self.loop.now
        queue = self.intake[req.plan]

        def deliver() -> None:
            self.delivered[req.rid] = self.loop.now
            queue.deliver(msg)

        self.loop.schedule(self.loop.now + _s3_delay(self.rng, self.sc.model), deliver)

    def _left_queued(self, run: Any) -> None:
        self.queued -= 1
        if self.mode != "paced":
            return
        self.blocked.discard(run.tenant_id)
        pending = self.outbox.get(run.tenant_id)
        if pending:
            nxt = pending.popleft()
            self.loop.schedule(self.loop.now, lambda: self._upload(nxt))

    # --- the scheduler Lambda
    def _handle(self, queue: QueueTrigger, batch: list[tuple[Any, int]]) -> None:
        mark = self.ledger.begin(queue.name)
        self.strands.pause(self.lat.lambda_invoke_s)
        backlog = self.queued
        cpu = self.strands.cpu_seconds()
        failed: list[tuple[Any, int]] = []
        for msg, receives in batch:
            kind = msg[0]
            if kind == "status":
                _, arn, status, display = msg
                try:
                    self.service.handle_status(arn, status, display_name=display)
                except RunNotFoundYetError:
                    failed.append((msg, receives + 1))
            elif kind == "upload":
                _, bucket, key, etag, req = msg
                result = self.service.handle_upload(bucket, key, etag=etag, size=1024)
                if result.run is not None:
                    self.run_of[req.rid] = result.run.run_id
                    self.requests_of_run.setdefault(result.run.run_id, []).append(req)
                    if result.outcome == "created":
                        self.queued += 1
                    elif self.mode == "paced":
                        raise AssertionError("paced requests must not coalesce")
        self.service.dispatch()
        self.outcome_invocations.append((self.loop.now, backlog, self.strands.cpu_seconds() - cpu))
        self.ledger.end(mark)
        for msg, receives in failed:
            # Batch item failure: back after the visibility timeout, at most
            # maxReceiveCount receives, then the dead-letter queue (reconcile heals).
            if receives >= MAX_RECEIVE_COUNT:
                self.dlq += 1
                continue
            self.redelivered += 1
            self.loop.schedule(
                self.loop.now + VISIBILITY_RETRY_S,
                lambda m=msg, r=receives: queue.deliver(m, r),
            )

    def _reconcile_body(self) -> None:
        mark = self.ledger.begin("reconcile")
        self.strands.pause(self.lat.lambda_invoke_s)
        backlog = self.queued
        cpu = self.strands.cpu_seconds()
        self.service.reconcile()
        self.reconcile_cpu.append((backlog, self.strands.cpu_seconds() - cpu))
        self.ledger.end(mark)

    def _reconcile(self) -> None:
        self.strands.spawn(self._reconcile_body)
        if not self._finished():
            self.loop.schedule(self.loop.now + RECONCILE_S, self._reconcile)

    def _finished(self) -> bool:
        return (
            self.loop.now > self.last_arrival
            and self.queued <= 0
            and not self.blocked
            and self.model.running == 0
            and self.raw_runs.counters(()).global_running == 0
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
        out.ledger = self.ledger
        out.admit_outcomes = dict(self.admit_outcomes)
        out.max_concurrency = self.strands.max_active
        out.dlq = self.dlq
        out.uploaded = self.uploaded
        out.delivered = self.delivered
        out.wall_seconds = time.perf_counter() - wall
        return out


def run_trainyard(
    sc: Scenario,
    mode: Mode = "paced",
    latencies: Latencies | None = None,
    full: bool = False,
    intake_window_s: float = INTAKE_WINDOW_S,
    status_window_s: float = STATUS_WINDOW_S,
) -> Outcome:
    return TrainyardSim(
        sc,
        mode,
        latencies,
        intake_window_s,
        status_window_s,
        requests=sc.requests if full else None,
    ).run()


def run_baseline(sc: Scenario, window_only: bool = True, policy: str = "b1") -> Outcome:
    """A seed-design policy (``bench.policies.POLICIES``); B1 as designed by default."""
    from bench.policies import run_policy

    return run_policy(sc, policy, requests=_window(sc) if window_only else sc.requests)
