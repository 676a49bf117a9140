"""Fault injection for the embedded stack (tests and the load benchmark).

``EmbeddedStack.faults`` is a ``Faults`` object; every switch is off by default
and every hook is a no-op until a switch is set. Handler code is untouched: the
faults are injected where the outside world would produce them.

=====================================  ==============================================
switch                                 where it bites
=====================================  ==============================================
``fail_starts`` (throttle, 4xx, 5xx)   ``before-call.sagemaker.StartPipelineExecution``
``crash_before_start``                 on boto3's default session, so every handler
``crash_after_start``                  client created by the stack carries it
                                       (``after-call`` for the crash after the call)
``drop_status_events``                 ``before-call.events.PutEvents`` on the pipeline
                                       engine's own client (the status-change events)
``fail_step`` / ``slow_step``          the local runner's job launcher, wrapped (Processing
``capacity_error``                     and Training steps)
``fail_function``                      ``LocalLambdaRuntime.interceptors`` (e.g. the
                                       pipeline's RecordRun Lambda step)
``later(seconds)``                     the scheduler's clock (set from a runtime
                                       interceptor), for the calling thread only: "the
                                       next one-minute tick" without a sleep
=====================================  ==============================================

It also records what the runtime delivered (``delivered``) so a test can
re-deliver an event verbatim. The invariant checks the fault tests and the
benchmark share (``cap_violations``, ``all_runs``, ...) are in ``observations.py``.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import boto3
from botocore.awsrequest import AWSResponse

from .observations import tenant_of_display_name
from .runner import ExecutionStopped, Job, JobLauncher, StepFailure

if TYPE_CHECKING:
    from .stack import EmbeddedStack

_START_EVENT = "StartPipelineExecution"
# The FailureReason of a job SageMaker could not get instances for (EC2 insufficient
# capacity); its "CapacityError" prefix makes it a SageMaker.CAPACITY_ERROR to retry.
CAPACITY_ERROR_REASON = (
    "CapacityError: Unable to provision requested ML compute capacity. "
    "Please retry using a different ML instance type."
)
_HOOK_ID = "trainyard-faults"


class InjectedCrash(RuntimeError):
    """A simulated crash of the calling process at a named point."""


class InjectedFault(RuntimeError):
    """A simulated failure of a dependency (a Lambda, a job)."""


@dataclass
class _Rule:
    """Matches calls for one tenant (or any), ``remaining`` times (None = always)."""

    tenant: str | None
    remaining: int | None
    payload: dict[str, Any] = field(default_factory=dict)
    hits: int = 0

    def take(self, tenant: str | None) -> bool:
        if self.tenant is not None and tenant != self.tenant:
            return False
        if self.remaining is not None:
            if self.remaining <= 0:
                return False
            self.remaining -= 1
        self.hits += 1
        return True


@dataclass(frozen=True)
class StartCall:
    tenant: str | None
    token: str | None
    outcome: str  # "sent", an error code, or "crash-before"


@dataclass(frozen=True)
class Delivery:
    function: str
    queue_arn: str
    body: str


class _ShiftedClock:
    """Wraps the scheduler's clock; a thread sees it ``shift.seconds`` ahead."""

    def __init__(self, base: Any, shift: threading.local) -> None:
        self.base = base
        self.shift = shift

    def now(self) -> datetime:
        return self.base.now() + timedelta(seconds=getattr(self.shift, "seconds", 0.0))


