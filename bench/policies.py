"""The baselines: the seed design and the variants a reviewer would build from it.

All of them are one scheduler Lambda with reserved concurrency 1 (its
invocations never overlap, so it needs no conditional writes to stay under its
caps), fed through the same S3 event path as Trainyard, and they make their
DynamoDB and SageMaker requests through the same ``Ledger`` with the same
per-call latencies (``bench.counting``):

===========  ==========================================================================
``b1``       B1 as designed (the seed): a timer every minute lists the executions
             (one ListPipelineExecutions page per 100) *and* describes every run it
             believes running, then starts queued runs first come, first served per
             plan under the plan caps only (no global cap: the account quota refuses
             the excess; no tenant cap).
``b1-list``  B1 list-only: the same, minus the Describe per running execution (the
             listing already has the status) — a competent engineer's B1.
``b2``       B2: B1-list + a completion-event and upload trigger (EventBridge/S3 ->
             SQS -> the Lambda, no batching window) + a global-cap check; the
             one-minute list-only reconcile stays as the safety net.
``b3``       B3: B2 + the per-tenant cap (FIFO per plan, skipping tenants at their cap).
``fs``       Fair share with usage decay in the style of AWS Batch fair-share
             scheduling: one share identifier per tenant (weightFactor 1), usage =
             slot-seconds decayed with half-life ``half_life_s``, a running run counts
             as ``half_life_s`` of usage; within a plan the waiting tenant with the
             least usage goes first; plans take free global slots by least
             running/weight. Plan and global caps, no tenant cap (work-conserving).
===========  ==========================================================================

DynamoDB requests of this design (state: a queue table and a running table):
per request that arrives 1 PutItem; per invocation 1 Query of the running set;
per plan with work waiting 1 Query of its queue head (+1 per 100 items scanned
past tenants at their cap); fair share 1 BatchGetItem per 100 waiting tenants'
usage items; per start 1 TransactWriteItems (dequeue + running); per end seen
1 UpdateItem. SageMaker: Start (boto3 retries a throttled start after 1 s and
2 s, then the run stays queued until the next invocation), Describe, List.
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from dataclasses import dataclass
from typing import Literal

from trainyard_core.ports.pipeline import StartError

from bench.counting import SDK_THROTTLE_RETRIES_S, Latencies, Ledger
from bench.model import SageMakerModel
from bench.sim import (
    RECONCILE_S,
    EventLoop,
    Outcome,
    Request,
    Scenario,
    _collect,
    _s3_delay,
    _sqs_delay,
)
from bench.strands import Strands

TERMINAL = ("Succeeded", "Failed", "Stopped")


@dataclass(frozen=True)
class SeedConfig:
    name: str
    label: str
    trigger: Literal["timer", "events"]
    describe_each: bool = False
    global_cap: bool = False
    tenant_cap: bool = False
    order: Literal["fifo", "fairshare"] = "fifo"
    half_life_s: float = 600.0  # AWS Batch's shareDecaySeconds minimum window


POLICIES: dict[str, SeedConfig] = {
    c.name: c
    for c in (
        SeedConfig("b1", "B1 as designed (timer, Describe each)", "timer", describe_each=True),
        SeedConfig("b1-list", "B1 list-only (timer)", "timer"),
        SeedConfig("b2", "B2 (events + global cap)", "events", global_cap=True),
        SeedConfig("b3", "B3 (B2 + tenant cap, FIFO)", "events", global_cap=True, tenant_cap=True),
        SeedConfig("fs", "fair share, decay 10 min", "events", global_cap=True, order="fairshare"),
    )
}


@dataclass
class _Waiting:
    rid: int
    tenant: str
    plan: str


class _Usage:
    """Decayed slot-seconds per share identifier (tenant)."""

    def __init__(self, half_life_s: float) -> None:
        self.h = half_life_s
        self.k = math.log(2) / half_life_s
        self.value: dict[str, float] = {}
        self.running: dict[str, int] = {}
        self.at: dict[str, float] = {}

    def get(self, tenant: str, now: float) -> float:
        u, r, t = self.value.get(tenant, 0.0), self.running.get(tenant, 0), self.at.get(tenant, now)
        dt = max(0.0, now - t)
        decay = math.exp(-self.k * dt)
        u = u * decay + r * (1.0 - decay) / self.k
        self.value[tenant], self.at[tenant] = u, now
        return u

    def key(self, tenant: str, now: float) -> float:
        return self.get(tenant, now) + self.running.get(tenant, 0) * self.h

    def change(self, tenant: str, now: float, delta: int) -> None:
        self.get(tenant, now)
        self.running[tenant] = self.running.get(tenant, 0) + delta


class SeedSim:
    def __init__(
        self,
        sc: Scenario,
        cfg: SeedConfig,
        requests: list[Request] | None = None,
        latencies: Latencies | None = None,
    ) -> None:
        self.sc, self.cfg = sc, cfg
        self.lat = latencies or Latencies()
        self.requests = sc.requests if requests is None else requests
        self.loop = EventLoop()
        self.strands = Strands(self.loop)
        self.ledger = Ledger()
        self.rng = random.Random(sc.seed)
        self.by_rid = {r.rid: r for r in self.requests}
        self.run_of: dict[int, str] = {}
        self.delivered: dict[int, float] = {}
        self.model = SageMakerModel(
            config=sc.model,
            now=lambda: self.loop.now,
            schedule=self.loop.schedule,
            work=lambda run_id, _p: (
                self.by_rid[int(run_id)].duration,
                self.by_rid[int(run_id)].fails,
            ),
            rng=random.Random(sc.seed + 1),
            on_status=self._on_status if cfg.trigger == "events" else None,
        )
        s = sc.settings
        self.plans = list(s.plans)
        self.plan_cap = {n: p.max_concurrent_runs for n, p in s.plans.items()}
        self.tenant_cap = {n: p.max_concurrent_runs_per_tenant for n, p in s.plans.items()}
        self.weight = {n: p.weight for n, p in s.plans.items()}
        self.global_cap = s.global_max_concurrent_runs
        self.queues: dict[str, deque[_Waiting]] = {n: deque() for n in self.plans}
        self.running: dict[str, tuple[str, str]] = {}  # arn -> (plan, tenant)
        self.plan_running = {n: 0 for n in self.plans}
        self.tenant_running: dict[str, int] = {}
        self.usage = _Usage(cfg.half_life_s)
        self.inbox: deque[tuple[str, ...]] = deque()  # SQS -> the one consumer
        self.busy = False
        self._kicking = self._again = False  # see _kick
        self.pending = len(self.requests)
        self.last_arrival = max((r.at for r in self.requests), default=0.0)

    # --- requests and latencies
    def _ddb(self, op: str, n: int = 1) -> None:
        self.ledger.add("dynamodb", op, n)
        self.strands.pause(n * self.lat.dynamodb_s)

    def _sm(self, op: str, n: int = 1) -> None:
        self.ledger.add("sagemaker", op, n)
        self.strands.pause(n * self.lat.sagemaker_s)

    # --- the world
    def _arrive(self, req: Request) -> None:
        # The upload's message reaches the plan's queue; the Lambda records it.
        self.delivered[req.rid] = self.loop.now
        self._send(("arrival", str(req.rid)))

    def _on_status(self, arn: str, status: str, display: str | None, reason: str | None) -> None:
        if status in TERMINAL:
            msg = ("status", arn, status)
            self.loop.schedule(
                self.loop.now + _sqs_delay(self.rng, self.sc.model), lambda: self._send(msg)
            )

    def _send(self, msg: tuple[str, ...]) -> None:
        self.inbox.append(msg)
        if self.cfg.trigger == "events" or msg[0] == "tick":
            self._kick()

    def _kick(self) -> None:
        # An invocation that never waits on anything else ends inside ``spawn`` and
        # its ``_done`` kicks the next: called from there, only note it and let the
        # kick further up the stack loop. Same order of events, but no recursion
        # (with a deep inbox the chain passed Python's recursion limit).
        if self._kicking:
            self._again = True
            return
        self._kicking = True
        try:
            while True:
                self._again = False
                if self.busy or not self.inbox:
                    return
                if self.cfg.trigger == "timer" and not any(m[0] == "tick" for m in self.inbox):
                    return
                self.busy = True
                self.strands.spawn(self._invocation, on_done=self._done)
                if not self._again:
                    return
        finally:
            self._kicking = False

    def _done(self) -> None:
        self.busy = False
        self._kick()

    def _tick(self) -> None:
        self._send(("tick",))
        done = self.loop.now > self.last_arrival and self.pending == 0 and not self.running
        if not done:
            self.loop.schedule(self.loop.now + RECONCILE_S, self._tick)

    # --- the Lambda
    def _invocation(self) -> None:
        if self.cfg.trigger == "timer":
            batch = list(self.inbox)  # the timer drains the queue
            self.inbox.clear()
        else:
            batch = [self.inbox.popleft() for _ in range(min(10, len(self.inbox)))]
        mark = self.ledger.begin("tick" if any(m[0] == "tick" for m in batch) else "event")
        self.strands.pause(self.lat.lambda_invoke_s)
        cpu = self.strands.cpu_seconds()
        self._ddb("Query")  # the running set
        for msg in batch:
            if msg[0] == "arrival":
                req = self.by_rid[int(msg[1])]
                self._ddb("PutItem")
                self.queues[req.plan].append(_Waiting(req.rid, req.tenant, req.plan))
            elif msg[0] == "status":
                self._ended(msg[1])
        if any(m[0] == "tick" for m in batch) and self.running:
            self._poll()
        self._admit_all()
        self.cpu.append(self.strands.cpu_seconds() - cpu)
        self.ledger.end(mark)

    def _poll(self) -> None:
        # The same bounded listing as Trainyard's (live + ended in the last 15 min),
        # not every execution ever started: that grew to 1,000 pages a tick over the
        # full trace and 100 s of SageMaker latency charged to a one-minute timer.
        pages = max(1, -(-len(self.model.listable()) // 100))
        self._sm("ListPipelineExecutions", pages)
        self.model.calls.list += pages
        # The listing as it stood when it returned, but only for the runs it believes
        # running (a dict of the whole listing per tick made the full trace quadratic).
        listable = self.model.listable()
        listed = {arn: listable[arn].status for arn in self.running if arn in listable}
        for arn in list(self.running):
            status = listed.get(arn)
            if self.cfg.describe_each:
                self._sm("DescribePipelineExecution")
                info = self.model.describe(arn)
                status = info.status if info else status
            if status in TERMINAL:
                self._ended(arn)

    def _ended(self, arn: str) -> None:
        if arn not in self.running:
            return  # already seen (event and poll)
        plan, tenant = self.running.pop(arn)
        self._ddb("UpdateItem")
        self.plan_running[plan] -= 1
        self.tenant_running[tenant] -= 1
        self.usage.change(tenant, self.loop.now, -1)

    def _plan_order(self) -> list[str]:
        if self.cfg.order == "fairshare":
            return sorted(self.plans, key=lambda n: self.plan_running[n] / self.weight[n])
        return self.plans

    def _admit_all(self) -> None:
        read: set[str] = set()
        blocked: set[str] = set()  # plans whose head could not start this invocation
        while True:
            started = False
            for plan in self._plan_order():
                if plan in blocked or not self.queues[plan]:
                    continue
                if self.plan_running[plan] >= self.plan_cap[plan]:
                    continue
                if self.cfg.global_cap and len(self.running) >= self.global_cap:
                    return
                pick = self._pick(plan, plan not in read)
                read.add(plan)
                if pick is None:
                    blocked.add(plan)
                    continue
                if not self._start(pick):
                    blocked.add(plan)  # stays queued until the next invocation
                    continue
                started = True
                if self.cfg.order == "fairshare":
                    break  # re-rank the plans
            if not started:
                return

    def _pick(self, plan: str, first_read: bool) -> _Waiting | None:
        queue = self.queues[plan]
        if first_read:
            self._ddb("Query")  # the queue's head
        if self.cfg.order == "fairshare":
            tenants: dict[str, _Waiting] = {}
            for w in queue:
                tenants.setdefault(w.tenant, w)
            if first_read:
                self._ddb("BatchGetItem", math.ceil(len(tenants) / 100))
            now = self.loop.now
            return min(tenants.values(), key=lambda w: self.usage.key(w.tenant, now))
        if not self.cfg.tenant_cap:
            return queue[0]
        cap = self.tenant_cap[plan]
        for i, w in enumerate(queue):
            if self.tenant_running.get(w.tenant, 0) < cap:
                if i >= 100:
                    self._ddb("Query", i // 100)
                return w
        if len(queue) > 100:
            self._ddb("Query", len(queue) // 100)
        return None

    def _start(self, w: _Waiting) -> bool:
        for backoff in (*SDK_THROTTLE_RETRIES_S, None):
            self._sm("StartPipelineExecution")
            try:
                arn = self.model.start(
                    display_name=f"{w.tenant}-{w.rid:012x}",
                    client_request_token=f"seed-request-{w.rid:020d}",
                    parameters={"RunId": str(w.rid), "TenantId": w.tenant},
                )
            except StartError as exc:
                if not exc.throttled or backoff is None:
                    return False
                self.strands.pause(backoff)
                continue
            self.queues[w.plan].remove(w)
            self._ddb("TransactWriteItems")
            self.running[arn] = (w.plan, w.tenant)
            self.plan_running[w.plan] += 1
            self.tenant_running[w.tenant] = self.tenant_running.get(w.tenant, 0) + 1
            self.usage.change(w.tenant, self.loop.now, +1)
            self.run_of[w.rid] = self.model.executions[arn].token
            self.pending -= 1
            return True
        return False

    def run(self) -> Outcome:
        wall = time.perf_counter()
        self.cpu: list[float] = []
        for req in self.requests:
            delay = _s3_delay(self.rng, self.sc.model)
            self.loop.schedule(req.at + delay, lambda r=req: self._arrive(r))
        self.loop.schedule(RECONCILE_S, self._tick)
        self.loop.run()
        out = _collect(self.cfg.name, self.sc, self.requests, self.model, self.run_of)
        out.ledger = self.ledger
        out.delivered = self.delivered
        out.invocations = [(0.0, 0, c) for c in self.cpu]
        out.wall_seconds = time.perf_counter() - wall
        return out


def run_policy(
    sc: Scenario,
    name: str,
    requests: list[Request] | None = None,
    latencies: Latencies | None = None,
) -> Outcome:
    return SeedSim(sc, POLICIES[name], requests, latencies).run()


__all__ = ["POLICIES", "Ledger", "SeedConfig", "SeedSim", "run_policy"]
