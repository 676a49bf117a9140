"""Page models: the API's JSON turned into what each page shows (pure, no I/O).

Fields of issue 15 (``waitingFor``, ``estimatedStartAt``, models, webhook
deliveries) are read as that issue's contract writes them; an API without them
shows "—" (or "not available on this API" for a missing route).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from trainyard import run_metrics
from trainyard.console import fmt
from trainyard.console.fetch import Result

DASH = fmt.DASH
MODEL_STATUSES = ("PendingManualApproval", "Approved", "Rejected")
TERMINAL = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})


def plans_by_name(plans: Result) -> dict[str, dict[str, Any]]:
    if not plans.ok:
        return {}
    return {str(p.get("name")): p for p in plans.data.get("plans") or []}


def global_shares(plans: Result) -> dict[str, float]:
    """Each plan's share of the global cap by weight (what it gets when all are busy)."""
    if not plans.ok:
        return {}
    entries = plans.data.get("plans") or []
    total = sum(int(p.get("weight") or 0) for p in entries)
    cap = plans.data.get("globalMaxConcurrentRuns")
    if not total or not isinstance(cap, int):
        return {}
    return {str(p.get("name")): cap * int(p.get("weight") or 0) / total for p in entries}


def waiting_for(run: dict[str, Any]) -> tuple[str, str]:
    """(code, message) of why a queued run waits; the older ``waitingReason`` as a message."""
    structured = run.get("waitingFor")
    if isinstance(structured, dict):
        return fmt.text(structured.get("code")), fmt.text(structured.get("message"))
    reason = run.get("waitingReason")
    return DASH, fmt.text(reason)


def estimated_start(run: dict[str, Any], now: datetime) -> str:
    if "estimatedStartAt" not in run:
        return DASH
    value = run.get("estimatedStartAt")
    if value is None:
        return "unknown"
    return f"{fmt.relative(value, now)} ({fmt.clock(value)})"


def queue_page(queue: Result, plans: Result, now: datetime) -> dict[str, Any]:
    plan_info = plans_by_name(plans)
    shares = global_shares(plans)
    sections = []
    for name, entry in (queue.data or {}).items() if queue.ok else []:
        plan = plan_info.get(name, {})
        waiting = []
        for run in entry.get("runs") or []:
            code, message = waiting_for(run)
            waiting.append(
                {
                    "position": fmt.text(run.get("queuePosition")),
                    "tenantId": run.get("tenantId"),
                    "runId": run.get("runId"),
                    "shortId": fmt.short_id(run.get("runId")),
                    "queuedAt": fmt.clock(run.get("queuedAt")),
                    "waited": fmt.relative(run.get("queuedAt"), now),
                    "waitingCode": code,
                    "waitingMessage": message,
                    "estimatedStart": estimated_start(run, now),
                }
            )
        share = shares.get(name)
        sections.append(
            {
                "name": name,
                "running": int(entry.get("running") or 0),
                "queued": int(entry.get("queued") or 0),
                "cap": int(entry.get("cap") or 0),
                "tenantCap": fmt.text(plan.get("maxConcurrentRunsPerTenant")),
                "weight": fmt.text(plan.get("weight")),
                "share": f"{share:.1f}" if share is not None else DASH,
                "waiting": waiting,
            }
        )
    running = sum(s["running"] for s in sections)
    global_cap = plans.data.get("globalMaxConcurrentRuns") if plans.ok else None
    return {
        "sections": sections,
        "running": running,
        "queued": sum(s["queued"] for s in sections),
        "globalCap": fmt.text(global_cap),
        "totalWeight": sum(int(p.get("weight") or 0) for p in plan_info.values()) or DASH,
    }


