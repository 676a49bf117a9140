"""The console's one way to the Trainyard API: an allowlisted, signing, redacting proxy.

Every byte the browser sees from the API passes through ``ApiProxy.forward``:

- only the routes in ``CONSOLE_ROUTES`` (read routes, plus approving or rejecting
  a model) with path segments that cannot spell another path (no ``/``, ``..``
  or ``%``) and only the query parameters in ``QUERY_PARAMETERS``: the console
  cannot be used to call an arbitrary URL, nor a route that creates, deletes
  or reveals secrets (``PUT /tenants/{id}/webhook`` answers a signing secret);
- a fresh upstream request (none of the browser's headers: no cookies, no
  ``Authorization``, no hop-by-hop headers), signed with SigV4 from the user's
  credentials by the same code as the CLI (``trainyard.api_client``);
- a fresh answer: the status and the JSON body only (no upstream header is
  passed on), with secret-looking keys dropped and the signing credentials'
  values (and anything shaped like an AWS access key id) redacted, so neither
  credentials nor a secret such as a webhook signing secret reach the browser.

docs/architecture.md §1 (console).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import requests

from trainyard.api_client import ApiError, TrainyardApi, is_local_url

# (method, path template) the console may call. Extend, never widen to a pattern.
# The model and webhook routes are issue 15's contract; an API without them answers
# 404 (locally) or 403 "Missing Authentication Token" (API Gateway), shown as absent.
CONSOLE_ROUTES: tuple[tuple[str, str], ...] = (
    ("GET", "/health"),
    ("GET", "/plans"),
    ("GET", "/algorithms"),
    ("GET", "/queue"),
    ("GET", "/tenants"),
    ("GET", "/tenants/{tenantId}"),
    ("GET", "/tenants/{tenantId}/runs"),
    ("GET", "/tenants/{tenantId}/runs/{runId}"),
    ("GET", "/tenants/{tenantId}/usage"),
    ("GET", "/tenants/{tenantId}/models"),
    ("POST", "/tenants/{tenantId}/models/{version}/approve"),
    ("POST", "/tenants/{tenantId}/models/{version}/reject"),
    ("GET", "/tenants/{tenantId}/webhook"),  # never its secret (redacted regardless)
    ("GET", "/tenants/{tenantId}/webhook/deliveries"),
)
QUERY_PARAMETERS = frozenset({"limit", "nextToken", "month"})
# A path parameter: ids, run ids, model versions. Never "/", "%", or only dots.
_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_MAX_QUERY_VALUE = 2048
MAX_BODY_BYTES = 16 * 1024

# Keys whose values are secrets by name: dropped from every answer, at any depth.
_SECRET_KEY = re.compile(
    r"secret|password|passphrase|credential|authorization|session_?token|access_?key|"
    r"private_?key|api_?key",
    re.IGNORECASE,
)
_ACCESS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA|AROA|AIDA)[A-Z0-9]{12,}\b")
REDACTED = "[redacted]"


class RouteNotAllowed(Exception):
    """The browser asked for something outside the allowlist."""


@dataclass(frozen=True)
class ProxyAnswer:
    status: int
    body: Any = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def error(self) -> dict[str, str]:
        if self.ok or not isinstance(self.body, dict):
            return {}
        detail = self.body.get("error")
        return detail if isinstance(detail, dict) else {}


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def match_route(method: str, path: str) -> str:
    """The template of the allowlisted route ``method path`` matches, else RouteNotAllowed."""
    if not path.startswith("/") or "//" in path or "\\" in path:
        raise RouteNotAllowed(f"{method} {path}")
    parts = path.split("/")[1:]
    for allowed_method, template in CONSOLE_ROUTES:
        if allowed_method != method:
            continue
        pattern = template.split("/")[1:]
        if len(pattern) != len(parts):
            continue
        if all(
            (p.startswith("{") and _SEGMENT.match(s) and s.strip(".")) or p == s
            for p, s in zip(pattern, parts, strict=True)
        ):
            return template
    raise RouteNotAllowed(f"{method} {path}")


def redact(value: Any, secrets: frozenset[str]) -> Any:
    """``value`` with secret-named keys dropped and secret values replaced."""
    if isinstance(value, dict):
        return {
            k: redact(v, secrets)
            for k, v in value.items()
            if not (isinstance(k, str) and _SECRET_KEY.search(k))
        }
    if isinstance(value, list):
        return [redact(v, secrets) for v in value]
    if isinstance(value, str):
        for secret in secrets:
            if secret and secret in value:
                value = value.replace(secret, REDACTED)
        return _ACCESS_KEY_ID.sub(REDACTED, value)
    return value


class ApiProxy:
    """Forwards allowlisted calls to ``base_url``; signs them unless it is the local stack."""

    def __init__(
        self,
        base_url: str,
        *,
        sigv4: bool | None = None,
        region: str | None = None,
        timeout: float = 10,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.sigv4 = (not is_local_url(base_url)) if sigv4 is None else sigv4
        # The CLI's client: its signing (credentials chain, region) is reused as is.
        self._client = TrainyardApi(self.base_url, sigv4=self.sigv4, region=region)
        self._session = requests.Session()
        self.timeout = timeout

    def _secrets(self) -> frozenset[str]:
        credentials = self._client._credentials
        if credentials is None:
            return frozenset()
        frozen = credentials.get_frozen_credentials()
        return frozenset(v for v in (frozen.access_key, frozen.secret_key, frozen.token) if v)

    def forward(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json_body: dict[str, Any] | None = None,
    ) -> ProxyAnswer:
        """Call one allowlisted route; any failure is an answer with an error envelope."""
        match_route(method, path)
        query = {}
        for name, value in (params or {}).items():
            if name not in QUERY_PARAMETERS or len(value) > _MAX_QUERY_VALUE:
                raise RouteNotAllowed(f"query parameter {name!r}")
            query[name] = value
        body = json.dumps(json_body).encode() if json_body is not None else None
        if body is not None and len(body) > MAX_BODY_BYTES:
            raise RouteNotAllowed("request body too large")
        prepared = requests.Request(method, self.base_url + path, params=query).prepare()
        url = prepared.url or self.base_url + path
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            if self.sigv4:
                headers = self._client._signed_headers(method, url, body, headers)
            response = self._session.request(
                method, url, data=body, headers=headers, timeout=self.timeout, allow_redirects=False
            )
        except ApiError as exc:  # no credentials or no region: nothing was sent
            return ProxyAnswer(502, error_body(exc.code, exc.message))
        except requests.ConnectionError:
            hint = " (is it running? start it with: trainyard local up)" if not self.sigv4 else ""
            message = f"cannot reach the API at {self.base_url}{hint}"
            return ProxyAnswer(502, error_body("ConnectionError", message))
        except requests.Timeout:
            message = f"no answer from {self.base_url} within {self.timeout}s"
            return ProxyAnswer(504, error_body("Timeout", message))
        return ProxyAnswer(response.status_code, redact(self._body(response), self._secrets()))

    @staticmethod
    def _body(response: requests.Response) -> Any:
        try:
            payload = response.json() if response.content else {}
        except ValueError:
            payload = None
        if response.ok:
            if payload is None:
                return error_body("UpstreamNotJson", "the API answered something other than JSON")
            return payload
        if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
            return payload
        # API Gateway's own refusals (IAM auth, unknown resources) are {"message": ...}.
        message = payload.get("message") if isinstance(payload, dict) else None
        text = str(message or response.reason or "request failed")
        return error_body(f"Http{response.status_code}", text)
