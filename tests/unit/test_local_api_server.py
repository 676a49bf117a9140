"""The local API server keeps API Gateway's contract over raw sockets: framing
(chunked bodies, no request smuggling), decoding, limits, timeouts, JSON errors."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from trainyard.local.api_server import MAX_HEAD_BYTES, MAX_URL_BYTES, LocalApiServer


class Handler:
    """Stands in for the onboarding function: echoes the event it was given."""

    def __init__(self, delay: float = 0.0) -> None:
        self.events: list[dict[str, Any]] = []
        self.delay = delay

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        self.events.append(event)
        time.sleep(self.delay)
        body = {"path": event["path"], "body": event["body"], "params": event["pathParameters"]}
        return {"statusCode": 200, "headers": {"Content-Type": "application/json"},
                "body": json.dumps(body)}  # fmt: skip


@pytest.fixture
def handler() -> Handler:
    return Handler()


@pytest.fixture
def server(handler: Handler) -> Iterator[LocalApiServer]:
    api = LocalApiServer(
        0, handler, account_id="123456789012", ready=lambda: True, read_timeout=1.0,
        integration_timeout=1.0,
    )  # fmt: skip
    api.start()
    yield api
    api.stop()


def _connect(server: LocalApiServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def _replies(
    conn: socket.socket, count: int = 1, head_only: bool = False
) -> list[tuple[int, dict[str, str], bytes]]:
    """Read ``count`` responses (Content-Length framed) or until the server closes."""
    data, out = b"", []
    while len(out) < count:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if sep:
            found = re.search(rb"content-length: *(\d+)", head, re.I)
            length = 0 if head_only or found is None else int(found.group(1))
            if len(rest) >= length:
                lines = head.decode().split("\r\n")
                headers = dict(line.split(": ", 1) for line in lines[1:])
                out.append((int(lines[0].split()[1]), headers, rest[:length]))
                data = rest[length:]
                continue
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return out


def _one(
    server: LocalApiServer, raw: bytes, head_only: bool = False
) -> tuple[int, dict[str, str], bytes]:
    with _connect(server) as conn:
        conn.sendall(raw)
        (reply,) = _replies(conn, head_only=head_only)
    return reply


def _error(body: bytes) -> dict[str, str]:
    error = json.loads(body)["error"]
    assert error["code"] and error["message"]
    return dict(error)


def test_a_chunked_body_reaches_the_handler_decoded_and_nothing_is_parsed_as_a_next_request(
    server: LocalApiServer, handler: Handler
) -> None:
    body = b'{"tenantId": "acme"}'
    chunks = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    smuggled = b"GET /plans HTTP/1.1\r\nHost: x\r\n\r\n"
    with _connect(server) as conn:
        conn.sendall(
            b"POST /tenants HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks
        )
        (first,) = _replies(conn)
        conn.sendall(smuggled)  # a real next request on the same connection, answered once
        (second,) = _replies(conn)
    assert first[0] == 200 and json.loads(first[2])["body"] == body.decode()
    assert json.loads(second[2])["path"] == "/plans"
    assert [e["path"] for e in handler.events] == ["/tenants", "/plans"]


def test_transfer_encoding_with_content_length_is_refused_not_smuggled(
    server: LocalApiServer, handler: Handler
) -> None:
    raw = (
        b"POST /tenants HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    status, headers, body = _one(server, raw)
    assert status == 400 and _error(body)["code"] == "InvalidRequest"
    assert headers["Connection"] == "close"
    assert handler.events == []


def test_path_parameters_are_url_decoded_as_api_gateway_does(
    server: LocalApiServer, handler: Handler
) -> None:
    status, _, body = _one(server, b"GET /tenants/acme%2Dco/runs HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 200
    assert json.loads(body) == {
        "path": "/tenants/acme-co/runs", "body": None, "params": {"tenantId": "acme-co"}
    }  # fmt: skip
    assert handler.events[0]["resource"] == "/tenants/{tenantId}/runs"


@pytest.mark.parametrize("method", ["OPTIONS", "HEAD", "TRACE", "PURGE"])
def test_a_method_the_api_has_no_resource_for_gets_api_gateways_json_403(
    server: LocalApiServer, method: str
) -> None:
    raw = f"{method} /tenants HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    status, headers, body = _one(server, raw, head_only=method == "HEAD")
    assert status == 403 and headers["Content-Type"] == "application/json"
    assert headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
    if method != "HEAD":
        assert json.loads(body) == {"message": "Missing Authentication Token"}


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b"GET /" + b"a" * MAX_URL_BYTES + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "UriTooLong"),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\n"
            + b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 100) for i in range(MAX_HEAD_BYTES // 100 + 2))
            + b"\r\n",
            431,
            "HeadersTooLarge",
        ),
        (b"POST /tenants HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n", 413,
         "REQUEST_TOO_LARGE"),
        (b"POST /tenants HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}", 400,
         "InvalidRequest"),
        (b"POST /tenants HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501,
         "NotImplemented"),
        (b"NOT HTTP AT ALL\r\n\r\n", 400, "InvalidRequest"),
    ],
    ids=["long-url", "many-headers", "payload-over-10-mb", "bad-content-length",
         "unknown-transfer-coding", "garbage"],
)  # fmt: skip
def test_what_api_gateway_refuses_gets_a_json_error(
    server: LocalApiServer, handler: Handler, raw: bytes, status: int, code: str
) -> None:
    got, headers, body = _one(server, raw)
    assert (got, _error(body)["code"]) == (status, code)
    assert headers["Content-Type"] == "application/json"
    assert handler.events == []


def test_a_slow_client_is_answered_408_and_disconnected_within_the_read_timeout(
    server: LocalApiServer, handler: Handler
) -> None:
    started = time.monotonic()
    with _connect(server) as conn:
        conn.sendall(b"POST /tenants HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{")
        (reply,) = _replies(conn)
        assert conn.recv(10) == b""  # closed
    assert reply[0] == 408 and _error(reply[2])["code"] == "RequestTimeout"
    assert time.monotonic() - started < 5
    assert handler.events == []


def test_an_idle_keep_alive_connection_is_closed(server: LocalApiServer) -> None:
    with _connect(server) as conn:
        conn.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _replies(conn)[0][0] == 200
        conn.settimeout(5)
        assert conn.recv(10) == b""


def test_a_handler_slower_than_the_integration_timeout_gets_a_504(handler: Handler) -> None:
    slow = LocalApiServer(
        0, Handler(delay=3), account_id="1", ready=lambda: True, integration_timeout=0.5
    )
    slow.start()
    try:
        status, _, body = _one(slow, b"GET /tenants HTTP/1.1\r\nHost: x\r\n\r\n")
    finally:
        slow.stop()
    assert status == 504 and _error(body)["code"] == "INTEGRATION_TIMEOUT"


def test_the_server_listens_on_loopback_only(server: LocalApiServer) -> None:
    assert server._listener.getsockname()[0] == "127.0.0.1"


def test_requests_on_parallel_connections_are_each_answered(server: LocalApiServer) -> None:
    results: list[int] = []

    def call() -> None:
        results.append(_one(server, b"GET /tenants HTTP/1.1\r\nHost: x\r\n\r\n")[0])

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == [200] * 8
