"""Scheduler Lambda: intake (S3 uploads), pipeline status events, reconcile.

Fed by the per-plan intake queues and the status queue (SQS, partial batch
failures) and by the one-minute schedule (a direct EventBridge invocation).
After every batch it dispatches, so a finished run frees its slot for the next
one within seconds. Thin: parsing, logging and metrics here; decisions in
``trainyard_core.scheduling``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError
from trainyard_core import wiring

# The wake-up any component may send to a plan queue (the API after a manual run).
from trainyard_core.intake_queue import DISPATCH_DETAIL_TYPE, DISPATCH_SOURCE
from trainyard_core.scheduling.service import SchedulerService

from trainyard_handlers import dependencies

# Re-exported: tests build the scheduler's service with this sink.
from trainyard_handlers.observability import PowertoolsMetricsSink as PowertoolsMetricsSink
from trainyard_handlers.observability import logger, metrics, tracer

SCHEDULED_DETAIL_TYPE = "Scheduled Event"


# --- event models (EventBridge events, as delivered in SQS bodies) ----------


class _Envelope(EventBridgeModel):
    """EventBridge envelope; lenient on fields the scheduler does not use, since
    hand-written or emulated events (local runtime, moto) may omit some."""

    version: str = "0"
    id: str = ""
    account: str = ""
    time: datetime | None = None  # type: ignore[assignment]
    region: str = ""
    resources: list[str] = Field(default_factory=list)


class S3ObjectDetail(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    key: str
    size: int | None = None
    # AWS sends "etag"; moto sends "eTag".
    etag: str | None = Field(default=None, validation_alias=AliasChoices("etag", "eTag"))
    version_id: str | None = Field(
        default=None, validation_alias=AliasChoices("version-id", "versionId")
    )


class S3BucketDetail(BaseModel):
    name: str


class S3ObjectCreatedDetail(BaseModel):
    model_config = ConfigDict(extra="ignore")

    bucket: S3BucketDetail
    object: S3ObjectDetail


class S3ObjectCreatedEvent(_Envelope):
    detail: S3ObjectCreatedDetail  # type: ignore[assignment]


class PipelineStatusDetail(BaseModel):
    model_config = ConfigDict(extra="ignore")

    pipelineExecutionArn: str
    currentPipelineExecutionStatus: str
    pipelineExecutionDisplayName: str | None = None
    pipelineArn: str | None = None
    failureReason: str | None = None


class PipelineStatusEvent(_Envelope):
    detail: PipelineStatusDetail  # type: ignore[assignment]


# --- dependencies (trainyard_handlers.dependencies) --------------------------


def get_service() -> SchedulerService:
    return dependencies.scheduler_service()


def set_service(service: SchedulerService | None) -> None:
    """Tests and the local runtime may inject a service (None = rebuild from env)."""
    if service is None:
        dependencies.scheduler_service.reset()
    else:
        dependencies.scheduler_service.override(service)


def reset_dependencies() -> None:
    dependencies.reset(*dependencies.SCHEDULER)


# --- record handling ---------------------------------------------------------


class UnsupportedMessageError(ValueError):
    pass


def _body(record: SQSRecord) -> dict[str, Any]:
    try:
        body = json.loads(record.body)
    except (TypeError, json.JSONDecodeError) as exc:
        raise UnsupportedMessageError(f"message body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise UnsupportedMessageError("message body is not a JSON object")
    return body


class _BatchState:
    reconcile = False


def _handle_event(body: dict[str, Any], state: _BatchState) -> None:
    source, detail_type = body.get("source"), body.get("detail-type")
    service = get_service()
    try:
        if source == wiring.S3_SOURCE and detail_type == wiring.S3_OBJECT_CREATED:
            event = parse(event=body, model=S3ObjectCreatedEvent)
            obj = event.detail.object
            result = service.handle_upload(
                event.detail.bucket.name,
                obj.key,
                obj.etag,
                obj.size,
                obj.version_id,
                event_time=event.time,
            )
            if result.run is not None:
                logger.thread_safe_append_keys(
                    tenant_id=result.run.tenant_id, run_id=result.run.run_id
                )
            logger.info(
                "upload handled", extra={"outcome": result.outcome, "reason": result.reason}
            )
        elif (
            source == wiring.SAGEMAKER_STATUS_SOURCE
            and detail_type == wiring.SAGEMAKER_STATUS_DETAIL_TYPE
        ):
            status_event = parse(event=body, model=PipelineStatusEvent)
            detail = status_event.detail
            service.handle_status(
                detail.pipelineExecutionArn,
                detail.currentPipelineExecutionStatus,
                display_name=detail.pipelineExecutionDisplayName,
                failure_reason=detail.failureReason,
                event_time=status_event.time,
            )
        elif detail_type == SCHEDULED_DETAIL_TYPE:
            state.reconcile = True
        elif source == DISPATCH_SOURCE and detail_type == DISPATCH_DETAIL_TYPE:
            pass  # the dispatch after the batch is the point
        else:
            raise UnsupportedMessageError(
                f"unsupported event: source={source} detail-type={detail_type}"
            )
    except ValidationError as exc:
        raise UnsupportedMessageError(f"malformed {detail_type!r} event: {exc}") from exc


def _record_handler(state: _BatchState) -> Any:
    def handle(record: SQSRecord) -> None:
        try:
            _handle_event(_body(record), state)
        except Exception as exc:
            # The record goes back to the queue (batch item failure) and, after
            # maxReceiveCount, to its DLQ; the reason is in the log.
            logger.exception(
                "record failed",
                extra={"message_id": record.message_id, "error": str(exc)},
            )
            raise
        finally:
            logger.thread_safe_remove_keys(["tenant_id", "run_id"])

    return handle


def _dispatch_after_batch(service: SchedulerService) -> None:
    try:
        service.dispatch()
    except Exception:
        # The batch's records are already safely stored; reconcile dispatches again.
        logger.exception("dispatch after batch failed")
        metrics.add_metric(name="DispatchErrors", unit=MetricUnit.Count, value=1)
    finally:
        logger.thread_safe_remove_keys(["tenant_id", "run_id"])


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if "Records" in event:
        state = _BatchState()
        # A batch whose records all failed still returns per-item failures (and
        # still dispatches) instead of failing the invocation.
        processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
        response = process_partial_response(
            event=event, record_handler=_record_handler(state), processor=processor, context=context
        )
        metrics.add_metric(
            name="RecordsProcessed", unit=MetricUnit.Count, value=len(event["Records"])
        )
        service = get_service()
        if state.reconcile:
            service.reconcile()
        else:
            _dispatch_after_batch(service)
        return dict(response)

    if event.get("detail-type") == SCHEDULED_DETAIL_TYPE or event.get("source") in (
        "aws.events",
        "aws.scheduler",
    ):
        report = get_service().reconcile()
        metrics.add_metric(name="Reconciles", unit=MetricUnit.Count, value=1)
        logger.info(
            "reconciled",
            extra={
                "finished": report.finished,
                "healed": report.healed_counters,
                "stuck": report.stuck,
                "started": len(report.dispatch.started) if report.dispatch else 0,
            },
        )
        return {
            "reconciled": True,
            "finished": len(report.finished),
            "started": len(report.dispatch.started) if report.dispatch else 0,
        }

    # A direct EventBridge target (not via SQS) is handled like one record.
    if "detail-type" in event:
        state = _BatchState()
        _handle_event(event, state)
        service = get_service()
        service.reconcile() if state.reconcile else _dispatch_after_batch(service)
        return {"handled": True}

    raise UnsupportedMessageError("unsupported invocation payload")
