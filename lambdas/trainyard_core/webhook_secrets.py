"""Data access for webhook signing secrets: one Secrets Manager secret per webhook
generation (every PUT makes a new one).

Named ``wiring.Names.webhook_secret(tenant, generation)``
(``trainyard/<prefix>/webhooks/<tenant>/<generation>``, a fresh random generation
each time; IAM grants on the ``trainyard/<prefix>/webhooks/`` path). The webhook item
names its secret, so the deliverer signs with exactly the secret the tenant was
shown. Why a new name every time: DeleteSecret with ForceDeleteWithoutRecovery
finishes asynchronously, and until it has, Secrets Manager refuses to create a
secret of that name (InvalidRequestException, "already scheduled for deletion"),
nor can it be restored. A name that was never used cannot be pending deletion.
"""

from __future__ import annotations

import uuid
from typing import Any

import boto3
from botocore.exceptions import ClientError

from trainyard_core.errors import DomainError
from trainyard_core.ports.webhooks import SigningSecret
from trainyard_core.store.dynamodb import error_code
from trainyard_core.webhooks.signing import new_secret
from trainyard_core.wiring import Names

# A client may try again this many seconds later (the Retry-After of the 503).
SECRET_BUSY_RETRY_SECONDS = 10


class WebhookSecretBusy(DomainError):
    """The new secret's name is taken or pending deletion (a random name: practically
    never). Retrying the PUT picks another name."""

    status = 503
    code = "WebhookSecretBusy"
    retry_after = SECRET_BUSY_RETRY_SECONDS


def _scheduled_for_deletion(exc: ClientError) -> bool:
    message = str(exc.response.get("Error", {}).get("Message", "")).lower()
    return error_code(exc) == "InvalidRequestException" and (
        "deletion" in message or "deleted" in message
    )


def new_generation() -> str:
    # 16 hex characters; never "-" + six characters at the end (Secrets Manager's own
    # ARN suffix, which partial-ARN lookups would confuse with it).
    return uuid.uuid4().hex[:16]


class SecretsManagerWebhookSecrets:
    def __init__(self, names: Names, client: Any | None = None) -> None:
        self._names = names
        self._sm = client or boto3.client("secretsmanager")

    def create(self, tenant_id: str) -> SigningSecret:
        name = self._names.webhook_secret(tenant_id, new_generation())
        value = new_secret()
        try:
            self._sm.create_secret(
                Name=name,
                SecretString=value,
                Description=f"Trainyard webhook signing secret of tenant {tenant_id}",
            )
        except ClientError as exc:
            if error_code(exc) == "ResourceExistsException" or _scheduled_for_deletion(exc):
                raise WebhookSecretBusy(
                    f"the signing secret {name} could not be created ({error_code(exc)}); "
                    f"retry in {SECRET_BUSY_RETRY_SECONDS} s"
                ) from exc
            raise
        return SigningSecret(name=name, value=value)

    def current(self, name: str) -> str | None:
        try:
            answer = self._sm.get_secret_value(SecretId=name)
        except ClientError as exc:
            if error_code(exc) == "ResourceNotFoundException" or _scheduled_for_deletion(exc):
                return None
            raise
        value = answer.get("SecretString")
        return str(value) if value else None

    def delete(self, name: str) -> None:
        # A forced deletion of a missing or already deleted secret succeeds in AWS;
        # moto may answer ResourceNotFound.
        try:
            self._sm.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
        except ClientError as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise
