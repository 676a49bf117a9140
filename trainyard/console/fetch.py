"""What the pages read from the API, through the proxy, and how a failure reads.

A page is never blank: each read answers a ``Result`` (data, or why there is none),
and the templates say which: a route this API does not have yet ("not available
on this API"), credentials the API denied, an API that cannot be reached.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from trainyard.console.proxy import ApiProxy, ProxyAnswer

T = TypeVar("T")

# 404 codes that are about the resource, not the route (the route exists).
_RESOURCE_NOT_FOUND = frozenset(
    {"TenantNotFound", "RunNotFound", "ModelNotFound", "WebhookNotFound"}
)
MAX_TENANTS = 200  # the Tenants and Timeline pages read at most this many (noted on the page)
RUNS_PAGE = 100


@dataclass(frozen=True)
class Result:
    data: Any = None
    status: int = 200
    code: str = ""
    message: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def absent(self) -> bool:
        """The API has no such route (an API from before that route was added)."""
        if self.status == 404:
            return self.code not in _RESOURCE_NOT_FOUND
        # API Gateway answers unknown resources with 403 "Missing Authentication Token".
        return self.status in (403, 405) and "missing authentication token" in self.message.lower()

    @property
    def denied(self) -> bool:
        return self.status in (401, 403) and not self.absent

    def describe(self) -> str:
        """One sentence for people."""
        if self.ok:
            return ""
        if self.absent:
            return "not available on this API"
        if self.denied:
            return (
                f"the API denied the console's credentials (HTTP {self.status} {self.code}: "
                f"{self.message}); check the AWS credentials and region the console runs with"
            )
        if self.status >= 500 and self.code in ("ConnectionError", "Timeout"):
            return self.message
        return f"the API answered HTTP {self.status} {self.code}: {self.message}"

    @classmethod
    def of(cls, answer: ProxyAnswer) -> Result:
        if answer.ok:
            return cls(data=answer.body, status=answer.status)
        error = answer.error
        return cls(
            status=answer.status,
            code=str(error.get("code", f"Http{answer.status}")),
            message=str(error.get("message", "")),
        )


class ConsoleApi:
    """The reads (and the two writes) the pages make, each a ``Result``."""

    def __init__(self, proxy: ApiProxy, workers: int = 8) -> None:
        self.proxy = proxy
        self.workers = workers

    def get(self, path: str, **params: str) -> Result:
        return Result.of(self.proxy.forward("GET", path, params=params or None))

    def post(self, path: str, body: dict[str, Any]) -> Result:
        return Result.of(self.proxy.forward("POST", path, json_body=body))

    def each(self, items: list[T], read: Callable[[T], Any]) -> list[Any]:
        """``read`` of every item, concurrently (one request per tenant adds up)."""
        if not items:
            return []
        with ThreadPoolExecutor(max_workers=min(self.workers, len(items))) as pool:
            return list(pool.map(read, items))

    def tenants(self) -> tuple[Result, bool]:
        """Up to MAX_TENANTS tenants, following nextToken; and whether more were left."""
        tenants: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            params = {"limit": "100", **({"nextToken": token} if token else {})}
            page = self.get("/tenants", **params)
            if not page.ok:
                return page, False
            tenants += page.data.get("tenants") or []
            token = page.data.get("nextToken")
            if not token or len(tenants) >= MAX_TENANTS:
                return Result(data=tenants[:MAX_TENANTS]), bool(token)

    def runs(self, tenant_id: str, *, limit: int = RUNS_PAGE) -> Result:
        return self.get(f"/tenants/{tenant_id}/runs", limit=str(limit))

    def models(self, tenant_id: str) -> Result:
        return self.get(f"/tenants/{tenant_id}/models")

    def webhook(self, tenant_id: str) -> Result:
        return self.get(f"/tenants/{tenant_id}/webhook")

    def deliveries(self, tenant_id: str) -> Result:
        return self.get(f"/tenants/{tenant_id}/webhook/deliveries")

    def usage(self, tenant_id: str) -> Result:
        return self.get(f"/tenants/{tenant_id}/usage")

    def decide(self, tenant_id: str, version: str, decision: str, reason: str | None) -> Result:
        body = {"reason": reason} if reason else {}
        return self.post(f"/tenants/{tenant_id}/models/{version}/{decision}", body)
