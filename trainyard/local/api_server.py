"""Local onboarding API: HTTP on 127.0.0.1, translated to API Gateway REST proxy
events for the real onboarding handler, so paths and JSON match AWS exactly."""

from __future__ import annotations

import base64
import json
import logging
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

log = logging.getLogger("trainyard.local.api")

MAX_REQUEST_BYTES = 1024 * 1024


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


def apigw_event(
    method: str, raw_path: str, headers: dict[str, str], body: bytes | None, account_id: str
) -> dict[str, Any]:
    parts = urlsplit(raw_path)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    text: str | None = None
    is_base64 = False
    if body:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            text, is_base64 = base64.b64encode(body).decode(), True
    now = datetime.now(UTC)
    return {
        "resource": "/{proxy+}",
        "path": parts.path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": query or None,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} or None,
        "pathParameters": {"proxy": parts.path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/{proxy+}",
            "httpMethod": method,
            "path": f"/prod{parts.path}",
            "stage": "prod",
            "accountId": account_id,
            "requestId": str(uuid.uuid4()),
            "requestTimeEpoch": int(now.timestamp() * 1000),
            "identity": {"sourceIp": "127.0.0.1", "userArn": f"arn:aws:iam::{account_id}:root"},
        },
        "body": text,
        "isBase64Encoded": is_base64,
    }


class LocalApiServer:
    def __init__(
        self,
        port: int,
        invoke: Callable[[dict[str, Any]], dict[str, Any]],
        *,
        account_id: str,
        ready: Callable[[], bool],
        aws_endpoint_url: str = "",
    ) -> None:
        self._invoke = invoke
        self._account_id = account_id
        self._ready = ready
        self._aws_endpoint_url = aws_endpoint_url
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt: str, *args: Any) -> None:
                log.debug("api: " + fmt, *args)

            def _respond(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _error(self, status: int, code: str, message: str) -> None:
                body = json.dumps({"error": {"code": code, "message": message}}).encode()
                self._respond(status, body, {"Content-Type": "application/json"})

            def _handle(self) -> None:
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                except ValueError:
                    length = -1
                if length < 0:
                    self._error(400, "InvalidRequest", "Content-Length is not a number")
                    self.close_connection = True
                    return
                if length > MAX_REQUEST_BYTES:
                    # API Gateway refuses payloads over its limit before Lambda runs.
                    self._error(413, "PayloadTooLarge", "request body too large")
                    self.close_connection = True
                    return
                body = self.rfile.read(length) if length else None
                path = urlsplit(self.path).path
                if self.command == "GET" and path in ("/openapi.json", "/docs"):
                    # Local only (API Gateway has its own export): the API's description.
                    content, content_type = _api_docs()[path]
                    self._respond(200, content, {"Content-Type": content_type})
                    return
                if path == "/health":
                    if not server._ready():
                        self._error(503, "NotReady", "starting")
                        return
                    # The CLI learns where to upload from here (local only; AWS has S3).
                    health = {"status": "ok", "awsEndpointUrl": server._aws_endpoint_url}
                    self._respond(
                        200, json.dumps(health).encode(), {"Content-Type": "application/json"}
                    )
                    return
                event = apigw_event(
                    self.command, self.path, dict(self.headers.items()), body, server._account_id
                )
                try:
                    result = server._invoke(event)
                except Exception:
                    log.exception("onboarding handler crashed")
                    self._error(502, "BadGateway", "handler failed")
                    return
                payload = result.get("body") or ""
                raw = (
                    base64.b64decode(payload)
                    if result.get("isBase64Encoded")
                    else payload.encode("utf-8")
                )
                headers = {k: str(v) for k, v in (result.get("headers") or {}).items()}
                for k, values in (result.get("multiValueHeaders") or {}).items():
                    headers[k] = str(values[-1])
                headers.pop("Content-Length", None)
                self._respond(int(result.get("statusCode", 502)), raw, headers)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="local-api", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
