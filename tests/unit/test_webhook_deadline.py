"""One deadline per webhook attempt, for everything: resolving the name, connecting,
sending and reading the whole answer. A receiver trickling bytes cannot stretch it
(a socket timeout bounds each read, not the request), and it is shorter when the
invocation has less time left."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from trainyard_core import events as catalogue
from trainyard_core import webhook_http
from trainyard_core.config import WebhookSettings
from trainyard_core.events import Event
from trainyard_core.webhook_http import PinnedSender
from trainyard_core.webhooks.delivery import INVOCATION_MARGIN_SECONDS
from trainyard_core.webhooks.urls import Target

from tests.unit.test_webhooks import RUN_ID, _world

# The answer's bytes, sent one at a time: the status line trickles, or the body.
STATUS_LINE = b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n" + b"x" * 40
TRICKLE_SECONDS = 0.2  # per byte: far below any per-read timeout


@pytest.fixture
def trickler() -> Iterator[tuple[int, list[float]]]:
    """A receiver on 127.0.0.1 that reads the request, then answers a byte at a time
    (headers at once when ``?body``: then only the body trickles). ``closed`` gets
    when it found the connection gone (the deliverer gave up)."""
    server = socket.create_server(("127.0.0.1", 0))
    closed: list[float] = []
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            request = conn.recv(65536)
            head, _, rest = STATUS_LINE.partition(b"\r\n\r\n")
            if b"?body" in request.split(b"\r\n", 1)[0]:
                conn.sendall(head + b"\r\n\r\n")
                answer = rest
            else:
                answer = STATUS_LINE
            try:
                for byte in answer:
                    if stop.wait(TRICKLE_SECONDS):
                        return
                    conn.sendall(bytes([byte]))
            except OSError:
                closed.append(time.monotonic())
                return
            closed.append(-1.0)  # the whole answer went out: not cut off

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield server.getsockname()[1], closed
    finally:
        stop.set()
        server.close()


@pytest.mark.parametrize("path", ["/in", "/in?body"])
def test_a_receiver_trickling_its_answer_is_cut_off_at_the_attempts_deadline(
    trickler: tuple[int, list[float]], path: str
) -> None:
    port, closed = trickler
    target = Target("http", "hooks.example.com", port, path, ("127.0.0.1",))
    started = time.monotonic()
    answer = PinnedSender().send(target, b"{}", {"Content-Type": "application/json"}, 1.0)
    took = time.monotonic() - started
    assert answer.status is None
    assert "timed out" in (answer.error or "")
    assert took < 1.0 + 0.3, took
    # ...and the connection is closed, not left trickling.
    deadline = time.monotonic() + 2
    while not closed and time.monotonic() < deadline:
        time.sleep(0.05)
    assert closed and 0 < closed[0] - started < 1.0 + 1.0


def test_resolving_a_name_is_bounded_by_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    def hanging(host: str) -> list[str]:
        time.sleep(3)  # a resolver that does not answer
        return ["93.184.216.34"]

    monkeypatch.setattr(webhook_http, "_getaddrinfo", hanging)
    started = time.monotonic()
    with pytest.raises(OSError, match="timed out resolving"):
        webhook_http.resolve("slow.example.com", timeout=0.3)
    assert time.monotonic() - started < 0.8


def test_resolving_returns_every_address_in_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(webhook_http, "_getaddrinfo", lambda host: ["93.184.216.34", "::1"])
    assert webhook_http.resolve("hooks.example.com", timeout=1) == ["93.184.216.34", "::1"]
    monkeypatch.setattr(
        webhook_http, "_getaddrinfo", lambda host: (_ for _ in ()).throw(OSError("no such name"))
    )
    with pytest.raises(OSError, match="no such name"):
        webhook_http.resolve("nowhere.example.com", timeout=1)


def _message() -> str:
    event = Event(catalogue.RUN_SUCCEEDED, "acme", "2026-01-01T00:00:00.000Z", {"runId": RUN_ID})
    return json.dumps(
        {
            "id": "e-1",
            "source": "trainyard",
            "detail-type": catalogue.RUN_SUCCEEDED.detail_type,
            "detail": event.envelope(),
        }
    )


@pytest.mark.parametrize(
    ("remaining", "at_most"),
    [(None, 5.0), (60.0, 5.0), (6.0, 6.0 - INVOCATION_MARGIN_SECONDS)],
)
def test_an_attempt_gets_the_timeout_or_what_the_invocation_has_left(
    remaining: float | None, at_most: float
) -> None:
    service, deliverer, sender, _ = _world(WebhookSettings(timeout_seconds=5, max_attempts=3))
    seen: list[float | None] = []
    resolve = deliverer.resolve

    def recording(host: str, timeout: float | None = None) -> list[str]:
        seen.append(timeout)
        return resolve(host, timeout)

    service.put("acme", "https://hooks.example.com/in", None)
    deliverer.resolve = recording
    assert deliverer.deliver(_message(), 1, remaining).done
    (sent,) = sender.sent
    assert at_most - 0.5 < sent.timeout <= at_most
    assert seen == [at_most]  # DNS within the same deadline


def test_no_attempt_when_the_invocation_has_no_time_left_and_it_is_retried() -> None:
    service, deliverer, sender, store = _world(WebhookSettings(timeout_seconds=5, max_attempts=3))
    service.put("acme", "https://hooks.example.com/in", None)
    outcome = deliverer.deliver(_message(), 1, INVOCATION_MARGIN_SECONDS - 1)
    assert not outcome.done and outcome.retry_after > 0
    assert sender.sent == []
    (delivery,) = store.deliveries.values()
    assert delivery.status == "pending" and "timed out" in (delivery.last_error or "")
