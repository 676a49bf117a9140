"""A modelled SageMaker Pipelines account, behind the scheduler's ``PipelinePort``.

What it models (all in virtual time, driven by the simulation's event queue):

- ``StartPipelineExecution``: a token bucket throttles it (ThrottlingException);
  the account's concurrent-execution quota refuses starts beyond it
  (ResourceLimitExceeded); ``ClientRequestToken`` makes a repeat idempotent.
- An execution reports ``Executing`` after a start latency and ends
  (Succeeded/Failed) after the run's duration; each status change is
  delivered as an event after a small delay, like EventBridge -> SQS.
- ``DescribePipelineExecution`` / ``ListPipelineExecutions`` answer from the
  model's truth; every call of every kind is counted.

Durations and failures belong to the request (drawn once in the trace), so
both policies are run on exactly the same work.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from trainyard_core.ports.pipeline import ExecutionInfo, StartError

ARN_PREFIX = "arn:aws:sagemaker:us-east-1:123456789012:pipeline/trainyard-training/execution/"


@dataclass
class ModelConfig:
    quota: int = 20  # concurrent pipeline executions in the account
    start_rate_per_s: float = 2.0  # StartPipelineExecution sustained rate (assumed)
    start_burst: int = 10
    start_latency_s: float = 20.0  # call -> "Executing"
    # Event path legs, each min + Exp(mean) (p99 = min + mean * ln 100). Defaults:
    # the published figures the issue quotes (EventBridge -> target p99 ~0.4 s,
    # SQS -> Lambda p99 ~0.1 s); S3 -> EventBridge "typically seconds" (AWS S3
    # user guide, Event Notifications): 0.3 s + Exp(1 s), p99 ~4.9 s.
    event_delay_min_s: float = 0.05  # EventBridge -> SQS delivery of a status change
    event_delay_mean_s: float = 0.076  # p99 0.40 s
    sqs_delay_min_s: float = 0.01  # SQS message -> Lambda poller (event source mapping)
    sqs_delay_mean_s: float = 0.0195  # p99 0.10 s
    s3_delay_min_s: float = 0.3  # S3 object created -> EventBridge rule -> SQS
    s3_delay_mean_s: float = 1.0
    lost_event_probability: float = 0.0

    def event_p99_s(self) -> float:
        """p99 of the status-event path (EventBridge leg + SQS leg), approximately."""
        ln100 = 4.605
        return (
            self.event_delay_min_s
            + self.event_delay_mean_s * ln100
            + self.sqs_delay_min_s
            + self.sqs_delay_mean_s * ln100
        )


@dataclass
class Execution:
    arn: str
    token: str
    run_id: str
    started: float
    duration: float
    fails: bool
    status: str = "Executing"  # SageMaker reports Executing from creation
    ended: float | None = None


@dataclass
class ApiCalls:
    start: int = 0
    start_throttled: int = 0
    start_refused: int = 0  # ResourceLimitExceeded
    describe: int = 0
    list: int = 0

    @property
    def total(self) -> int:
        return self.start + self.describe + self.list


# (execution_arn, status, display_name, failure_reason) delivered to the scheduler.
StatusListener = Callable[[str, str, str | None, str | None], None]


@dataclass
class SageMakerModel:
    """Implements ``PipelinePort``; the simulation supplies time and the event queue."""

    config: ModelConfig
    now: Callable[[], float]
    schedule: Callable[[float, Callable[[], None]], None]
    work: Callable[[str, dict[str, str]], tuple[float, bool]]  # run -> (duration, fails)
    rng: random.Random
    on_status: StatusListener | None = None  # None: nobody listens (the baseline polls)
    calls: ApiCalls = field(default_factory=ApiCalls)
    executions: dict[str, Execution] = field(default_factory=dict)
    by_token: dict[str, str] = field(default_factory=dict)
    running: int = 0
    # (start, end) of every execution, for the violation check against the quota.
    intervals: list[tuple[float, float]] = field(default_factory=list)
    # Executions a CreatedAfter-bounded listing would return: live ones and recently ended.
    _listable: dict[str, Execution] = field(default_factory=dict)
    _tokens: float = -1.0
    _refilled: float = 0.0

    # --- PipelinePort
    def start(
        self, *, display_name: str, client_request_token: str, parameters: dict[str, str]
    ) -> str:
        now = self.now()
        self.calls.start += 1
        if not self._take_token(now):
            self.calls.start_throttled += 1
            raise StartError("ThrottlingException: Rate exceeded", retryable=True, throttled=True)
        if client_request_token in self.by_token:
            return self.by_token[client_request_token]
        if self.running >= self.config.quota:
            self.calls.start_refused += 1
            raise StartError(
                "ResourceLimitExceeded: concurrent pipeline executions", retryable=True
            )
        run_id = parameters.get("RunId", client_request_token)
        duration, fails = self.work(run_id, parameters)
        arn = f"{ARN_PREFIX}{len(self.executions):012d}"
        ex = Execution(arn, client_request_token, run_id, now, duration, fails)
        self.executions[arn] = ex
        self.by_token[client_request_token] = arn
        self._listable[arn] = ex
        self.running += 1
        self._emit(now + self.config.start_latency_s, ex, "Executing", display_name)
        end = now + self.config.start_latency_s + duration
        self.schedule(end, lambda: self._end(ex, display_name))
        return arn

    def describe(self, execution_arn: str) -> ExecutionInfo | None:
        self.calls.describe += 1
        ex = self.executions.get(execution_arn)
        if ex is None:
            return None
        reason = "AlgorithmError: training failed" if ex.status == "Failed" else None
        return ExecutionInfo(ex.arn, ex.status, reason, None)

    def list_statuses(self, since: object) -> dict[str, ExecutionInfo]:
        """ListPipelineExecutions(CreatedAfter=...): 100 executions a call."""
        listable = self.listable()
        self.calls.list += max(1, -(-len(listable) // 100))
        return {
            ex.arn: ExecutionInfo(
                ex.arn, ex.status, "AlgorithmError: training failed" if ex.fails else None, None
            )
            for ex in listable.values()
        }

    def listable(self) -> dict[str, Execution]:
        """What a CreatedAfter-bounded listing returns now, for every policy alike:
        live executions and those ended in the last 15 minutes (ended earlier:
        outside any window a scheduler asks about)."""
        now = self.now()
        for arn in [a for a, e in self._listable.items() if e.ended and now - e.ended > 900]:
            del self._listable[arn]
        return self._listable

    # --- what the baseline also uses
    def list_executions(self, page_size: int = 100) -> int:
        """ListPipelineExecutions over the running executions: returns the calls made."""
        pages = max(1, -(-self.running // page_size))
        self.calls.list += pages
        return pages

    # --- internals
    def _take_token(self, now: float) -> bool:
        cfg = self.config
        if self._tokens < 0:
            self._tokens, self._refilled = float(cfg.start_burst), now
        self._tokens = min(
            float(cfg.start_burst), self._tokens + (now - self._refilled) * cfg.start_rate_per_s
        )
        self._refilled = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def _end(self, ex: Execution, display_name: str) -> None:
        ex.status = "Failed" if ex.fails else "Succeeded"
        ex.ended = self.now()
        self.running -= 1
        self.intervals.append((ex.started, ex.ended))
        self._emit(ex.ended, ex, ex.status, display_name)

    def _emit(self, at: float, ex: Execution, status: str, display_name: str) -> None:
        if self.on_status is None:
            return  # the baseline listens to nothing: it polls
        cfg = self.config
        if self.rng.random() < cfg.lost_event_probability:
            return  # lost: only the reconciler can notice
        delay = cfg.event_delay_min_s + self.rng.expovariate(1.0 / cfg.event_delay_mean_s)
        listener = self.on_status

        # Delivered as is, even out of order (an Executing after the end): the
        # scheduler must cope, as it must in AWS.
        self.schedule(at + delay, lambda: listener(ex.arn, status, display_name, None))
