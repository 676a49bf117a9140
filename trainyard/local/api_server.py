"""Local onboarding API: HTTP on 127.0.0.1 in front of the real onboarding handler,
with API Gateway's contract rather than a development server's.

Requests are parsed by h11 (a strict HTTP/1.1 implementation: chunked bodies are
decoded, conflicting or malformed framing is refused, nothing left over is read as
another request) and become API Gateway REST proxy events for the handler: the
matched resource of the route table, URL-decoded path parameters, decoded query
values. What API Gateway refuses before the Lambda runs is refused here, in the
API's error envelope (what ``infra/api.py``'s gateway responses produce in AWS):

- a body over 10 MB: 413 ``REQUEST_TOO_LARGE``; a handler slower than 29 s: 504
  ``INTEGRATION_TIMEOUT``;
- a URL over 8,192 bytes (414) or request line and headers over 10,240 bytes
  (431); malformed HTTP: 400; a transfer coding other than chunked: 501;
- a client that does not finish its request within ``read_timeout`` seconds: 408,
  and an idle keep-alive connection is closed after as long.

Every answer is JSON, whatever the method (HEAD gets the headers only).
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import h11

log = logging.getLogger("trainyard.local.api")

# API Gateway REST API quotas (docs.aws.amazon.com/apigateway/latest/developerguide/limits.html).
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024
MAX_URL_BYTES = 8192
MAX_HEAD_BYTES = 10240  # request line and header values together
_MAX_PARSE_BYTES = 64 * 1024  # h11's buffer for an incomplete request head
INTEGRATION_TIMEOUT_SECONDS = 29.0
READ_TIMEOUT_SECONDS = 10.0
MAX_CONNECTIONS = 128
_RECV_BYTES = 65536


@cache
def _api_docs() -> dict[str, tuple[bytes, str]]:
    """The OpenAPI document and its HTML reference, built once from the code
    (lazily: the generator imports the onboarding handler)."""
    from trainyard.openapi import build_document, render_html, render_json

    document = build_document()
    return {
        "/openapi.json": (render_json(document).encode(), "application/json"),
        "/docs": (render_html(document).encode(), "text/html; charset=utf-8"),
    }


@cache
def _resources() -> tuple[tuple[str, tuple[str, ...]], ...]:
    from trainyard_handlers.api.routes import gateway_resources

    return tuple((path, tuple(path.strip("/").split("/"))) for path in gateway_resources())


@cache
def _methods() -> dict[str, tuple[str, ...]]:
    from trainyard_handlers.api.routes import gateway_resources

    return gateway_resources()


# What API Gateway (a REST API, IAM auth) answers itself, before any Lambda, for a
# path or method it has no resource for.
MISSING_TOKEN = {"message": "Missing Authentication Token"}
MISSING_TOKEN_HEADERS = {
    "Content-Type": "application/json",
    "x-amzn-ErrorType": "MissingAuthenticationTokenException",
}


def match_resource(raw_path: str) -> tuple[str, dict[str, str]]:
    """The API Gateway resource a raw (still encoded) path matches and its decoded
    path parameters; an unmatched path is ``/{proxy+}`` (the server refuses it first,
    as API Gateway does)."""
    segments = raw_path.strip("/").split("/")
    for resource, parts in _resources():
        if len(parts) != len(segments):
            continue
        params: dict[str, str] = {}
        for part, segment in zip(parts, segments, strict=True):
            if part.startswith("{") and part.endswith("}") and segment:
                params[part[1:-1]] = unquote(segment)
            elif part != segment:
                break
        else:
            return resource, params
    return "/{proxy+}", {"proxy": unquote(raw_path.lstrip("/"))}


def apigw_event(
    method: str,
    raw_target: str,
    headers: list[tuple[str, str]],
    body: bytes | None,
    account_id: str,
) -> dict[str, Any]:
    parts = urlsplit(raw_target)
    path = unquote(parts.path) or "/"
    resource, path_params = match_resource(parts.path)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    multi_query: dict[str, list[str]] = {}
    for key, value in pairs:
        multi_query.setdefault(key, []).append(value)
    multi_headers: dict[str, list[str]] = {}
    for name, value in headers:
        multi_headers.setdefault(name, []).append(value)
    text: str | None = None
    is_base64 = False
    if body:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            text, is_base64 = base64.b64encode(body).decode(), True
    now = datetime.now(UTC)
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        # Like API Gateway: the last value of a repeated header or query parameter.
        "headers": {k: v[-1] for k, v in multi_headers.items()} or None,
        "multiValueHeaders": multi_headers or None,
        "queryStringParameters": {k: v[-1] for k, v in multi_query.items()} or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": path_params or None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": resource,
            "httpMethod": method,
            "path": f"/prod{path}",
            "stage": "prod",
            "accountId": account_id,
            "requestId": str(uuid.uuid4()),
            "requestTimeEpoch": int(now.timestamp() * 1000),
            "identity": {"sourceIp": "127.0.0.1", "userArn": f"arn:aws:iam::{account_id}:root"},
        },
        "body": text,
        "isBase64Encoded": is_base64,
    }


class _Reject(Exception):
    """Answer ``status`` with an error body and close the connection."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


