"""Recorder Lambda: the pipeline's Lambda step writes a run's results.

Event (from the pipeline definition, values may arrive as strings):
``{"tenant_id", "run_id", "model_package_arn", "metrics", "data_report",
"problem_type", "algorithm", "evaluation_uri", "training_job_name"}``; ``metrics``
is the evaluation's metrics as one JSON object string (e.g. ``{"auc": 0.9,
"accuracy": 0.8}``, ``{"rmse": 1.2, "r2": 0.7}``), ``data_report`` preprocess's
data report as one (an older definition sends ``auc`` alone). Writes ``metrics``,
``dataReport`` and ``modelPackageArn`` on the run; idempotent (a retried step
writes the same values again). A newly recorded model package is announced
(``model.registered``) and the plan's auto-approval rule applied
(``model_versions.ModelVersionService.registered``).
"""

from __future__ import annotations

import json
import math
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field, field_validator
from trainyard_core import limits
from trainyard_core.clock import Clock
from trainyard_core.models import iso_ms
from trainyard_core.ports.runs import RunNotFoundError, RunRepository

from trainyard_handlers import dependencies
from trainyard_handlers.observability import logger, metrics, tracer


class RecordRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    tenant_id: str
    run_id: str
    model_package_arn: str | None = None
    auc: float | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    data_report: dict[str, Any] | None = None
    problem_type: str | None = None
    algorithm: str | None = None
    evaluation_uri: str | None = None
    training_job_name: str | None = None

    @field_validator("model_package_arn", "evaluation_uri", "training_job_name", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and value.strip() in ("", "None", "null") else value

    @field_validator("auc", mode="before")
    @classmethod
    def _auc(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip() in ("", "None", "null"):
            return None
        return value

    @field_validator("auc")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("auc must be a finite number")
        return value

    @field_validator("metrics", "data_report", mode="before")
    @classmethod
    def _json_object(cls, value: Any) -> Any:
        """The pipeline hands both over as JSON strings (a JsonGet of a string)."""
        if isinstance(value, str):
            if value.strip() in ("", "None", "null"):
                return None
            if len(value) > limits.DATA_REPORT_MAX_CHARS:
                raise ValueError(f"longer than {limits.DATA_REPORT_MAX_CHARS} characters")
            return json.loads(value)
        return value

    @field_validator("metrics", mode="before")
    @classmethod
    def _no_metrics(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("metrics")
    @classmethod
    def _finite_metrics(cls, value: dict[str, float]) -> dict[str, float]:
        if len(value) > limits.METRICS_MAX:
            raise ValueError(f"more than {limits.METRICS_MAX} metrics")
        if not all(math.isfinite(v) for v in value.values()):
            raise ValueError("metrics must be finite numbers")
        return value


class UnknownRunError(LookupError):
    """The pipeline reported results for a run the registry does not know."""


# --- dependencies (trainyard_handlers.dependencies)


def get_runs() -> RunRepository:
    return dependencies.run_repository()


def set_dependencies(runs: RunRepository | None, clock: Clock | None = None) -> None:
    """Tests inject a repository and a clock (None = build from the environment)."""
    for dependency, value in ((dependencies.run_repository, runs), (dependencies.clock, clock)):
        if value is None:
            dependency.reset()
        else:
            dependency.override(value)


def reset_dependencies() -> None:
    dependencies.reset(*dependencies.RECORDER)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, str]:
    request = parse(event=event, model=RecordRequest)
    logger.append_keys(tenant_id=request.tenant_id, run_id=request.run_id)
    run_metrics = dict(request.metrics)
    if request.auc is not None:
        run_metrics.setdefault("auc", request.auc)
    runs = get_runs()
    try:
        before = runs.get_run(request.tenant_id, request.run_id)
        run = runs.record_results(
            request.tenant_id,
            request.run_id,
            run_metrics,
            request.model_package_arn,
            iso_ms(dependencies.clock().now()) or "",
            data_report=request.data_report,
        )
    except RunNotFoundError as exc:
        # Fail the step loudly: results for an unknown run mean a wiring bug.
        logger.error("results for an unknown run", extra={"error": str(exc)})
        raise UnknownRunError(
            f"run {request.run_id!r} of tenant {request.tenant_id!r} is not in the runs table"
        ) from exc
    logger.info(
        "run results recorded",
        extra={
            "metrics": run_metrics,
            "problem_type": request.problem_type,
            "algorithm": request.algorithm,
            "model_package_arn": request.model_package_arn,
            "evaluation_uri": request.evaluation_uri,
            "training_job_name": request.training_job_name,
        },
    )
    metrics.add_metric(name="ResultsRecorded", unit=MetricUnit.Count, value=1)
    arn = request.model_package_arn
    # A retried step records the same package again: model.registered only the first time.
    if arn and (before is None or before.model_package_arn != arn):
        _registered(run.tenant_id, run.plan, arn, run.run_id, run_metrics)
    return {"recorded": "true"}


def _registered(
    tenant_id: str, plan: str, arn: str, run_id: str, run_metrics: dict[str, float]
) -> None:
    """model.registered and the plan's auto-approval. The results are recorded: a
    failure here leaves the model PendingManualApproval for a person (logged and
    counted), it does not fail the run."""
    try:
        model = dependencies.model_versions().registered(tenant_id, plan, arn, run_id, run_metrics)
    except Exception:
        logger.exception("model registration follow-up failed", extra={"model_package_arn": arn})
        metrics.add_metric(name="AutoApprovalErrors", unit=MetricUnit.Count, value=1)
        return
    if model is not None and model.decided_by:
        logger.info("model auto-approved", extra={"model_package_arn": arn, "reason": model.reason})
        metrics.add_metric(name="ModelsAutoApproved", unit=MetricUnit.Count, value=1)
