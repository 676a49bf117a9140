"""The console's signing proxy: what reaches the API and what reaches the browser.

A fake API on 127.0.0.1 records every request and answers whatever the test
gives it (including secrets and hostile headers); the console's server runs on
127.0.0.1 too, and the browser's side is plain HTTP against it.
"""

from __future__ import annotations

import html
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from trainyard.console.proxy import ApiProxy, RouteNotAllowed, match_route, redact
from trainyard.console.server import ConsoleServer

ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SESSION_TOKEN = "FwoGZXIvYXdzEXAMPLESESSIONTOKENvalue0123456789"
WEBHOOK_SECRET = "whsec_5f1c0ffee0ddba11deadbeef"


@dataclass
class Upstream:
    """What the fake API saw and what it answers next."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    body: Any = field(default_factory=lambda: {"ok": True})
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    url: str = ""


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    state = Upstream()

    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            state.requests.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "headers": dict(self.headers),
                    "body": self.rfile.read(length) if length else b"",
                }
            )
            payload = state.raw if state.raw is not None else json.dumps(state.body).encode()
            self.send_response(state.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in state.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = _any

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    yield state
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def signed_console(upstream: Upstream, credentials: None) -> Iterator[ConsoleServer]:
    # As with a deployed API: signed (the fake is on loopback, so say so explicitly).
    with ConsoleServer(upstream.url, port=0, sigv4=True, region="eu-west-1") as server:
        yield server


def _leaks(text: str) -> list[str]:
    return [s for s in (ACCESS_KEY, SECRET_KEY, SESSION_TOKEN, WEBHOOK_SECRET) if s in text]


def test_requests_reach_the_api_signed_with_sigv4_for_execute_api(
    upstream: Upstream, signed_console: ConsoleServer
) -> None:
    answer = requests.get(f"{signed_console.url}/api/tenants/acme/runs?limit=5", timeout=10)
    assert answer.status_code == 200 and answer.json() == {"ok": True}
    (seen,) = upstream.requests
    assert seen["path"] == "/v1/tenants/acme/runs?limit=5"
    auth = seen["headers"]["Authorization"]
    assert auth.startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/")
    assert "/eu-west-1/execute-api/aws4_request" in auth
    assert seen["headers"]["X-Amz-Security-Token"] == SESSION_TOKEN
    assert "X-Amz-Date" in seen["headers"]


def test_the_local_stack_is_called_unsigned(upstream: Upstream, credentials: None) -> None:
    with ConsoleServer(upstream.url, port=0) as server:
        assert requests.get(f"{server.url}/api/queue", timeout=10).status_code == 200
    (seen,) = upstream.requests
    assert "Authorization" not in seen["headers"]
    assert "X-Amz-Security-Token" not in seen["headers"]


def test_no_credentials_or_secrets_reach_the_browser(
    upstream: Upstream, signed_console: ConsoleServer
) -> None:
    # An API (or a bug in one) that echoes credentials and a webhook signing secret.
    upstream.body = {
        "deliveries": [
            {
                "event": "run.succeeded",
                "signingSecret": WEBHOOK_SECRET,
                "request": {"headers": {"Authorization": f"AWS4 Credential={ACCESS_KEY}/x"}},
                "note": f"key {ACCESS_KEY} secret {SECRET_KEY} token {SESSION_TOKEN}",
            }
        ],
        "webhook": {"url": "https://example.com/hook", "secret": WEBHOOK_SECRET},
        "nextToken": "opaque-page-token",
    }
    upstream.headers = {
        "Set-Cookie": f"session={SESSION_TOKEN}",
        "X-Amz-Security-Token": SESSION_TOKEN,
        "X-Upstream-Secret": WEBHOOK_SECRET,
    }
    answer = requests.get(f"{signed_console.url}/api/tenants/acme/webhook/deliveries", timeout=10)
    assert answer.status_code == 200
    everything = answer.text + json.dumps(dict(answer.headers))
    assert _leaks(everything) == []
    body = answer.json()
    (delivery,) = body["deliveries"]
    assert "signingSecret" not in delivery and "secret" not in body["webhook"]
    assert delivery["event"] == "run.succeeded"
    assert body["nextToken"] == "opaque-page-token"  # paging still works
    assert "Set-Cookie" not in answer.headers
    # The pages the server renders from the same answers carry none either.
    page = requests.get(f"{signed_console.url}/tenants/acme", timeout=10)
    assert _leaks(html.unescape(page.text) + json.dumps(dict(page.headers))) == []


def test_error_answers_carry_no_credentials_either(
    upstream: Upstream, signed_console: ConsoleServer
) -> None:
    upstream.status = 403
    upstream.body = {"message": f"User: arn:aws:iam::1:user/x with key {ACCESS_KEY} is denied"}
    answer = requests.get(f"{signed_console.url}/api/queue", timeout=10)
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "Http403"
    assert _leaks(answer.text) == []
    page = requests.get(f"{signed_console.url}/queue", timeout=10)
    assert "denied the console's credentials" in html.unescape(page.text)
    assert _leaks(html.unescape(page.text)) == []


def test_browser_headers_are_not_forwarded_and_hop_by_hop_headers_not_returned(
    upstream: Upstream, signed_console: ConsoleServer
) -> None:
    upstream.headers = {
        "Connection": "keep-alive, X-Private",
        "Keep-Alive": "timeout=5",
        "Upgrade": "h2c",
        "Proxy-Authenticate": "Basic",
        "X-Private": "1",
    }
    answer = requests.get(
        f"{signed_console.url}/api/plans",
        headers={
            "Cookie": "console=1",
            "Authorization": "Bearer from-the-browser",
            "Proxy-Authorization": "Basic Zm9vOmJhcg==",
            "X-Forwarded-For": "203.0.113.9",
            "TE": "trailers",
            "Upgrade": "websocket",
        },
        timeout=10,
    )
    assert answer.status_code == 200
    (seen,) = upstream.requests
    sent = {k.lower() for k in seen["headers"]}
    assert not sent & {"cookie", "proxy-authorization", "x-forwarded-for", "te", "upgrade"}
    assert "from-the-browser" not in seen["headers"]["Authorization"]  # ours, SigV4
    returned = {k.lower() for k in answer.headers}
    assert not returned & {"keep-alive", "upgrade", "proxy-authenticate", "x-private"}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/http://169.254.169.254/latest/meta-data/"),
        ("GET", "/api//169.254.169.254/latest"),
        ("GET", "/api/tenants/acme/../../admin"),
        ("GET", "/api/tenants/%2e%2e/runs"),
        ("GET", "/api/tenants/a%2Fb/runs"),
        ("GET", "/api/tenants/acme/runs/x/y"),
        ("GET", "/api/openapi.json"),
        ("PUT", "/api/tenants/acme/webhook"),  # would answer the signing secret
        ("DELETE", "/api/tenants/acme"),
        ("POST", "/api/tenants"),
        ("GET", "/api/tenants/acme/runs?purge=true"),
    ],
)
def test_the_proxy_calls_only_allowlisted_routes(
    upstream: Upstream, signed_console: ConsoleServer, method: str, path: str
) -> None:
    token = signed_console.console.token
    answer = requests.request(
        method, signed_console.url + path, headers={"X-Console-Token": token}, timeout=10
    )
    assert answer.status_code in (403, 404, 405), answer.text
    assert upstream.requests == []


def test_route_matching_rejects_what_could_spell_another_path() -> None:
    assert match_route("GET", "/tenants/acme/runs") == "/tenants/{tenantId}/runs"
    assert match_route("POST", "/tenants/acme/models/3/approve").endswith("/approve")
    for path in ("/tenants/../runs", "/tenants/./runs", "tenants", "/tenants/a\\b", "/x"):
        with pytest.raises(RouteNotAllowed):
            match_route("GET", path)
    with pytest.raises(RouteNotAllowed):
        match_route("GET", "/tenants/acme/models/3/approve")  # a write by GET
    with pytest.raises(RouteNotAllowed):
        ApiProxy("http://127.0.0.1:1").forward("GET", "/queue", params={"url": "http://x"})


def test_writes_need_the_console_token_and_its_own_origin(
    upstream: Upstream, signed_console: ConsoleServer
) -> None:
    upstream.body = {"version": 3, "status": "Approved"}
    url = f"{signed_console.url}/api/tenants/acme/models/3/approve"
    token = signed_console.console.token
    assert requests.post(url, json={}, timeout=10).status_code == 403  # no token
    foreign = {"X-Console-Token": token, "Origin": "https://evil.example"}
    assert requests.post(url, json={}, headers=foreign, timeout=10).status_code == 403
    assert upstream.requests == []
    headers = {"X-Console-Token": token}
    ok = requests.post(url, json={"reason": "good AUC"}, headers=headers, timeout=10)
    assert ok.status_code == 200 and ok.json()["status"] == "Approved"
    (seen,) = upstream.requests
    assert seen["method"] == "POST" and seen["path"] == "/v1/tenants/acme/models/3/approve"
    assert json.loads(seen["body"]) == {"reason": "good AUC"}
    assert seen["headers"]["Authorization"].startswith("AWS4-HMAC-SHA256")


def test_a_foreign_host_header_is_refused(
    upstream: Upstream, signed_console: ConsoleServer
) -> None:
    # DNS rebinding: another site's name resolving to 127.0.0.1 must not read the API.
    answer = requests.get(
        f"{signed_console.url}/api/queue", headers={"Host": "evil.example"}, timeout=10
    )
    assert answer.status_code == 421
    assert upstream.requests == []


def test_an_unreachable_api_is_an_error_answer_not_a_blank_page(credentials: None) -> None:
    with ConsoleServer("http://127.0.0.1:9/v1", port=0) as server:
        answer = requests.get(f"{server.url}/api/queue", timeout=10)
        assert answer.status_code == 502
        assert answer.json()["error"]["code"] == "ConnectionError"
        page = requests.get(f"{server.url}/queue", timeout=10)
        assert page.status_code == 502 and "cannot reach the API" in page.text


def test_non_json_answers_become_an_error_envelope(
    upstream: Upstream, signed_console: ConsoleServer
) -> None:
    upstream.raw = f"<html>{ACCESS_KEY}</html>".encode()
    answer = requests.get(f"{signed_console.url}/api/plans", timeout=10)
    assert answer.json()["error"]["code"] == "UpstreamNotJson"
    assert _leaks(answer.text) == []


def test_redaction_keeps_what_is_not_secret() -> None:
    value = {"nextToken": "t", "tenants": [{"tenantId": "acme", "apiKey": "k"}], "n": 3}
    assert redact(value, frozenset({"s3cr3t"})) == {
        "nextToken": "t",
        "tenants": [{"tenantId": "acme"}],
        "n": 3,
    }
    assert redact("x s3cr3t y", frozenset({"s3cr3t"})) == "x [redacted] y"
