"""Build a ``SchedulerService`` from a Lambda's environment (wiring.ENV_*).

Shared by the scheduler Lambda and the API Lambda (manual runs, run reads,
queue, usage). Imports of AWS-backed implementations stay lazy so pure tests
never load boto3 clients.
"""

from __future__ import annotations

import os
from typing import Any

from trainyard_core import wiring
from trainyard_core.clock import Clock
from trainyard_core.config import settings_from_env
from trainyard_core.ports.events import EventPublisher
from trainyard_core.ports.metrics import MetricsSink
from trainyard_core.scheduling.service import SchedulerService


def build_scheduler_service(
    *,
    metrics: MetricsSink | None = None,
    logger: Any | None = None,
    clock: Clock | None = None,
    events: EventPublisher | None = None,
) -> SchedulerService:
    from trainyard_core.sagemaker_port import SageMakerPipelinePort
    from trainyard_core.store.runs_dynamodb import DynamoRunRepository
    from trainyard_core.store.tenants_dynamodb import DynamoTenantRepository
    from trainyard_core.tenant_data_s3 import S3InputListing

    pipeline_name = os.environ.get(wiring.ENV_PIPELINE_NAME)
    return SchedulerService(
        settings_from_env(),
        DynamoRunRepository(os.environ[wiring.ENV_RUNS_TABLE], os.environ[wiring.ENV_STATE_TABLE]),
        DynamoTenantRepository(os.environ[wiring.ENV_TENANTS_TABLE]),
        SageMakerPipelinePort(pipeline_name) if pipeline_name else None,
        clock=clock,
        metrics=metrics,
        logger=logger,
        events=events,
        inputs=S3InputListing(),
        definition_version=os.environ.get(wiring.ENV_PIPELINE_DEFINITION_VERSION),
    )
