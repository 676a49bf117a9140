"""The local event source mapping honours the queue's batching window, as the
deployed mapping does (``wiring.batching_window_seconds``)."""

from __future__ import annotations

import time
from typing import Any

from trainyard.local.lambda_runtime import QueuePoller


class _Sqs:
    """Messages become receivable at given offsets from the first receive."""

    def __init__(self, arrivals: list[float]) -> None:
        self.arrivals = list(arrivals)
        self.t0: float | None = None
        self.deleted: list[str] = []

    def receive_message(self, **kwargs: Any) -> dict[str, Any]:
        now = time.monotonic()
        if self.t0 is None:
            self.t0 = now
        due = [a for a in self.arrivals if self.t0 + a <= now][: kwargs["MaxNumberOfMessages"]]
        for a in due:
            self.arrivals.remove(a)
        return {
            "Messages": [
                {"MessageId": f"m{a}", "ReceiptHandle": f"r{a}", "Body": "{}"} for a in due
            ]
        }

    def delete_message_batch(self, **kwargs: Any) -> None:
        self.deleted += [e["ReceiptHandle"] for e in kwargs["Entries"]]


class _Runtime:
    def __init__(self) -> None:
        self.batches: list[int] = []

    def invoke(self, key: str, event: dict[str, Any]) -> dict[str, Any]:
        self.batches.append(len(event["Records"]))
        return {"batchItemFailures": []}


def _poller(sqs: _Sqs, runtime: _Runtime, window: float, batch: int = 10) -> QueuePoller:
    return QueuePoller(
        sqs=sqs,
        queue_url="http://queue",
        queue_arn="arn:aws:sqs:eu-west-1:123456789012:q",
        runtime=runtime,  # type: ignore[arg-type]
        function_key="scheduler",
        region="eu-west-1",
        batch_size=batch,
        batching_window_seconds=window,
    )


def test_records_arriving_within_the_window_reach_one_invocation() -> None:
    sqs, runtime = _Sqs([0.0, 0.1, 0.2]), _Runtime()
    _poller(sqs, runtime, window=0.6)._poll_once()
    assert runtime.batches == [3]
    assert len(sqs.deleted) == 3


def test_without_a_window_each_record_is_handed_over_at_once() -> None:
    sqs, runtime = _Sqs([0.0, 0.3]), _Runtime()
    poller = _poller(sqs, runtime, window=0)
    poller._poll_once()
    assert runtime.batches == [1]
    time.sleep(0.35)
    poller._poll_once()
    assert runtime.batches == [1, 1]


def test_a_full_batch_does_not_wait_for_the_window() -> None:
    sqs, runtime = _Sqs([0.0, 0.0, 0.0]), _Runtime()
    began = time.monotonic()
    _poller(sqs, runtime, window=5.0, batch=3)._poll_once()
    assert runtime.batches == [3]
    assert time.monotonic() - began < 1.0
