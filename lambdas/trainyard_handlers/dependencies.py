"""What the handlers call, built one way: lazily from the environment, once per container.

Each ``Dependency`` builds its value on first use (a cold start pays only for what
it touches; pure tests never build boto3 clients) and keeps it for the
container's life. Tests inject with ``override``. Each handler module's
``reset_dependencies()`` resets the group it uses: the local runtime calls it when
it first loads that handler, so a new embedded stack gets new clients without
dropping what another handler's tests installed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from trainyard_core import wiring
from trainyard_core.clock import Clock, SystemClock
from trainyard_core.config import Settings, settings_from_env

if TYPE_CHECKING:
    from trainyard_core.intake_queue import IntakeQueue
    from trainyard_core.model_registry import RetainedResources
    from trainyard_core.model_versions import ModelVersionService
    from trainyard_core.models import Run
    from trainyard_core.ports.events import EventPublisher
    from trainyard_core.ports.runs import RunRepository
    from trainyard_core.sagemaker_port import SageMakerTenantExecutions
    from trainyard_core.scheduling.service import SchedulerService
    from trainyard_core.tenant_data_s3 import S3DataListing
    from trainyard_core.tenants import TenantService
    from trainyard_core.tenants.retraining import Retraining
    from trainyard_core.tenants.uploads import TenantUploads
    from trainyard_core.webhooks.delivery import WebhookDeliverer
    from trainyard_core.webhooks.service import WebhookService

T = TypeVar("T")
_UNSET: Any = object()


class Dependency(Generic[T]):
    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._value: T = _UNSET

    def __call__(self) -> T:
        # Unlocked like functools.cache: two threads racing a cold start build twice, harmlessly.
        if self._value is _UNSET:
            self._value = self._build()
        return self._value

    def override(self, value: T) -> None:
        self._value = value

    def reset(self) -> None:
        self._value = _UNSET


def reset(*dependencies: Dependency[Any]) -> None:
    for dependency in dependencies:
        dependency.reset()


# --- builders (AWS-backed implementations imported lazily)


def _tenant_service() -> TenantService:
    from trainyard_core.model_registry import SageMakerModelRegistry
    from trainyard_core.provisioning import (
        CloudFormationProvisioner,
        S3DataMover,
        S3DataPurger,
        parse_template_urls,
        template_version,
    )
    from trainyard_core.store.tenants_dynamodb import DynamoTenantRepository
    from trainyard_core.tenants import TenantService

    template_urls = parse_template_urls(os.environ[wiring.ENV_TENANT_TEMPLATE_URLS])
    return TenantService(
        settings=settings(),
        tenants=DynamoTenantRepository(os.environ[wiring.ENV_TENANTS_TABLE]),
        provisioner=CloudFormationProvisioner(
            template_urls=template_urls,
            role_arn=os.environ.get(wiring.ENV_TENANT_STACK_ROLE_ARN) or None,
        ),
        # The deployed templates' version (their URLs' templates/<version>/ prefix).
        template_version=template_version(template_urls, wiring.Names.from_settings(settings())),
        account_id=os.environ[wiring.ENV_ACCOUNT_ID],
        purger=S3DataPurger(),
        mover=S3DataMover(),
        used_before=lambda tenant_id: bool(run_service().runs.list_runs(tenant_id, limit=1)[0]),
        models=SageMakerModelRegistry(),
        retained=_retained,
        active_runs=_active_runs,
        record_upload=lambda tenant, obj: run_service().record_moved_upload(tenant, obj),
        executions=_tenant_executions(),
    )


def retraining() -> Retraining:
    """The lifecycle schedule's retrain checks, built per run from the current
    dependencies (tests override the tenant service; the listing's client is kept)."""
    from trainyard_core.tenants.retraining import Retraining

    return Retraining(
        settings=settings().retraining,
        tenants=tenant_service().tenants,
        listing=data_listing(),
        recent_runs=lambda tenant_id: run_service().runs.list_runs(
            tenant_id, limit=50, consistent=True
        )[0],
        enqueue=lambda tenant: run_service().submit_scheduled_run(tenant),
        now=lambda: clock().now(),
    )


def _data_listing() -> S3DataListing:
    from trainyard_core.tenant_data_s3 import S3DataListing

    return S3DataListing()


def _tenant_executions() -> SageMakerTenantExecutions | None:
    """What a purge stops and waits for: the tenant's runs' pipeline executions."""
    from trainyard_core.sagemaker_port import SageMakerPipelinePort, SageMakerTenantExecutions

    pipeline_name = os.environ.get(wiring.ENV_PIPELINE_NAME)
    if not pipeline_name:
        return None

    def active(tenant_id: str) -> list[Run]:
        runs = run_service().runs
        return [
            r
            for plan in settings().plans
            for r in runs.active_runs(plan)
            if r.tenant_id == tenant_id
        ]

    return SageMakerTenantExecutions(SageMakerPipelinePort(pipeline_name), active)


def _active_runs(tenant_id: str) -> int:
    """The tenant's STARTING/RUNNING runs, of any plan (a plan change moves none)."""
    runs = run_service().runs
    return sum(
        1 for plan in settings().plans for r in runs.active_runs(plan) if r.tenant_id == tenant_id
    )


def _retained(tenant_id: str) -> list[str]:
    names = wiring.Names.from_settings(settings())
    account = os.environ[wiring.ENV_ACCOUNT_ID]
    return list(
        retained_resources().of(
            group=names.model_package_group(tenant_id),
            silo_bucket=names.silo_bucket(tenant_id, account),
            pool_bucket=names.pool_bucket(account),
            pool_prefix=names.pool_tenant_prefix(tenant_id),
        )
    )


def _retained_resources() -> RetainedResources:
    from trainyard_core.model_registry import RetainedResources

    return RetainedResources()


def _run_service() -> SchedulerService:
    from trainyard_core.scheduling.factory import build_scheduler_service

    return build_scheduler_service(events=events())


def _scheduler_service() -> SchedulerService:
    from trainyard_core.scheduling.factory import build_scheduler_service

    from trainyard_handlers.observability import PowertoolsMetricsSink, logger

    return build_scheduler_service(metrics=PowertoolsMetricsSink(), logger=logger, events=events())


def _events() -> EventPublisher:
    """Trainyard's events on the default bus (trainyard_core/events.py)."""
    from trainyard_core.event_bus import EventBridgePublisher

    from trainyard_handlers.observability import PowertoolsMetricsSink, logger

    return EventBridgePublisher(metrics=PowertoolsMetricsSink(), logger=logger)


def _model_versions() -> ModelVersionService:
    from trainyard_core.model_registry import SageMakerModelVersions
    from trainyard_core.model_versions import ModelVersionService

    from trainyard_handlers.observability import logger

    return ModelVersionService(
        settings(), SageMakerModelVersions(), events(), clock=clock(), log=logger
    )


def _intake_queue() -> IntakeQueue:
    from trainyard_core.intake_queue import IntakeQueue

    return IntakeQueue(wiring.Names.from_settings(settings()))


def _run_repository() -> RunRepository:
    from trainyard_core.store.runs_dynamodb import DynamoRunRepository

    return DynamoRunRepository(
        os.environ[wiring.ENV_RUNS_TABLE], os.environ[wiring.ENV_STATE_TABLE]
    )


def _tenant_uploads() -> TenantUploads:
    from trainyard_core.arns import partition_of
    from trainyard_core.store.upload_plans import DynamoUploadPlans
    from trainyard_core.tenants.uploads import TenantUploads
    from trainyard_core.upload_signer import S3UploadSigner

    region = os.environ.get("AWS_REGION") or settings().region
    role = wiring.Names.from_settings(settings()).uploader_role_arn(
        partition_of(region), os.environ[wiring.ENV_ACCOUNT_ID]
    )
    # Multipart upload plans in the state table (the onboarding role's grant_tables).
    plans = DynamoUploadPlans(os.environ[wiring.ENV_STATE_TABLE])
    return TenantUploads(settings(), S3UploadSigner(role, region), plans, clock=clock())


def _webhook_parts() -> dict[str, Any]:
    from trainyard_core import webhook_http
    from trainyard_core.store.webhooks_dynamodb import DynamoWebhookStore
    from trainyard_core.webhook_secrets import SecretsManagerWebhookSecrets

    names = wiring.Names.from_settings(settings())
    return {
        "store": DynamoWebhookStore(
            os.environ[wiring.ENV_WEBHOOKS_TABLE], legacy_secret_prefix=names.webhook_secret_prefix
        ),
        "secrets": SecretsManagerWebhookSecrets(names),
        "resolve": webhook_http.resolve,
        "settings": settings().webhooks,
        "clock": clock(),
    }


def _webhook_service() -> WebhookService:
    from trainyard_core.webhooks.service import WebhookService

    return WebhookService(**_webhook_parts())


def _webhook_deliverer() -> WebhookDeliverer:
    from trainyard_core.arns import partition_of
    from trainyard_core.model_registry import SageMakerModelVersions
    from trainyard_core.store.runs_dynamodb_base import DynamoRunReader
    from trainyard_core.webhook_http import PinnedSender
    from trainyard_core.webhooks.delivery import WebhookDeliverer
    from trainyard_core.webhooks.verify import EventVerifier

    from trainyard_handlers.observability import PowertoolsMetricsSink, logger

    names = wiring.Names.from_settings(settings())
    region = os.environ.get("AWS_REGION") or settings().region
    account = os.environ[wiring.ENV_ACCOUNT_ID]
    # Each event is checked against the records before it is sent (infra/webhooks.py
    # grants exactly these two reads).
    verifier = EventVerifier(
        runs=DynamoRunReader(os.environ[wiring.ENV_RUNS_TABLE]),
        models=SageMakerModelVersions(),
        model_group=names.model_package_group,
        model_package_arn_prefix=(
            f"arn:{partition_of(region)}:sagemaker:{region}:{account}:model-package/"
        ),
    )
    return WebhookDeliverer(
        **_webhook_parts(),
        sender=PinnedSender(),
        verifier=verifier,
        metrics=PowertoolsMetricsSink(),
        logger=logger,
    )


def _webhook_queue() -> Any:
    import boto3

    return boto3.client("sqs")


settings: Dependency[Settings] = Dependency(settings_from_env)
# The onboarding function: tenants, and the runs as the API sees them (reads, manual
# runs, usage, queue; no metrics of its own, admission stays in the scheduler).
tenant_service: Dependency[TenantService] = Dependency(_tenant_service)
# The lifecycle schedule's retrain checks read tenants' data prefixes with it.
data_listing: Dependency[S3DataListing] = Dependency(_data_listing)
retained_resources: Dependency[RetainedResources] = Dependency(_retained_resources)
run_service: Dependency[SchedulerService] = Dependency(_run_service)
intake_queue: Dependency[IntakeQueue] = Dependency(_intake_queue)
# Presigned uploads (the onboarding function), signed as the uploader role.
tenant_uploads: Dependency[TenantUploads] = Dependency(_tenant_uploads)
# The scheduler function: the same service, with Powertools metrics and logger.
scheduler_service: Dependency[SchedulerService] = Dependency(_scheduler_service)
# The recorder function.
run_repository: Dependency[RunRepository] = Dependency(_run_repository)
clock: Dependency[Clock] = Dependency(SystemClock)

# Every function that changes a run or a model publishes what changed.
events: Dependency[EventPublisher] = Dependency(_events)
# The API's model routes and the recorder (registration, auto-approval).
model_versions: Dependency[ModelVersionService] = Dependency(_model_versions)
# The onboarding function's webhook routes, and the webhooks (deliverer) function.
webhook_service: Dependency[WebhookService] = Dependency(_webhook_service)
webhook_deliverer: Dependency[WebhookDeliverer] = Dependency(_webhook_deliverer)
webhook_queue: Dependency[Any] = Dependency(_webhook_queue)

ONBOARDING = (
    settings,
    tenant_service,
    data_listing,
    retained_resources,
    run_service,
    intake_queue,
    events,
    model_versions,
    tenant_uploads,
    webhook_service,
)
SCHEDULER = (scheduler_service, events)
RECORDER = (run_repository, clock, settings, events, model_versions)
WEBHOOKS = (settings, webhook_deliverer, webhook_queue)
