"""Recorder Lambda: the pipeline's Lambda step writes a run's results.

Event (from the pipeline definition, values may arrive as strings):
``{"tenant_id", "run_id", "model_package_arn", "auc", "evaluation_uri",
"training_job_name"}``. Writes ``metrics.auc`` and ``modelPackageArn`` on the
run; idempotent (a retried step writes the same values again).
"""

from __future__ import annotations

import math
import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, field_validator
from trainyard_core import wiring
from trainyard_core.clock import Clock, SystemClock
from trainyard_core.models import iso_ms
from trainyard_core.scheduling.ports import RunNotFoundError, RunRepository

logger = Logger()
metrics = Metrics()
tracer = Tracer()


class RecordRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    tenant_id: str
    run_id: str
    model_package_arn: str | None = None
    auc: float | None = None
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


class UnknownRunError(LookupError):
    """The pipeline reported results for a run the registry does not know."""


_runs: RunRepository | None = None
_clock: Clock = SystemClock()


def get_runs() -> RunRepository:
    global _runs
    if _runs is None:
        from trainyard_core.store.runs import DynamoRunRepository

        _runs = DynamoRunRepository(
            os.environ[wiring.ENV_RUNS_TABLE], os.environ[wiring.ENV_STATE_TABLE]
        )
    return _runs


def set_dependencies(runs: RunRepository | None, clock: Clock | None = None) -> None:
    global _runs, _clock
    _runs = runs
    _clock = clock or SystemClock()


def reset_dependencies() -> None:
    set_dependencies(None)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, str]:
    request = parse(event=event, model=RecordRequest)
    logger.append_keys(tenant_id=request.tenant_id, run_id=request.run_id)
    run_metrics = {"auc": request.auc} if request.auc is not None else {}
    try:
        get_runs().record_results(
            request.tenant_id,
            request.run_id,
            run_metrics,
            request.model_package_arn,
            iso_ms(_clock.now()) or "",
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
            "auc": request.auc,
            "model_package_arn": request.model_package_arn,
            "evaluation_uri": request.evaluation_uri,
            "training_job_name": request.training_job_name,
        },
    )
    metrics.add_metric(name="ResultsRecorded", unit=MetricUnit.Count, value=1)
    return {"recorded": "true"}
