"""Local Lambda runtime: runs the real handler functions the way AWS would.

- ``invoke(key, event)`` calls the handler named in ``wiring.handlers()`` with a
  Lambda-like context. Invocations of one function are serialized (one
  container per function, as a reserved concurrency of 1 would do); moto's
  DynamoDB operations are made atomic across threads by
  ``shims.install_dynamodb_serializer`` (docs/architecture.md §4), so different functions may
  run side by side as they do in AWS.
- ``QueuePoller`` is the local SQS event source mapping: long-polls a queue,
  gathers up to its batch size for at most its batching window (the queue's
  ``wiring.batching_window_seconds``, as the deployed mapping does), hands
  batches to the handler in the SQS event shape and deletes only the messages
  that did not come back as ``batchItemFailures``; the rest become visible
  again and, after maxReceiveCount, move to the dead-letter queue.
- ``Ticker`` is the local EventBridge schedule.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from trainyard_core.arns import arn
from trainyard_core.wiring import HandlerSpec

from .iam.enforcer import Enforcer, Principal, acting_as

log = logging.getLogger("trainyard.local.runtime")


@dataclass
class LocalContext:
    """The attributes Powertools and handlers read from a Lambda context."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    timeout_seconds: int
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local"
    _deadline: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass
class InvocationRecord:
    function: str
    started: float
    duration: float
    error: str | None


class LocalLambdaRuntime:
    def __init__(
        self,
        specs: dict[str, HandlerSpec],
        *,
        region: str,
        account_id: str,
        prefix: str,
        enforcer: Enforcer | None = None,
    ):
        self.specs = specs
        self.region = region
        self.account_id = account_id
        self.prefix = prefix
        # IAM: each function calls AWS as its execution role (set by use_roles).
        self.enforcer = enforcer
        self._roles: dict[str, str] = {}
        self._principals: dict[str, Principal] = {}
        self._locks = {key: threading.Lock() for key in specs}
        self._handlers: dict[str, Callable[[dict[str, Any], Any], Any]] = {}
        self.invocations: list[InvocationRecord] = []
        self.errors = 0
        # Called as hook(key, event) before each handler call; a hook may raise to
        # make the invocation fail as the handler would (fault injection, faults.py).
        self.interceptors: list[Callable[[str, dict[str, Any]], None]] = []

    def use_roles(self, roles: dict[str, str]) -> None:
        """Handler key -> execution role ARN; Lambda must be able to assume each
        (its trust policy), as CreateFunction checks in AWS."""
        self._roles = dict(roles)
        self._principals.clear()
        if self.enforcer is not None:
            for key, role in self._roles.items():
                self._principals[key] = self.enforcer.assume(
                    role, "lambda.amazonaws.com", session=self.function_name(key)
                )

    def principal(self, key: str) -> Principal | None:
        """The identity the function's code (and its event source mapping) acts as."""
        return self._principals.get(key)

    def function_name(self, key: str) -> str:
        return f"{self.prefix}-{key}"

    def function_arn(self, key: str) -> str:
        return arn("lambda", self.region, self.account_id, f"function:{self.function_name(key)}")

    def key_for_arn(self, arn: str) -> str:
        name = arn.split(":function:", 1)[-1].split(":", 1)[0]
        for key in self.specs:
            if self.function_name(key) == name:
                return key
        raise KeyError(f"no local function for {arn}")

    def _handler(self, key: str) -> Callable[[dict[str, Any], Any], Any]:
        if key not in self._handlers:
            module_name, func_name = self.specs[key].handler.rsplit(".", 1)
            module = importlib.import_module(module_name)
            reset = getattr(module, "reset_dependencies", None)
            if callable(reset):
                # A new embedded stack means new endpoints: drop clients cached by a previous one.
                reset()
            self._handlers[key] = getattr(module, func_name)
        return self._handlers[key]

    def invoke(self, key: str, event: dict[str, Any]) -> Any:
        spec = self.specs[key]
        handler = self._handler(key)
        context = LocalContext(
            function_name=self.function_name(key),
            invoked_function_arn=self.function_arn(key),
            memory_limit_in_mb=spec.memory_mb,
            timeout_seconds=spec.timeout_seconds,
            _deadline=time.monotonic() + spec.timeout_seconds,
        )
        with self._locks[key]:
            started = time.monotonic()
            error: str | None = None
            try:
                for hook in list(self.interceptors):
                    hook(key, event)
                with acting_as(self.principal(key)):
                    return handler(event, context)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                self.errors += 1
                raise
            finally:
                self.invocations.append(
                    InvocationRecord(key, started, time.monotonic() - started, error)
                )

    def invoke_arn(self, function_arn: str, payload: dict[str, Any]) -> dict[str, Any]:
        """What the pipeline runner's Lambda step calls."""
        result = self.invoke(self.key_for_arn(function_arn), payload)
        return result if isinstance(result, dict) else {}


