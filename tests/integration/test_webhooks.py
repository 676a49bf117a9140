"""Tenant webhooks on the embedded stack: Trainyard's events on the default bus ->
the webhook queue -> the deliverer -> a receiver on 127.0.0.1, signed; retried with
backoff; dead-lettered and marked failed after the last attempt; a trickling
receiver cut off at the attempt's deadline; SSRF refused; forged events refused.

Events are published the way the scheduler and the API publish them
(``EventBridgePublisher`` on the default bus), about runs stored in the runs table
(the deliverer verifies every event against the records); the last tests drive a
real run to its end and wait for its deliveries, and forge events on the bus.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from boto3.dynamodb.types import TypeSerializer
from botocore.exceptions import ClientError
from trainyard_core import events as catalogue
from trainyard_core.event_bus import EventBridgePublisher
from trainyard_core.events import Event
from trainyard_core.models import Run, RunStatus, Trigger, iso_ms, now_utc
from trainyard_core.store.run_items import run_to_item
from trainyard_core.webhooks import signing

from trainyard.data import tenant_csv
from trainyard.local.stack import EmbeddedStack

from .conftest import TEST_SETTINGS, Api, bus_probe, wait_for

pytestmark = pytest.mark.integration

ATTEMPTS = TEST_SETTINGS["webhooks"]["maxAttempts"]
DEADLINE = TEST_SETTINGS["webhooks"]["timeoutSeconds"]
TRICKLE = "trickle"  # a receiver's answer sent a byte every 0.1 s (a slow-loris)


@dataclass
class Received:
    at: float
    headers: dict[str, str]
    body: bytes
    cut_at: float | None = None  # when a trickled answer found the connection closed


@dataclass
class Receiver:
    """An HTTP receiver on 127.0.0.1 answering with ``script`` in turn (then 200);
    an answer of ``None`` never comes (the request hangs past the timeout), and
    ``TRICKLE`` is a 200 sent a byte at a time, for up to 10 s."""

    script: list[int | str | None] = field(default_factory=list)
    requests: list[Received] = field(default_factory=list)
    url: str = ""

    def answer(self) -> int | str | None:
        return self.script.pop(0) if self.script else 200


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            got = Received(time.monotonic(), dict(self.headers.items()), body)
            state.requests.append(got)
            status = state.answer()
            if status is None:
                release.wait(5)  # longer than the deliverer waits
                return
            if status == TRICKLE:
                answer = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 100
                try:
                    for byte in answer:
                        if release.wait(0.1):
                            return
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                except OSError:  # the deliverer gave up and closed the connection
                    got.cut_at = time.monotonic()
                self.close_connection = True
                return
            self.send_response(int(status))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/trainyard"
    try:
        yield state
    finally:
        release.set()
        server.shutdown()
        server.server_close()


def _tenant(onboard: Any, name: str) -> str:
    tenant_id = f"{name}-{uuid.uuid4().hex[:6]}"
    onboard(tenant_id, "basic")
    return tenant_id


def _put(api: Api, tenant_id: str, body: dict[str, Any]) -> Any:
    return api.call("PUT", f"/tenants/{tenant_id}/webhook", json=body)


def _stored_run(stack: EmbeddedStack, tenant_id: str, status: RunStatus) -> Run:
    """A run in the runs table, ended (nothing schedules it), as the scheduler stores one."""
    now = iso_ms(now_utc()) or ""
    run = Run(
        run_id=uuid.uuid4().hex,
        tenant_id=tenant_id,
        plan="basic",
        status=status,
        trigger=Trigger(type="manual"),
        queued_at=now,
        started_at=now,
        ended_at=now,
        failure_reason="the model was not registered" if status is RunStatus.FAILED else None,
    )
    serialize = TypeSerializer().serialize
    item = {k: serialize(v) for k, v in run_to_item(run).items()}
    stack.client("dynamodb").put_item(TableName=stack.names.runs_table, Item=item)
    return run


_ENDED = {catalogue.RUN_FAILED: RunStatus.FAILED}


def _publish(stack: EmbeddedStack, tenant_id: str, kind: catalogue.EventType) -> Event:
    """``kind`` about a run of the tenant's that it is true of, as the scheduler emits it."""
    run = _stored_run(stack, tenant_id, _ENDED.get(kind, RunStatus.SUCCEEDED))
    event = catalogue.run_event(
        kind, run, iso_ms(now_utc()) or "", failureReason=run.failure_reason
    )
    EventBridgePublisher(stack.client("events")).publish([event])
    return event


