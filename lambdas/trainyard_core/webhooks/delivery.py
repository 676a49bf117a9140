"""The deliverer's use case: one of Trainyard's events, queued, to one tenant's webhook.

The webhook queue receives every event Trainyard puts on the default bus (an
EventBridge rule on ``source: trainyard``), as EventBridge's envelope with the
event's detail (``events.Event.envelope()``) inside. For each message:

- the tenant's webhook is read; no webhook, or not subscribed to the event: done;
- a delivery record is made once per event (its id is the EventBridge event id,
  the ``Trainyard-Delivery`` header receivers de-duplicate on); a succeeded one is
  not sent again (EventBridge and SQS deliver at least once);
- the URL is checked again (DNS may have changed since it was set) and the request
  goes to exactly the addresses checked, signed with the tenant's current secret,
  redirects not followed, within the timeout;
- 2xx: succeeded. Otherwise the attempt is recorded and the message retried after
  ``retry_base_seconds * 2^(n-1)`` (capped); after the ``max_attempts``-th receive
  (the queue's maxReceiveCount) the delivery is marked failed and SQS moves the
  message to the dead-letter queue.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from trainyard_core import events as catalogue
from trainyard_core import limits
from trainyard_core.clock import Clock
from trainyard_core.config import WebhookSettings
from trainyard_core.models import iso_ms
from trainyard_core.ports.metrics import MetricsSink, NullMetrics
from trainyard_core.ports.webhooks import WebhookSecrets, WebhookSender, WebhookStore
from trainyard_core.webhooks import signing
from trainyard_core.webhooks.records import Delivery, delivery_key
from trainyard_core.webhooks.urls import Resolver, WebhookUrlRefused, check_url

USER_AGENT = "Trainyard-Webhooks/1"


@dataclass(frozen=True)
class Outcome:
    """``done``: delete the message. Otherwise it stays on the queue, hidden for
    ``retry_after`` seconds (0 on the last attempt: SQS dead-letters it next)."""

    done: bool
    retry_after: int = 0
    delivery: Delivery | None = None


DONE = Outcome(done=True)


def retry_delay(settings: WebhookSettings, attempt: int) -> int:
    delay = settings.retry_base_seconds * 2 ** max(0, attempt - 1)
    return int(min(delay, settings.retry_max_seconds))


class MalformedEvent(ValueError):
    """A message that is not one of Trainyard's events (never retried)."""


@dataclass(frozen=True)
class QueuedEvent:
    event_id: str
    name: str
    tenant_id: str
    occurred_at: str
    run_id: str | None
    envelope: dict[str, Any]

    @classmethod
    def parse(cls, body: str) -> QueuedEvent:
        try:
            message = json.loads(body)
        except ValueError as exc:
            raise MalformedEvent(f"not JSON: {exc}") from exc
        if not isinstance(message, dict) or message.get("source") != catalogue.SOURCE:
            raise MalformedEvent("not an EventBridge event of source trainyard")
        detail = message.get("detail")
        kind = catalogue.BY_DETAIL_TYPE.get(str(message.get("detail-type")))
        if not isinstance(detail, dict) or kind is None or detail.get("event") != kind.name:
            raise MalformedEvent(f"unknown detail-type {message.get('detail-type')!r}")
        tenant_id, occurred_at = detail.get("tenantId"), detail.get("occurredAt")
        if not isinstance(tenant_id, str) or not isinstance(occurred_at, str):
            raise MalformedEvent("detail without tenantId or occurredAt")
        event_id = str(message.get("id") or "") or hashlib.sha256(body.encode()).hexdigest()[:32]
        run_id = detail.get("runId")
        return cls(
            event_id=limits.bounded(event_id, limits.NAME_MAX_CHARS),
            name=kind.name,
            tenant_id=tenant_id,
            occurred_at=limits.bounded(occurred_at, 64),
            run_id=run_id if isinstance(run_id, str) else None,
            envelope=detail,
        )


