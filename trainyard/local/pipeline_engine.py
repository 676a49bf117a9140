"""Runs the pipeline executions that moto records, like SageMaker would.

Must live in the same process as the ThreadedMotoServer: moto creates every
execution already "Succeeded" (docs/architecture.md §4), so the engine reads and updates
moto's in-process SageMaker backend directly. Public interface::

    engine = LocalPipelineEngine(endpoint_url, region, account_id, workdir,
                                 lambda_invoker, max_workers=2)
    engine.start()              # watch moto; run each execution started from now on, once
    engine.wait_idle(timeout)   # True once nothing is queued or running
    engine.result(arn)          # ExecutionResult of a finished execution, or None
    engine.stop()               # stop watching, kill running jobs, wait for workers
    engine.runner               # its PipelineRunner (runner.job_launcher runs the jobs)
    engine.events               # the client status events are published with
    engine.backend()            # moto's SageMaker backend the executions are recorded in

For each execution: status -> Executing, run the definition recorded with the
execution (``PipelineRunner``) on a bounded worker pool, then Succeeded/Failed
(+ FailureReason) — each transition also published to the default event bus
exactly like AWS (source ``aws.sagemaker``, detail-type ``SageMaker Model
Building Pipeline Execution Status Change``), so moto's rules deliver it.

Three moto gaps are closed on the watched backend while the engine runs:
- StartPipelineExecution is made idempotent on ClientRequestToken per pipeline
  (moto records the token but creates a new execution each time); a repeat
  returns the first execution's ARN, as AWS does.
- A new execution is Executing at once (moto: "Succeeded"), so Describe/List
  never report a queued execution as finished.
- DescribePipelineExecution returns the real FailureReason (moto always "").
- StopPipelineExecution (a shim, ``shims.py``) stops that execution's worker: it is
  Stopping until its current job is killed, then Stopped, as in AWS.
- RetryPipelineExecution (a shim too; moto has none): only a Failed execution is
  retried (ValidationException otherwise), idempotent on its ClientRequestToken; the
  same execution is Executing again and runs from its failed steps, the steps that
  succeeded kept as they were (their jobs are not run again).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from .iam.enforcer import Enforcer
from .runner import (
    EXECUTING,
    FAILED,
    STOPPED,
    SUCCEEDED,
    ExecutionContext,
    ExecutionResult,
    LambdaInvoker,
    PipelineRunner,
)

log = logging.getLogger("trainyard.local.pipeline")

EVENT_SOURCE = "aws.sagemaker"
EVENT_DETAIL_TYPE = "SageMaker Model Building Pipeline Execution Status Change"


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:  # moto stores naive UTC
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class LocalPipelineEngine:
    def __init__(
        self,
        endpoint_url: str,
        region: str,
        account_id: str,
        workdir: Path,
        lambda_invoker: LambdaInvoker,
        max_workers: int = 2,
        job_timeout_seconds: float = 15 * 60,
        poll_interval_seconds: float = 0.5,
        enforcer: Enforcer | None = None,
        session_hooks: Sequence[Any] = (),
    ) -> None:
        self.endpoint_url = endpoint_url
        self.region = region
        self.account_id = account_id
        self.workdir = Path(workdir)
        self.poll_interval_seconds = poll_interval_seconds
        session = boto3.session.Session(region_name=region)
        if session.get_credentials() is None:
            # moto accepts any credentials; don't require the caller to set some.
            session = boto3.session.Session(
                region_name=region, aws_access_key_id="local", aws_secret_access_key="local"
            )
        config = Config(retries={"max_attempts": 3, "mode": "standard"})
        # Before any client exists: clients copy the session's hooks at creation.
        for hook in [*session_hooks, *([enforcer] if enforcer is not None else [])]:
            hook.attach(session)

        def client(service: str) -> Any:
            return session.client(service, endpoint_url=endpoint_url, config=config)

        # Publishes the status-change events (the fault tools hook it to drop some).
        self.events = client("events")
        self.runner = PipelineRunner(
            s3=client("s3"),
            sagemaker=client("sagemaker"),
            workdir=self.workdir,
            lambda_invoker=lambda_invoker,
            job_timeout_seconds=job_timeout_seconds,
            region=region,
            account_id=account_id,
            enforcer=enforcer,
        )
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="pipeline")
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Condition(self._lock)
        self._seen: set[str] = set()
        # Per execution: set by StopPipelineExecution or by stop() (every execution).
        self._stops: dict[str, threading.Event] = {}
        self._active = 0
        self._results: dict[str, ExecutionResult] = {}
        # RetryPipelineExecution: tokens seen per execution, and the runs to resume.
        self._retry_tokens: dict[str, set[str]] = {}
        self._resume: dict[str, ExecutionResult] = {}
        self._watcher: threading.Thread | None = None
        self._patched: Any = None  # the backend our wrappers are installed on

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self._watcher is not None:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._install_patches()
        with self._lock:
            # Executions recorded before start() (moto already calls them
            # Succeeded) belong to an earlier engine or none: never re-run them.
            for pipeline in list(self.backend().pipelines.values()):
                self._seen.update(list(pipeline.pipeline_executions))
        self._watcher = threading.Thread(target=self._watch, name="pipeline-engine", daemon=True)
        self._watcher.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        with self._lock:
            for event in self._stops.values():
                event.set()
        if self._watcher is not None:
            self._watcher.join(timeout=10)
        # Running executions see the stop event, kill their job and end Stopped.
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._remove_patches()

    def wait_idle(self, timeout: float) -> bool:
        """True when every execution seen so far has finished (a scan runs first,
        so an execution started just before the call counts)."""
        self._scan()
        with self._idle:
            return self._idle.wait_for(lambda: self._active == 0, timeout=timeout)

    def result(self, execution_arn: str) -> ExecutionResult | None:
        with self._lock:
            return self._results.get(execution_arn)

    # ------------------------------------------------------------ moto side

    def backend(self) -> Any:
        """moto's in-process SageMaker backend the executions are recorded in."""
        from moto.sagemaker.models import sagemaker_backends

        return sagemaker_backends[self.account_id][self.region]

    def _install_patches(self) -> None:
        backend = self.backend()
        installed = backend.__dict__.get("start_pipeline_execution")
        if self._patched is backend and getattr(installed, "_trainyard_engine", None) is self:
            return
        original_start = type(backend).start_pipeline_execution.__get__(backend)
        original_describe = type(backend).describe_pipeline_execution.__get__(backend)
        lock, wake = self._lock, self._wake

        def start_pipeline_execution(
            pipeline_name: str,
            pipeline_execution_display_name: str,
            pipeline_parameters: list[dict[str, Any]],
            pipeline_execution_description: str,
            parallelism_configuration: dict[str, int],
            client_request_token: str,
        ) -> dict[str, str]:
            with lock:
                pipeline = backend.pipelines.get(pipeline_name)
                if pipeline is not None and client_request_token:
                    for arn, execution in pipeline.pipeline_executions.items():
                        if execution.client_request_token == client_request_token:
                            return {"PipelineExecutionArn": arn}  # idempotent, as in AWS
                response = original_start(
                    pipeline_name,
                    pipeline_execution_display_name,
                    pipeline_parameters,
                    pipeline_execution_description,
                    parallelism_configuration,
                    client_request_token,
                )
                # moto creates it "Succeeded"; in AWS it is Executing from the start,
                # also while it waits here for a free worker.
                created = self._find_execution(backend, response["PipelineExecutionArn"])
                if created is not None:
                    created.pipeline_execution_status = EXECUTING
                    created.last_modified_time = datetime.now(UTC).replace(tzinfo=None)
            wake.set()  # no need to wait for the next poll
            return response

        def describe_pipeline_execution(pipeline_execution_arn: str) -> dict[str, Any]:
            response = original_describe(pipeline_execution_arn)
            execution = self._find_execution(backend, pipeline_execution_arn)
            reason = getattr(execution, "pipeline_execution_failure_reason", None)
            if reason:
                response["FailureReason"] = reason
            else:
                response.pop("FailureReason", None)
            return response

        def stop_pipeline_execution(
            pipeline_execution_arn: str, client_request_token: str | None = None
        ) -> str:
            from moto.sagemaker.exceptions import ValidationError

            with lock:
                execution = self._find_execution(backend, pipeline_execution_arn)
                if execution is None:
                    raise ValidationError(
                        f"Pipeline execution {pipeline_execution_arn} does not exist."
                    )
                status = execution.pipeline_execution_status
                if status == "Stopping":
                    return pipeline_execution_arn  # a repeated stop
                if status != EXECUTING:
                    raise ValidationError(
                        f"Pipeline execution {pipeline_execution_arn} is {status}; only an "
                        "Executing execution can be stopped."
                    )
                execution.pipeline_execution_status = "Stopping"
                execution.last_modified_time = datetime.now(UTC).replace(tzinfo=None)
                self._stops.setdefault(pipeline_execution_arn, threading.Event()).set()
            return pipeline_execution_arn

        def retry_pipeline_execution(
            pipeline_execution_arn: str,
            client_request_token: str | None = None,
            parallelism_configuration: dict[str, int] | None = None,
        ) -> str:
            from moto.sagemaker.exceptions import ResourceNotFound, ValidationError

            with lock:
                execution = self._find_execution(backend, pipeline_execution_arn)
                if execution is None:
                    raise ResourceNotFound(
                        f"Pipeline execution {pipeline_execution_arn} does not exist."
                    )
                tokens = self._retry_tokens.setdefault(pipeline_execution_arn, set())
                if client_request_token and client_request_token in tokens:
                    return pipeline_execution_arn  # the same retry, asked again
                status = execution.pipeline_execution_status
                previous = self._results.get(pipeline_execution_arn)
                if status != FAILED or previous is None:
                    raise ValidationError(
                        f"Pipeline execution {pipeline_execution_arn} is {status}; only a "
                        "Failed execution can be retried."
                    )
                if client_request_token:
                    tokens.add(client_request_token)
                self._resume[pipeline_execution_arn] = previous
                execution.pipeline_execution_status = EXECUTING
                execution.pipeline_execution_failure_reason = None
                execution.last_modified_time = datetime.now(UTC).replace(tzinfo=None)
                self._seen.discard(pipeline_execution_arn)  # the next scan runs it again
            wake.set()
            return pipeline_execution_arn

        start_pipeline_execution._trainyard_engine = self  # type: ignore[attr-defined]
        backend.start_pipeline_execution = start_pipeline_execution
        backend.describe_pipeline_execution = describe_pipeline_execution
        backend.stop_pipeline_execution = stop_pipeline_execution
        backend.retry_pipeline_execution = retry_pipeline_execution
        self._patched = backend

    def _remove_patches(self) -> None:
        backend, self._patched = self._patched, None
        if backend is not None:
            for name in (
                "start_pipeline_execution",
                "describe_pipeline_execution",
                "stop_pipeline_execution",
                "retry_pipeline_execution",
            ):
                backend.__dict__.pop(name, None)

    @staticmethod
    def _find_execution(backend: Any, arn: str) -> Any:
        for pipeline in list(backend.pipelines.values()):
            execution = pipeline.pipeline_executions.get(arn)
            if execution is not None:
                return execution
        return None

    # ------------------------------------------------------------ watching

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                self._scan()
            except Exception:  # never let the watcher die
                log.exception("pipeline engine scan failed")
            self._wake.wait(self.poll_interval_seconds)
            self._wake.clear()

    def _scan(self) -> None:
        if self._stop.is_set():
            return
        backend = self.backend()
        if backend is not self._patched:  # a new backend object: patch that one
            self._remove_patches()
        # moto's reset re-initialises the backend in place, dropping our wrappers.
        self._install_patches()
        tokens: dict[tuple[str, str], str] = {}
        with self._lock:
            for pipeline in list(backend.pipelines.values()):
                for arn, execution in list(pipeline.pipeline_executions.items()):
                    token = execution.client_request_token
                    key = (pipeline.pipeline_name, token)
                    first = tokens.setdefault(key, arn) if token else arn
                    if arn in self._seen:
                        continue
                    self._seen.add(arn)
                    if first != arn:
                        # Same token recorded twice (created outside our wrapper):
                        # AWS would have one execution, so this one never runs.
                        log.warning("execution %s repeats token of %s; not run", arn, first)
                        continue
                    try:
                        future = self._pool.submit(self._execute, pipeline, execution)
                    except RuntimeError:  # pool shut down by stop()
                        return
                    self._active += 1
                    future.add_done_callback(self._finished)

    def _finished(self, future: Future[None]) -> None:
        if not future.cancelled() and future.exception() is not None:
            log.error("pipeline execution crashed", exc_info=future.exception())
        with self._idle:
            self._active -= 1
            self._idle.notify_all()

    # ------------------------------------------------------------ running

    def _execute(self, pipeline: Any, execution: Any) -> None:
        arn = execution.arn
        with self._lock:
            stop = self._stops.setdefault(arn, threading.Event())
            if self._stop.is_set():
                stop.set()
            resume = self._resume.pop(arn, None)
            retries = len(self._retry_tokens.get(arn, ()))
        if stop.is_set():
            # Stopped while it waited for a worker: it never runs.
            with self._lock:
                self._stops.pop(arn, None)
            self._set_status(pipeline, execution, "Stopped", None, previous=EXECUTING)
            return
        previous = FAILED if resume is not None else None
        self._set_status(pipeline, execution, EXECUTING, None, previous=previous)
        definition = execution.pipeline_definition_for_execution
        context = ExecutionContext(
            pipeline_name=pipeline.pipeline_name,
            pipeline_arn=pipeline.arn,
            execution_arn=arn,
            role_arn=getattr(pipeline, "role_arn", "") or "",
            retry_count=retries,
        )
        try:
            result = self.runner.run(
                definition,
                parameters=execution.pipeline_parameters or [],
                context=context,
                stop_event=stop,
                resume=resume,
            )
        except Exception as exc:  # the runner reports failures; this is a bug guard
            log.exception("runner crashed on %s", arn)
            now = datetime.now(UTC)
            result = ExecutionResult(FAILED, f"local runner error: {exc}", [], now, now)
        with self._lock:
            self._results[arn] = result
            self._stops.pop(arn, None)
        status = {SUCCEEDED: SUCCEEDED, STOPPED: "Stopped"}.get(result.status, FAILED)
        if status == "Stopped" and not self._stop.is_set():
            # Stopped on request: SageMaker gives a stopped execution no failure reason.
            result = dataclasses.replace(result, failure_reason=None)
        log.info("pipeline execution %s %s %s", arn, status, result.failure_reason or "")
        self._set_status(pipeline, execution, status, result.failure_reason, previous=EXECUTING)

    def _set_status(
        self,
        pipeline: Any,
        execution: Any,
        status: str,
        reason: str | None,
        previous: str | None,
    ) -> None:
        now = datetime.now(UTC)
        with self._lock:
            execution.pipeline_execution_status = status
            execution.pipeline_execution_failure_reason = reason
            execution.last_modified_time = now.replace(tzinfo=None)
        self._publish(pipeline, execution, status, previous, now)

    def _publish(
        self, pipeline: Any, execution: Any, status: str, previous: str | None, now: datetime
    ) -> None:
        detail: dict[str, Any] = {
            "pipelineExecutionArn": execution.arn,
            "pipelineArn": pipeline.arn,
            "executionStartTime": _iso(execution.start_time),
            "currentPipelineExecutionStatus": status,
            "pipelineExecutionDisplayName": execution.pipeline_execution_display_name
            or execution.arn.rsplit("/", 1)[-1],
        }
        if previous:
            detail["previousPipelineExecutionStatus"] = previous
        if status != EXECUTING:
            detail["executionEndTime"] = _iso(now)
        if execution.pipeline_execution_description:
            detail["pipelineExecutionDescription"] = execution.pipeline_execution_description
        entry = {
            "Source": EVENT_SOURCE,
            "DetailType": EVENT_DETAIL_TYPE,
            "Detail": json.dumps(detail),
            "Resources": [pipeline.arn, execution.arn],
            "Time": now,
        }
        try:
            response = self.events.put_events(Entries=[entry])
            if response.get("FailedEntryCount"):
                log.error("status event rejected: %s", response.get("Entries"))
        except Exception:
            # Losing an event is survivable (the scheduler reconciles); crashing is not.
            log.exception("could not publish status event for %s", execution.arn)