def _deliveries(api: Api, tenant_id: str) -> list[dict[str, Any]]:
    resp = api.get(f"/tenants/{tenant_id}/webhook/deliveries")
    assert resp.status_code == 200, resp.text
    return list(resp.json()["deliveries"])


def _settled(api: Api, tenant_id: str, count: int = 1) -> list[dict[str, Any]] | None:
    found = _deliveries(api, tenant_id)
    done = [d for d in found if d["status"] != "pending"]
    return found if len(done) >= count else None


def _expected_signature(secret: str, header: str, body: bytes) -> bool:
    """A receiver's check, written independently of trainyard's own code."""
    parts = dict(p.split("=", 1) for p in header.split(","))
    mac = hmac.new(secret.encode(), parts["t"].encode() + b"." + body, hashlib.sha256)
    return hmac.compare_digest(mac.hexdigest(), parts["v1"])


def test_a_receiver_gets_a_delivery_signed_with_the_secret_the_put_returned(
    stack: EmbeddedStack, api: Api, onboard: Any, receiver: Receiver
) -> None:
    tenant_id = _tenant(onboard, "hook-signed")
    resp = _put(api, tenant_id, {"url": receiver.url, "events": ["run.succeeded"]})
    assert resp.status_code == 200, resp.text
    created = resp.json()
    secret = created["secret"]
    assert secret.startswith("whsec_") and created["events"] == ["run.succeeded"]
    shown = api.get(f"/tenants/{tenant_id}/webhook")
    assert shown.status_code == 200 and "secret" not in shown.json()
    assert shown.json()["url"] == receiver.url

    _publish(stack, tenant_id, catalogue.RUN_QUEUED)  # not subscribed: never sent
    event = _publish(stack, tenant_id, catalogue.RUN_SUCCEEDED)
    wait_for(lambda: receiver.requests, timeout=30, what="a delivery")
    got = receiver.requests[0]
    assert _expected_signature(secret, got.headers["Trainyard-Signature"], got.body)
    assert signing.verify(secret, got.headers["Trainyard-Signature"], got.body, time.time())
    assert not signing.verify("whsec_other", got.headers["Trainyard-Signature"], got.body, 0)
    assert got.headers["Trainyard-Event"] == "run.succeeded"
    assert json.loads(got.body) == event.envelope()

    deliveries = wait_for(lambda: _settled(api, tenant_id), timeout=15, what="a settled delivery")
    assert [(d["event"], d["status"], d["attempts"]) for d in deliveries] == [
        ("run.succeeded", "succeeded", 1)
    ]
    assert deliveries[0]["deliveryId"] == got.headers["Trainyard-Delivery"]
    assert deliveries[0]["runId"] == event.detail["runId"]
    assert deliveries[0]["lastStatusCode"] == 200
    time.sleep(2)  # the unsubscribed event had its chance
    assert len(receiver.requests) == 1
    listing = api.get(f"/tenants/{tenant_id}/webhook/deliveries").text
    assert secret not in listing and secret not in shown.text


def test_a_receiver_that_fails_twice_gets_the_event_on_the_third_try_with_backoff(
    stack: EmbeddedStack, api: Api, onboard: Any, receiver: Receiver
) -> None:
    tenant_id = _tenant(onboard, "hook-retry")
    receiver.script = [500, 503]
    assert _put(api, tenant_id, {"url": receiver.url}).status_code == 200
    _publish(stack, tenant_id, catalogue.RUN_FAILED)
    deliveries = wait_for(lambda: _settled(api, tenant_id), timeout=45, what="a settled delivery")
    assert [(d["status"], d["attempts"], d["lastStatusCode"]) for d in deliveries] == [
        ("succeeded", 3, 200)
    ]
    assert len(receiver.requests) == 3
    ids = {r.headers["Trainyard-Delivery"] for r in receiver.requests}
    assert ids == {deliveries[0]["deliveryId"]}  # one delivery, three attempts
    first, second, third = (r.at for r in receiver.requests)
    # retryBaseSeconds 1: hidden 1 s after the first failure, 2 s after the second.
    assert second - first >= 0.9 and third - second >= 1.9
    # ...and not the queue's visibility timeout (30 s): the delays were set per message.
    assert third - first < 15


def test_a_receiver_that_never_answers_ends_in_the_dead_letter_queue_marked_failed(
    stack: EmbeddedStack, api: Api, onboard: Any, receiver: Receiver
) -> None:
    tenant_id = _tenant(onboard, "hook-dead")
    receiver.script = [None] * ATTEMPTS
    assert _put(api, tenant_id, {"url": receiver.url}).status_code == 200
    event = _publish(stack, tenant_id, catalogue.RUN_FAILED)
    deliveries = wait_for(lambda: _settled(api, tenant_id), timeout=90, what="a failed delivery")
    (delivery,) = deliveries
    assert delivery["status"] == "failed" and delivery["attempts"] == ATTEMPTS
    assert "timed out" in delivery["lastError"].lower() or "timeout" in delivery["lastError"]
    assert "lastStatusCode" not in delivery
    assert len(receiver.requests) == ATTEMPTS

    sqs = stack.client("sqs")
    dlq = stack.platform.queue_urls[stack.names.webhook_dlq]  # type: ignore[union-attr]
    seen: list[dict[str, Any]] = []

    def dead_lettered() -> dict[str, Any] | None:
        got = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for message in got.get("Messages", []):
            seen.append(json.loads(message["Body"]))
        return next((m for m in seen if m["id"] == delivery["deliveryId"]), None)

    message = wait_for(dead_lettered, timeout=30, what="the event in the webhook DLQ")
    assert message["detail"] == event.envelope()


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://hooks.example.com/trainyard", "WebhookUrlNotHttps"),
        ("ftp://hooks.example.com/", "WebhookUrlNotHttps"),
        ("http://127.0.0.2:8080/", "WebhookUrlNotHttps"),  # only 127.0.0.1, only locally
        ("https://10.1.2.3/hook", "WebhookAddressNotPublic"),
        ("https://192.168.0.10/hook", "WebhookAddressNotPublic"),
        ("https://127.0.0.1/hook", "WebhookAddressNotPublic"),
        ("https://localhost/hook", "WebhookAddressNotPublic"),
        ("https://169.254.169.254/latest/meta-data/", "WebhookAddressNotPublic"),
        ("https://[fd00:ec2::254]/latest/meta-data/", "WebhookAddressNotPublic"),
        ("https://[::ffff:10.0.0.1]/", "WebhookAddressNotPublic"),
        ("https://2130706433/", "WebhookAddressNotPublic"),  # 127.0.0.1 as a number
        ("https://user:pw@93.184.216.34/", "WebhookUrlHasCredentials"),
        ("https://93.184.216.34:8443/", "WebhookUrlPortNotAllowed"),
        ("not a url", "InvalidWebhookUrl"),
        ("hooks.example.com/trainyard", "WebhookUrlNotHttps"),
        ("https:///nohost", "InvalidWebhookUrl"),
    ],
)
def test_a_url_that_is_not_https_to_a_public_address_is_refused_with_a_code(
    api: Api, onboard: Any, url: str, code: str
) -> None:
    onboard("hook-refused", "basic")
    resp = _put(api, "hook-refused", {"url": url})
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["code"] == code
    assert api.get("/tenants/hook-refused/webhook").status_code == 404


