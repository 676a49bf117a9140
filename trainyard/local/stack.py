"""The embedded local stack: moto server + local Lambda runtime + pipeline runner.

    with EmbeddedStack(aws_port=0, api_port=0) as stack:
        stack.api_url            # onboarding API, same paths/JSON as in AWS
        stack.aws_endpoint_url   # AWS APIs (moto), region us-east-1, any credentials

All state is in memory (``IN_MEMORY_NOTICE``): a restart starts from an empty
account. Handler code never knows it is local: it reaches moto through plain boto3 and
the standard AWS_ENDPOINT_URL setting, and receives the same event shapes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import boto3
import requests
from trainyard_core import wiring
from trainyard_core.arns import arn, partition_of
from trainyard_core.config import DEPLOYED_SETTINGS_FILE, Settings, load_project_settings
from trainyard_core.wiring import Names

from pipeline.images import with_image_uris

from .api_model import ApiModelCheck
from .bootstrap import PROJECT_ROOT, Platform, bootstrap_platform
from .cloudformation import install as install_tenant_cloudformation
from .faults import Faults
from .iam.actions import Scope
from .iam.enforcer import Enforcer, MotoPolicyStore
from .iam.presigned import PresignedS3Gate, gated_moto_server, s3_bucket_names
from .lambda_runtime import (
    LocalLambdaRuntime,
    QueuePoller,
    Ticker,
    check_event_source,
    scheduled_event,
)
from .shims import install_dynamodb_serializer, install_secretsmanager_deletion_checks

log = logging.getLogger("trainyard.local")

ACCOUNT_ID = "123456789012"  # moto's default account
_active_lock = threading.Lock()
# The stack's state (moto's backends, the pipeline runs) lives in this process's
# memory only: stopping or killing it loses every tenant, run and object. Its
# temporary work directory is ours: named with WORKDIR_PREFIX and holding an
# OWNER_FILE with the process id, so a later start can remove one a killed
# process left behind. (A persistent mode would mean snapshotting moto's
# backends and the runner's state consistently: not offered.)
WORKDIR_PREFIX = "trainyard-local-"
OWNER_FILE = ".trainyard-owner-pid"
IN_MEMORY_NOTICE = (
    "state is in memory only: stopping or killing this process loses every tenant, run and object"
)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def remove_stale_workdirs(parent: Path | None = None) -> list[Path]:
    """Remove work directories of embedded stacks whose process is gone; only ours
    (our prefix and owner file, owned by this user), never one still in use."""
    removed: list[Path] = []
    base = Path(parent or tempfile.gettempdir())
    for candidate in base.glob(f"{WORKDIR_PREFIX}*"):
        owner = candidate / OWNER_FILE
        try:
            if candidate.is_symlink() or candidate.stat().st_uid != os.getuid():
                continue
            pid = int(owner.read_text().strip())
        except (OSError, ValueError):
            continue  # not one of ours (or not readable): leave it
        if pid == os.getpid() or _process_alive(pid):
            continue
        shutil.rmtree(candidate, ignore_errors=True)
        removed.append(candidate)
    return removed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedStack:
    def __init__(
        self,
        *,
        aws_port: int = 0,
        api_port: int = 0,
        project_root: Path | None = None,
        workdir: Path | None = None,
        settings: Settings | None = None,
        quiet: bool = True,
        reconcile_seconds: float | None = None,
    ) -> None:
        self.project_root = project_root or PROJECT_ROOT
        # The catalog's image URIs resolved for the region, as the CDK app does.
        chosen = with_image_uris(settings or load_project_settings(self.project_root))
        # What the platform is synthesized and bootstrapped from: as deployable to AWS.
        self.deployable_settings = chosen.model_copy(
            update={"webhooks": chosen.webhooks.model_copy(update={"allow_loopback_http": False})}
        )
        # What the handlers run with: the embedded stack's receivers are plain HTTP on
        # 127.0.0.1 (tests), which only this setting allows (never on in AWS).
        self.settings = chosen.model_copy(
            update={"webhooks": chosen.webhooks.model_copy(update={"allow_loopback_http": True})}
        )
        self.names = Names.from_settings(self.settings)
        self.region = self.settings.region
        self.account_id = ACCOUNT_ID
        self.aws_port = aws_port or free_port()
        self.api_port = api_port or free_port()
        self.aws_endpoint_url = f"http://127.0.0.1:{self.aws_port}"
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.workdir = workdir
        self.quiet = quiet
        self.reconcile_seconds = (
            reconcile_seconds or 60.0 * self.settings.reconcile_interval_minutes
        )
        self._ready = threading.Event()
        self._threads: list[Any] = []
        self._saved_env: dict[str, str | None] = {}
        self.platform: Platform | None = None
        self.runtime: LocalLambdaRuntime | None = None
        self._moto: Any = None
        self._api: Any = None
        self._engine: Any = None
        self._started = False
        # Fault-injection switches (all off unless a test or benchmark sets one).
        self.faults = Faults()
        # Every request is checked against AWS's API model (what botocore leaves out).
        self.api_model = ApiModelCheck()
        # IAM: every call a principal makes is evaluated against its deployed policies.
        self.iam = Enforcer(
            MotoPolicyStore(self.account_id, partition_of(self.region)),
            Scope(region=self.region, account=self.account_id, partition=partition_of(self.region)),
        )

    @property
    def api_server_errors(self) -> list[tuple[str, str, int]]:
        """(method, path, status) of every 500/502 the local API answered so far."""
        return list(self._api.server_errors) if self._api is not None else []

    @property
    def engine(self) -> Any:
        """The local pipeline engine (None until started); fault tools wrap its seams."""
        return self._engine

    # --- clients
    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.aws_endpoint_url,
            region_name=self.region,
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )

    # --- lifecycle
    def __enter__(self) -> EmbeddedStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _set_env(self, values: dict[str, str]) -> None:
        for key, value in values.items():
            if key not in self._saved_env:
                self._saved_env[key] = os.environ.get(key)
            os.environ[key] = value

    def start(self) -> EmbeddedStack:
        if not _active_lock.acquire(blocking=False):
            # Handlers read process-wide environment; two stacks in one process would collide.
            raise RuntimeError("an embedded stack is already running in this process")
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        self._started = True
        if self.workdir is None:
            for stale in remove_stale_workdirs():
                log.info("removed the work directory of a stopped stack: %s", stale)
            self._tmp = tempfile.TemporaryDirectory(prefix=WORKDIR_PREFIX)
            self.workdir = Path(self._tmp.name)
            (self.workdir / OWNER_FILE).write_text(str(os.getpid()))
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.quiet:
            for name in ("werkzeug", "moto", "botocore", "urllib3"):
                logging.getLogger(name).setLevel(logging.ERROR)
            # Known, harmless locally: moto's CloudFormation (not used for tenant stacks,
            # see cloudformation/) skipping types, and Powertools noting an invocation
            # that emitted no metric.
            warnings.filterwarnings("ignore", message="Tried to parse AWS::")
            warnings.filterwarnings("ignore", message="No application metrics to publish")

        # Every boto3 client in this process (handlers included) goes to moto.
        self._set_env(
            {
                "AWS_ENDPOINT_URL": self.aws_endpoint_url,
                "AWS_DEFAULT_REGION": self.region,
                "AWS_REGION": self.region,
                "AWS_ACCESS_KEY_ID": "local",
                "AWS_SECRET_ACCESS_KEY": "local",
                "AWS_SESSION_TOKEN": "local",
                "POWERTOOLS_TRACE_DISABLED": "true",
                "POWERTOOLS_METRICS_DISABLED": "true" if self.quiet else "false",
                "POWERTOOLS_LOG_LEVEL": "WARNING" if self.quiet else "INFO",
                "POWERTOOLS_DEV": "false",
            }
        )
        # Presigned S3 requests (plain HTTP, no SDK) are checked as S3 checks them.
        self._moto = gated_moto_server(
            "127.0.0.1",
            self.aws_port,
            lambda app: PresignedS3Gate(
                app,
                self.iam,
                region=self.region,
                partition=partition_of(self.region),
                buckets=s3_bucket_names(self.account_id, partition_of(self.region)),
            ),
        )
        self._moto.start()

        specs = wiring.handlers(self.names)
        # Before any handler builds a client: clients copy the session's hooks.
        if boto3.DEFAULT_SESSION is None:
            boto3.setup_default_session()
        self.api_model.attach(boto3.DEFAULT_SESSION)
        self.iam.attach(boto3.DEFAULT_SESSION)
        self.runtime = LocalLambdaRuntime(
            specs,
            region=self.region,
            account_id=self.account_id,
            prefix=self.names.prefix,
            enforcer=self.iam,
        )
        install_tenant_cloudformation(
            self.client,
            self.names.tenant_stack(""),
            self.iam,
            account=self.account_id,
            region=self.region,
        )
        install_dynamodb_serializer()
        install_secretsmanager_deletion_checks()
        self.platform = bootstrap_platform(
            self.client,
            settings=self.deployable_settings,
            account_id=self.account_id,
            recorder_arn=self.runtime.function_arn("recorder"),
            cache_dir=self.project_root / ".trainyard" / "cache",
        )
        self.runtime.use_roles(self.platform.function_role_arns)
        # As in AWS, the settings travel as a file beside the code, not in the environment.
        settings_file = self.workdir / DEPLOYED_SETTINGS_FILE
        settings_file.write_text(self.settings.to_json())
        values = {
            wiring.ENV_SETTINGS_FILE: str(settings_file),
            wiring.ENV_TENANTS_TABLE: self.names.tenants_table,
            wiring.ENV_RUNS_TABLE: self.names.runs_table,
            wiring.ENV_STATE_TABLE: self.names.state_table,
            wiring.ENV_PIPELINE_NAME: self.names.pipeline_name,
            wiring.ENV_PIPELINE_DEFINITION_VERSION: self.platform.definition_version,
            wiring.ENV_PLATFORM_BUCKET: self.platform.platform_bucket,
            wiring.ENV_TENANT_TEMPLATE_URLS: json.dumps(self.platform.template_urls),
            wiring.ENV_TENANT_STACK_ROLE_ARN: self.platform.tenant_stack_role_arn,
            wiring.ENV_ACCOUNT_ID: self.account_id,
            wiring.ENV_WEBHOOKS_TABLE: self.names.webhooks_table,
            wiring.ENV_WEBHOOK_QUEUE_URL: self.platform.queue_urls[self.names.webhook_queue],
        }
        env: dict[str, str] = {}
        for spec in specs.values():
            function_env = wiring.handler_environment(spec, self.settings, values)
            # The deployed value of the settings path is the asset-relative file name.
            deployed = {**function_env, wiring.ENV_SETTINGS_FILE: DEPLOYED_SETTINGS_FILE}
            wiring.check_environment_size(
                self.names.function(spec.key), wiring.environment_bytes(deployed)
            )
            for key, value in function_env.items():
                if key not in ("POWERTOOLS_SERVICE_NAME",):
                    env[key] = value
        self._set_env(env)

        from .pipeline_engine import LocalPipelineEngine

        self._engine = LocalPipelineEngine(
            endpoint_url=self.aws_endpoint_url,
            region=self.region,
            account_id=self.account_id,
            workdir=self.workdir / "pipeline",
            lambda_invoker=self.runtime.invoke_arn,
            enforcer=self.iam,
            session_hooks=[self.api_model],
        )
        self._engine.start()
        # Before any handler builds a client: the hooks live on boto3's default session.
        self.faults.attach(self)

        sqs = self.client("sqs")
        for key, spec in specs.items():
            for queue in spec.queues:
                # As CreateEventSourceMapping checks it in AWS.
                check_event_source(sqs, self.platform.queue_urls[queue], spec.timeout_seconds)
                poller = QueuePoller(
                    sqs=sqs,
                    queue_url=self.platform.queue_urls[queue],
                    queue_arn=self.platform.queue_arns[queue],
                    runtime=self.runtime,
                    function_key=key,
                    region=self.region,
                    batch_size=wiring.QUEUE_BATCH_SIZE,
                    batching_window_seconds=wiring.batching_window_seconds(self.names, queue),
                )
                poller.start()
                self._threads.append(poller)
            if wiring.Source.SCHEDULE in spec.sources:
                ticker = Ticker(
                    f"schedule-{key}",
                    self.reconcile_seconds,
                    lambda k=key: self.fire_schedule(k),
                )
                ticker.start()
                self._threads.append(ticker)

        from .api_server import LocalApiServer

        self._api = LocalApiServer(
            self.api_port,
            lambda event: self.runtime.invoke("onboarding", event),  # type: ignore[union-attr]
            account_id=self.account_id,
            ready=self._ready.is_set,
            aws_endpoint_url=self.aws_endpoint_url,
        )
        self._api.start()
        self._ready.set()
        self._wait_healthy()

    def _wait_healthy(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.api_url}/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError("embedded stack did not become healthy")

    def _rule_arn(self, rule_name: str) -> str:
        return arn("events", self.region, self.account_id, f"rule/{rule_name}")

    def fire_schedule(self, key: str) -> Any:
        """Fire a handler's schedule once (tests and the CLI use it instead of waiting)."""
        assert self.runtime is not None
        rule_arn = self._rule_arn(self.runtime.specs[key].schedule_rule)
        return self.runtime.invoke(key, scheduled_event(rule_arn, self.region, self.account_id))

    def reconcile_now(self) -> Any:
        """The scheduler's reconcile, now."""
        return self.fire_schedule("scheduler")

    def advance_tenants_now(self) -> Any:
        """The tenant lifecycle schedule, now."""
        return self.fire_schedule("onboarding")

    def queue_depths(self) -> dict[str, int]:
        assert self.platform is not None
        sqs = self.client("sqs")
        depths = {}
        for name, url in self.platform.queue_urls.items():
            attrs = sqs.get_queue_attributes(
                QueueUrl=url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                ],
            )["Attributes"]
            depths[name] = int(attrs["ApproximateNumberOfMessages"]) + int(
                attrs["ApproximateNumberOfMessagesNotVisible"]
            )
        return depths

    def wait_idle(self, timeout: float) -> bool:
        """True once no message waits in a (non-dead-letter) queue and no execution runs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            depths = self.queue_depths()
            busy = any(v for k, v in depths.items() if not k.endswith("-dlq"))
            if not busy and (self._engine is None or self._engine.wait_idle(0)):
                return True
            time.sleep(0.25)
        return False

    def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        try:
            for thread in self._threads:
                thread.stop()
            for thread in self._threads:
                thread.join(timeout=5)
            self._threads.clear()
            if self._api is not None:
                self._api.stop()
            if self._engine is not None:
                self._engine.stop()
            self.faults.detach()
            self.iam.detach()
            self.api_model.detach()
            if self._moto is not None:
                self._moto.stop()
                from moto.core.base_backend import BackendDict
                from moto.core.model_instances import reset_model_data

                # The next stack in this process starts from an empty account.
                BackendDict.reset()
                reset_model_data()
        finally:
            for key, value in self._saved_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            self._saved_env.clear()
            if self._tmp is not None:
                self._tmp.cleanup()
                self._tmp = None
            _active_lock.release()
