"""`TrainyardPlatform`: everything deployed once per account/region, composed from
the units of infra/ and wired exactly as `trainyard_core.wiring` says."""

from __future__ import annotations

from typing import Any

from aws_cdk import Aws, CfnOutput, Duration, Stack, Tags
from constructs import Construct
from trainyard_core import wiring
from trainyard_core.config import DEPLOYED_SETTINGS_FILE, Settings

from infra.api import OnboardingApi
from infra.lambdas import TrainyardFunction, lambdas_code, powertools_layer
from infra.monitoring import Monitoring
from infra.pipeline import (
    TrainingPipeline,
    deployed_definition_version,
    pipeline_arn,
    step_script_files,
)
from infra.platform_files import PlatformFiles
from infra.queues import Queues
from infra.registry import grant_model_versions, grant_put_events
from infra.scheduler import Scheduling
from infra.storage import Storage
from infra.tenant_template import TenantProvisioning
from infra.uploads import TenantUploads
from infra.webhooks import Webhooks


class PlatformStack(Stack):
    def __init__(
        self, scope: Construct, construct_id: str, *, settings: Settings, **kwargs: Any
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            description="Trainyard: event-driven multi-tenant SageMaker training triggers",
            **kwargs,
        )
        self.settings = settings
        if settings.webhooks.allow_loopback_http:
            raise ValueError(
                "webhooks.allowLoopbackHttp is for the embedded stack only: a deployed "
                "stack must never deliver webhooks over plain HTTP or to 127.0.0.1"
            )
        names = wiring.Names.from_settings(settings)
        specs = wiring.handlers(names)
        Tags.of(self).add(wiring.COST_TAG_KEY, "platform")

        self.storage = Storage(
            self,
            "Storage",
            names=names,
            noncurrent_version_days=settings.data_noncurrent_version_days,
        )
        # Visibility timeouts follow the slowest queue consumer.
        consumer_timeout = max(s.timeout_seconds for s in specs.values() if s.queues)
        self.queues = Queues(
            self,
            "Queues",
            names=names,
            consumer_timeout=Duration.seconds(consumer_timeout),
            webhook_attempts=settings.webhooks.max_attempts,
        )
        self.provisioning = TenantProvisioning(
            self, "TenantProvisioning", settings=settings, names=names
        )
        # Step scripts and tenant templates, versioned, in the platform bucket.
        self.files = PlatformFiles(
            self,
            "PlatformFiles",
            settings=settings,
            bucket=self.storage.bucket,
            files={**step_script_files(), **self.provisioning.files},
        )
        self.provisioning.serve_from(self.files)

        # Every env value a handler may ask for (wiring picks each handler's keys).
        env_values = {
            wiring.ENV_TENANTS_TABLE: self.storage.tables[names.tenants_table].table_name,
            wiring.ENV_RUNS_TABLE: self.storage.tables[names.runs_table].table_name,
            wiring.ENV_STATE_TABLE: self.storage.tables[names.state_table].table_name,
            wiring.ENV_WEBHOOKS_TABLE: self.storage.tables[names.webhooks_table].table_name,
            wiring.ENV_WEBHOOK_QUEUE_URL: self.queues.webhooks.queue.queue_url,
            # A literal, not a Ref: the pipeline depends on the recorder function.
            wiring.ENV_PIPELINE_NAME: names.pipeline_name,
            wiring.ENV_PIPELINE_DEFINITION_VERSION: deployed_definition_version(settings),
            wiring.ENV_PLATFORM_BUCKET: self.storage.bucket.bucket_name,
            wiring.ENV_TENANT_TEMPLATE_URLS: self.to_json_string(self.provisioning.template_urls),
            wiring.ENV_TENANT_STACK_ROLE_ARN: self.provisioning.service_role.role_arn,
            wiring.ENV_ACCOUNT_ID: Aws.ACCOUNT_ID,
            # Relative to the task root: the file ships inside the code asset.
            wiring.ENV_SETTINGS_FILE: DEPLOYED_SETTINGS_FILE,
        }
        code = lambdas_code(settings)
        layer = powertools_layer(self, settings)
        self.functions: dict[str, TrainyardFunction] = {}
        for key, spec in specs.items():
            fn = TrainyardFunction(
                self,
                f"{key.capitalize()}Handler",
                spec=spec,
                settings=settings,
                names=names,
                code=code,
                layer=layer,
                env_values=env_values,
            )
            fn.add_queue_sources(self.queues.by_name)
            self.functions[key] = fn

        self.pipeline = TrainingPipeline(
            self,
            "Training",
            settings=settings,
            names=names,
            bucket=self.storage.bucket,
            recorder=self.functions["recorder"].function,
            files=self.files,
        )
        # Onboarding creates stacks from the templates: never before they are there.
        self.functions["onboarding"].function.node.add_dependency(self.files.deployment)
        self.storage.grant_run_results(self.functions["recorder"].role)
        # The recorder announces a registered model and applies auto-approval.
        grant_put_events(self.functions["recorder"].role)
        grant_model_versions(self.functions["recorder"].role, names, listed=True, by_number=False)
        self.scheduling = Scheduling(
            self,
            "Scheduling",
            settings=settings,
            names=names,
            scheduler=self.functions["scheduler"],
            queues=self.queues,
            storage=self.storage,
            pipeline_arn=pipeline_arn(names),
        )
        self.api = OnboardingApi(
            self,
            "Onboarding",
            settings=settings,
            names=names,
            onboarding=self.functions["onboarding"],
            storage=self.storage,
            provisioning=self.provisioning,
            queues=self.queues,
        )
        self.uploads = TenantUploads(
            self, "Uploads", names=names, onboarding=self.functions["onboarding"]
        )
        self.webhooks = Webhooks(
            self,
            "Webhooks",
            names=names,
            deliverer=self.functions["webhooks"],
            api=self.functions["onboarding"],
            queues=self.queues,
            storage=self.storage,
        )
        self.monitoring = Monitoring(
            self, "Monitoring", names=names, queues=self.queues, functions=self.functions
        )

        for key, value, description in (
            ("ApiUrl", self.api.url, "Onboarding API base URL (SigV4)"),
            ("PipelineName", names.pipeline_name, "SageMaker pipeline"),
            ("PlatformBucketName", self.storage.bucket.bucket_name, "Platform bucket"),
            ("TenantTemplateUrl", self.provisioning.template_url, "Tenant stack template (silo)"),
            (
                "TenantPoolTemplateUrl",
                self.provisioning.template_urls["pool"],
                "Tenant stack template (pool)",
            ),
            ("PoolBucketName", self.storage.pool_bucket.bucket_name, "Shared pool bucket"),
            ("AlarmTopicArn", self.monitoring.topic.topic_arn, "Subscribe to get alarms"),
        ):
            CfnOutput(self, key, value=value, description=description)
