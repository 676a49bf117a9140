"""Tables and short forms the commands print (rich)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.table import Table

from trainyard.run_metrics import metric_of as metric_of  # the CLI's tables use it


def short_id(run_id: str | None) -> str:
    return (run_id or "")[-12:]


def short_time(value: str | None) -> str:
    # "2024-05-01T12:03:04.567Z" -> "12:03:04"; full timestamps stay in --json.
    if not value:
        return "-"
    return value[11:19] if len(value) >= 19 else value


def relative_start(value: str | None, now: datetime | None = None) -> str:
    """An estimated start as people say it: "in ~12 min" ("" when unknown)."""
    if not value:
        return ""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return ""
    seconds = (moment - (now or datetime.now(UTC))).total_seconds()
    if seconds < 30:
        return "any moment now"
    if seconds < 90:
        return f"in ~{round(seconds)} s"
    if seconds < 90 * 60:
        return f"in ~{round(seconds / 60)} min"
    return f"in ~{seconds / 3600:.1f} h"


def wait_summary(run: dict[str, Any], now: datetime | None = None) -> str:
    """Where a waiting run is, when it should start and why it waits:
    "#2 in the basic queue, starts in ~12 min; PLAN_CAP: plan basic runs 4 of ..."."""
    parts = []
    if run.get("queuePosition"):
        parts.append(f"#{run['queuePosition']} in the {run.get('plan', '?')} queue")
    start = relative_start(run.get("estimatedStartAt"), now)
    if start:
        parts.append(f"starts {start}")
    elif run.get("status") == "QUEUED":
        parts.append("start unknown")
    text = ", ".join(parts)
    waiting = run.get("waitingFor") or {}
    if waiting.get("code"):
        reason = f"{waiting['code']}: {waiting.get('message', '')}".rstrip(": ")
        text = f"{text}; {reason}" if text else reason
    return text


STATUS_STYLE = {
    "SUCCEEDED": "green",
    "FAILED": "red",
    "STOPPED": "yellow",
    "RUNNING": "cyan",
    "STARTING": "cyan",
    "QUEUED": "magenta",
    "ACTIVE": "green",
    "PROVISIONING": "cyan",
    "SUSPENDED": "yellow",
    "OFFBOARDING": "yellow",
}


def styled(status: str | None) -> str:
    status = status or "-"
    style = STATUS_STYLE.get(status)
    return f"[{style}]{status}[/{style}]" if style else status


def tenant_table(tenants: list[dict[str, Any]]) -> Table:
    table = Table(title="Tenants")
    for column in ("tenant", "plan", "status", "isolation", "data location", "created"):
        table.add_column(column, overflow="fold")
    for t in tenants:
        location = (
            f"s3://{t['dataBucket']}/{t.get('dataPrefix') or ''}" if t.get("dataBucket") else "-"
        )
        table.add_row(
            t.get("tenantId", "?"),
            t.get("plan", "?"),
            styled(t.get("status")),
            t.get("isolation") or "-",
            location,
            t.get("createdAt") or "-",
        )
    return table


def tenant_details(tenant: dict[str, Any]) -> Table:
    table = Table(show_header=False, title=f"Tenant {tenant.get('tenantId', '?')}")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in tenant.items():
        shown = styled(value) if key == "status" else ("-" if value is None else str(value))
        table.add_row(key, shown)
    return table


def runs_table(tenant_id: str, runs: list[dict[str, Any]]) -> Table:
    table = Table(title=f"Runs of {tenant_id}")
    for column in ("run", "status", "trigger", "queued", "started", "ended", "metric", "detail"):
        table.add_column(column, overflow="fold")
    for run in runs:
        trigger = run.get("trigger") or {}
        objects = trigger.get("objects") or []
        detail = (
            run.get("failureReason")
            or run.get("modelPackageArn")
            or (wait_summary(run) if run.get("status") in ("QUEUED", "STARTING") else "")
        )
        table.add_row(
            short_id(run.get("runId")),
            styled(run.get("status")),
            f"{trigger.get('type', '?')} ({len(objects)} file{'s' if len(objects) != 1 else ''})",
            short_time(run.get("queuedAt")),
            short_time(run.get("startedAt")),
            short_time(run.get("endedAt")),
            metric_of(run),
            detail or "-",
        )
    return table


def plans_table(body: dict[str, Any]) -> Table:
    table = Table(
        title=f"Plans (global max concurrent runs: {body.get('globalMaxConcurrentRuns', '?')})"
    )
    for column in (
        "plan",
        "max runs",
        "/tenant",
        "weight",
        "isolation",
        "instance",
        "hours/mo",
    ):
        table.add_column(column)
    for p in body.get("plans", []):
        hours = p.get("monthlyTrainingHours")
        table.add_row(
            p.get("name", "?"),
            str(p.get("maxConcurrentRuns", "-")),
            str(p.get("maxConcurrentRunsPerTenant", "-")),
            str(p.get("weight", "-")),
            p.get("isolation", "-"),
            p.get("trainingInstanceType", "-")
            + (f" x{p['trainingInstanceCount']}" if p.get("trainingInstanceCount", 1) > 1 else ""),
            "unlimited" if hours is None else f"{hours:g}",
        )
    return table


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:g} {unit}" if unit == "B" else f"{n:.4g} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _hyperparameter(name: str, spec: dict[str, Any]) -> str:
    if spec.get("choices"):
        allowed = "|".join(spec["choices"])
    else:
        lo, hi = spec.get("min"), spec.get("max")
        allowed = f"{'' if lo is None else f'{lo:g}'}..{'' if hi is None else f'{hi:g}'}"
    return f"{name}={spec.get('default')} ({allowed})"


def algorithms_table(body: dict[str, Any]) -> Table:
    auto = body.get("auto") or {}
    rules = ", ".join(
        f"<= {_bytes(r['maxBytes'])}: {r['algorithm']}" for r in auto.get("rules", [])
    )
    default = body.get("default") or {}
    table = Table(
        title=f"Algorithms (auto: {rules or '-'}, else {auto.get('default', '?')}; "
        f"default: {default.get('algorithm', '?')} {default.get('problemType', '')})"
    )
    for column in ("algorithm", "image", "problem types", "hyperparameters", "plans"):
        table.add_column(column, overflow="fold")
    for a in body.get("algorithms", []):
        table.add_row(
            a.get("name", "?"),
            f"{a.get('framework', '?')} {a.get('frameworkVersion', '')}",
            ", ".join(a.get("problemTypes", [])),
            "\n".join(_hyperparameter(k, v) for k, v in (a.get("hyperparameters") or {}).items())
            or "-",
            ", ".join(a.get("plans", [])) or "-",
        )
    return table


def _plan_entries(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Plans of a /queue answer, whichever of the shapes the API uses:
    {"basic": {...}}, {"plans": {"basic": {...}}} or {"plans": [{"plan": "basic", ...}]}."""
    plans: Any = body.get("plans", body)
    if isinstance(plans, dict):
        return [{"plan": name, **value} for name, value in plans.items() if isinstance(value, dict)]
    return [p for p in plans if isinstance(p, dict)] if isinstance(plans, list) else []


