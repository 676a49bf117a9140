"""The deliverer's use case: one of Trainyard's events, queued, to one tenant's webhook.

The webhook queue receives every event Trainyard puts on the default bus (an
EventBridge rule on ``source: trainyard``), as EventBridge's envelope with the
event's detail (``events.Event.envelope()``) inside. For each message:

- the tenant's webhook is read; no webhook, or not subscribed to the event: done;
- the event is verified against Trainyard's own records (``verify.py``: anyone
  allowed PutEvents can put source ``trainyard``); one that does not match them is
  *refused*: never sent, logged, counted (``WebhookEventsRefused``) and recorded as
  a delivery of status ``refused`` with the reason (``GET .../webhook/deliveries``),
  the message deleted (a record that disagrees now will not agree later). The body
  sent is built from the record;
- a delivery record is made once per event (its id is the EventBridge event id,
  the ``Trainyard-Delivery`` header receivers de-duplicate on); a succeeded one is
  not sent again (EventBridge and SQS deliver at least once);
- the URL is checked again (DNS may have changed since it was set) and the request
  goes to exactly the addresses checked, signed with the tenant's current secret,
  redirects not followed, within one deadline for the whole attempt (DNS included):
  ``timeoutSeconds``, or less if the invocation has less time left;
- 2xx: succeeded. Otherwise the attempt is recorded and the message retried after
  ``retry_base_seconds * 2^(n-1)`` (capped); after the ``max_attempts``-th receive
  (the queue's maxReceiveCount) the delivery is marked failed and SQS moves the
  message to the dead-letter queue. A fault of ours (a store, Secrets Manager or a
  record read raising) is retried the same way; on the last receive the delivery
  is marked failed before the message goes to the dead-letter queue.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
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
from trainyard_core.webhooks.verify import EventRefused, EventVerifier

USER_AGENT = "Trainyard-Webhooks/1"
# Kept back from an attempt's deadline for what follows it in the invocation:
# writing the delivery record, setting the retry delay, returning the batch.
# Attempts run side by side (the handler), so one margin covers the batch.
INVOCATION_MARGIN_SECONDS = 3.0


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
    kind: catalogue.EventType
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
            kind=kind,
            tenant_id=tenant_id,
            occurred_at=limits.bounded(occurred_at, 64),
            # Bounded: a forged event's runId lands in its refused delivery record.
            run_id=limits.bounded(run_id, limits.NAME_MAX_CHARS)
            if isinstance(run_id, str)
            else None,
            envelope=detail,
        )

    @property
    def name(self) -> str:
        return self.kind.name


class WebhookDeliverer:
    def __init__(
        self,
        *,
        store: WebhookStore,
        secrets: WebhookSecrets,
        resolve: Resolver,
        sender: WebhookSender,
        verifier: EventVerifier,
        settings: WebhookSettings,
        clock: Clock,
        metrics: MetricsSink | None = None,
        logger: logging.Logger | Any | None = None,
    ) -> None:
        self.store = store
        self.secrets = secrets
        self.resolve = resolve
        self.sender = sender
        self.verifier = verifier
        self.settings = settings
        self.clock = clock
        self.metrics = metrics or NullMetrics()
        self.log = logger or logging.getLogger("trainyard.webhooks")

    def deliver(
        self, body: str, receive_count: int, remaining_seconds: float | None = None
    ) -> Outcome:
        """``remaining_seconds``: what the invocation has left (None: no limit but
        ``timeoutSeconds``)."""
        try:
            event = QueuedEvent.parse(body)
        except MalformedEvent as exc:
            # Not ours to deliver; logged and counted, never retried.
            self.log.error("webhook queue message dropped", extra={"reason": str(exc)})
            self.metrics.record("WebhookEventsMalformed", 1)
            return DONE
        try:
            return self._deliver(event, receive_count, remaining_seconds)
        except Exception as exc:
            # Raised to the handler (the message stays on the queue, retried); on the
            # last receive SQS dead-letters it, so the delivery must not stay pending.
            if receive_count >= self.settings.max_attempts:
                self._fail_after_fault(event, exc)
            raise

    def _new_delivery(self, event: QueuedEvent, status: str) -> Delivery:
        now = self.clock.now()
        stamp = iso_ms(now) or ""
        expires = now + timedelta(days=self.settings.delivery_retention_days)
        return Delivery(
            tenant_id=event.tenant_id,
            delivery_id=event.event_id,
            key=delivery_key(event.occurred_at, event.event_id),
            event=event.name,
            run_id=event.run_id,
            status=status,  # type: ignore[arg-type]
            attempts=0,
            created_at=stamp,
            updated_at=stamp,
            expires_at=int(expires.timestamp()),
        )

    def _deliver(
        self, event: QueuedEvent, receive_count: int, remaining_seconds: float | None
    ) -> Outcome:
        webhook = self.store.get_webhook(event.tenant_id)
        if webhook is None or event.name not in webhook.events:
            return DONE
        try:
            payload = self.verifier.body(
                event.kind, event.tenant_id, event.occurred_at, event.envelope
            )
        except EventRefused as refused:
            return self._refuse(event, refused.reason)
        delivery = self.store.create_delivery(self._new_delivery(event, "pending"))
        if delivery.status in ("succeeded", "refused"):
            return Outcome(done=True, delivery=delivery)  # a repeated event: settled already
        status, error = self._attempt(
            webhook.url, webhook.secret_name, event, payload, remaining_seconds
        )
        attempts = delivery.attempts + 1
        changes: dict[str, Any] = {
            "attempts": attempts,
            "updated_at": iso_ms(self.clock.now()) or delivery.updated_at,
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

    def _refuse(self, event: QueuedEvent, reason: str) -> Outcome:
        """Not sent, not retried (the record will not change its mind), not dropped
        unseen: logged, counted and recorded with its reason."""
        self.log.warning(
            "webhook event refused: it does not match Trainyard's records",
            extra={
                "tenant_id": event.tenant_id,
                "delivery_id": event.event_id,
                "event": event.name,
                "reason": reason,
            },
        )
        self.metrics.record("WebhookEventsRefused", 1)
        refused = self._new_delivery(event, "refused").with_changes(last_error=reason)
        stored = self.store.create_delivery(refused)
        if stored.status == "pending":
            # Verified on an earlier attempt, no longer true (a model approved, then
            # rejected before a receiver took the approval): settled as refused.
            stored = stored.with_changes(
                status="refused", last_error=reason, updated_at=refused.updated_at
            )
            self.store.put_delivery(stored)
        return Outcome(done=True, delivery=stored)

    def _fail_after_fault(self, event: QueuedEvent, exc: Exception) -> None:
        """Best effort: the store may be what failed."""
        reason = limits.bounded(
            f"the deliverer failed on the last attempt: {type(exc).__name__}: {exc}",
            limits.REASON_MAX_CHARS,
        )
        try:
            webhook = self.store.get_webhook(event.tenant_id)
            if webhook is None or event.name not in webhook.events:
                return
            delivery = self.store.create_delivery(self._new_delivery(event, "pending"))
            if delivery.status != "pending":
                return
            self.store.put_delivery(
                delivery.with_changes(
                    status="failed",
                    last_error=reason,
                    updated_at=iso_ms(self.clock.now()) or delivery.updated_at,
                )
            )
            self.metrics.record("WebhookDeliveriesFailed", 1)
            self.log.warning(
                "webhook delivery failed for good (a fault on the last attempt)",
                extra={"tenant_id": event.tenant_id, "delivery_id": event.event_id},
            )
        except Exception:
            self.log.exception(
                "could not mark the webhook delivery failed",
                extra={"tenant_id": event.tenant_id, "delivery_id": event.event_id},
            )

    def attempt_seconds(self, remaining_seconds: float | None) -> float:
        """One attempt's deadline: ``timeoutSeconds``, or what the invocation has left
        after the margin for the rest of the batch (0: no time for an attempt)."""
        budget = float(self.settings.timeout_seconds)
        if remaining_seconds is not None:
            budget = min(budget, remaining_seconds - INVOCATION_MARGIN_SECONDS)
        return max(0.0, budget)

    def _attempt(
        self,
        url: str,
        secret_name: str,
        event: QueuedEvent,
        payload: dict[str, Any],
        remaining_seconds: float | None,
    ) -> tuple[int | None, str | None]:
        budget = self.attempt_seconds(remaining_seconds)
        if budget <= 0:
            return None, "timed out: the invocation had no time left for an attempt"
        # Real time, not the domain clock: the deadline bounds blocking I/O.
        deadline = time.monotonic() + budget
        try:
            target = check_url(
                url,
                self.resolve,
                allow_loopback_http=self.settings.allow_loopback_http,
                timeout=budget,
            )
        except WebhookUrlRefused as exc:
            return None, f"{exc.code}: {exc.message}"
        secret = self.secrets.current(secret_name)  # the one the webhook names
        if secret is None:
            return None, "the webhook's signing secret is missing"
        body = json.dumps(payload, separators=(",", ":"), default=str).encode()
        timestamp = int(self.clock.now().timestamp())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            signing.HEADER: signing.signature(secret, timestamp, body),
            signing.EVENT_HEADER: event.name,
            signing.DELIVERY_HEADER: event.event_id,
        }
        left = deadline - time.monotonic()
        if left <= 0:
            return None, f"timed out: resolving the host took the attempt's {budget:.1f} s"
        answer = self.sender.send(target, body, headers, left)
        if answer.status is not None and not 200 <= answer.status < 300:
            return answer.status, answer.error or f"HTTP {answer.status}"
        return answer.status, answer.error
