"""The seed design Trainyard replaces, implemented faithfully: timer polling.

A Lambda runs once a minute. It polls SageMaker (one ListPipelineExecutions
page per 100 running executions, then DescribePipelineExecution for every run
it believes running) to find the finished ones, then starts queued runs first
come, first served from each plan's queue while the plan is under its cap.
There is no global cap (the account quota refuses the excess), no per-tenant
cap, no weights and no borrowing; a start that fails (throttled, quota) stays
at the head of its queue until the next minute, as an unacknowledged SQS
message would.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from trainyard_core.config import Settings
from trainyard_core.ports.pipeline import StartError

from bench.model import SageMakerModel


@dataclass
class BaselineScheduler:
    settings: Settings
    model: SageMakerModel
    on_start: Callable[[int, str], None]  # (request id, execution arn)
    queues: dict[str, deque[tuple[int, str]]] = field(default_factory=dict)
    running: dict[str, str] = field(default_factory=dict)  # arn -> plan
    ticks: int = 0
    # Seconds the current invocation has been running: its API calls take time
    # and boto3 retries throttled calls with backoff (standard mode, 3 attempts).
    elapsed: float = 0.0
    call_latency_s: float = 0.1
    retry_backoff_s: tuple[float, ...] = (1.0, 2.0)

    def __post_init__(self) -> None:
        self.queues = {name: deque() for name in self.settings.plans}

    def enqueue(self, request_id: int, tenant_id: str, plan: str) -> None:
        """The upload's message lands in the plan's SQS queue."""
        self.queues[plan].append((request_id, tenant_id))

    def backlog(self) -> int:
        return sum(len(q) for q in self.queues.values())

    def tick(self) -> int:
        """One timer invocation; returns how many runs it started."""
        self.ticks += 1
        self.elapsed = 0.0
        if self.running:
            self.elapsed += self.call_latency_s * self.model.list_executions()
        for arn in list(self.running):
            self.elapsed += self.call_latency_s
            info = self.model.describe(arn)
            if info is not None and info.status in ("Succeeded", "Failed", "Stopped"):
                del self.running[arn]
        per_plan: dict[str, int] = {}
        for plan in self.running.values():
            per_plan[plan] = per_plan.get(plan, 0) + 1
        started = 0
        for name, plan in self.settings.plans.items():
            queue = self.queues[name]
            while queue and per_plan.get(name, 0) < plan.max_concurrent_runs:
                request_id, tenant_id = queue[0]
                arn = self._start(request_id, tenant_id)
                if arn is None:
                    break  # stays queued (message not deleted) until the next minute
                queue.popleft()
                self.running[arn] = name
                per_plan[name] = per_plan.get(name, 0) + 1
                started += 1
                self.on_start(request_id, arn)
        return started

    def _start(self, request_id: int, tenant_id: str) -> str | None:
        for backoff in (*self.retry_backoff_s, None):
            self.elapsed += self.call_latency_s
            try:
                return self.model.start(
                    display_name=f"{tenant_id}-{request_id:012x}",
                    client_request_token=f"baseline-request-{request_id:020d}",
                    parameters={"RunId": str(request_id), "TenantId": tenant_id},
                )
            except StartError as exc:
                if not exc.throttled or backoff is None:
                    return None
                self.elapsed += backoff
        return None