def budget(usage: Result) -> dict[str, Any]:
    """Usage vs the plan's monthly budget, as text and as a 0..100 meter value."""
    if not usage.ok:
        return {"text": usage.describe() if usage.absent else DASH, "percent": None, "cost": DASH}
    used = usage.data.get("trainingHours")
    limit = usage.data.get("budgetHours")
    cost = fmt.usd(usage.data.get("costEstimateUsd"))
    if not isinstance(used, int | float):
        return {"text": DASH, "percent": None, "cost": cost}
    if not isinstance(limit, int | float) or limit <= 0:
        return {"text": f"{fmt.hours(used)} of unlimited", "percent": None, "cost": cost}
    percent = min(100.0, 100.0 * used / limit)
    text = f"{fmt.hours(used)} of {fmt.hours(limit)} ({100.0 * used / limit:.1f}%)"
    return {"text": text, "percent": round(percent, 1), "cost": cost}


def model_count(models: Result) -> str:
    if not models.ok:
        return "not available on this API" if models.absent else DASH
    count = len(models.data.get("models") or [])
    return f"{count}+" if models.data.get("nextToken") else str(count)


def last_run(runs: Result, now: datetime) -> dict[str, str]:
    if not runs.ok or not runs.data.get("runs"):
        return {"status": DASH, "when": "no runs" if runs.ok else DASH}
    run = runs.data["runs"][0]
    when = run.get("endedAt") or run.get("startedAt") or run.get("queuedAt")
    return {"status": fmt.text(run.get("status")), "when": fmt.relative(when, now)}


def tenant_row(
    tenant: dict[str, Any], usage: Result, runs: Result, models: Result, now: datetime
) -> dict[str, Any]:
    return {
        "tenantId": tenant.get("tenantId"),
        "status": fmt.text(tenant.get("status")),
        "plan": fmt.text(tenant.get("plan")),
        "isolation": fmt.text(tenant.get("isolation")),
        "budget": budget(usage),
        "lastRun": last_run(runs, now),
        "models": model_count(models),
    }


def run_row(run: dict[str, Any], now: datetime) -> dict[str, Any]:
    code, message = waiting_for(run)
    queued = run.get("status") == "QUEUED"
    return {
        "runId": run.get("runId"),
        "shortId": fmt.short_id(run.get("runId")),
        "status": fmt.text(run.get("status")),
        "queuedAt": fmt.clock(run.get("queuedAt")),
        "startedAt": fmt.clock(run.get("startedAt")),
        "duration": fmt.run_duration(run, now),
        "metrics": fmt.metrics(run.get("metrics")),
        "primaryMetric": run_metrics.metric_label(run),
        "problemType": run_metrics.problem_type_of(run),
        "algorithm": fmt.text((run.get("training") or {}).get("algorithm")),
        "instance": instance(run),
        "data": data_report(run.get("dataReport")),
        "cost": fmt.usd(run.get("costEstimateUsd")),
        "failureReason": fmt.text(run.get("failureReason")),
        "queuePosition": fmt.text(run.get("queuePosition")) if queued else DASH,
        "waitingFor": (f"{code}: {message}" if code != DASH else message) if queued else DASH,
        "estimatedStart": estimated_start(run, now) if queued else DASH,
    }


def instance(run: dict[str, Any]) -> str:
    """ "2 x ml.m5.xlarge": what the run was sized to at dispatch."""
    training = run.get("training") or {}
    kind = run.get("instanceType") or training.get("instanceType")
    count = run.get("instanceCount") or training.get("instanceCount")
    if not kind:
        return DASH
    return f"{count} x {kind}" if isinstance(count, int) else str(kind)


def data_report(report: Any) -> str:
    """ "1,200 rows, 8 columns" from the run's dataReport (set once preprocess ran),
    with "columns changed: +2 -1, reordered" when they drifted since the baseline."""
    if not isinstance(report, dict):
        return DASH
    parts = [f"{report[k]:,} {k}" for k in ("rows", "columns") if isinstance(report.get(k), int)]
    drift = report.get("schemaDrift")
    if isinstance(drift, dict) and drift.get("drifted"):
        changes = []
        for sign, kind in (("+", "added"), ("-", "removed")):
            count = len(drift.get(kind) or []) + int(drift.get(f"{kind}Omitted") or 0)
            if count:
                changes.append(f"{sign}{count}")
        if drift.get("reordered"):
            changes.append("reordered")
        parts.append("columns changed: " + " ".join(changes))
    return ", ".join(parts) or DASH