def _http_response(
    status: int, body: bytes, headers: dict[str, str], *, head: bool, close: bool
) -> bytes:
    reason = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
    lines = [f"HTTP/1.1 {status} {reason}"]
    skip = {"content-length", "transfer-encoding", "connection"}
    lines += [f"{k}: {v}" for k, v in headers.items() if k.lower() not in skip]
    lines.append(f"Content-Length: {len(body)}")
    lines.append(f"Connection: {'close' if close else 'keep-alive'}")
    head_bytes = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
    return head_bytes if head else head_bytes + body


class _Request:
    def __init__(self, method: str, target: str, headers: list[tuple[str, str]], close: bool):
        self.method, self.target, self.headers, self.close = method, target, headers, close
        self.body = bytearray()


class LocalApiServer:
    def __init__(
        self,
        port: int,
        invoke: Callable[[dict[str, Any]], dict[str, Any]],
        *,
        account_id: str,
        ready: Callable[[], bool],
        aws_endpoint_url: str = "",
        read_timeout: float = READ_TIMEOUT_SECONDS,
        integration_timeout: float = INTEGRATION_TIMEOUT_SECONDS,
    ) -> None:
        self._invoke = invoke
        self._account_id = account_id
        self._ready = ready
        self._aws_endpoint_url = aws_endpoint_url
        self.read_timeout = read_timeout
        self.integration_timeout = integration_timeout
        self._listener = socket.create_server(("127.0.0.1", port))
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        self._closing = threading.Event()
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, name="local-api", daemon=True)
        # Every answer that is a failure of ours (500 from the handler, 502 when it
        # raised): bad input must never produce one, so the test suites assert none.
        self.server_errors: list[tuple[str, str, int]] = []

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._closing.set()
        self._thread.join(timeout=5)
        self._listener.close()
        with self._lock:
            for conn in list(self._connections):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)

    # --- connections

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not self._slots.acquire(blocking=False):
                self._send_error(conn, 503, "TooManyConnections", "too many open connections")
                conn.close()
                continue
            with self._lock:
                self._connections.add(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        leftover = b""
        try:
            while not self._closing.is_set():
                try:
                    request, leftover = self._read_request(conn, leftover)
                except _Reject as reject:
                    self._send_error(conn, reject.status, reject.code, reject.message)
                    return
                if request is None:
                    return
                status, body, headers = self._answer(request)
                if status in (500, 502):
                    with self._lock:
                        self.server_errors.append((request.method, request.target, status))
                head = request.method == "HEAD"
                conn.sendall(_http_response(status, body, headers, head=head, close=request.close))
                if request.close:
                    return
        except OSError:
            pass  # the client went away
        finally:
            with self._lock:
                self._connections.discard(conn)
            conn.close()
            self._slots.release()

    def _send_error(self, conn: socket.socket, status: int, code: str, message: str) -> None:
        headers = {"Content-Type": "application/json"}
        with contextlib.suppress(OSError):
            conn.sendall(
                _http_response(status, _error_body(code, message), headers, head=False, close=True)
            )

    def _read_request(self, conn: socket.socket, leftover: bytes) -> tuple[_Request | None, bytes]:
        """One whole request (body decoded) and the bytes after it; None when the
        client closed or idled out between requests."""
        parser = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_PARSE_BYTES)
        if leftover:
            parser.receive_data(leftover)  # (receive_data(b"") would mean end of stream)
        deadline = time.monotonic() + self.read_timeout
        request: _Request | None = None
        started = bool(leftover)
        while True:
            try:
                event = parser.next_event()
            except h11.RemoteProtocolError as exc:
                status = exc.error_status_hint
                if status == 431:
                    raise _Reject(431, "HeadersTooLarge", "request headers too large") from None
                if status == 501:
                    raise _Reject(501, "NotImplemented", str(exc)) from None
                raise _Reject(400, "InvalidRequest", f"malformed HTTP request: {exc}") from None
            if event is h11.NEED_DATA:
                if parser.they_are_waiting_for_100_continue:
                    conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    if not started:
                        return None, b""
                    raise _Reject(408, "RequestTimeout", "the request was not received in time")
                conn.settimeout(remaining)
                try:
                    data = conn.recv(_RECV_BYTES)
                except TimeoutError:
                    if not started:
                        return None, b""
                    raise _Reject(
                        408, "RequestTimeout", "the request was not received in time"
                    ) from None
                started = started or bool(data)
                parser.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                request = self._start(event)
            elif isinstance(event, h11.Data) and request is not None:
                request.body += event.data
                if len(request.body) > MAX_PAYLOAD_BYTES:
                    raise _Reject(413, "REQUEST_TOO_LARGE", "Request Too Long")
            elif isinstance(event, h11.EndOfMessage) and request is not None:
                return request, parser.trailing_data[0]
            elif isinstance(event, h11.ConnectionClosed):
                if request is not None:
                    raise _Reject(400, "InvalidRequest", "the request ended before its body")
                return None, b""

    def _start(self, event: h11.Request) -> _Request:
        target = event.target.decode("latin-1")
        method = event.method.decode("latin-1")
        if len(event.target) > MAX_URL_BYTES:
            raise _Reject(414, "UriTooLong", f"the URL is longer than {MAX_URL_BYTES} bytes")
        head = len(event.method) + len(event.target) + sum(len(v) for _, v in event.headers)
        if head > MAX_HEAD_BYTES:
            raise _Reject(431, "HeadersTooLarge", "request headers too large")
        names = {name for name, _ in event.headers}
        if b"transfer-encoding" in names and b"content-length" in names:
            # RFC 9112 §6.1: ambiguous framing, the classic smuggling vector.
            raise _Reject(400, "InvalidRequest", "both Transfer-Encoding and Content-Length")
        if method == "CONNECT" or not target.startswith("/"):
            raise _Reject(400, "InvalidRequest", "only origin-form requests are served")
        for name, value in event.headers:
            if name == b"content-length" and int(value) > MAX_PAYLOAD_BYTES:
                raise _Reject(413, "REQUEST_TOO_LARGE", "Request Too Long")
        connection = b",".join(v for n, v in event.headers if n == b"connection").lower()
        close = event.http_version == b"1.0" or b"close" in connection
        headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in event.headers.raw_items()]
        return _Request(method, target, headers, close)

    # --- answers

    def _answer(self, request: _Request) -> tuple[int, bytes, dict[str, str]]:
        as_json = {"Content-Type": "application/json"}
        path = urlsplit(request.target).path
        if request.method in ("GET", "HEAD") and path in ("/openapi.json", "/docs"):
            # Local only (API Gateway has its own export): the API's description.
            content, content_type = _api_docs()[path]
            return 200, content, {"Content-Type": content_type}
        if path == "/health" and request.method in ("GET", "HEAD"):
            if not self._ready():
                return 503, _error_body("NotReady", "starting"), as_json
            # The CLI learns where to upload from here (local only; AWS has S3).
            health = {"status": "ok", "awsEndpointUrl": self._aws_endpoint_url}
            return 200, json.dumps(health).encode(), as_json
        resource, _ = match_resource(path)
        if request.method not in _methods().get(resource, ()):
            return 403, json.dumps(MISSING_TOKEN).encode(), dict(MISSING_TOKEN_HEADERS)
        event = apigw_event(
            request.method, request.target, request.headers, bytes(request.body), self._account_id
        )
        result = self._invoke_within_timeout(event)
        if result is None:
            return 504, _error_body("INTEGRATION_TIMEOUT", "Endpoint request timed out"), as_json
        if isinstance(result, Exception):
            return 502, _error_body("BadGateway", "handler failed"), as_json
        payload = result.get("body") or ""
        raw = base64.b64decode(payload) if result.get("isBase64Encoded") else payload.encode()
        headers = {k: str(v) for k, v in (result.get("headers") or {}).items()}
        for k, values in (result.get("multiValueHeaders") or {}).items():
            headers[k] = str(values[-1])
        return int(result.get("statusCode", 502)), raw, headers

    def _invoke_within_timeout(self, event: dict[str, Any]) -> dict[str, Any] | Exception | None:
        """The handler's answer, its exception, or None after the integration timeout
        (the invocation runs on, as a Lambda function does past API Gateway's 29 s)."""
        outcome: list[Any] = []

        def call() -> None:
            try:
                outcome.append(self._invoke(event))
            except Exception as exc:
                log.exception("onboarding handler crashed")
                outcome.append(exc)

        worker = threading.Thread(target=call, name="local-api-invoke", daemon=True)
        worker.start()
        worker.join(self.integration_timeout)
        return outcome[0] if outcome else None