def test_bad_webhook_requests_are_4xx_with_a_code(api: Api, onboard: Any) -> None:
    onboard("hook-bad", "basic")
    cases = [
        ("PUT", "/tenants/hook-bad/webhook", {"url": "https://1.1.1.1/", "events": ["run.x"]}),
        ("PUT", "/tenants/hook-bad/webhook", {"url": "https://1.1.1.1/", "events": []}),
        ("PUT", "/tenants/hook-bad/webhook", {"url": 5}),
        ("PUT", "/tenants/hook-bad/webhook", {"url": "https://1.1.1.1/", "secret": "mine"}),
        ("PUT", "/tenants/no-such-tenant/webhook", {"url": "https://1.1.1.1/"}),
        ("GET", "/tenants/hook-bad/webhook", None),
        ("DELETE", "/tenants/hook-bad/webhook", None),
        ("GET", "/tenants/no-such-tenant/webhook/deliveries", None),
        ("GET", "/tenants/hook-bad/webhook/deliveries?limit=0", None),
        ("GET", "/tenants/hook-bad/webhook/deliveries?nextToken=forged", None),
    ]
    codes = []
    for method, path, body in cases:
        resp = api.call(method, path, json=body)
        assert 400 <= resp.status_code < 500, (method, path, resp.text)
        codes.append((resp.status_code, resp.json()["error"]["code"]))
    assert codes == [
        (400, "UnknownWebhookEvent"),
        (400, "InvalidWebhookEvents"),
        (400, "InvalidBody"),
        (400, "InvalidBody"),
        (404, "TenantNotFound"),
        (404, "WebhookNotFound"),
        (404, "WebhookNotFound"),
        (404, "TenantNotFound"),
        (400, "InvalidLimit"),
        (400, "InvalidNextToken"),
    ]


def _secret_name(stack: EmbeddedStack, tenant_id: str) -> str:
    """The secret the tenant's webhook item names (what the deliverer signs with)."""
    item = stack.client("dynamodb").get_item(
        TableName=stack.names.webhooks_table,
        Key={"tenantId": {"S": tenant_id}, "sk": {"S": "webhook"}},
    )["Item"]
    return str(item["secretName"]["S"])


def _gone(sm: Any, name: str) -> bool:
    try:
        sm.describe_secret(SecretId=name)
    except ClientError as exc:
        return exc.response["Error"]["Code"] == "ResourceNotFoundException"
    return False


def test_every_put_makes_a_new_secret_and_the_old_one_stops_existing(
    stack: EmbeddedStack, api: Api, onboard: Any, receiver: Receiver
) -> None:
    tenant_id = _tenant(onboard, "hook-rotate")
    sm = stack.client("secretsmanager")
    first = _put(api, tenant_id, {"url": receiver.url}).json()["secret"]
    first_name = _secret_name(stack, tenant_id)
    assert first_name.startswith(stack.names.webhook_secret_tenant_prefix(tenant_id))
    assert sm.get_secret_value(SecretId=first_name)["SecretString"] == first
    rotated = _put(api, tenant_id, {"url": receiver.url}).json()["secret"]
    rotated_name = _secret_name(stack, tenant_id)
    assert rotated != first and rotated_name != first_name
    assert sm.get_secret_value(SecretId=rotated_name)["SecretString"] == rotated
    assert _gone(sm, first_name)

    # Someone scheduled the current secret for deletion: a PUT still answers with a
    # working secret (a new one; the scheduled one is removed).
    sm.delete_secret(SecretId=rotated_name, RecoveryWindowInDays=7)
    again = _put(api, tenant_id, {"url": receiver.url})
    assert again.status_code == 200, again.text
    again_name = _secret_name(stack, tenant_id)
    assert sm.get_secret_value(SecretId=again_name)["SecretString"] == again.json()["secret"]
    assert _gone(sm, rotated_name)
    time.sleep(1)
    assert receiver.requests == []


