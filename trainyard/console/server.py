"""The console's HTTP server: server-rendered pages, local assets, the API proxy.

127.0.0.1 only. Because it holds the user's credentials (it signs for them),
it also refuses what a web page elsewhere could make a browser send it:

- a ``Host`` other than its own loopback address (DNS rebinding: another site's
  name pointed at 127.0.0.1 would otherwise read the proxied API);
- a write (approve, reject) without the token the console's own pages carry, or
  with a foreign ``Origin`` (cross-site request forgery).

Pages are whole HTML documents; with ``X-Console-Fragment: 1`` only the page's
``<main>`` content, which ``console.js`` swaps in every few seconds (live updates
without reloads, and the page still works without JavaScript).
"""

from __future__ import annotations

import json
import secrets
import threading
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from trainyard.console import pages
from trainyard.console.fetch import ConsoleApi, Result
from trainyard.console.proxy import (
    MAX_BODY_BYTES,
    ApiProxy,
    RouteNotAllowed,
    error_body,
)

DEFAULT_PORT = 8788
REFRESH_SECONDS = 3
HERE = Path(__file__).parent
STATIC = {
    "console.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
}
NAV = (("queue", "/queue", "Queue"), ("timeline", "/timeline", "Timeline"),
       ("tenants", "/tenants", "Tenants"), ("plans", "/plans", "Plans"))  # fmt: skip
DECISIONS = ("approve", "reject")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}


class Console:
    """What the request handler needs: the API (through the proxy), templates, token."""

    def __init__(self, api_url: str, *, sigv4: bool | None = None, region: str | None = None):
        self.proxy = ApiProxy(api_url, sigv4=sigv4, region=region)
        self.api = ConsoleApi(self.proxy)
        self.api_url = self.proxy.base_url
        # Proves a write came from one of this console's own pages.
        self.token = secrets.token_urlsafe(32)
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def render(self, page: pages.Page, *, fragment: bool) -> str:
        now = datetime.now(UTC)
        context = {**page.context, "errors": page.errors, "page": page, "token": self.token}
        content = self.env.get_template(page.template).render(context)
        if fragment:
            return content
        return self.env.get_template("base.html").render(
            page=page,
            nav=NAV,
            content=Markup(content),
            token=self.token,
            api_url=self.api_url,
            signed=self.proxy.sigv4,
            refresh=REFRESH_SECONDS,
            updated=now.strftime("%H:%M:%S UTC"),
        )


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a console left open polls every few seconds: no line per request

    # --- plumbing

    @property
    def console(self) -> Console:
        return self.server.console

    def _send(self, status: int, body: bytes, content_type: str, **extra: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in {**SECURITY_HEADERS, **extra}.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, body: Any) -> None:
        self._send(status, json.dumps(body).encode(), "application/json")

    def _html(self, status: int, text: str) -> None:
        self._send(status, text.encode(), "text/html; charset=utf-8")

    def _own_host(self) -> bool:
        port = self.server.server_address[1]
        allowed = {f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"}
        return self.headers.get("Host", "") in allowed

    def _same_origin(self) -> bool:
        origin = self.headers.get("Origin")
        return origin is None or origin == f"http://{self.headers.get('Host', '')}"

    def _refuse_host(self) -> None:
        self.close_connection = True  # an unread body must not be taken for a request
        self._send(
            HTTPStatus.MISDIRECTED_REQUEST,
            b"this console answers only at its own 127.0.0.1 address\n",
            "text/plain; charset=utf-8",
        )

    def _page(self, page: pages.Page) -> None:
        fragment = self.headers.get("X-Console-Fragment") == "1"
        self._html(page.status, self.console.render(page, fragment=fragment))

    def _not_found(self, what: str) -> None:
        page = pages.Page("", "Not found", "error.html", http_status=404)
        page.errors.append(f"There is no console page {what}.")
        self._page(page)

    def _read_body(self) -> bytes | None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            return None
        return self.rfile.read(length) if length else b""

    # --- GET

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        if not self._own_host():
            return self._refuse_host()
        try:
            self._get()
        except Exception as exc:  # a bug of the console's own: still a page that says so
            self._html(HTTPStatus.INTERNAL_SERVER_ERROR, _crash_page(exc))

    def _get(self) -> None:
        url = urlsplit(self.path)
        path = url.path
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            if path == "/":
                self._send(HTTPStatus.FOUND, b"", "text/plain", Location="/queue")
            elif path.startswith("/static/"):
                self._static(path.removeprefix("/static/"))
            elif path.startswith("/api/"):
                self._proxy("GET", path.removeprefix("/api"), query, None)
            elif path == "/queue":
                self._page(pages.queue_page(self.console.api))
            elif path == "/timeline":
                self._page(pages.timeline_page(self.console.api, _hours(query.get("hours"))))
            elif path == "/tenants":
                self._page(pages.tenants_page(self.console.api))
            elif path == "/plans":
                self._page(pages.plans_page(self.console.api))
            elif path.startswith("/tenants/") and path.count("/") == 4 and "/runs/" in path:
                tenant_id, _, run_id = path.removeprefix("/tenants/").partition("/runs/")
                self._page(pages.run_page(self.console.api, tenant_id, run_id))
            elif path.startswith("/tenants/") and path.count("/") == 2:
                tenant_id = path.removeprefix("/tenants/")
                self._page(pages.tenant_page(self.console.api, tenant_id, query.get("notice", "")))
            else:
                self._not_found(path)
        except RouteNotAllowed:
            self._not_found(path)

    def _static(self, name: str) -> None:
        if name not in STATIC:
            return self._not_found(f"/static/{name}")
        body = (HERE / "static" / name).read_bytes()
        self._send(HTTPStatus.OK, body, STATIC[name])

    def _proxy(
        self, method: str, path: str, query: dict[str, str], body: dict[str, Any] | None
    ) -> None:
        try:
            answer = self.console.proxy.forward(method, path, params=query, json_body=body)
        except RouteNotAllowed as exc:
            return self._json(
                HTTPStatus.FORBIDDEN,
                error_body("RouteNotAllowed", f"the console does not proxy {exc}"),
            )
        self._json(answer.status, answer.body)

    def _not_allowed(self) -> None:
        if not self._own_host():
            return self._refuse_host()
        # The console only reads, and approves or rejects models.
        self._json(
            HTTPStatus.METHOD_NOT_ALLOWED,
            error_body("MethodNotAllowed", f"the console does not {self.command}"),
        )

    do_PUT = do_PATCH = do_DELETE = _not_allowed

    # --- POST: approve or reject a model

    def do_POST(self) -> None:
        if not self._own_host():
            return self._refuse_host()
        path = urlsplit(self.path).path
        raw = self._read_body()
        if raw is None:
            return self._json(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE, error_body("PayloadTooLarge", "body too large")
            )
        form = self.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded")
        fields = {k: v[-1] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
        token = fields.get("token") if form else self.headers.get("X-Console-Token")
        if (
            not self._same_origin()
            or not token
            or not secrets.compare_digest(token, self.console.token)
        ):
            return self._json(
                HTTPStatus.FORBIDDEN,
                error_body("ForbiddenOrigin", "writes come only from the console's own pages"),
            )
        parts = path.removeprefix("/api").strip("/").split("/")
        decision = parts[-1] if parts else ""
        if (
            len(parts) != 5
            or parts[0] != "tenants"
            or parts[2] != "models"
            or (decision not in DECISIONS)
        ):
            return self._json(HTTPStatus.NOT_FOUND, error_body("NotFound", f"no action {path}"))
        tenant_id, version = parts[1], parts[3]
        if form:
            reason = fields.get("reason", "").strip()
        else:
            try:
                payload = json.loads(raw or b"{}")
            except ValueError:
                return self._json(HTTPStatus.BAD_REQUEST, error_body("MalformedJson", "bad JSON"))
            reason = str(payload.get("reason") or "").strip() if isinstance(payload, dict) else ""
        try:
            result = self.console.api.decide(tenant_id, version, decision, reason or None)
        except RouteNotAllowed:
            return self._json(HTTPStatus.NOT_FOUND, error_body("NotFound", f"no action {path}"))
        if not form:
            body = result.data if result.ok else error_body(result.code, result.describe())
            return self._json(result.status, body)
        # Without JavaScript: back to the tenant's page, which says what happened.
        notice = _notice(result, version, decision)
        location = f"/tenants/{quote(tenant_id)}?notice={quote(notice)}"
        self._send(HTTPStatus.SEE_OTHER, b"", "text/plain", Location=location)


def _notice(result: Result, version: str, decision: str) -> str:
    if result.ok:
        return f"Model version {version}: {decision}d; status {result.data.get('status', '?')}"
    return f"Model version {version} was not {decision}d: {result.describe()}"


def _crash_page(exc: Exception) -> str:
    from markupsafe import escape

    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Console error"
        "</title></head><body><main><h1>Console error</h1><p role='alert'>The console failed "
        f"to draw this page: {escape(type(exc).__name__)}: {escape(str(exc))}</p>"
        "<p><a href='/queue'>Back to the queue</a></p></main></body></html>"
    )


def _hours(value: str | None) -> float | None:
    """The Timeline's window in hours; None (auto) when absent, "auto" or not a number."""
    try:
        hours = float(value) if value else None
    except ValueError:
        return None
    return hours if hours is not None and hours > 0 else None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, console: Console) -> None:
        self.console = console
        super().__init__(("127.0.0.1", port), _Handler)


class ConsoleServer:
    """``trainyard console`` in a thread: start, ``url``, stop (also a context manager)."""

    def __init__(
        self,
        api_url: str,
        *,
        port: int = DEFAULT_PORT,
        sigv4: bool | None = None,
        region: str | None = None,
    ) -> None:
        self.console = Console(api_url, sigv4=sigv4, region=region)
        self._server = _Server(port, self.console)  # binds now: a busy port fails here
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ConsoleServer:
        # A short poll interval: stop() returns promptly (tests start and stop many).
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="trainyard-console",
            daemon=True,
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> ConsoleServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