def training_settings(tenant: dict[str, Any] | None) -> dict[str, str]:
    """The tenant's ``training`` and ``retrain`` settings in words (tenant-supplied
    hyperparameters are text; the templates escape them)."""
    training = (tenant or {}).get("training") or {}
    params = training.get("hyperparameters") or {}
    retrain = (tenant or {}).get("retrain") or {}
    schedule = DASH
    if retrain.get("every"):
        schedule = f"every {retrain['every']}, next due {fmt.clock(retrain.get('nextDueAt'))}"
        if retrain.get("lastOutcome"):
            schedule += f"; last check: {retrain['lastOutcome']}"
    return {
        "algorithm": fmt.text(training.get("algorithm")) if training else "default",
        "problemType": fmt.text(training.get("problemType")) if training else "default",
        "hyperparameters": ", ".join(f"{k}={v}" for k, v in sorted(params.items())) or DASH,
        "retrain": schedule,
    }


def model_row(model: dict[str, Any]) -> dict[str, Any]:
    status = str(model.get("status") or "")
    return {
        "version": fmt.text(model.get("version")),
        "versionKey": str(model.get("version") or ""),
        "status": fmt.text(status),
        "pending": status == "PendingManualApproval",
        "canApprove": status != "Approved",
        "canReject": status != "Rejected",
        "metrics": fmt.metrics(model.get("metrics")),
        "runId": fmt.short_id(model.get("runId")),
        "createdAt": fmt.clock(model.get("createdAt")),
        "arn": fmt.text(model.get("modelPackageArn")),
        "decision": _decision(model),
    }


def _decision(model: dict[str, Any]) -> str:
    """Who decided the status and why (issue 15 records both)."""
    who, why = model.get("decidedBy"), model.get("reason")
    if not who and not why:
        return DASH
    text = f"by {who}" if who else ""
    if model.get("decidedAt"):
        text += f" at {fmt.clock(model.get('decidedAt'))}"
    return f"{text}: {why}".strip(": ") if why else text


# Delivery records are issue 15's; their field names are read with fallbacks.
def _first(record: dict[str, Any], *names: str) -> Any:
    for name in names:
        if record.get(name) not in (None, ""):
            return record[name]
    return None


def delivery_row(record: dict[str, Any]) -> dict[str, Any]:
    response = _first(record, "responseStatus", "statusCode", "httpStatus", "lastStatusCode")
    return {
        "event": fmt.text(_first(record, "event", "eventType", "type")),
        "status": fmt.text(_first(record, "status", "state")),
        "attempts": fmt.text(_first(record, "attempts", "attemptCount")),
        "response": fmt.text(response),
        "at": fmt.clock(_first(record, "lastAttemptAt", "deliveredAt", "updatedAt", "createdAt")),
        "error": fmt.text(_first(record, "error", "lastError", "failureReason")),
        "id": fmt.text(_first(record, "deliveryId", "id")),
        "run": fmt.short_id(record.get("runId")),
    }


def webhook(result: Result) -> str:
    """The tenant's webhook in one line (its URL and events; its secret is never read)."""
    if result.ok and isinstance(result.data, dict):
        events = result.data.get("events") or []
        return f"{fmt.text(result.data.get('url'))} ({', '.join(events) or 'all events'})"
    if result.code == "WebhookNotFound":
        return "none set"
    return result.describe() if result.absent else DASH


def deliveries(result: Result) -> list[dict[str, Any]]:
    if not result.ok:
        return []
    body = result.data
    records = body.get("deliveries") if isinstance(body, dict) else body
    return [delivery_row(r) for r in records or [] if isinstance(r, dict)]