def sqs_event(messages: list[dict[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    records = []
    for m in messages:
        records.append(
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": m.get("MessageAttributes", {}),
                "md5OfBody": m.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
        )
    return {"Records": records}


def scheduled_event(rule_arn: str, region: str, account_id: str) -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account_id,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [rule_arn],
        "detail": {},
    }


class InvalidEventSource(ValueError):
    """What Lambda's CreateEventSourceMapping answers (InvalidParameterValueException)."""


def check_event_source(sqs: Any, queue_url: str, function_timeout_seconds: int) -> None:
    """Lambda refuses an SQS event source whose queue's visibility timeout is shorter
    than the function's timeout (a batch could reappear while still being processed)."""
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["VisibilityTimeout"])
    visibility = int(attributes["Attributes"]["VisibilityTimeout"])
    if visibility < function_timeout_seconds:
        raise InvalidEventSource(
            f"Queue visibility timeout: {visibility} seconds is less than Function timeout: "
            f"{function_timeout_seconds} seconds"
        )


def batch_item_failures(result: Any, messages: list[dict[str, Any]]) -> set[str]:
    """The message ids a function's answer reports failed, read as Lambda reads it
    (ReportBatchItemFailures): an answer whose ``batchItemFailures`` is not a list of
    objects with an ``itemIdentifier`` that is one of the batch's message ids fails
    the whole batch (none of it is deleted)."""
    ids = {m["MessageId"] for m in messages}
    if not isinstance(result, dict) or result.get("batchItemFailures") is None:
        return set()
    failures = result["batchItemFailures"]
    failed: set[str] = set()
    if not isinstance(failures, list):
        return ids
    for failure in failures:
        item = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not isinstance(item, str) or item not in ids:
            log.error("invalid batchItemFailures entry %r: the whole batch failed", failure)
            return ids
        failed.add(item)
    return failed


class QueuePoller(threading.Thread):
    def __init__(
        self,
        *,
        sqs: Any,
        queue_url: str,
        queue_arn: str,
        runtime: LocalLambdaRuntime,
        function_key: str,
        region: str,
        batch_size: int = 10,
        wait_seconds: int = 1,
        batching_window_seconds: float = 0,
    ) -> None:
        super().__init__(name=f"poll-{queue_arn.rsplit(':', 1)[-1]}", daemon=True)
        self.sqs = sqs
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self.runtime = runtime
        self.function_key = function_key
        self.region = region
        self.batch_size = batch_size
        self.wait_seconds = wait_seconds
        self.batching_window_seconds = batching_window_seconds
        self._halt = threading.Event()
        self.in_flight = 0
        self.delivered = 0

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        # The event source mapping polls and deletes with the function's role.
        with acting_as(self.runtime.principal(self.function_key)):
            self._run()

    def _run(self) -> None:
        while not self._halt.is_set():
            try:
                self._poll_once()
            except Exception:  # the poller must outlive any single failure
                if not self._halt.is_set():
                    log.exception("poller %s failed; retrying", self.name)
                    time.sleep(0.5)

    def _poll_once(self) -> None:
        resp = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=self.batch_size,
            WaitTimeSeconds=self.wait_seconds,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages = resp.get("Messages", [])
        if not messages:
            return
        # MaximumBatchingWindowInSeconds: keep gathering until the batch is full or
        # the window since the first record has passed (0: invoke at once).
        deadline = time.monotonic() + self.batching_window_seconds
        while len(messages) < self.batch_size and not self._halt.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            more = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=self.batch_size - len(messages),
                WaitTimeSeconds=0,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            messages.extend(more)
            if not more:
                time.sleep(min(left, 0.05))
        self.in_flight = len(messages)
        try:
            try:
                result = self.runtime.invoke(
                    self.function_key, sqs_event(messages, self.queue_arn, self.region)
                )
                failed = batch_item_failures(result, messages)
            except Exception:
                # A crashed invocation fails the whole batch, as in AWS.
                log.exception("handler %s failed on a batch", self.function_key)
                failed = {m["MessageId"] for m in messages}
            done = [m for m in messages if m["MessageId"] not in failed]
            if done:
                self.sqs.delete_message_batch(
                    QueueUrl=self.queue_url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                        for i, m in enumerate(done)
                    ],
                )
            self.delivered += len(done)
        finally:
            self.in_flight = 0


class Ticker(threading.Thread):
    """Calls ``fn`` every ``interval`` seconds (the local one-minute schedule)."""

    def __init__(self, name: str, interval: float, fn: Callable[[], Any]) -> None:
        super().__init__(name=name, daemon=True)
        self.interval = interval
        self.fn = fn
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            try:
                self.fn()
            except Exception:
                log.exception("scheduled call %s failed", self.name)
