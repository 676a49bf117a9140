"""Data access for webhook signing secrets: one Secrets Manager secret per tenant.

Named ``wiring.Names.webhook_secret(tenant)`` (``trainyard/<prefix>/webhooks/<id>``;
IAM grants on that path). A PUT creates it or puts a new value (the old one
stops signing at once); DELETE removes it without a recovery window, so the same
tenant can set a webhook again right away. Secrets Manager refuses to create a
secret whose name is scheduled for deletion (someone deleted it with a window):
such a secret is restored and given the new value instead. A forced deletion is
finished asynchronously; a create in that window answers ResourceExists and a
put then finds nothing, so the create is tried once more.
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.exceptions import ClientError

from trainyard_core.store.dynamodb import error_code
from trainyard_core.webhooks.signing import new_secret
from trainyard_core.wiring import Names


def _scheduled_for_deletion(exc: ClientError) -> bool:
    message = str(exc.response.get("Error", {}).get("Message", "")).lower()
    return error_code(exc) == "InvalidRequestException" and (
        "deletion" in message or "deleted" in message
    )


class SecretsManagerWebhookSecrets:
    def __init__(self, names: Names, client: Any | None = None) -> None:
        self._names = names
        self._sm = client or boto3.client("secretsmanager")

    def rotate(self, tenant_id: str) -> str:
        name = self._names.webhook_secret(tenant_id)
        value = new_secret()
        for _ in range(2):
            try:
                self._sm.create_secret(
                    Name=name,
                    SecretString=value,
                    Description=f"Trainyard webhook signing secret of tenant {tenant_id}",
                )
                return value
            except ClientError as exc:
                if error_code(exc) == "ResourceExistsException":
                    pass
                elif _scheduled_for_deletion(exc):
                    self._sm.restore_secret(SecretId=name)
                else:
                    raise
            try:
                self._sm.put_secret_value(SecretId=name, SecretString=value)
                return value
            except ClientError as exc:
                if error_code(exc) != "ResourceNotFoundException":
                    raise
                # A forced deletion finished between the two calls: create it again.
        raise RuntimeError(f"could not create or update the secret {name}")

    def current(self, tenant_id: str) -> str | None:
        try:
            answer = self._sm.get_secret_value(SecretId=self._names.webhook_secret(tenant_id))
        except ClientError as exc:
            if error_code(exc) == "ResourceNotFoundException" or _scheduled_for_deletion(exc):
                return None
            raise
        value = answer.get("SecretString")
        return str(value) if value else None

    def delete(self, tenant_id: str) -> None:
        try:
            self._sm.delete_secret(
                SecretId=self._names.webhook_secret(tenant_id), ForceDeleteWithoutRecovery=True
            )
        except ClientError as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise
