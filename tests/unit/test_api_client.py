"""The API client against a real HTTP server on 127.0.0.1 that records requests."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from trainyard.api_client import ApiError, TrainyardApi, is_local_url, region_from_url


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class StubApi:
    """Answers every request with the next canned (status, body); records what it got."""

    url: str = ""
    answers: list[tuple[int, Any]] = field(default_factory=list)
    requests: list[Recorded] = field(default_factory=list)


@pytest.fixture
def stub() -> Iterator[StubApi]:
    state = StubApi()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            state.requests.append(
                Recorded(
                    self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body
                )
            )
            status, payload = state.answers.pop(0) if state.answers else (200, {})
            raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        do_GET = do_POST = do_PATCH = do_DELETE = _handle

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def test_error_envelope_becomes_api_error_with_status_code_and_message(stub: StubApi) -> None:
    stub.answers.append((404, {"error": {"code": "TenantNotFound", "message": "no tenant x"}}))
    with pytest.raises(ApiError) as caught:
        TrainyardApi(stub.url).get_tenant("xyz")
    assert (caught.value.status, caught.value.code, caught.value.message) == (
        404,
        "TenantNotFound",
        "no tenant x",
    )


def test_non_envelope_error_still_becomes_api_error(stub: StubApi) -> None:
    # API Gateway's own IAM rejection looks like this, not like our envelope.
    stub.answers.append((403, {"message": "Missing Authentication Token"}))
    with pytest.raises(ApiError) as caught:
        TrainyardApi(stub.url).plans()
    assert caught.value.status == 403
    assert caught.value.message == "Missing Authentication Token"


def test_unreachable_api_is_an_api_error_not_a_requests_exception() -> None:
    with pytest.raises(ApiError) as caught:
        TrainyardApi("http://127.0.0.1:9", timeout=2).health()
    assert caught.value.code == "ConnectionError"


def test_create_tenant_posts_camel_case_json_and_returns_parsed_tenant(stub: StubApi) -> None:
    tenant = {"tenantId": "acme", "plan": "basic", "status": "PROVISIONING"}
    stub.answers.append((202, tenant))
    assert TrainyardApi(stub.url).create_tenant("acme", "basic") == tenant
    sent = stub.requests[0]
    assert (sent.method, sent.path) == ("POST", "/tenants")
    assert json.loads(sent.body) == {"tenantId": "acme", "plan": "basic"}
    assert sent.headers["content-type"] == "application/json"


def test_routes_use_the_documented_methods_and_paths(stub: StubApi) -> None:
    api = TrainyardApi(stub.url + "/")  # a trailing slash must not double up
    api.health()
    api.plans()
    api.list_tenants(limit=5, next_token="abc")
    api.get_tenant("acme")
    api.update_tenant("acme", status="SUSPENDED")
    api.delete_tenant("acme", purge=True)
    api.delete_tenant("acme")
    api.list_runs("acme", limit=3)
    api.get_run("acme", "r1")
    api.trigger_run("acme")
    api.usage("acme", month="2024-05")
    api.queue()
    assert [(r.method, r.path) for r in stub.requests] == [
        ("GET", "/health"),
        ("GET", "/plans"),
        ("GET", "/tenants?limit=5&nextToken=abc"),
        ("GET", "/tenants/acme"),
        ("PATCH", "/tenants/acme"),
        ("DELETE", "/tenants/acme?purge=true"),
        ("DELETE", "/tenants/acme"),
        ("GET", "/tenants/acme/runs?limit=3"),
        ("GET", "/tenants/acme/runs/r1"),
        ("POST", "/tenants/acme/runs"),
        ("GET", "/tenants/acme/usage?month=2024-05"),
        ("GET", "/queue"),
    ]
    assert json.loads(stub.requests[4].body) == {"status": "SUSPENDED"}


def test_ids_cannot_escape_their_path_segment(stub: StubApi) -> None:
    TrainyardApi(stub.url).get_tenant("../queue")
    assert stub.requests[0].path == "/tenants/..%2Fqueue"


def test_all_tenants_follows_next_token(stub: StubApi) -> None:
    stub.answers += [
        (200, {"tenants": [{"tenantId": "a"}], "nextToken": "t1"}),
        (200, {"tenants": [{"tenantId": "b"}]}),
    ]
    assert [t["tenantId"] for t in TrainyardApi(stub.url).all_tenants()] == ["a", "b"]
    assert stub.requests[1].path.endswith("nextToken=t1")


def test_unsigned_by_default(stub: StubApi) -> None:
    TrainyardApi(stub.url).plans()
    assert "authorization" not in stub.requests[0].headers


def test_sigv4_signs_requests_for_execute_api(
    stub: StubApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "session-token")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    TrainyardApi(stub.url, sigv4=True, region="eu-west-1").create_tenant("acme", "basic")
    headers = stub.requests[0].headers
    auth = headers["authorization"]
    assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/eu-west-1/execute-api/aws4_request" in auth
    assert "SignedHeaders=" in auth and "host" in auth
    assert "x-amz-date" in headers
    assert headers["x-amz-security-token"] == "session-token"


def test_sigv4_takes_the_region_from_an_execute_api_url() -> None:
    url = "https://abc123.execute-api.ap-southeast-2.amazonaws.com/prod"
    assert region_from_url(url) == "ap-southeast-2"
    assert TrainyardApi(url, sigv4=True).region == "ap-southeast-2"


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("http://127.0.0.1:8787", True),
        ("http://localhost:8787/", True),
        ("https://abc.execute-api.us-east-1.amazonaws.com/prod", False),
        ("https://api.example.com", False),
    ],
)
def test_loopback_urls_are_local(url: str, local: bool) -> None:
    assert is_local_url(url) is local
