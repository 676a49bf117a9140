"""The API's webhook use cases: set (rotating the secret), show, delete, deliveries."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from trainyard_core import events as catalogue
from trainyard_core.clock import Clock
from trainyard_core.config import WebhookSettings
from trainyard_core.errors import InvalidRequest, NotFound
from trainyard_core.models import iso_ms
from trainyard_core.ports.webhooks import WebhookSecrets, WebhookStore
from trainyard_core.webhooks.records import Delivery, Webhook
from trainyard_core.webhooks.urls import Resolver, check_url

log = logging.getLogger("trainyard.webhooks")


class WebhookNotFound(NotFound):
    code = "WebhookNotFound"


def subscribed_events(events: Sequence[str] | None) -> tuple[str, ...]:
    """The event names a webhook receives: all when omitted; in the catalogue's order."""
    if events is None:
        return catalogue.NAMES
    unknown = sorted({e for e in events if e not in catalogue.BY_NAME})
    if unknown:
        raise InvalidRequest(
            f"unknown event names {unknown}; known: {list(catalogue.NAMES)}",
            code="UnknownWebhookEvent",
        )
    if not events:
        raise InvalidRequest(
            "events must name at least one event (omit it for all)", code="InvalidWebhookEvents"
        )
    chosen = set(events)
    return tuple(name for name in catalogue.NAMES if name in chosen)


class WebhookService:
    def __init__(
        self,
        *,
        store: WebhookStore,
        secrets: WebhookSecrets,
        resolve: Resolver,
        settings: WebhookSettings,
        clock: Clock,
    ) -> None:
        self.store = store
        self.secrets = secrets
        self.resolve = resolve
        self.settings = settings
        self.clock = clock

    def put(self, tenant_id: str, url: str, events: Sequence[str] | None) -> tuple[Webhook, str]:
        """Set the tenant's webhook; a new signing secret every time (returned once).

        Order: a new secret (under a name never used), then the webhook naming it, then
        the old secret goes. Until the write the old webhook and its secret are
        untouched (its receiver keeps verifying); a failed write leaves only the unused
        new secret, which is removed. After the write every delivery signs with the
        new secret."""
        chosen = subscribed_events(events)
        check_url(url, self.resolve, allow_loopback_http=self.settings.allow_loopback_http)
        now = iso_ms(self.clock.now()) or ""
        existing = self.store.get_webhook(tenant_id)
        secret = self.secrets.create(tenant_id)
        webhook = Webhook(
            tenant_id=tenant_id,
            url=url,
            events=chosen,
            created_at=existing.created_at if existing else now,
            updated_at=now,
            secret_name=secret.name,
        )
        try:
            self.store.put_webhook(webhook)
        except Exception:
            self._discard(secret.name)
            raise
        if existing is not None and existing.secret_name != secret.name:
            self._discard(existing.secret_name)
        return webhook, secret.value

    def get(self, tenant_id: str) -> Webhook:
        webhook = self.store.get_webhook(tenant_id)
        if webhook is None:
            raise WebhookNotFound(f"tenant {tenant_id!r} has no webhook")
        return webhook

    def delete(self, tenant_id: str) -> Webhook:
        """Deliveries stop first (the config goes), then the secret."""
        webhook = self.get(tenant_id)
        self.store.delete_webhook(tenant_id)
        self._discard(webhook.secret_name)
        return webhook

    def _discard(self, secret_name: str) -> None:
        """Remove a secret no webhook names (any more). Failing, it is only left over
        (nothing signs with it; ``trainyard teardown`` finds it under the path): the
        request that got here has done what it was asked, so it is not failed for it."""
        try:
            self.secrets.delete(secret_name)
        except Exception:
            log.exception("webhook secret left over", extra={"secret_name": secret_name})

    def forget(self, tenant_id: str) -> bool:
        """Offboarding: the tenant's webhook and secret go with it (if it had one)."""
        if self.store.get_webhook(tenant_id) is None:
            return False
        self.delete(tenant_id)
        return True

    def deliveries(
        self, tenant_id: str, *, limit: int, next_token: str | None
    ) -> tuple[list[Delivery], str | None]:
        return self.store.list_deliveries(tenant_id, limit=limit, next_token=next_token)
