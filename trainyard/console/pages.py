"""The six pages: what each reads from the API and the model its template draws."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from trainyard.console import run_view, timeline, views
from trainyard.console.fetch import ConsoleApi, Result

TENANT_RUNS = 50


@dataclass
class Page:
    name: str  # the nav entry it belongs to
    title: str
    template: str
    context: dict[str, Any] = field(default_factory=dict)
    # Reads that failed entirely (the page says so instead of showing nothing).
    errors: list[str] = field(default_factory=list)
    http_status: int | None = None

    @property
    def status(self) -> int:
        if self.http_status is not None:
            return self.http_status
        return 502 if self.errors else 200


def _now() -> datetime:
    return datetime.now(UTC)


def _all(api: ConsoleApi, reads: dict[str, Callable[[], Result]]) -> dict[str, Result]:
    names = list(reads)
    return dict(zip(names, api.each(names, lambda n: reads[n]()), strict=True))


def queue_page(api: ConsoleApi) -> Page:
    now = _now()
    got = _all(api, {"queue": lambda: api.get("/queue"), "plans": lambda: api.get("/plans")})
    page = Page("queue", "Queue", "queue.html")
    if not got["queue"].ok:
        page.errors.append(f"Queue: {got['queue'].describe()}")
    if not got["plans"].ok:
        page.errors.append(f"Plans: {got['plans'].describe()}")
    page.context = views.queue_page(got["queue"], got["plans"], now)
    return page


def _tenant_runs(api: ConsoleApi, tenants: list[dict[str, Any]]) -> tuple[list[Any], list[str]]:
    results = api.each(tenants, lambda t: api.runs(str(t.get("tenantId"))))
    runs: list[dict[str, Any]] = []
    failed: list[str] = []
    for tenant, result in zip(tenants, results, strict=True):
        if result.ok:
            runs += result.data.get("runs") or []
        else:
            failed.append(f"{tenant.get('tenantId')}: {result.describe()}")
    return runs, failed


def timeline_page(api: ConsoleApi, hours: float | None = None) -> Page:
    now = _now()
    page = Page("timeline", "Timeline", "timeline.html")
    plans = api.get("/plans")
    tenants, truncated = api.tenants()
    if not tenants.ok:
        page.errors.append(f"Tenants: {tenants.describe()}")
    if not plans.ok:
        page.errors.append(f"Plans: {plans.describe()}")
    runs, failed = _tenant_runs(api, tenants.data or [])
    caps = {
        name: int(plan.get("maxConcurrentRuns") or 0)
        for name, plan in views.plans_by_name(plans).items()
    }
    page.context = {
        "timeline": timeline.build(runs, caps, now, hours),
        "failed": failed,
        "truncated": truncated,
        "hourChoices": (1, 3, 6, 12, 24),
    }
    return page


def tenants_page(api: ConsoleApi) -> Page:
    now = _now()
    page = Page("tenants", "Tenants", "tenants.html")
    tenants, truncated = api.tenants()
    if not tenants.ok:
        page.errors.append(f"Tenants: {tenants.describe()}")

    def row(tenant: dict[str, Any]) -> dict[str, Any]:
        tid = str(tenant.get("tenantId"))
        return views.tenant_row(
            tenant, api.usage(tid), api.runs(tid, limit=1), api.models(tid), now
        )

    page.context = {"rows": api.each(tenants.data or [], row), "truncated": truncated}
    return page


def tenant_page(api: ConsoleApi, tenant_id: str, notice: str = "") -> Page:
    now = _now()
    got = _all(
        api,
        {
            "tenant": lambda: api.get(f"/tenants/{tenant_id}"),
            "runs": lambda: api.runs(tenant_id, limit=TENANT_RUNS),
            "usage": lambda: api.usage(tenant_id),
            "models": lambda: api.models(tenant_id),
            "deliveries": lambda: api.deliveries(tenant_id),
            "webhook": lambda: api.webhook(tenant_id),
        },
    )
    page = Page("tenants", f"Tenant {tenant_id}", "tenant.html")
    tenant = got["tenant"]
    if not tenant.ok:
        page.errors.append(f"Tenant {tenant_id}: {tenant.describe()}")
        if tenant.status == 404:
            page.http_status = 404
    runs, models, deliveries = got["runs"], got["models"], got["deliveries"]
    page.context = {
        "tenantId": tenant_id,
        "tenant": tenant.data if tenant.ok else None,
        "training": views.training_settings(tenant.data if tenant.ok else None),
        "budget": views.budget(got["usage"]),
        "month": (got["usage"].data or {}).get("month") if got["usage"].ok else None,
        "runs": [views.run_row(r, now) for r in (runs.data or {}).get("runs") or []]
        if runs.ok
        else [],
        "runsError": "" if runs.ok else runs.describe(),
        "runsMore": bool(runs.ok and runs.data.get("nextToken")),
        "models": [views.model_row(m) for m in (models.data or {}).get("models") or []]
        if models.ok
        else [],
        "modelsError": "" if models.ok else models.describe(),
        "deliveries": views.deliveries(deliveries),
        "deliveriesError": "" if deliveries.ok else deliveries.describe(),
        "webhook": views.webhook(got["webhook"]),
        "notice": notice,
    }
    return page


def run_page(api: ConsoleApi, tenant_id: str, run_id: str) -> Page:
    """One run: what it trained with (and why), its data, lineage and retries."""
    got = api.get(f"/tenants/{tenant_id}/runs/{run_id}")
    page = Page("tenants", f"Run {run_id[:12]} of {tenant_id}", "run.html")
    page.context = {"tenantId": tenant_id, "runId": run_id, "detail": None}
    if not got.ok:
        page.errors.append(f"Run {run_id}: {got.describe()}")
        if got.status == 404:
            page.http_status = 404
        return page
    page.context["detail"] = run_view.run_detail(got.data, _now())
    return page


def plans_page(api: ConsoleApi) -> Page:
    page = Page("plans", "Plans", "plans.html")
    reads = {"plans": lambda: api.get("/plans"), "algorithms": lambda: api.get("/algorithms")}
    got = _all(api, reads)
    plans, algorithms = got["plans"], got["algorithms"]
    if not plans.ok:
        page.errors.append(f"Plans: {plans.describe()}")
    if not algorithms.ok:
        page.errors.append(f"Algorithms: {algorithms.describe()}")
    rows = views.plan_rows(plans)
    page.context = {
        "rows": rows,
        "globalCap": (plans.data or {}).get("globalMaxConcurrentRuns") if plans.ok else None,
        "hasUploads": any(r["maxUpload"] != views.DASH for r in rows),
        "hasSizing": any(r["sizing"] != views.DASH for r in rows),
        "algorithms": views.algorithm_rows(algorithms),
        "autoRule": views.auto_rule_text(algorithms),
    }
    return page
