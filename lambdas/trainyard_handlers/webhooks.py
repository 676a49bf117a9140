"""Entry point of the ``webhooks`` function: Trainyard's events to tenants' webhooks.

Fed by the webhook queue (an EventBridge rule on ``source: trainyard`` -> SQS,
partial batch failures). The records of a batch are delivered side by side (one
slow receiver must not hold up the others past the function's timeout); a record
not delivered yet stays on the queue, hidden for its retry delay
(ChangeMessageVisibility), and after the last attempt SQS moves it to the
dead-letter queue. Each attempt has one deadline (DNS to the answer's last byte):
the webhook's timeout, or less when the invocation has less time left.
Decisions in ``trainyard_core.webhooks.delivery``.
"""

from __future__ import annotations

import contextvars
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from trainyard_core import wiring

from trainyard_handlers import dependencies
from trainyard_handlers.observability import logger, metrics, tracer

# Records delivered at once (a batch is at most 10, infra/lambdas.QUEUE_BATCH_SIZE).
PARALLEL_DELIVERIES = 10


def reset_dependencies() -> None:
    dependencies.reset(*dependencies.WEBHOOKS)


def _deliver(record: dict[str, Any], context: LambdaContext) -> str | None:
    """The record's message id if it stays on the queue, else None."""
    message_id = str(record.get("messageId", ""))
    try:
        receives = int(record.get("attributes", {}).get("ApproximateReceiveCount", "1"))
        # Each attempt ends before the invocation does (less a margin for the rest).
        remaining = context.get_remaining_time_in_millis() / 1000
        outcome = dependencies.webhook_deliverer().deliver(
            str(record.get("body", "")), receives, remaining
        )
    except Exception:
        # A fault of ours (a store, Secrets Manager or record read): retried by the
        # queue; on the last receive the deliverer has marked the delivery failed.
        logger.exception("webhook delivery raised", extra={"message_id": message_id})
        return message_id
    if outcome.done:
        return None
    try:
        dependencies.webhook_queue().change_message_visibility(
            QueueUrl=os.environ[wiring.ENV_WEBHOOK_QUEUE_URL],
            ReceiptHandle=record["receiptHandle"],
            VisibilityTimeout=outcome.retry_after,
        )
    except Exception:
        # The queue's visibility timeout applies instead: a later retry, not a lost one.
        logger.exception("could not set the retry delay", extra={"message_id": message_id})
    return message_id


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    records = list(event.get("Records", []))
    try:
        # Built here, once, not by the first workers racing (boto3 sessions, which
        # make the clients, are not thread-safe).
        dependencies.webhook_deliverer()
    except Exception:
        logger.exception("could not build the webhook deliverer")  # each record retries
    with ThreadPoolExecutor(max_workers=PARALLEL_DELIVERIES) as pool:
        # Each worker runs in a copy of this context (Powertools' and the caller's
        # context variables, e.g. the embedded stack's acting principal).
        futures = [
            pool.submit(contextvars.copy_context().run, _deliver, r, context) for r in records
        ]
        kept = [m for m in (f.result() for f in futures) if m is not None]
    metrics.add_metric(name="WebhookRecordsProcessed", unit=MetricUnit.Count, value=len(records))
    return {"batchItemFailures": [{"itemIdentifier": m} for m in kept]}
