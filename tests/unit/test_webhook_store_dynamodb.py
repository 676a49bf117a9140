"""The DynamoDB webhook store on moto, against the same table schema as CDK."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
from moto import mock_aws
from trainyard_core.config import Settings
from trainyard_core.errors import InvalidRequest
from trainyard_core.store.webhooks_dynamodb import DynamoWebhookStore
from trainyard_core.webhooks.records import Delivery, Webhook, delivery_key
from trainyard_core.wiring import Names

from trainyard.local.bootstrap import create_tables


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> Iterator[DynamoWebhookStore]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        names = Names.from_settings(Settings())
        create_tables(boto3.client("dynamodb", region_name="us-east-1"), names)
        yield DynamoWebhookStore(
            names.webhooks_table, legacy_secret_prefix=names.webhook_secret_prefix
        )


def _delivery(tenant: str, n: int) -> Delivery:
    stamp = f"2026-01-01T00:00:{n:02d}.000Z"
    return Delivery(
        tenant_id=tenant,
        delivery_id=f"id-{n}",
        key=delivery_key(stamp, f"id-{n}"),
        event="run.succeeded",
        status="pending",
        attempts=0,
        created_at=stamp,
        updated_at=stamp,
        expires_at=1_800_000_000,
        run_id="r" * 32,
    )


def test_deliveries_list_newest_first_in_pages_of_the_tenant_only(
    store: DynamoWebhookStore,
) -> None:
    for n in range(5):
        store.create_delivery(_delivery("acme", n))
    store.create_delivery(_delivery("other", 9))
    first, token = store.list_deliveries("acme", limit=3)
    assert [d.delivery_id for d in first] == ["id-4", "id-3", "id-2"]
    assert token
    rest, _ = store.list_deliveries("acme", limit=3, next_token=token)
    assert [d.delivery_id for d in rest] == ["id-1", "id-0"]
    with pytest.raises(InvalidRequest):
        store.list_deliveries("other", limit=3, next_token=token)  # another tenant's token


def test_a_delivery_is_created_once_and_the_webhook_item_is_separate(
    store: DynamoWebhookStore,
) -> None:
    made = store.create_delivery(_delivery("acme", 1))
    store.put_delivery(made.with_changes(status="succeeded", attempts=1, last_status_code=204))
    again = store.create_delivery(_delivery("acme", 1))
    assert (again.status, again.attempts, again.last_status_code) == ("succeeded", 1, 204)
    hook = Webhook("acme", "https://h.example/", ("run.failed",), "t0", "t1", "s/acme/g1")
    store.put_webhook(hook)
    assert store.get_webhook("acme") == hook
    assert [d.delivery_id for d in store.list_deliveries("acme", limit=10)[0]] == ["id-1"]
    store.delete_webhook("acme")
    assert store.get_webhook("acme") is None


def test_threads_delivering_side_by_side_share_no_boto3_resource(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """boto3 resources are not thread-safe (clients are); the deliverer uses the store
    from one thread per record of a batch."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")

    def no_resources(*_: Any, **__: Any) -> Any:
        raise AssertionError("a boto3 resource (not thread-safe) was made")

    with mock_aws():
        names = Names.from_settings(Settings())
        create_tables(boto3.client("dynamodb", region_name="us-east-1"), names)
        monkeypatch.setattr(boto3, "resource", no_resources)
        monkeypatch.setattr(boto3.session.Session, "resource", no_resources)
        store = DynamoWebhookStore(names.webhooks_table)
        start = threading.Barrier(4)

        def work(n: int) -> tuple[int, str, int]:
            start.wait()  # four threads at once, as a batch is delivered
            made = store.create_delivery(_delivery(f"t{n}", n))
            store.put_delivery(made.with_changes(status="succeeded", attempts=1))
            listed, _ = store.list_deliveries(f"t{n}", limit=5)
            return threading.get_ident(), listed[0].status, listed[0].attempts

        with ThreadPoolExecutor(max_workers=4) as pool:
            results = list(pool.map(work, range(4)))

    assert [(status, attempts) for _, status, attempts in results] == [("succeeded", 1)] * 4
    assert len({ident for ident, *_ in results}) == 4


def test_a_webhook_set_before_secret_generations_names_the_tenants_one_secret(
    store: DynamoWebhookStore,
) -> None:
    # Items written by the first webhook release carry no secretName; their secret is
    # trainyard/<prefix>/webhooks/<tenant>, which the deliverer must keep signing with.
    boto3.resource("dynamodb", region_name="us-east-1").Table(
        Names.from_settings(Settings()).webhooks_table
    ).put_item(
        Item={
            "tenantId": "acme",
            "sk": "webhook",
            "url": "https://h.example/",
            "events": ["run.failed"],
            "createdAt": "t0",
            "updatedAt": "t0",
        }
    )
    hook = store.get_webhook("acme")
    assert hook is not None
    assert hook.secret_name == Names.from_settings(Settings()).webhook_secret_prefix + "acme"
