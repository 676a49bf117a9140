"""What the fault tests and the load benchmark observe on the embedded stack (every
run, a tenant's executions) and the invariant they check on it: no cap exceeded."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainyard_core.config import Settings

    from .stack import EmbeddedStack


def tenant_of_display_name(name: str | None) -> str | None:
    # Display names are "<tenant>-<12 hex of the run id>" (models.Run.display_name).
    return name.rsplit("-", 1)[0] if name and "-" in name else None


# ---------------------------------------------------------------- invariants


def iso_seconds(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def max_overlap(intervals: Iterable[tuple[float, float]]) -> int:
    """Most intervals open at one instant. Ends sort before starts at the same
    instant: a slot freed and reused at once is not an overlap."""
    spans = list(intervals)
    points = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    current = peak = 0
    for _, delta in points:
        current += delta
        peak = max(peak, current)
    return peak


def cap_violations(
    runs: Iterable[dict[str, Any]], settings: Settings, now: float | None = None
) -> list[str]:
    """Caps that the runs' own start/end times show exceeded (global, per plan, per
    tenant). Runs are API-shaped dicts; a started run without an end is still open."""
    end_now = now if now is not None else datetime.now(UTC).timestamp()
    spans: list[tuple[str, str, tuple[float, float]]] = []
    for run in runs:
        if not run.get("startedAt"):
            continue
        start = iso_seconds(run["startedAt"])
        end = iso_seconds(run["endedAt"]) if run.get("endedAt") else max(end_now, start)
        spans.append((run["plan"], run["tenantId"], (start, end)))
    problems: list[str] = []
    peak = max_overlap(s for _, _, s in spans)
    if peak > settings.global_max_concurrent_runs:
        problems.append(f"global: {peak} > {settings.global_max_concurrent_runs}")
    for name, plan in settings.plans.items():
        peak = max_overlap(s for p, _, s in spans if p == name)
        if peak > plan.max_concurrent_runs:
            problems.append(f"plan {name}: {peak} > {plan.max_concurrent_runs}")
        for tenant in sorted({t for p, t, _ in spans if p == name}):
            peak = max_overlap(s for p, t, s in spans if p == name and t == tenant)
            if peak > plan.max_concurrent_runs_per_tenant:
                problems.append(f"tenant {tenant}: {peak} > {plan.max_concurrent_runs_per_tenant}")
    return problems


# ---------------------------------------------------------------- observations


def all_runs(stack: EmbeddedStack) -> list[dict[str, Any]]:
    """Every run in the runs table, API-shaped (also runs of offboarded tenants,
    which the API no longer lists)."""
    from boto3.dynamodb.types import TypeDeserializer
    from trainyard_core.store.run_items import item_to_run

    deserializer = TypeDeserializer()
    ddb = stack.client("dynamodb")
    out: list[dict[str, Any]] = []
    for page in ddb.get_paginator("scan").paginate(TableName=stack.names.runs_table):
        for item in page["Items"]:
            plain = {k: deserializer.deserialize(v) for k, v in item.items()}
            out.append(item_to_run(plain).api_dict())
    return out


@dataclass(frozen=True)
class ExecutionView:
    arn: str
    token: str | None
    display_name: str | None
    status: str


def executions_of(stack: EmbeddedStack, tenant: str) -> list[ExecutionView]:
    """The pipeline executions SageMaker (moto) holds for a tenant's runs."""
    assert stack.engine is not None
    backend = stack.engine.backend()
    pipeline = backend.pipelines.get(stack.names.pipeline_name)
    if pipeline is None:
        return []
    return [
        ExecutionView(
            arn,
            execution.client_request_token,
            execution.pipeline_execution_display_name,
            execution.pipeline_execution_status,
        )
        for arn, execution in list(pipeline.pipeline_executions.items())
        if tenant_of_display_name(execution.pipeline_execution_display_name) == tenant
    ]
