"""What tenant webhooks need from the world: a store, the signing secrets, HTTP.

Implemented on DynamoDB (``store/webhooks_dynamodb.py``), Secrets Manager
(``webhook_secrets.py``) and http.client with pinned addresses (``webhook_http.py``);
``trainyard/testing/webhooks.py`` has in-memory twins for unit tests.

The deliverer also reads Trainyard's own records to verify an event before it
delivers it (``webhooks/verify.py``): a run (``RunReader``: the runs table,
``store/runs_dynamodb.DynamoRunReader``; in memory ``store/runs_memory``) and a
model package (``ModelReader``: SageMaker ``DescribeModelPackage``,
``model_registry.SageMakerModelVersions``; in memory ``trainyard/testing/webhooks``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from trainyard_core.webhooks.records import Delivery, Webhook
from trainyard_core.webhooks.urls import Target

if TYPE_CHECKING:
    from trainyard_core.model_versions import ModelVersion
    from trainyard_core.models import Run


class WebhookStore(Protocol):
    def get_webhook(self, tenant_id: str) -> Webhook | None: ...

    def put_webhook(self, webhook: Webhook) -> None: ...

    def delete_webhook(self, tenant_id: str) -> None: ...

    def create_delivery(self, delivery: Delivery) -> Delivery:
        """Store ``delivery`` unless one with its key exists; return what is stored."""
        ...

    def put_delivery(self, delivery: Delivery) -> None: ...

    def list_deliveries(
        self, tenant_id: str, *, limit: int, next_token: str | None = None
    ) -> tuple[list[Delivery], str | None]:
        """Newest first."""
        ...


@dataclass(frozen=True)
class SigningSecret:
    name: str  # the secret's name in the store (kept on the webhook item)
    value: str  # shown to the tenant once


class WebhookSecrets(Protocol):
    def create(self, tenant_id: str) -> SigningSecret:
        """A new signing secret under a name never used before (one per PUT)."""
        ...

    def current(self, name: str) -> str | None:
        """The value of the secret ``name``; None if it is gone."""
        ...

    def delete(self, name: str) -> None:
        """Remove the secret ``name`` (gone already: nothing to do)."""
        ...


@dataclass(frozen=True)
class Response:
    status: int | None  # None: no HTTP answer (timeout, refused, TLS)
    error: str | None = None


class WebhookSender(Protocol):
    def send(
        self, target: Target, body: bytes, headers: dict[str, str], timeout: float
    ) -> Response: ...


class RunReader(Protocol):
    def get_run(self, tenant_id: str, run_id: str) -> Run | None:
        """The run as stored (a consistent read), None if the tenant has no such run."""
        ...


class ModelReader(Protocol):
    def get_by_arn(self, model_package_arn: str) -> ModelVersion | None:
        """The model package as SageMaker describes it, None if there is none."""
        ...
