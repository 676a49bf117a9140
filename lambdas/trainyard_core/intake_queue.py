"""Data access for the plans' intake queues, as the API uses them: a wake-up message.

The API never admits runs itself (admission stays in the scheduler). After it
queues a run or resumes a tenant it sends this message to the plan's intake
queue, so the scheduler dispatches within seconds instead of at the next
one-minute reconcile; the scheduler handler recognises it as a wake-up, not work.
"""

from __future__ import annotations

import json
from typing import Any

import boto3

from trainyard_core.wiring import Names

# {"source": ..., "detail-type": ...}: shaped like an EventBridge event, as the
# rest of an intake queue's messages are.
DISPATCH_SOURCE = "trainyard"
DISPATCH_DETAIL_TYPE = "Dispatch Requested"


class IntakeQueue:
    def __init__(self, names: Names, client: Any | None = None) -> None:
        self._names = names
        self._sqs = client or boto3.client("sqs")

    def request_dispatch(self, plan: str) -> None:
        """Ask the scheduler to dispatch now (it reads the plan's queue)."""
        url = self._sqs.get_queue_url(QueueName=self._names.intake_queue(plan))["QueueUrl"]
        self._sqs.send_message(
            QueueUrl=url,
            MessageBody=json.dumps(
                {"source": DISPATCH_SOURCE, "detail-type": DISPATCH_DETAIL_TYPE}
            ),
        )