class _FaultyJobLauncher:
    """Wraps the runner's job launcher: a step's job fails or waits as told first."""

    def __init__(self, inner: JobLauncher, faults: Faults) -> None:
        self.inner = inner
        self.faults = faults

    def run(self, job: Job) -> None:
        delay, reason = self.faults._step_fault(job.parameters.get("TenantId"), job.step)
        # Wait like a long job would, but still honour a stop of the engine.
        if delay and job.stop.wait(delay):
            raise ExecutionStopped
        if reason:
            raise StepFailure(reason)
        self.inner.run(job)


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stack: EmbeddedStack | None = None
        self._session: Any = None
        self._engine_events: Any = None
        self._runner: Any = None  # the pipeline runner whose job launcher is wrapped
        self._launcher: _FaultyJobLauncher | None = None
        self._clock_shift = threading.local()  # per thread: seconds the scheduler is ahead
        self.reset()

    # ------------------------------------------------------------ switches

    def reset(self) -> None:
        """Turn every switch off and forget what was observed."""
        with self._lock:
            self.start_calls: list[StartCall] = []
            self.dropped_status_events: list[dict[str, Any]] = []
            self.delivered: list[Delivery] = []
            self._start_errors: list[_Rule] = []
            self._crash_before: list[_Rule] = []
            self._crash_after: list[_Rule] = []
            self._status_drops: list[_Rule] = []
            self._step_faults: list[_Rule] = []
            self._function_faults: list[_Rule] = []

    def fail_starts(
        self,
        times: int | None,
        *,
        code: str = "ThrottlingException",
        status: int = 400,
        message: str = "Rate exceeded",
        tenant: str | None = None,
    ) -> None:
        """The next ``times`` StartPipelineExecution calls answer this error (as AWS
        would after the SDK's own retries; None = every call)."""
        payload = {"code": code, "status": status, "message": message}
        with self._lock:
            self._start_errors.append(_Rule(tenant, times, payload))

    def crash_before_start(self, tenant: str | None = None, times: int = 1) -> None:
        """The scheduler dies after recording STARTING, before SageMaker hears of it."""
        with self._lock:
            self._crash_before.append(_Rule(tenant, times))

    def crash_after_start(self, tenant: str | None = None, times: int = 1) -> None:
        """SageMaker started the execution, the scheduler dies before recording it."""
        with self._lock:
            self._crash_after.append(_Rule(tenant, times))

    def drop_status_events(
        self,
        tenant: str | None = None,
        statuses: Iterable[str] | None = None,
        times: int | None = None,
    ) -> None:
        """Status-change events of ``tenant``'s executions never reach EventBridge;
        they are kept in ``dropped_status_events`` (see ``release_status_events``)."""
        payload = {"statuses": set(statuses) if statuses is not None else None}
        with self._lock:
            self._status_drops.append(_Rule(tenant, times, payload))

    def fail_step(
        self, tenant: str, step: str, reason: str | None = None, times: int | None = None
    ) -> None:
        """A Processing/Training step of ``tenant``'s executions fails with ``reason``."""
        text = reason or f"injected failure of the {step} job"
        with self._lock:
            self._step_faults.append(_Rule(tenant, times, {"step": step, "reason": text}))

    def capacity_error(self, tenant: str, step: str, times: int = 1) -> None:
        """The next ``times`` jobs of ``step`` for ``tenant`` fail as SageMaker's do when
        no instance is available (the step's retry policy may start new ones)."""
        self.fail_step(tenant, step, CAPACITY_ERROR_REASON, times=times)

    def slow_step(self, tenant: str, step: str, seconds: float, times: int | None = None) -> None:
        """A step of ``tenant``'s executions takes ``seconds`` longer (keeps a run
        RUNNING): its next ``times`` jobs, or every one."""
        with self._lock:
            self._step_faults.append(_Rule(tenant, times, {"step": step, "delay": seconds}))

    def fail_function(
        self, function: str, tenant: str | None = None, reason: str | None = None
    ) -> None:
        """Invocations of a local Lambda (payload ``tenant_id`` = tenant) raise."""
        text = reason or f"injected failure of the {function} function"
        with self._lock:
            self._function_faults.append(
                _Rule(tenant, None, {"function": function, "reason": text})
            )

    @contextmanager
    def later(self, seconds: float) -> Iterator[None]:
        """Within the block, the scheduler invoked *from this thread* sees the clock
        ``seconds`` ahead: ``with faults.later(60): stack.reconcile_now()`` is the
        next one-minute tick, without sleeping. Timestamps it writes are shifted
        too, as they would be if the tick really came that much later."""
        previous = getattr(self._clock_shift, "seconds", 0.0)
        self._clock_shift.seconds = previous + seconds
        try:
            yield
        finally:
            self._clock_shift.seconds = previous

    @contextmanager
    def fast_redelivery(self, queue_name: str, visibility_seconds: int = 1) -> Iterator[None]:
        """A failed message on ``queue_name`` comes back after ``visibility_seconds``
        (instead of the local 60 s), so maxReceiveCount is reached quickly."""
        sqs, url = self._queue(queue_name)
        before = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])
        sqs.set_queue_attributes(
            QueueUrl=url, Attributes={"VisibilityTimeout": str(visibility_seconds)}
        )
        # A receive already waiting (the pollers long-poll 1 s) took the queue's
        # timeout when it started: let it end before anything is sent.
        time.sleep(1.5)
        try:
            yield
        finally:
            sqs.set_queue_attributes(
                QueueUrl=url,
                Attributes={"VisibilityTimeout": before["Attributes"]["VisibilityTimeout"]},
            )

    # ------------------------------------------------------------ actions

    def send(self, queue_name: str, body: str | dict[str, Any]) -> str:
        """Put a raw message on a stack queue (a re-delivered or hand-made event)."""
        sqs, url = self._queue(queue_name)
        text = body if isinstance(body, str) else json.dumps(body)
        return str(sqs.send_message(QueueUrl=url, MessageBody=text)["MessageId"])

    def release_status_events(self, *, reverse: bool = False) -> int:
        """Publish the dropped status events after all (optionally newest first), as
        EventBridge would deliver late or out-of-order events."""
        with self._lock:
            held, self.dropped_status_events = self.dropped_status_events, []
        if reverse:
            held.reverse()
        assert self._stack is not None
        events = self._stack.client("events")  # not the engine's client: no drop hook
        for entry in held:
            when = entry.get("Time")
            events.put_events(
                Entries=[
                    {
                        "Source": entry["Source"],
                        "DetailType": entry["DetailType"],
                        "Detail": entry["Detail"],
                        "Resources": entry.get("Resources", []),
                        **({"Time": datetime.fromtimestamp(when, UTC)} if when else {}),
                    }
                ]
            )
        return len(held)

    def s3_events_for(self, bucket: str) -> list[Delivery]:
        """S3 Object Created events the scheduler received for ``bucket``."""
        out = []
        for d in list(self.delivered):
            try:
                body = json.loads(d.body)
            except json.JSONDecodeError:
                continue
            if (
                isinstance(body, dict)
                and body.get("source") == "aws.s3"
                and (body.get("detail") or {}).get("bucket", {}).get("name") == bucket
            ):
                out.append(d)
        return out

    # ------------------------------------------------------------ lifecycle

    def attach(self, stack: EmbeddedStack) -> None:
        """Install the hooks (EmbeddedStack calls this before any handler runs)."""
        self._stack = stack
        if boto3.DEFAULT_SESSION is None:
            boto3.setup_default_session()
        self._session = boto3.DEFAULT_SESSION
        events = self._session.events
        # unique_id is per emitter, not per event name: one id per registration.
        events.register(
            f"before-call.sagemaker.{_START_EVENT}",
            self._before_start,
            unique_id=f"{_HOOK_ID}-before-call",
        )
        events.register(
            f"after-call.sagemaker.{_START_EVENT}",
            self._after_start,
            unique_id=f"{_HOOK_ID}-after-call",
        )
        engine = stack.engine
        if engine is not None:
            self._engine_events = engine.events
            self._engine_events.meta.events.register(
                "before-call.events.PutEvents", self._before_put_events, unique_id=_HOOK_ID
            )
            self._runner = engine.runner
            self._launcher = _FaultyJobLauncher(self._runner.job_launcher, self)
            self._runner.job_launcher = self._launcher
        if stack.runtime is not None:
            stack.runtime.interceptors.append(self._on_invoke)

    def detach(self) -> None:
        if self._session is not None:
            for name in ("before-call", "after-call"):
                self._session.events.unregister(
                    f"{name}.sagemaker.{_START_EVENT}", unique_id=f"{_HOOK_ID}-{name}"
                )
            self._session = None
        if self._engine_events is not None:
            self._engine_events.meta.events.unregister(
                "before-call.events.PutEvents", unique_id=_HOOK_ID
            )
            self._engine_events = None
        if self._runner is not None and self._launcher is not None:
            if self._runner.job_launcher is self._launcher:
                self._runner.job_launcher = self._launcher.inner
            self._runner = self._launcher = None
        if self._stack is not None and self._stack.runtime is not None:
            hooks = self._stack.runtime.interceptors
            if self._on_invoke in hooks:
                hooks.remove(self._on_invoke)
        self._stack = None

    # ------------------------------------------------------------ hooks

    def _take(self, rules: list[_Rule], tenant: str | None) -> _Rule | None:
        with self._lock:
            for rule in rules:
                if rule.take(tenant):
                    return rule
        return None

    def _before_start(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> Any:
        try:
            request = json.loads(params.get("body") or b"{}")
        except (TypeError, ValueError):
            request = {}
        tenant = next(
            (
                p.get("Value")
                for p in request.get("PipelineParameters", [])
                if p.get("Name") == "TenantId"
            ),
            None,
        )
        token = request.get("ClientRequestToken")
        context["trainyard_tenant"] = tenant
        if self._take(self._crash_before, tenant):
            self.start_calls.append(StartCall(tenant, token, "crash-before"))
            raise InjectedCrash("injected crash before StartPipelineExecution")
        rule = self._take(self._start_errors, tenant)
        if rule is not None:
            code, status = rule.payload["code"], rule.payload["status"]
            self.start_calls.append(StartCall(tenant, token, code))
            # Short-circuit the call: botocore raises the ClientError AWS would send.
            response = AWSResponse("https://sagemaker.local/", status, {}, None)
            parsed = {
                "Error": {"Code": code, "Message": rule.payload["message"]},
                "ResponseMetadata": {"HTTPStatusCode": status},
            }
            return response, parsed
        self.start_calls.append(StartCall(tenant, token, "sent"))
        return None

    def _after_start(self, http_response: Any, context: dict[str, Any], **_: Any) -> None:
        if getattr(http_response, "status_code", 500) >= 300:
            return
        if self._take(self._crash_after, context.get("trainyard_tenant")):
            raise InjectedCrash("injected crash after StartPipelineExecution")

    def _before_put_events(self, params: dict[str, Any], **_: Any) -> Any:
        if not self._status_drops:
            return None
        try:
            entries = json.loads(params.get("body") or b"{}").get("Entries", [])
        except (TypeError, ValueError):
            return None
        if len(entries) != 1:
            return None
        entry = entries[0]
        try:
            detail = json.loads(entry.get("Detail") or "{}")
        except ValueError:
            return None
        tenant = tenant_of_display_name(detail.get("pipelineExecutionDisplayName"))
        status = detail.get("currentPipelineExecutionStatus")
        with self._lock:
            for rule in self._status_drops:
                wanted = rule.payload["statuses"]
                if (wanted is None or status in wanted) and rule.take(tenant):
                    self.dropped_status_events.append(entry)
                    break
            else:
                return None
        # Swallowed: EventBridge "accepted" it and it never arrives anywhere.
        response = AWSResponse("https://events.local/", 200, {}, None)
        return response, {
            "FailedEntryCount": 0,
            "Entries": [{"EventId": f"dropped-{uuid.uuid4()}"}],
            "ResponseMetadata": {"HTTPStatusCode": 200},
        }

    def _on_invoke(self, key: str, event: dict[str, Any]) -> None:
        if key == "scheduler" and getattr(self._clock_shift, "seconds", 0.0):
            self._shift_scheduler_clock()
        for record in event.get("Records", []) if isinstance(event, dict) else []:
            if isinstance(record, dict) and "body" in record:
                self.delivered.append(
                    Delivery(key, str(record.get("eventSourceARN", "")), str(record["body"]))
                )
        if not self._function_faults:
            return
        tenant = event.get("tenant_id") if isinstance(event, dict) else None
        with self._lock:
            for rule in self._function_faults:
                if rule.payload["function"] == key and rule.take(tenant):
                    raise InjectedFault(rule.payload["reason"])

    def _step_fault(self, tenant: str | None, step: str) -> tuple[float, str | None]:
        delay, reason = 0.0, None
        with self._lock:
            for rule in self._step_faults:
                if rule.payload["step"] != step:
                    continue
                if "delay" in rule.payload:
                    if rule.take(tenant):
                        delay += float(rule.payload["delay"])
                elif reason is None and rule.take(tenant):
                    reason = str(rule.payload["reason"])
        return delay, reason

    # ------------------------------------------------------------ helpers

    def _queue(self, queue_name: str) -> tuple[Any, str]:
        assert self._stack is not None and self._stack.platform is not None
        return self._stack.client("sqs"), self._stack.platform.queue_urls[queue_name]

    def _shift_scheduler_clock(self) -> None:
        # Called by the runtime before the handler runs, after its first load (which
        # resets the module's cached service): the clock set here is the one it uses.
        from trainyard_handlers import scheduler

        service = scheduler.get_service()
        clock = service.clock
        if not (isinstance(clock, _ShiftedClock) and clock.shift is self._clock_shift):
            base = clock.base if isinstance(clock, _ShiftedClock) else clock
            service.clock = _ShiftedClock(base, self._clock_shift)
