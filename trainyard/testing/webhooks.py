"""In-memory twins of the webhook ports (unit tests; the Lambda asset never ships them)."""

from __future__ import annotations

from dataclasses import dataclass, field

from trainyard_core import limits
from trainyard_core.model_versions import ModelVersion
from trainyard_core.models import Run
from trainyard_core.ports.webhooks import Response, SigningSecret
from trainyard_core.store.webhooks_dynamodb import delivery_to_item, webhook_to_item
from trainyard_core.webhooks.records import Delivery, Webhook
from trainyard_core.webhooks.signing import new_secret
from trainyard_core.webhooks.urls import Target


class MemoryWebhookStore:
    def __init__(self) -> None:
        self.webhooks: dict[str, Webhook] = {}
        self.deliveries: dict[tuple[str, str], Delivery] = {}

    def get_webhook(self, tenant_id: str) -> Webhook | None:
        return self.webhooks.get(tenant_id)

    def put_webhook(self, webhook: Webhook) -> None:
        limits.check_item_size(webhook_to_item(webhook))
        self.webhooks[webhook.tenant_id] = webhook

    def delete_webhook(self, tenant_id: str) -> None:
        self.webhooks.pop(tenant_id, None)

    def create_delivery(self, delivery: Delivery) -> Delivery:
        key = (delivery.tenant_id, delivery.key)
        if key not in self.deliveries:
            self.put_delivery(delivery)
        return self.deliveries[key]

    def put_delivery(self, delivery: Delivery) -> None:
        limits.check_item_size(delivery_to_item(delivery))
        self.deliveries[(delivery.tenant_id, delivery.key)] = delivery

    def list_deliveries(
        self, tenant_id: str, *, limit: int, next_token: str | None = None
    ) -> tuple[list[Delivery], str | None]:
        mine = sorted(
            (d for (t, _), d in self.deliveries.items() if t == tenant_id),
            key=lambda d: d.key,
            reverse=True,
        )
        start = int(next_token or 0)
        page = mine[start : start + limit]
        more = start + limit < len(mine)
        return page, str(start + limit) if more else None


class MemoryWebhookSecrets:
    def __init__(self) -> None:
        self.values: dict[str, str] = {}  # name -> value
        self.made = 0

    def create(self, tenant_id: str) -> SigningSecret:
        self.made += 1
        secret = SigningSecret(name=f"webhooks/{tenant_id}/{self.made}", value=new_secret())
        self.values[secret.name] = secret.value
        return secret

    def current(self, name: str) -> str | None:
        return self.values.get(name)

    def delete(self, name: str) -> None:
        self.values.pop(name, None)


@dataclass
class MemoryRuns:
    """``RunReader``: runs by (tenant, run id), as the runs table holds them."""

    runs: dict[tuple[str, str], Run] = field(default_factory=dict)

    def add(self, run: Run) -> Run:
        self.runs[(run.tenant_id, run.run_id)] = run
        return run

    def get_run(self, tenant_id: str, run_id: str) -> Run | None:
        return self.runs.get((tenant_id, run_id))


@dataclass
class MemoryModels:
    """``ModelReader``: model packages by ARN, as DescribeModelPackage would describe them."""

    packages: dict[str, ModelVersion] = field(default_factory=dict)

    def add(self, model: ModelVersion) -> ModelVersion:
        self.packages[model.model_package_arn] = model
        return model

    def get_by_arn(self, model_package_arn: str) -> ModelVersion | None:
        return self.packages.get(model_package_arn)


@dataclass
class Sent:
    target: Target
    body: bytes
    headers: dict[str, str]
    timeout: float = 0.0


@dataclass
class ScriptedSender:
    """Answers with ``script`` in turn (then 200); ``None`` is no answer (a timeout)."""

    script: list[int | None] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)

    def send(
        self, target: Target, body: bytes, headers: dict[str, str], timeout: float
    ) -> Response:
        self.sent.append(Sent(target, body, headers, timeout))
        status = self.script.pop(0) if self.script else 200
        if status is None:
            return Response(status=None, error=f"ReadTimeoutError: read timed out ({timeout} s)")
        return Response(status=status)