def test_a_put_right_after_a_delete_answers_a_secret_that_signs_deliveries(
    stack: EmbeddedStack, api: Api, onboard: Any, receiver: Receiver
) -> None:
    # Secrets Manager finishes a forced deletion asynchronously (the embedded stack
    # keeps the name taken for a while, as AWS does): the PUT must not need that name.
    tenant_id = _tenant(onboard, "hook-delete")
    sm = stack.client("secretsmanager")
    first = _put(api, tenant_id, {"url": receiver.url, "events": ["run.succeeded"]})
    assert first.status_code == 200, first.text
    first_name = _secret_name(stack, tenant_id)

    removed = api.call("DELETE", f"/tenants/{tenant_id}/webhook")
    assert removed.status_code == 200 and "secret" not in removed.json()
    assert api.get(f"/tenants/{tenant_id}/webhook").status_code == 404
    assert _gone(sm, first_name)

    again = _put(api, tenant_id, {"url": receiver.url, "events": ["run.succeeded"]})
    assert again.status_code == 200, again.text
    secret = again.json()["secret"]
    assert secret != first.json()["secret"]
    _publish(stack, tenant_id, catalogue.RUN_SUCCEEDED)
    wait_for(lambda: receiver.requests, timeout=30, what="a delivery")
    (got,) = receiver.requests
    assert _expected_signature(secret, got.headers["Trainyard-Signature"], got.body)
    assert not _expected_signature(
        first.json()["secret"], got.headers["Trainyard-Signature"], got.body
    )


def test_offboarding_a_tenant_removes_its_webhook_and_secret(
    stack: EmbeddedStack, api: Api, onboard: Any, receiver: Receiver
) -> None:
    tenant_id = _tenant(onboard, "hook-offboard")
    assert _put(api, tenant_id, {"url": receiver.url}).status_code == 200
    name = _secret_name(stack, tenant_id)
    assert api.call("DELETE", f"/tenants/{tenant_id}").status_code == 202
    assert _gone(stack.client("secretsmanager"), name)


def test_an_event_the_webhook_queue_refuses_lands_in_the_rules_dead_letter_queue(
    stack: EmbeddedStack, api: Api, onboard: Any, receiver: Receiver
) -> None:
    # The queue's policy no longer lets the rule send (a drift, a bad edit): EventBridge
    # puts the event in the target's DLQ (whose policy allows the rule) instead of
    # dropping it, with its reason.
    tenant_id = _tenant(onboard, "hook-refused-queue")
    assert _put(api, tenant_id, {"url": receiver.url}).status_code == 200
    sqs = stack.client("sqs")
    urls = stack.platform.queue_urls  # type: ignore[union-attr]
    queue, dlq = urls[stack.names.webhook_queue], urls[stack.names.webhook_rule_dlq]
    saved = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["Policy"])["Attributes"]
    policy = json.loads(saved["Policy"])
    refusing = {**policy, "Statement": [s for s in policy["Statement"] if s["Effect"] == "Deny"]}
    sqs.set_queue_attributes(QueueUrl=queue, Attributes={"Policy": json.dumps(refusing)})
    try:
        event = _publish(stack, tenant_id, catalogue.RUN_STARTED)
        seen: list[dict[str, Any]] = []

        def dead_lettered() -> dict[str, Any] | None:
            got = sqs.receive_message(
                QueueUrl=dlq,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=1,
                MessageAttributeNames=["All"],
            )
            seen.extend(got.get("Messages", []))
            return next(
                (m for m in seen if json.loads(m["Body"])["detail"] == event.envelope()), None
            )

        message = wait_for(dead_lettered, timeout=20, what="the event in the rule's DLQ")
    finally:
        sqs.set_queue_attributes(QueueUrl=queue, Attributes={"Policy": saved["Policy"]})
    attributes = {k: v["StringValue"] for k, v in message["MessageAttributes"].items()}
    assert attributes["RULE_ARN"].endswith(f":rule/{stack.names.webhook_rule}")
    assert attributes["TARGET_ARN"].endswith(f":{stack.names.webhook_queue}")
    assert receiver.requests == []  # never queued, never delivered


