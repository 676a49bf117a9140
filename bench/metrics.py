"""Figures computed from a simulated trace (start/end times), policy-neutral.

- Dispatch delay: time from a request becoming *eligible* to its start. It is
  eligible once its upload's message has reached the policy's queue and a slot
  it may use is free: every start takes the longest-free slot of each limit that
  applies (global, plan, tenant) and every end returns one, so ``eligible =
  max(delivered, those slots' free times)``. Queueing behind a full cap is
  therefore not counted; the time the scheduler needs to notice a free slot or
  a new request and use it is. The S3 -> EventBridge -> SQS path before the
  queue is the same model for every policy and no policy can shorten it; counted
  from the request instead (``since="request"``, reported beside it), it would
  be in the figure only for requests that find a slot free when they arrive, so
  a policy that keeps slots free for others (a tenant cap) would be charged it
  and one that fills every slot would not. That form also counts the paced
  client's wait before Trainyard's upload (``bench.sim``), which no baseline has.
- Utilisation while backlogged: running executions over what the policy's own
  limits would allow given who is waiting (``min(global, sum over plans of
  min(plan cap, sum over tenants of min(tenant cap, running + waiting)))``),
  integrated over the time anything waits.
- Jain's index, per plan, of each tenant's service while backlogged, two ways:
  raw (slot-seconds held while it had a request waiting / time it had one
  waiting) and normalised to its fair share, as Jain, Chiu and Hawe define the
  index for unequal fair allocations (x_i = T_i / O_i): the slot-seconds it
  held over the slot-seconds a max-min fair division of what its plan was
  running, under the tenant caps, would have given it over the same time. The
  raw form counts a tenant that is backlogged alone at its tenant cap as
  over-served; the normalised one does not.
- Violations: starts that took the running count above a configured cap.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from trainyard_core.config import Settings

from bench.sim import Outcome

INF = math.inf


@dataclass(frozen=True)
class Limits:
    global_cap: float
    plan_caps: dict[str, float]
    tenant_caps: dict[str, float]  # by plan

    @classmethod
    def trainyard(cls, settings: Settings) -> Limits:  # also B3's
        # A tenant's limit is its cap plus what its plan lets it borrow (0 unless
        # the plan opts in): with borrowing on, that is the limit a start must keep.
        return cls(
            settings.global_max_concurrent_runs,
            {n: p.max_concurrent_runs for n, p in settings.plans.items()},
            {
                n: p.max_concurrent_runs_per_tenant + p.max_borrowed_runs_per_tenant
                for n, p in settings.plans.items()
            },
        )

    @classmethod
    def baseline(cls, settings: Settings, quota: int) -> Limits:
        # Plan caps only; the account quota is what stops it globally.
        return cls(
            quota,
            {n: p.max_concurrent_runs for n, p in settings.plans.items()},
            {n: INF for n in settings.plans},
        )


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


def jain(values: Iterable[float]) -> float:
    xs = list(values)
    total = sum(xs)
    squares = sum(x * x for x in xs)
    if not xs or squares == 0:
        return math.nan
    return total * total / (len(xs) * squares)


def _timeline(out: Outcome) -> list[tuple[float, int, int]]:
    """(time, kind, request id): kind 0 = end, 1 = arrival, 2 = start (ends first)."""
    events: list[tuple[float, int, int]] = []
    for req in out.requests:
        events.append((req.at, 1, req.rid))
        if req.rid in out.start:
            events.append((out.start[req.rid], 2, req.rid))
        if req.rid in out.end:
            events.append((out.end[req.rid], 0, req.rid))
    events.sort()
    return events


def _serving(out: Outcome) -> dict[int, bool]:
    """In coalesced runs several requests share one execution: count it once."""
    seen: set[str] = set()
    first: dict[int, bool] = {}
    for req in sorted(out.requests, key=lambda r: r.at):
        run = out.run_of.get(req.rid)
        first[req.rid] = run is not None and run not in seen
        if run is not None:
            seen.add(run)
    return first


def dispatch_delays(
    out: Outcome, limits: Limits, since: Literal["delivered", "request"] = "delivered"
) -> list[float]:
    """Each start's delay from its request becoming eligible (module docstring).
    ``since``: counted from its message reaching the policy's queue (where the
    outcome records it) or from the request itself."""
    if since == "delivered" and out.delivered:
        retimed = [dataclasses.replace(r, at=out.delivered.get(r.rid, r.at)) for r in out.requests]
        out = dataclasses.replace(out, requests=retimed)
    reqs = {r.rid: r for r in out.requests}
    serving = _serving(out)
    pools: dict[tuple[str, str], list[float]] = {}
    caps: dict[tuple[str, str], float] = {}
    taken: dict[int, list[tuple[str, str]]] = {}
    delays: list[float] = []

    def pool(key: tuple[str, str], cap: float) -> list[float]:
        if key not in pools:
            # A finite cap starts with that many slots free since time 0.
            pools[key] = [0.0] * int(cap) if cap != INF else []
            caps[key] = cap
        return pools[key]

    for at, kind, rid in _timeline(out):
        req = reqs[rid]
        if kind == 1 or not serving[rid]:
            if kind == 2 and not serving[rid]:
                delays.append(max(0.0, at - req.at))  # joined an existing run
            continue
        keys = [
            (("global", ""), limits.global_cap),
            (("plan", req.plan), limits.plan_caps.get(req.plan, INF)),
            (("tenant", req.tenant), limits.tenant_caps.get(req.plan, INF)),
        ]
        if kind == 2:
            free_since = 0.0
            used: list[tuple[str, str]] = []
            for key, cap in keys:
                slots = pool(key, cap)
                if cap == INF or not slots:
                    continue  # unlimited, or over the cap (counted as a violation)
                free_since = max(free_since, heapq.heappop(slots))
                used.append(key)
            taken[rid] = used
            delays.append(max(0.0, at - max(req.at, free_since)))
        else:
            for key in taken.get(rid, []):
                heapq.heappush(pools[key], at)
    return delays


def max_min_fair(capacity: float, demands: dict[str, float]) -> dict[str, float]:
    """Water-filling: each gets min(demand, an equal share of what the smaller demands leave)."""
    alloc: dict[str, float] = {}
    left = max(0.0, capacity)
    pending = sorted(demands.items(), key=lambda kv: kv[1])
    for i, (name, demand) in enumerate(pending):
        give = min(demand, left / (len(pending) - i))
        alloc[name] = give
        left -= give
    return alloc


@dataclass
class Sweep:
    utilisation: float  # running / attainable while something waits
    backlogged_seconds: float
    jain_mean: float  # raw service rates while backlogged
    jain_samples: int
    violations: dict[str, int]
    jain_fair_mean: float = math.nan  # service over max-min fair share while backlogged


def sweep(
    out: Outcome,
    limits: Limits,
    check: Limits,
    focus_plan: str | None,
    min_backlogged_s: float = 300.0,
) -> Sweep:
    """One pass over the timeline: utilisation (against ``limits``, the policy's
    own), Jain's index, and violations (against ``check``, Trainyard's caps).

    Jain's index is over each tenant's service *rate while backlogged* (slot-
    seconds held while it had a request waiting, per second it had one waiting),
    for tenants backlogged at least ``min_backlogged_s`` in total, per plan
    (``focus_plan`` only, or the mean over plans). The fair-share form divides
    each tenant's slot-seconds by its max-min fair share of the slots its plan
    held (demand = min(tenant cap, running + waiting), ``limits``' caps),
    integrated over the same backlogged time."""
    reqs = {r.rid: r for r in out.requests}
    serving = _serving(out)
    running: dict[str, int] = defaultdict(int)
    waiting: dict[str, int] = defaultdict(int)
    plan_of: dict[str, str] = {r.tenant: r.plan for r in out.requests}
    share: dict[str, float] = defaultdict(float)  # per plan: sum of min(tcap, r + w)
    plan_running: dict[str, int] = defaultdict(int)
    backlogged: dict[str, float] = defaultdict(float)
    served: dict[str, float] = defaultdict(float)
    touched: dict[str, float] = {}
    # Fair share: per plan, the max-min division of its running slots among its
    # active tenants, constant between two events of that plan.
    active: dict[str, set[str]] = defaultdict(set)
    fair_alloc: dict[str, dict[str, float]] = {}
    plan_last: dict[str, float] = {}
    fair_int: dict[str, float] = defaultdict(float)
    total_running = 0
    total_waiting = 0
    violations = {"global": 0, "plan": 0, "tenant": 0}
    busy = att_int = run_int = 0.0
    last = 0.0

    def attainable() -> float:
        per_plan = sum(min(limits.plan_caps.get(p, INF), s) for p, s in share.items())
        return min(limits.global_cap, per_plan)

    def tenant_term(tenant: str) -> float:
        return min(limits.tenant_caps.get(plan_of[tenant], INF), running[tenant] + waiting[tenant])

    for at, kind, rid in _timeline(out):
        if total_waiting > 0:
            span = at - last
            att = attainable()
            busy += span
            att_int += att * span
            run_int += min(total_running, att) * span
        last = at
        req = reqs[rid]
        tenant = req.tenant
        # Accumulate this tenant's backlogged time and service up to now (lazily).
        if waiting[tenant] > 0:
            span = at - touched.get(tenant, at)
            backlogged[tenant] += span
            served[tenant] += running[tenant] * span
        touched[tenant] = at
        plan = req.plan
        alloc = fair_alloc.get(plan)
        if alloc:
            span = at - plan_last.get(plan, at)
            for name, fair in alloc.items():
                if waiting[name] > 0:
                    fair_int[name] += fair * span
        plan_last[plan] = at
        before = tenant_term(tenant)
        if kind == 1:
            waiting[tenant] += 1
            total_waiting += 1
        elif kind == 2:
            waiting[tenant] -= 1
            total_waiting -= 1
            if serving[rid]:
                running[tenant] += 1
                plan_running[req.plan] += 1
                total_running += 1
                if total_running > check.global_cap:
                    violations["global"] += 1
                if plan_running[req.plan] > check.plan_caps.get(req.plan, INF):
                    violations["plan"] += 1
                if running[tenant] > check.tenant_caps.get(req.plan, INF):
                    violations["tenant"] += 1
        elif serving[rid]:
            running[tenant] -= 1
            plan_running[req.plan] -= 1
            total_running -= 1
        share[req.plan] += tenant_term(tenant) - before
        if running[tenant] + waiting[tenant] > 0:
            active[plan].add(tenant)
        else:
            active[plan].discard(tenant)
        if any(waiting[name] > 0 for name in active[plan]):
            fair_alloc[plan] = max_min_fair(
                plan_running[plan], {name: tenant_term(name) for name in active[plan]}
            )
        else:
            fair_alloc.pop(plan, None)  # nobody backlogged: nothing to integrate

    indices: list[float] = []
    fair_indices: list[float] = []
    for plan in [focus_plan] if focus_plan else list(limits.plan_caps):
        rates = [
            served[t] / backlogged[t]
            for t in backlogged
            if plan_of[t] == plan and backlogged[t] >= min_backlogged_s
        ]
        if len(rates) >= 2:
            value = jain(rates)
            if not math.isnan(value):
                indices.append(value)
        ratios = [
            served[t] / fair_int[t]
            for t in backlogged
            if plan_of[t] == plan and backlogged[t] >= min_backlogged_s and fair_int[t] > 0
        ]
        if len(ratios) >= 2:
            value = jain(ratios)
            if not math.isnan(value):
                fair_indices.append(value)
    return Sweep(
        utilisation=run_int / att_int if att_int > 0 else math.nan,
        backlogged_seconds=busy,
        jain_mean=sum(indices) / len(indices) if indices else math.nan,
        jain_samples=len(indices),
        violations=violations,
        jain_fair_mean=sum(fair_indices) / len(fair_indices) if fair_indices else math.nan,
    )


def worst_tenant_wait(out: Outcome, exclude: str | None = None) -> float:
    """The largest mean wait (arrival -> start) of any tenant but ``exclude``."""
    waits: dict[str, list[float]] = defaultdict(list)
    for req in out.requests:
        if req.tenant != exclude and req.rid in out.start:
            waits[req.tenant].append(out.start[req.rid] - req.at)
    return max((sum(w) / len(w) for w in waits.values()), default=math.nan)


T975 = {
    1: 12.71,
    2: 4.30,
    3: 3.18,
    4: 2.78,
    5: 2.57,
    6: 2.45,
    7: 2.36,
    8: 2.31,
    9: 2.26,
    10: 2.23,
    11: 2.20,
    12: 2.18,
    13: 2.16,
    14: 2.14,
    15: 2.13,
    19: 2.09,
    29: 2.05,
}


def mean_ci(values: Iterable[float]) -> tuple[float, float, int]:
    """Mean and the half-width of its 95% interval (Student t), over the finite values."""
    xs = [v for v in values if v is not None and not math.isnan(v) and not math.isinf(v)]
    n = len(xs)
    if n == 0:
        return math.nan, math.nan, 0
    mean = sum(xs) / n
    if n == 1:
        return mean, math.nan, 1
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    t = T975.get(n - 1) or next((v for k, v in sorted(T975.items()) if k >= n - 1), 1.96)
    return mean, t * sd / math.sqrt(n), n


@dataclass
class Absolute:
    plan_util: float  # focus plan (or every plan): running / plan cap while it has work waiting
    global_util: float  # running / global cap while anything waits
    makespan_s: float  # first arrival -> last end
    heavy_makespan_s: float  # the noisy tenant's first arrival -> its last end
    heavy_bound_s: float  # work-conserving optimum (lower bound) for the noisy tenant


def absolute(
    out: Outcome,
    settings: Settings,
    focus_plan: str | None,
    heavy: str | None,
    start_latency_s: float = 20.0,
) -> Absolute:
    """Utilisation of the caps themselves (not of what a policy's own caps allow)."""
    events: list[
        tuple[float, int, str, bool]
    ] = []  # (t, +1 start/-1 end/0 arrival, plan, is start)
    for req in out.requests:
        events.append((req.at, 2, req.plan, False))
        if req.rid in out.start:
            events.append((out.start[req.rid], 1, req.plan, True))
    for _, plan, _s, e in out.executions:
        if e != math.inf:
            events.append((e, 0, plan, False))
    events.sort()
    serving_plan_running: dict[str, int] = defaultdict(int)
    waiting: dict[str, int] = defaultdict(int)
    plans = [focus_plan] if focus_plan else list(settings.plans)
    run_int = cap_int = g_run = g_cap = 0.0
    last = events[0][0] if events else 0.0
    total = 0
    starts_seen: dict[str, int] = defaultdict(int)
    execs_started: dict[str, int] = defaultdict(int)
    for _, plan, _, _ in out.executions:
        execs_started[plan] += 1
    for t, kind, plan, _ in events:
        span = t - last
        if span > 0:
            for p in plans:
                if waiting[p] > 0:
                    run_int += serving_plan_running[p] * span
                    cap_int += settings.plans[p].max_concurrent_runs * span
            if any(w > 0 for w in waiting.values()):
                g_run += total * span
                g_cap += settings.global_max_concurrent_runs * span
        last = t
        if kind == 2:
            waiting[plan] += 1
        elif kind == 1:
            waiting[plan] -= 1
            starts_seen[plan] += 1
            # Coalesced requests share one execution: only the first holds a slot.
            if starts_seen[plan] <= execs_started[plan]:
                serving_plan_running[plan] += 1
                total += 1
        else:
            serving_plan_running[plan] -= 1
            total -= 1
    ends = [e for e in out.end.values()]
    first = min((r.at for r in out.requests), default=0.0)
    makespan = (max(ends) - first) if ends else math.nan
    heavy_ms = bound = math.nan
    if heavy:
        mine = [r for r in out.requests if r.tenant == heavy]
        mine_ends = [out.end[r.rid] for r in mine if r.rid in out.end]
        if mine and mine_ends:
            heavy_ms = max(mine_ends) - min(r.at for r in mine)
            plan = mine[0].plan
            work = sum(r.duration + start_latency_s for r in out.requests if r.plan == plan)
            cap = settings.plans[plan].max_concurrent_runs
            bound = max(work / cap, max(r.duration + start_latency_s for r in mine))
    return Absolute(
        plan_util=run_int / cap_int if cap_int else math.nan,
        global_util=g_run / g_cap if g_cap else math.nan,
        makespan_s=makespan,
        heavy_makespan_s=heavy_ms,
        heavy_bound_s=bound,
    )


@dataclass
class Summary:
    scenario: str
    policy: str
    requests: int
    runs: int
    unstarted: int
    delay_p50: float
    delay_p99: float
    delay_max: float
    utilisation: float
    jain: float
    jain_fair: float
    worst_wait: float
    violations: dict[str, int]
    api_calls: int
    api_per_run: float
    starts_throttled: int
    starts_refused: int
    invocations: int
    cpu_p50_ms: float
    cpu_p99_ms: float
    wall_seconds: float
    plan_util_abs: float = math.nan
    delay_p99_request: float = math.nan  # counted from the request, not its delivery
    cell_cpu_s: float = math.nan  # CPU seconds the benchmark spent on this cell
    global_util_abs: float = math.nan
    makespan_s: float = math.nan
    heavy_makespan_s: float = math.nan
    heavy_bound_s: float = math.nan
    ddb_per_run: float = math.nan
    sm_per_run: float = math.nan
    req_per_invocation: float = math.nan
    req_per_invocation_max: float = math.nan
    cap_reached: int = 0
    admitted: int = 0
    max_concurrency: int = 1
    seed: int = 0


def summarise(
    out: Outcome,
    settings: Settings,
    quota: int,
    focus_plan: str | None = None,
    heavy_tenant: str | None = None,
) -> Summary:
    # Each policy's own caps: tenant caps for Trainyard and B3 only; the global cap
    # is the account quota for B1 (it has no global check).
    if out.policy.startswith("trainyard") or out.policy == "b3":
        own = Limits.trainyard(settings)
    else:
        base = Limits.baseline(settings, quota)
        gcap = quota if out.policy.startswith("b1") else settings.global_max_concurrent_runs
        own = Limits(gcap, base.plan_caps, base.tenant_caps)
    delays = dispatch_delays(out, own)
    # The same counted from the request (S3 path and the paced client's wait in
    # it where a slot was free at arrival): reported beside, not the headline.
    from_request = dispatch_delays(out, own, since="request")
    sw = sweep(out, own, Limits.trainyard(settings), focus_plan)
    cpu = [c * 1000.0 for _, _, c in out.invocations]
    ab = absolute(out, settings, focus_plan, heavy_tenant)
    led = out.ledger
    runs = out.runs_started
    per = [d + m for _, d, m in led.per_invocation]
    return Summary(
        scenario=out.scenario,
        policy=out.policy,
        requests=len(out.requests),
        runs=out.runs_started,
        unstarted=out.unstarted,
        delay_p50=percentile(delays, 50),
        delay_p99=percentile(delays, 99),
        delay_p99_request=percentile(from_request, 99),
        delay_max=max(delays, default=math.nan),
        utilisation=sw.utilisation,
        jain=sw.jain_mean,
        jain_fair=sw.jain_fair_mean,
        worst_wait=worst_tenant_wait(out, heavy_tenant),
        violations=sw.violations,
        api_calls=led.total,
        api_per_run=led.total / runs if runs else math.nan,  # DynamoDB + SageMaker
        starts_throttled=out.calls.start_throttled,
        starts_refused=out.calls.start_refused,
        invocations=len(out.invocations) + len(out.reconcile_cpu),
        cpu_p50_ms=percentile(cpu, 50),
        cpu_p99_ms=percentile(cpu, 99),
        wall_seconds=out.wall_seconds,
        plan_util_abs=ab.plan_util,
        global_util_abs=ab.global_util,
        makespan_s=ab.makespan_s,
        heavy_makespan_s=ab.heavy_makespan_s,
        heavy_bound_s=ab.heavy_bound_s,
        ddb_per_run=led.dynamodb / runs if runs else math.nan,
        sm_per_run=led.sagemaker / runs if runs else math.nan,
        req_per_invocation=sum(per) / len(per) if per else math.nan,
        req_per_invocation_max=max(per) if per else math.nan,
        cap_reached=out.admit_outcomes.get("CAP_REACHED", 0),
        admitted=out.admit_outcomes.get("ADMITTED", 0),
        max_concurrency=out.max_concurrency,
    )
