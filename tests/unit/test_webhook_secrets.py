"""Webhook signing secrets on Secrets Manager (moto with the embedded stack's shims):
a name taken or pending deletion is a 503 with Retry-After, never a 500."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from trainyard_core import webhook_secrets
from trainyard_core.config import Settings
from trainyard_core.webhook_secrets import SecretsManagerWebhookSecrets, WebhookSecretBusy
from trainyard_core.wiring import Names
from trainyard_handlers import dependencies
from trainyard_handlers.api.app import app

from tests.unit.test_api_dependency_errors import _Context, _get_plans
from trainyard.local.shims import install_secretsmanager_deletion_checks


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> Iterator[SecretsManagerWebhookSecrets]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    install_secretsmanager_deletion_checks()
    with mock_aws():
        client = boto3.client("secretsmanager", region_name="us-east-1")
        yield SecretsManagerWebhookSecrets(Names.from_settings(Settings()), client)


def test_each_secret_has_a_new_name_under_the_tenants_path(
    secrets: SecretsManagerWebhookSecrets,
) -> None:
    names = Names.from_settings(Settings())
    first, second = secrets.create("acme"), secrets.create("acme")
    assert first.name != second.name
    for made in (first, second):
        assert made.name.startswith(names.webhook_secret_tenant_prefix("acme"))
        assert secrets.current(made.name) == made.value
    secrets.delete(first.name)
    assert secrets.current(first.name) is None
    secrets.delete(first.name)  # gone already: nothing to do


def test_a_name_pending_deletion_is_a_503_with_retry_after(
    secrets: SecretsManagerWebhookSecrets, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Practically never (the generation is random); forced here by reusing one.
    monkeypatch.setattr(webhook_secrets, "new_generation", lambda: "g1")
    made = secrets.create("acme")
    secrets.delete(made.name)
    with pytest.raises(WebhookSecretBusy) as busy:
        secrets.create("acme")
    assert busy.value.status == 503 and busy.value.code == "WebhookSecretBusy"

    def refused() -> Any:
        raise busy.value

    monkeypatch.setattr(dependencies, "settings", refused)
    answer = app.resolve(_get_plans(), _Context())
    assert answer["statusCode"] == 503
    retry_after = [str(webhook_secrets.SECRET_BUSY_RETRY_SECONDS)]
    assert answer["multiValueHeaders"]["Retry-After"] == retry_after
    assert json.loads(answer["body"])["error"]["code"] == "WebhookSecretBusy"