def test_a_receiver_trickling_its_answer_is_cut_off_at_each_attempts_deadline_and_retried(
    stack: EmbeddedStack, api: Api, onboard: Any, receiver: Receiver
) -> None:
    tenant_id = _tenant(onboard, "hook-trickle")
    receiver.script = [TRICKLE] * ATTEMPTS
    assert _put(api, tenant_id, {"url": receiver.url}).status_code == 200
    _publish(stack, tenant_id, catalogue.RUN_SUCCEEDED)
    seen: list[dict[str, Any]] = []

    def settled() -> list[dict[str, Any]] | None:
        found = _deliveries(api, tenant_id)
        seen.extend(found)
        return found if found and found[0]["status"] != "pending" else None

    (delivery,) = wait_for(settled, timeout=90, interval=0.2, what="a failed delivery")
    assert delivery["status"] == "failed" and delivery["attempts"] == ATTEMPTS
    assert "timed out" in delivery["lastError"]
    # Each attempt was retried (recorded pending, timed out, in between)...
    assert any(d["status"] == "pending" and "timed out" in d.get("lastError", "") for d in seen)
    assert len(receiver.requests) == ATTEMPTS
    for request in receiver.requests:
        # ...and ended at its deadline (a 100-byte answer at 10 bytes a second would
        # take 10 s): the deliverer closed the connection, it did not wait per read.
        wait_for(lambda r=request: r.cut_at, timeout=5, what="the connection closed")
        assert request.cut_at is not None
        assert request.cut_at - request.at < DEADLINE + 1.0, request.cut_at - request.at


def _probe_queue(stack: EmbeddedStack, name: str) -> str:
    """A queue fed by a rule of our own on every run.succeeded event on the default bus."""
    return bus_probe(
        stack,
        name,
        {"source": [catalogue.SOURCE], "detail-type": [catalogue.RUN_SUCCEEDED.detail_type]},
    )


def _run_to_its_end(stack: EmbeddedStack, api: Api, tenant: dict[str, Any]) -> dict[str, Any]:
    """A real run: an upload, the pipeline, its end (as GET /runs shows it)."""
    tenant_id = tenant["tenantId"]
    stack.client("s3").put_object(
        Bucket=tenant["dataBucket"],
        Key=f"{tenant['dataPrefix']}part-1.csv",
        Body=tenant_csv(tenant_id),
    )
    run = wait_for(
        lambda: next(
            (
                r
                for r in api.get(f"/tenants/{tenant_id}/runs").json()["runs"]
                if r["status"] in ("SUCCEEDED", "FAILED", "STOPPED")
            ),
            None,
        ),
        timeout=240,
        interval=1,
        what="the run's end",
    )
    assert run["status"] == "SUCCEEDED", run
    return dict(run)


def _delivered(receiver: Receiver, event: str, **fields: Any) -> Received | None:
    return next(
        (
            r
            for r in receiver.requests
            if r.headers.get("Trainyard-Event") == event
            and all(json.loads(r.body).get(k) == v for k, v in fields.items())
        ),
        None,
    )