def queue_tables(body: dict[str, Any]) -> list[Table]:
    entries = _plan_entries(body)
    summary = Table(title="Backlog per plan")
    scalar_keys: list[str] = []
    for entry in entries:
        for key, value in entry.items():
            if key not in scalar_keys and not isinstance(value, list | dict):
                scalar_keys.append(key)
    for key in scalar_keys:
        summary.add_column(key)
    for entry in entries:
        summary.add_row(*("-" if entry.get(k) is None else str(entry.get(k)) for k in scalar_keys))

    queued = Table(title="Queued runs")
    for column in ("plan", "position", "tenant", "run", "queued", "starts", "waiting for"):
        queued.add_column(column, overflow="fold")
    count = 0
    for entry in entries:
        plan = str(entry.get("plan") or entry.get("name") or "?")
        for run in entry.get("runs") or entry.get("queued_runs") or entry.get("queuedRuns") or []:
            count += 1
            queued.add_row(
                plan,
                str(run.get("queuePosition", "-")),
                str(run.get("tenantId", "?")),
                short_id(run.get("runId")),
                short_time(run.get("queuedAt")),
                relative_start(run.get("estimatedStartAt")) or "-",
                str((run.get("waitingFor") or {}).get("code") or "-"),
            )
    return [summary, queued] if count else [summary]


# --- tenants