def plan_rows(plans: Result) -> list[dict[str, Any]]:
    shares = global_shares(plans)
    rows = []
    for name, plan in plans_by_name(plans).items():
        count = plan.get("trainingInstanceCount")
        instance = fmt.text(plan.get("trainingInstanceType"))
        rows.append(
            {
                "name": name,
                "cap": fmt.text(plan.get("maxConcurrentRuns")),
                "tenantCap": fmt.text(plan.get("maxConcurrentRunsPerTenant")),
                "borrow": fmt.text(plan.get("maxBorrowedRunsPerTenant")),
                "weight": fmt.text(plan.get("weight")),
                "share": f"{shares[name]:.1f}" if name in shares else DASH,
                "isolation": fmt.text(plan.get("isolation")),
                "instance": f"{count} x {instance}" if isinstance(count, int) else instance,
                "budget": fmt.hours(plan.get("monthlyTrainingHours"))
                if plan.get("monthlyTrainingHours") is not None
                else "unlimited",
                "maxUpload": _bytes(plan.get("maxUploadBytes")),
                "sizing": _sizing(plan.get("sizing")),
            }
        )
    return rows


def _sizing(rules: Any) -> str:
    """A plan's sizing rules (by the run's input bytes), e.g. "from 1.0 GiB: 2 x ml.m5.xlarge"."""
    if not isinstance(rules, list) or not rules:
        return DASH
    parts = []
    for rule in rules:
        if not isinstance(rule, dict):
            continue
        count = rule.get("instanceCount") or 1
        parts.append(
            f"from {_bytes(rule.get('minBytes'))}: {count} x {fmt.text(rule.get('instanceType'))}"
        )
    return "; ".join(parts) or DASH


def _bytes(value: Any) -> str:
    if not isinstance(value, int | float):
        return DASH
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    return DASH


def algorithm_rows(algorithms: Result) -> list[dict[str, str]]:
    """The training catalog (``GET /algorithms``), one row per algorithm: its image,
    problem types, plans and hyperparameters with their defaults and ranges."""
    if not algorithms.ok or not isinstance(algorithms.data, dict):
        return []
    rows = []
    for entry in algorithms.data.get("algorithms") or []:
        if not isinstance(entry, dict):
            continue
        plans = entry.get("plans")
        rows.append(
            {
                "name": fmt.text(entry.get("name")),
                "description": fmt.text(entry.get("description")),
                "image": " ".join(
                    fmt.text(entry.get(key)) for key in ("framework", "frameworkVersion")
                ),
                "problemTypes": ", ".join(map(str, entry.get("problemTypes") or [])) or DASH,
                "plans": ", ".join(map(str, plans)) if isinstance(plans, list) else "every plan",
                "hyperparameters": _hyperparameters(entry.get("hyperparameters")),
            }
        )
    return rows


def _hyperparameters(specs: Any) -> str:
    """ "eta=0.2 (0.001..1); num_round=50 (1..1000)": each default and its range."""
    if not isinstance(specs, dict) or not specs:
        return DASH
    parts = []
    for name, spec in specs.items():
        if not isinstance(spec, dict):
            continue
        text = f"{name}={fmt.text(spec.get('default'))}"
        if spec.get("choices"):
            text += f" ({'|'.join(map(str, spec['choices']))})"
        elif spec.get("min") is not None or spec.get("max") is not None:
            lo, hi = spec.get("min"), spec.get("max")
            text += f" ({_number(lo)}..{_number(hi)})"
        parts.append(text)
    return "; ".join(parts) or DASH


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return "" if value is None else str(value)


def auto_rule_text(algorithms: Result) -> str:
    """How ``auto`` picks: "up to 1.0 MiB: linear; larger: xgboost"."""
    if not algorithms.ok or not isinstance(algorithms.data, dict):
        return DASH
    auto = algorithms.data.get("auto") or {}
    parts = [
        f"up to {_bytes(rule.get('maxBytes'))}: {fmt.text(rule.get('algorithm'))}"
        for rule in auto.get("rules") or []
        if isinstance(rule, dict)
    ]
    if auto.get("default"):
        parts.append(f"larger: {fmt.text(auto.get('default'))}")
    return "; ".join(parts) or DASH