class WebhookDeliverer:
    def __init__(
        self,
        *,
        store: WebhookStore,
        secrets: WebhookSecrets,
        resolve: Resolver,
        sender: WebhookSender,
        settings: WebhookSettings,
        clock: Clock,
        metrics: MetricsSink | None = None,
        logger: logging.Logger | Any | None = None,
    ) -> None:
        self.store = store
        self.secrets = secrets
        self.resolve = resolve
        self.sender = sender
        self.settings = settings
        self.clock = clock
        self.metrics = metrics or NullMetrics()
        self.log = logger or logging.getLogger("trainyard.webhooks")

    def deliver(self, body: str, receive_count: int) -> Outcome:
        try:
            event = QueuedEvent.parse(body)
        except MalformedEvent as exc:
            # Not ours to deliver; logged and counted, never retried.
            self.log.error("webhook queue message dropped", extra={"reason": str(exc)})
            self.metrics.record("WebhookEventsMalformed", 1)
            return DONE
        webhook = self.store.get_webhook(event.tenant_id)
        if webhook is None or event.name not in webhook.events:
            return DONE
        now = self.clock.now()
        stamp = iso_ms(now) or ""
        expires = now + timedelta(days=self.settings.delivery_retention_days)
        delivery = self.store.create_delivery(
            Delivery(
                tenant_id=event.tenant_id,
                delivery_id=event.event_id,
                key=delivery_key(event.occurred_at, event.event_id),
                event=event.name,
                run_id=event.run_id,
                status="pending",
                attempts=0,
                created_at=stamp,
                updated_at=stamp,
                expires_at=int(expires.timestamp()),
            )
        )
        if delivery.status == "succeeded":
            return Outcome(done=True, delivery=delivery)  # a repeated event: sent already
        status, error = self._attempt(webhook.url, webhook.secret_name, event)
        attempts = delivery.attempts + 1
        changes: dict[str, Any] = {
            "attempts": attempts,
            "updated_at": iso_ms(self.clock.now()) or stamp,
            "last_status_code": status,
            "last_error": limits.bounded_or_none(error, limits.REASON_MAX_CHARS),
        }
        if status is not None and 200 <= status < 300:
            delivery = delivery.with_changes(status="succeeded", **changes)
            self.store.put_delivery(delivery)
            self.metrics.record("WebhookDeliveriesSucceeded", 1)
            return Outcome(done=True, delivery=delivery)
        self.metrics.record("WebhookAttemptsFailed", 1)
        if receive_count >= self.settings.max_attempts:
            delivery = delivery.with_changes(status="failed", **changes)
            self.store.put_delivery(delivery)
            self.metrics.record("WebhookDeliveriesFailed", 1)
            self.log.warning(
                "webhook delivery failed for good",
                extra={"tenant_id": event.tenant_id, "delivery_id": event.event_id},
            )
            return Outcome(done=False, retry_after=0, delivery=delivery)
        delivery = delivery.with_changes(status="pending", **changes)
        self.store.put_delivery(delivery)
        return Outcome(
            done=False, retry_after=retry_delay(self.settings, receive_count), delivery=delivery
        )

    def _attempt(
        self, url: str, secret_name: str, event: QueuedEvent
    ) -> tuple[int | None, str | None]:
        try:
            target = check_url(
                url, self.resolve, allow_loopback_http=self.settings.allow_loopback_http
            )
        except WebhookUrlRefused as exc:
            return None, f"{exc.code}: {exc.message}"
        secret = self.secrets.current(secret_name)  # the one the webhook names
        if secret is None:
            return None, "the webhook's signing secret is missing"
        body = json.dumps(event.envelope, separators=(",", ":"), default=str).encode()
        timestamp = int(self.clock.now().timestamp())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            signing.HEADER: signing.signature(secret, timestamp, body),
            signing.EVENT_HEADER: event.name,
            signing.DELIVERY_HEADER: event.event_id,
        }
        answer = self.sender.send(target, body, headers, self.settings.timeout_seconds)
        if answer.status is not None and not 200 <= answer.status < 300:
            return answer.status, answer.error or f"HTTP {answer.status}"
        return answer.status, answer.error