def test_the_end_of_a_run_reaches_the_tenants_webhook_signed(
    stack: EmbeddedStack, api: Api, onboard: Any, receiver: Receiver
) -> None:
    tenant_id = f"hook-run-{uuid.uuid4().hex[:6]}"
    tenant = onboard(tenant_id, "basic")
    events = ["run.succeeded", "run.failed", "model.registered"]
    resp = _put(api, tenant_id, {"url": receiver.url, "events": events})
    secret = resp.json()["secret"]
    probe = _probe_queue(stack, f"probe-{tenant_id}")
    run = _run_to_its_end(stack, api, tenant)

    sqs = stack.client("sqs")
    emitted: list[dict[str, Any]] = []

    def on_the_bus() -> dict[str, Any] | None:
        got = sqs.receive_message(QueueUrl=probe, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        emitted.extend(json.loads(m["Body"]) for m in got.get("Messages", []))
        return next((e for e in emitted if e["detail"].get("runId") == run["runId"]), None)

    wait_for(on_the_bus, timeout=20, what="run.succeeded on the default bus")
    got = wait_for(
        lambda: _delivered(receiver, "run.succeeded", runId=run["runId"]),
        timeout=30,
        what="the run.succeeded delivery",
    )
    assert _expected_signature(secret, got.headers["Trainyard-Signature"], got.body)
    body = json.loads(got.body)
    assert body["tenantId"] == tenant_id and body["event"] == "run.succeeded"
    assert (body["status"], body["endedAt"]) == ("SUCCEEDED", run["endedAt"])
    # The model the run registered: verified with SageMaker (as the deliverer's role).
    assert run["modelPackageArn"], run
    registered = wait_for(
        lambda: _delivered(receiver, "model.registered", modelPackageArn=run["modelPackageArn"]),
        timeout=30,
        what="the model.registered delivery",
    )
    assert json.loads(registered.body)["runId"] == run["runId"]
    deliveries = wait_for(
        lambda: _settled(api, tenant_id, count=2), timeout=15, what="the deliveries"
    )
    assert {(d["event"], d["status"]) for d in deliveries} == {
        ("run.succeeded", "succeeded"),
        ("model.registered", "succeeded"),
    }, deliveries


def test_forged_trainyard_events_reach_no_receiver_and_show_as_refused(
    stack: EmbeddedStack, api: Api, onboard: Any, receiver: Receiver
) -> None:
    """Any principal allowed events:PutEvents can put source "trainyard" on the
    default bus; the deliverer checks every event against Trainyard's records."""
    tenant_id = f"hook-forged-{uuid.uuid4().hex[:6]}"
    tenant = onboard(tenant_id, "basic")
    assert _put(api, tenant_id, {"url": receiver.url}).status_code == 200
    run = _run_to_its_end(stack, api, tenant)  # a real run, SUCCEEDED
    wait_for(
        lambda: _delivered(receiver, "run.succeeded", runId=run["runId"]),
        timeout=30,
        what="the real run.succeeded delivery",
    )
    model = api.get(f"/tenants/{tenant_id}/models").json()["models"][0]
    assert model["status"] != "Rejected", model

    def forged(kind: catalogue.EventType, **detail: Any) -> dict[str, Any]:
        envelope = {
            **detail,
            "version": "1",
            "event": kind.name,
            "tenantId": tenant_id,
            "occurredAt": iso_ms(now_utc()),
        }
        return {
            "Source": catalogue.SOURCE,
            "DetailType": kind.detail_type,
            "Detail": json.dumps(envelope),
        }

    made_up = uuid.uuid4().hex
    entries = [
        forged(catalogue.RUN_SUCCEEDED, runId=made_up, status="SUCCEEDED", plan="basic"),
        # A real run, a status it does not have.
        forged(catalogue.RUN_FAILED, runId=run["runId"], status="FAILED", failureReason="x"),
        # A real model package, a decision nobody made.
        forged(catalogue.MODEL_REJECTED, modelPackageArn=model["modelPackageArn"]),
    ]
    put = stack.client("events").put_events(Entries=entries)
    assert put["FailedEntryCount"] == 0
    ids = {e["EventId"] for e in put["Entries"]}

    def refused() -> dict[str, dict[str, Any]] | None:
        found = {d["deliveryId"]: d for d in _deliveries(api, tenant_id) if d["deliveryId"] in ids}
        return found if len(found) == len(ids) else None

    found = wait_for(refused, timeout=30, what="the forged events' refused deliveries")
    assert {d["status"] for d in found.values()} == {"refused"}, found
    reasons = {d["event"]: d["lastError"] for d in found.values()}
    assert "has no run" in reasons["run.succeeded"]
    assert "is SUCCEEDED" in reasons["run.failed"]
    assert f"is {model['status']}" in reasons["model.rejected"]
    assert all(d["attempts"] == 0 for d in found.values())
    time.sleep(2)  # a wrongly sent one would have arrived by now
    assert not {r.headers.get("Trainyard-Delivery") for r in receiver.requests} & ids
    assert _delivered(receiver, "run.succeeded", runId=made_up) is None
    assert _delivered(receiver, "run.failed") is None
    assert _delivered(receiver, "model.rejected") is None
