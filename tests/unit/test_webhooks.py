"""Tenant webhooks without AWS: which URLs may be called (SSRF), the signature, and
the deliverer's decisions (retry with backoff, give up, de-duplicate)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from trainyard_core import events as catalogue
from trainyard_core.clock import VirtualClock
from trainyard_core.config import WebhookSettings
from trainyard_core.errors import InvalidRequest
from trainyard_core.events import Event
from trainyard_core.models import Run, RunStatus, Trigger
from trainyard_core.webhooks import signing
from trainyard_core.webhooks.delivery import WebhookDeliverer, retry_delay
from trainyard_core.webhooks.service import WebhookService
from trainyard_core.webhooks.urls import WebhookUrlRefused, check_url
from trainyard_core.webhooks.verify import EventVerifier

from trainyard.local.lambda_runtime import (
    InvalidEventSource,
    batch_item_failures,
    check_event_source,
)
from trainyard.testing.webhooks import (
    MemoryModels,
    MemoryRuns,
    MemoryWebhookSecrets,
    MemoryWebhookStore,
    ScriptedSender,
)

DNS = {
    "hooks.example.com": ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"],
    "rebind.example.com": ["93.184.216.34", "10.0.0.7"],
    "metadata.example.com": ["169.254.169.254"],
    "v6-internal.example.com": ["fd12:3456::1"],
}


def resolve(host: str, timeout: float | None = None) -> list[str]:
    if host not in DNS:
        raise OSError(f"[Errno -2] Name or service not known: {host}")
    return DNS[host]


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://hooks.example.com/", "WebhookUrlNotHttps"),
        ("https://hooks.example.com:8443/", "WebhookUrlPortNotAllowed"),
        ("https://a:b@hooks.example.com/", "WebhookUrlHasCredentials"),
        ("https://a@hooks.example.com/", "WebhookUrlHasCredentials"),
        ("https://rebind.example.com/", "WebhookAddressNotPublic"),
        ("https://metadata.example.com/", "WebhookAddressNotPublic"),
        ("https://v6-internal.example.com/", "WebhookAddressNotPublic"),
        ("https://nowhere.example.com/", "WebhookHostUnresolvable"),
        ("https://169.254.169.254/", "WebhookAddressNotPublic"),
        ("https://169.254.170.2/v2/credentials", "WebhookAddressNotPublic"),  # ECS
        ("https://100.100.100.200/", "WebhookAddressNotPublic"),  # shared address space
        ("https://0.0.0.0/", "WebhookAddressNotPublic"),
        ("https://224.0.0.1/", "WebhookAddressNotPublic"),
        ("https://240.0.0.1/", "WebhookAddressNotPublic"),
        ("https://192.0.2.1/", "WebhookAddressNotPublic"),  # documentation
        ("https://[::1]/", "WebhookAddressNotPublic"),
        ("https://[fe80::1]/", "WebhookAddressNotPublic"),
        ("https://[::ffff:169.254.169.254]/", "WebhookAddressNotPublic"),
        ("https://[64:ff9b::a00:1]/", "WebhookAddressNotPublic"),  # NAT64 of 10.0.0.1
        ("https://[2002:a00:1::]/", "WebhookAddressNotPublic"),  # 6to4 of 10.0.0.1
        ("https://hooks.example.com/#frag", "InvalidWebhookUrl"),
        ("https://hooks.example.com/a b", "InvalidWebhookUrl"),
        ("https://hooks.example.com/" + "a" * 2100, "InvalidWebhookUrl"),
        ("http://127.0.0.1:9000/", "WebhookUrlNotHttps"),  # loopback only when allowed
    ],
)
def test_urls_that_could_reach_private_or_metadata_addresses_are_refused(
    url: str, code: str
) -> None:
    with pytest.raises(WebhookUrlRefused) as refused:
        check_url(url, resolve)
    assert refused.value.code == code


def test_a_public_https_url_is_called_on_exactly_the_addresses_checked() -> None:
    target = check_url("https://hooks.example.com/in?x=1", resolve)
    assert (target.scheme, target.host, target.port, target.path) == (
        "https",
        "hooks.example.com",
        443,
        "/in?x=1",
    )
    assert target.addresses == tuple(DNS["hooks.example.com"])


def test_plain_http_is_accepted_only_for_127_0_0_1_with_a_port_and_only_when_allowed() -> None:
    assert check_url("http://127.0.0.1:9000/h", resolve, allow_loopback_http=True).addresses == (
        "127.0.0.1",
    )
    for url in ("http://localhost:9000/", "http://127.0.0.1/", "http://10.0.0.1:9000/"):
        with pytest.raises(WebhookUrlRefused):
            check_url(url, resolve, allow_loopback_http=True)


def test_the_signature_is_an_hmac_of_the_timestamp_and_the_exact_body() -> None:
    body = b'{"event":"run.succeeded"}'
    header = signing.signature("whsec_k", 1_700_000_000, body)
    assert header.startswith("t=1700000000,v1=")
    assert signing.verify("whsec_k", header, body, now=1_700_000_100)
    assert not signing.verify("whsec_k", header, body + b" ", now=1_700_000_100)
    assert not signing.verify("whsec_other", header, body, now=1_700_000_100)
    assert not signing.verify("whsec_k", header, body, now=1_700_000_000 + 3600)  # replay
    assert not signing.verify("whsec_k", "garbage", body, now=1_700_000_000)


RUN_ID = "r" * 32
PACKAGES = "arn:aws:sagemaker:us-east-1:123456789012:model-package/"


def ended_run(tenant: str = "acme", status: RunStatus = RunStatus.SUCCEEDED) -> Run:
    return Run(
        run_id=RUN_ID,
        tenant_id=tenant,
        plan="basic",
        status=status,
        trigger=Trigger(type="s3"),
        queued_at="2026-01-01T00:00:00.000Z",
        started_at="2026-01-01T00:00:01.000Z",
        ended_at="2026-01-01T00:10:00.000Z",
        execution_arn="arn:aws:sagemaker:us-east-1:123456789012:pipeline/p/execution/x",
        metrics={"auc": 0.91},
        failure_reason="AUC too low" if status is RunStatus.FAILED else None,
    )


def verifier(runs: MemoryRuns | None = None, models: MemoryModels | None = None) -> EventVerifier:
    return EventVerifier(
        runs=runs or MemoryRuns(),
        models=models or MemoryModels(),
        model_group=lambda tenant: f"trainyard-{tenant}",
        model_package_arn_prefix=PACKAGES,
    )


def _world(
    settings: WebhookSettings | None = None,
    script: list[int | None] | None = None,
    runs: MemoryRuns | None = None,
    models: MemoryModels | None = None,
) -> Any:
    if runs is None:
        runs = MemoryRuns()
        runs.add(ended_run())
    store, secrets = MemoryWebhookStore(), MemoryWebhookSecrets()
    clock = VirtualClock()
    settings = settings or WebhookSettings(retry_base_seconds=30, max_attempts=3)
    sender = ScriptedSender(script=list(script or []))
    service = WebhookService(
        store=store, secrets=secrets, resolve=resolve, settings=settings, clock=clock
    )
    deliverer = WebhookDeliverer(
        store=store,
        secrets=secrets,
        resolve=resolve,
        sender=sender,
        verifier=verifier(runs, models),
        settings=settings,
        clock=clock,
    )
    return service, deliverer, sender, store


def _message(kind: catalogue.EventType, tenant: str = "acme", event_id: str = "e-1") -> str:
    event = Event(kind, tenant, "2026-01-01T00:00:00.000Z", {"runId": RUN_ID})
    return json.dumps(
        {
            "version": "0",
            "id": event_id,
            "source": "trainyard",
            "detail-type": kind.detail_type,
            "detail": event.envelope(),
        }
    )


def test_a_failing_receiver_is_retried_with_growing_delays_then_given_up() -> None:
    service, deliverer, sender, store = _world(script=[500, None, 502])
    service.put("acme", "https://hooks.example.com/in", None)
    message = _message(catalogue.RUN_SUCCEEDED)
    outcomes = [deliverer.deliver(message, receive) for receive in (1, 2, 3)]
    assert [(o.done, o.retry_after) for o in outcomes] == [(False, 30), (False, 60), (False, 0)]
    (delivery,) = store.deliveries.values()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("failed", 3, 502)
    assert len(sender.sent) == 3
    assert {s.headers["Trainyard-Delivery"] for s in sender.sent} == {"e-1"}


def test_a_succeeded_delivery_is_not_sent_again_when_the_event_comes_twice() -> None:
    service, deliverer, sender, store = _world()
    service.put("acme", "https://hooks.example.com/in", ["run.succeeded"])
    assert deliverer.deliver(_message(catalogue.RUN_SUCCEEDED), 1).done
    assert deliverer.deliver(_message(catalogue.RUN_SUCCEEDED), 1).done
    assert len(sender.sent) == 1
    assert deliverer.deliver(_message(catalogue.RUN_QUEUED, event_id="e-2"), 1).done
    assert deliverer.deliver(_message(catalogue.RUN_SUCCEEDED, tenant="other"), 1).done
    assert len(sender.sent) == 1 and len(store.deliveries) == 1


def test_a_url_that_now_resolves_to_a_private_address_is_not_called() -> None:
    service, deliverer, sender, store = _world()
    service.put("acme", "https://hooks.example.com/in", None)
    DNS["hooks.example.com"], saved = ["10.0.0.9"], DNS["hooks.example.com"]
    try:
        outcome = deliverer.deliver(_message(catalogue.RUN_SUCCEEDED), 1)
    finally:
        DNS["hooks.example.com"] = saved
    assert not outcome.done and sender.sent == []
    (delivery,) = store.deliveries.values()
    assert delivery.last_error and "WebhookAddressNotPublic" in delivery.last_error


def test_messages_that_are_not_trainyard_events_are_dropped_not_retried() -> None:
    _, deliverer, sender, _ = _world()
    for body in ("{not json", json.dumps({"source": "aws.s3"}), json.dumps([1])):
        assert deliverer.deliver(body, 1).done
    assert sender.sent == []


def test_unknown_or_empty_event_names_are_refused_and_every_put_rotates_the_secret() -> None:
    service, *_ = _world()
    with pytest.raises(InvalidRequest) as unknown:
        service.put("acme", "https://hooks.example.com/", ["run.finished"])
    assert unknown.value.code == "UnknownWebhookEvent"
    with pytest.raises(InvalidRequest):
        service.put("acme", "https://hooks.example.com/", [])
    first, one = service.put("acme", "https://hooks.example.com/", ["run.failed", "run.queued"])
    assert first.events == ("run.queued", "run.failed")
    again, two = service.put("acme", "https://hooks.example.com/", None)
    assert one != two and again.created_at == first.created_at
    assert again.events == catalogue.NAMES


def test_retry_delays_double_up_to_the_cap() -> None:
    settings = WebhookSettings(retry_base_seconds=30, retry_max_seconds=100)
    assert [retry_delay(settings, n) for n in (1, 2, 3, 4)] == [30, 60, 100, 100]


def test_the_local_event_source_fails_the_whole_batch_on_an_invalid_item_identifier() -> None:
    messages = [{"MessageId": "a"}, {"MessageId": "b"}]
    assert batch_item_failures({"batchItemFailures": [{"itemIdentifier": "a"}]}, messages) == {"a"}
    assert batch_item_failures({"batchItemFailures": []}, messages) == set()
    assert batch_item_failures(None, messages) == set()
    for bad in ([{"itemIdentifier": "zzz"}], [{"itemIdentifier": ""}], [{"id": "a"}], "a"):
        assert batch_item_failures({"batchItemFailures": bad}, messages) == {"a", "b"}


def test_the_local_event_source_refuses_a_queue_whose_visibility_is_below_the_timeout() -> None:
    class Sqs:
        def __init__(self, visibility: int) -> None:
            self.visibility = visibility

        def get_queue_attributes(self, **_: Any) -> dict[str, Any]:
            return {"Attributes": {"VisibilityTimeout": str(self.visibility)}}

    check_event_source(Sqs(60), "q", 60)
    with pytest.raises(InvalidEventSource, match="20 seconds is less than Function timeout: 60"):
        check_event_source(Sqs(20), "q", 60)


def test_the_sender_calls_only_the_checked_address_and_never_follows_a_redirect() -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from trainyard_core.webhook_http import PinnedSender
    from trainyard_core.webhooks.urls import Target

    seen: list[tuple[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            seen.append((self.path, self.headers["Host"]))
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{self.server.server_address[1]}/x")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        # The name is never resolved: the request goes to the address checked.
        target = Target("http", "hooks.example.com", port, "/in?a=1", ("127.0.0.1",))
        answer = PinnedSender().send(target, b"{}", {"Content-Type": "application/json"}, 2)
    finally:
        server.shutdown()
        server.server_close()
    assert answer.status == 302
    assert seen == [("/in?a=1", f"hooks.example.com:{port}")]


def _signed_with(sent: Any, secret: str) -> bool:
    header = sent.headers[signing.HEADER]
    stamp = int(dict(p.split("=", 1) for p in header.split(","))["t"])
    return signing.verify(secret, header, sent.body, now=stamp)


def test_a_put_whose_write_fails_leaves_the_receiver_verifying_with_its_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service, deliverer, sender, store = _world()
    _, old = service.put("acme", "https://hooks.example.com/in", None)
    secrets = service.secrets

    def unavailable(webhook: Any) -> None:
        raise RuntimeError("DynamoDB unavailable")

    monkeypatch.setattr(store, "put_webhook", unavailable)
    with pytest.raises(RuntimeError):
        service.put("acme", "https://hooks.example.com/other", None)
    monkeypatch.undo()
    # The old webhook and its secret are untouched; the unused new secret is gone.
    assert list(secrets.values.values()) == [old]
    assert deliverer.deliver(_message(catalogue.RUN_SUCCEEDED), 1).done
    (sent,) = sender.sent
    assert _signed_with(sent, old)


def test_a_put_signs_with_the_new_secret_even_if_the_old_one_cannot_be_removed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service, deliverer, sender, _ = _world()
    _, old = service.put("acme", "https://hooks.example.com/in", None)

    def refused(name: str) -> None:
        raise RuntimeError("AccessDenied")

    monkeypatch.setattr(service.secrets, "delete", refused)
    webhook, new = service.put("acme", "https://hooks.example.com/in", None)
    assert new != old and service.secrets.current(webhook.secret_name) == new
    assert deliverer.deliver(_message(catalogue.RUN_SUCCEEDED), 1).done
    assert _signed_with(sender.sent[0], new) and not _signed_with(sender.sent[0], old)
