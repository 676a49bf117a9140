"""Names and wiring: which resource is called what, and what feeds which handler.

Read by the CDK app (infra/) to name and connect resources, by the local
runtime to create the same resources in moto and route the same events to the
same handlers, and by the handlers themselves (through environment variables
built here). ``tests/infra/test_wiring_agreement.py`` proves CDK and local agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from trainyard_core.config import SETTINGS_ENV, SETTINGS_FILE_ENV, Settings

# Environment variable names every handler may read.
ENV_TENANTS_TABLE = "TENANTS_TABLE"
ENV_RUNS_TABLE = "RUNS_TABLE"
ENV_STATE_TABLE = "STATE_TABLE"
ENV_WEBHOOKS_TABLE = "WEBHOOKS_TABLE"
ENV_WEBHOOK_QUEUE_URL = "WEBHOOK_QUEUE_URL"
ENV_PIPELINE_NAME = "PIPELINE_NAME"
# The deployed pipeline definition's hash (lineage.definition_version), for run lineage.
ENV_PIPELINE_DEFINITION_VERSION = "PIPELINE_DEFINITION_VERSION"
ENV_PLATFORM_BUCKET = "PLATFORM_BUCKET"
# JSON {"silo": url, "pool": url}: one tenant template per isolation model.
ENV_TENANT_TEMPLATE_URLS = "TENANT_TEMPLATE_URLS"
ENV_ACCOUNT_ID = "PLATFORM_ACCOUNT_ID"
# CloudFormation service role the onboarding Lambda passes to tenant stacks.
ENV_TENANT_STACK_ROLE_ARN = "TENANT_STACK_ROLE_ARN"
# The resolved settings travel as a file in the code asset (4 KB environment limit).
ENV_SETTINGS_FILE = SETTINGS_FILE_ENV
ENV_SETTINGS = SETTINGS_ENV  # inline JSON: tests and tools only, never deployed
# Lambda: "The total size of the set [of environment variables] does not exceed 4 KB."
LAMBDA_ENVIRONMENT_LIMIT_BYTES = 4096

SAGEMAKER_STATUS_SOURCE = "aws.sagemaker"
SAGEMAKER_STATUS_DETAIL_TYPE = "SageMaker Model Building Pipeline Execution Status Change"
S3_SOURCE = "aws.s3"
S3_OBJECT_CREATED = "Object Created"
TENANT_TAG_KEY = "trainyard:tenant-id"
COST_TAG_KEY = "trainyard:cost-center"


class Source(StrEnum):
    """Kinds of event source a handler can be wired to."""

    API = "api"
    QUEUE = "queue"
    SCHEDULE = "schedule"
    PIPELINE_STEP = "pipeline-step"


@dataclass(frozen=True)
class HandlerSpec:
    key: str
    handler: str  # module.function inside the lambdas/ asset
    timeout_seconds: int
    memory_mb: int
    queues: tuple[str, ...] = ()  # physical queue names feeding this handler
    sources: tuple[Source, ...] = ()
    env_keys: tuple[str, ...] = field(default_factory=tuple)
    # Source.SCHEDULE: the EventBridge rule (physical name) and what it is for.
    schedule_rule: str = ""
    schedule_purpose: str = ""


@dataclass(frozen=True)
class Names:
    """Physical names derived from the settings' prefix."""

    prefix: str
    plans: tuple[str, ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> Names:
        return cls(prefix=settings.resource_prefix, plans=tuple(settings.plans))

    # --- tables
    @property
    def tenants_table(self) -> str:
        return f"{self.prefix}-tenants"

    @property
    def runs_table(self) -> str:
        return f"{self.prefix}-runs"

    @property
    def state_table(self) -> str:
        return f"{self.prefix}-scheduler-state"

    # --- queues
    def intake_queue(self, plan: str) -> str:
        return f"{self.prefix}-intake-{plan}"

    def intake_dlq(self, plan: str) -> str:
        return f"{self.prefix}-intake-{plan}-dlq"

    @property
    def status_queue(self) -> str:
        return f"{self.prefix}-pipeline-status"

    @property
    def status_dlq(self) -> str:
        return f"{self.prefix}-pipeline-status-dlq"

    @property
    def webhooks_table(self) -> str:
        return f"{self.prefix}-webhooks"

    @property
    def webhook_queue(self) -> str:
        return f"{self.prefix}-webhook-deliveries"

    @property
    def webhook_dlq(self) -> str:
        return f"{self.prefix}-webhook-deliveries-dlq"

    @property
    def webhook_rule(self) -> str:
        # Trainyard's own events (source "trainyard") on the default bus -> the queue.
        return f"{self.prefix}-webhook-events"

    @property
    def webhook_rule_dlq(self) -> str:
        # Events the rule could not put on the webhook queue (its target's DLQ).
        return f"{self.prefix}-webhook-events-dlq"

    @property
    def webhook_secret_prefix(self) -> str:
        # Every webhook signing secret lives under this path (IAM grants on it).
        return f"trainyard/{self.prefix}/webhooks/"

    def webhook_secret_tenant_prefix(self, tenant_id: str) -> str:
        return f"{self.webhook_secret_prefix}{tenant_id}/"

    def webhook_secret(self, tenant_id: str, generation: str) -> str:
        # One secret per webhook generation (every PUT): a new name never collides
        # with an old secret whose forced deletion Secrets Manager is still finishing.
        return f"{self.webhook_secret_tenant_prefix(tenant_id)}{generation}"

    @property
    def intake_queues(self) -> dict[str, str]:
        return {plan: self.intake_queue(plan) for plan in self.plans}

    # --- functions, rules, pipeline
    def function(self, key: str) -> str:
        return f"{self.prefix}-{key}"

    @property
    def pipeline_name(self) -> str:
        return f"{self.prefix}-training"

    @property
    def status_rule(self) -> str:
        return f"{self.prefix}-pipeline-status"

    @property
    def reconcile_rule(self) -> str:
        return f"{self.prefix}-reconcile"

    @property
    def lifecycle_rule(self) -> str:
        # Not "<prefix>-tenant-...": that namespace belongs to the tenants' own rules.
        return f"{self.prefix}-lifecycle"

    @property
    def tenant_rule_prefix(self) -> str:
        return f"{self.prefix}-tenant-"

    def tenant_rule(self, tenant_id: str) -> str:
        return f"{self.tenant_rule_prefix}{tenant_id}-uploads"

    def tenant_stack(self, tenant_id: str) -> str:
        return f"{self.prefix}-tenant-{tenant_id}"

    @property
    def tenant_role_path(self) -> str:
        # Tenant roles live under one path so iam:PassRole can be scoped to it.
        return f"/{self.prefix}/tenants/"

    def tenant_role(self, tenant_id: str) -> str:
        return f"{self.prefix}-tenant-{tenant_id}"

    @property
    def uploader_role(self) -> str:
        # The role presigned uploads are signed with (infra/uploads.py): the
        # onboarding Lambda assumes it narrowed to one tenant's key.
        return f"{self.prefix}-uploader"

    def uploader_role_arn(self, partition: str, account_id: str) -> str:
        return f"arn:{partition}:iam::{account_id}:role/{self.uploader_role}"

    def model_package_group(self, tenant_id: str) -> str:
        return f"{self.prefix}-{tenant_id}"

    def silo_bucket(self, tenant_id: str, account_id: str) -> str:
        # <= 63 chars: prefix (<=16) + tenant (<=32) + account (12) + 2 dashes.
        return f"{self.prefix}-{tenant_id}-{account_id}"

    def platform_bucket(self, account_id: str) -> str:
        return f"{self.prefix}-platform-{account_id}"

    def pool_bucket(self, account_id: str) -> str:
        # "pool" is a reserved tenant id, so no silo bucket can take this name.
        return f"{self.prefix}-pool-{account_id}"

    def pool_tenant_prefix(self, tenant_id: str) -> str:
        return f"tenants/{tenant_id}/"

    def pool_data_prefix(self, tenant_id: str) -> str:
        return self.pool_tenant_prefix(tenant_id) + self.silo_data_prefix

    def pool_output_prefix(self, tenant_id: str) -> str:
        return self.pool_tenant_prefix(tenant_id) + self.silo_output_prefix

    def tenant_location(
        self, isolation: str, tenant_id: str, account_id: str
    ) -> tuple[str, str, str]:
        """(bucket, root prefix, data prefix) of a tenant under an isolation model.
        The root holds everything the tenant owns (data/ and artifacts/)."""
        if isolation == "pool":
            root = self.pool_tenant_prefix(tenant_id)
            return self.pool_bucket(account_id), root, root + self.silo_data_prefix
        return self.silo_bucket(tenant_id, account_id), "", self.silo_data_prefix

    def tenant_template_key(self, isolation: str, version: str) -> str:
        """Key of a tenant template in the platform bucket (version: content hash)."""
        return f"templates/{version}/tenant-stack-{isolation}.template.json"

    # Data layout inside a silo bucket: uploads under data/, pipeline output under
    # artifacts/ (outside the rule's prefix, so outputs never trigger runs).
    silo_data_prefix: str = "data/"
    silo_output_prefix: str = "artifacts/"


RETRAIN_DUE_INDEX = "byRetrainDue"


@dataclass(frozen=True)
class IndexSpec:
    name: str
    partition_key: str
    sort_key: str | None = None


@dataclass(frozen=True)
class TableSpec:
    """A DynamoDB table (all key attributes are strings; on-demand billing)."""

    logical_id: str
    partition_key: str
    sort_key: str | None = None
    indexes: tuple[IndexSpec, ...] = ()
    ttl_attribute: str | None = None


def tables(names: Names) -> dict[str, TableSpec]:
    """Physical table name -> schema. CDK and the local runtime both build from this."""
    return {
        names.tenants_table: TableSpec(
            logical_id="TenantsTable",
            partition_key="tenantId",
            indexes=(
                # Resolves an S3 object to its tenant: locationKey = "<bucket>/<prefix>".
                IndexSpec("byLocation", "locationKey"),
                # Sparse: while MIGRATING the new location, afterwards the one it left
                # (the tenant stays resolvable by both while events are in flight).
                IndexSpec("byAltLocation", "altLocationKey"),
                # Sparse: only tenants in a transitional state (provisioning, migrating,
                # offboarding) carry lifecycleStatus; the lifecycle schedule advances them.
                IndexSpec("byLifecycle", "lifecycleStatus"),
                # Sparse: ACTIVE tenants with a retrain schedule, by when next due
                # (one partition; the lifecycle schedule reads the due end).
                IndexSpec(RETRAIN_DUE_INDEX, "retrainShard", "retrainDueAt"),
            ),
        ),
        names.runs_table: TableSpec(
            logical_id="RunsTable",
            partition_key="tenantId",
            sort_key="runId",
            indexes=(
                # Sparse: only QUEUED runs carry queuePlan; sorted by queueKey.
                IndexSpec("byQueue", "queuePlan", "queueKey"),
                # Sparse: only STARTING/RUNNING runs carry activePlan.
                IndexSpec("byActive", "activePlan", "activeKey"),
                IndexSpec("byExecution", "executionArn"),
            ),
        ),
        names.state_table: TableSpec(
            logical_id="SchedulerStateTable",
            partition_key="pk",
            sort_key="sk",
            ttl_attribute="expiresAt",
        ),
        # Per tenant: its webhook (sk "webhook") and its deliveries
        # (sk "delivery#<occurredAt>#<event id>", newest first; they expire).
        names.webhooks_table: TableSpec(
            logical_id="WebhooksTable",
            partition_key="tenantId",
            sort_key="sk",
            ttl_attribute="expiresAt",
        ),
    }


# SQS event source mappings (CDK's, the local runtime's pollers and the benchmark's
# model all read these): up to QUEUE_BATCH_SIZE records an invocation, gathered for
# at most the queue's MaximumBatchingWindowInSeconds (whole seconds, 0-300). Chosen
# from the benchmark's sweep (docs/benchmarks.md, "Batching windows").
QUEUE_BATCH_SIZE = 10
INTAKE_BATCHING_WINDOW_SECONDS = 0
STATUS_BATCHING_WINDOW_SECONDS = 0
# Webhook deliveries: a window would only delay them (one delivery is one HTTP
# request; batching saves no AWS request per delivery).
WEBHOOK_BATCHING_WINDOW_SECONDS = 0


# The webhook rule's target (default bus -> webhook queue) retries a failed SendMessage
# for at most this long / this often, then puts the event in names.webhook_rule_dlq
# (alarmed). SQS failing for minutes (throttling, an outage) heals within the hour;
# past that it is a configuration fault (queue policy, encryption) an operator must
# fix, and the event waits 14 days in the DLQ for a redrive rather than being
# retried blind for EventBridge's default 24 hours / 185 attempts.
WEBHOOK_RULE_MAX_RETRY_ATTEMPTS = 20
WEBHOOK_RULE_MAX_EVENT_AGE_SECONDS = 3600


def batching_window_seconds(names: Names, queue: str) -> int:
    """The batching window of one of the scheduler's queues (physical name)."""
    if queue == names.status_queue:
        return STATUS_BATCHING_WINDOW_SECONDS
    if queue in names.intake_queues.values():
        return INTAKE_BATCHING_WINDOW_SECONDS
    if queue == names.webhook_queue:
        return WEBHOOK_BATCHING_WINDOW_SECONDS
    raise KeyError(f"{queue} is not a queue an event source mapping reads")


# Which handler runs what, fed by what. CDK and the local runtime both iterate this.
def handlers(names: Names) -> dict[str, HandlerSpec]:
    common = (ENV_SETTINGS_FILE, ENV_TENANTS_TABLE, ENV_RUNS_TABLE, ENV_STATE_TABLE)
    return {
        "onboarding": HandlerSpec(
            key="onboarding",
            handler="trainyard_handlers.onboarding.handler",
            timeout_seconds=29,
            memory_mb=512,
            sources=(Source.API, Source.SCHEDULE),
            schedule_rule=names.lifecycle_rule,
            schedule_purpose="Trainyard tenant lifecycle (provisioning, migration, offboarding)",
            env_keys=common
            + (
                ENV_PLATFORM_BUCKET,
                ENV_TENANT_TEMPLATE_URLS,
                ENV_TENANT_STACK_ROLE_ARN,
                ENV_PIPELINE_NAME,
                ENV_ACCOUNT_ID,
                ENV_WEBHOOKS_TABLE,
            ),
        ),
        "scheduler": HandlerSpec(
            key="scheduler",
            handler="trainyard_handlers.scheduler.handler",
            timeout_seconds=60,
            memory_mb=512,
            queues=tuple(names.intake_queues.values()) + (names.status_queue,),
            sources=(Source.QUEUE, Source.SCHEDULE),
            schedule_rule=names.reconcile_rule,
            schedule_purpose="Trainyard scheduler reconciliation",
            env_keys=common + (ENV_PIPELINE_NAME, ENV_PIPELINE_DEFINITION_VERSION, ENV_ACCOUNT_ID),
        ),
        "recorder": HandlerSpec(
            key="recorder",
            handler="trainyard_handlers.recorder.handler",
            timeout_seconds=30,
            memory_mb=256,
            sources=(Source.PIPELINE_STEP,),
            env_keys=common,
        ),
        # Tenant webhooks: Trainyard's events (EventBridge rule -> queue) to tenants' URLs.
        "webhooks": HandlerSpec(
            key="webhooks",
            handler="trainyard_handlers.webhooks.handler",
            timeout_seconds=30,
            memory_mb=256,
            queues=(names.webhook_queue,),
            sources=(Source.QUEUE,),
            # The runs table and the account: events are verified against the run
            # and the tenant's model packages before they are sent.
            env_keys=(
                ENV_SETTINGS_FILE,
                ENV_WEBHOOKS_TABLE,
                ENV_WEBHOOK_QUEUE_URL,
                ENV_RUNS_TABLE,
                ENV_ACCOUNT_ID,
            ),
        ),
    }


def handler_environment(
    spec: HandlerSpec, settings: Settings, values: dict[str, str]
) -> dict[str, str]:
    """The environment of one handler. ``values`` maps env keys to concrete
    values (strings locally, CDK tokens in the stack)."""
    env: dict[str, str] = {}
    for key in spec.env_keys:
        if key not in values:
            raise KeyError(f"handler {spec.key} needs env {key}")
        env[key] = values[key]
    env["POWERTOOLS_SERVICE_NAME"] = service_name(settings.resource_prefix, spec.key)
    env["POWERTOOLS_METRICS_NAMESPACE"] = METRICS_NAMESPACE
    return env


def environment_bytes(env: dict[str, str]) -> int:
    return sum(len(k.encode()) + len(str(v).encode()) for k, v in env.items())


def check_environment_size(function: str, size: int) -> None:
    """Fail before deploying a function whose environment Lambda would refuse."""
    if size > LAMBDA_ENVIRONMENT_LIMIT_BYTES:
        raise ValueError(
            f"the environment of {function} would take {size} bytes, over Lambda's "
            f"{LAMBDA_ENVIRONMENT_LIMIT_BYTES}-byte limit; move the large values into the "
            "code asset (as the settings are) or SSM"
        )


# Custom metrics (Powertools EMF). Each carries the dimension ``service`` (the
# handler's service name, unique per deployment through the prefix) and, for
# per-plan metrics, ``plan``: the alarms in infra/monitoring.py name exactly these.
METRICS_NAMESPACE = "Trainyard"


def service_name(prefix: str, handler_key: str) -> str:
    return f"{prefix}-{handler_key}"


# The tenant stack templates' interface (identical for silo and pool, so a plan
# change can swap templates with UpdateStack): the onboarding Lambda passes these
# parameters to CreateStack and reads these outputs; infra/tenant_stack.py
# declares exactly these (a test checks).
TENANT_STACK_PARAMETERS = ("TenantId", "PlanName", "IntakeQueueArn")
TENANT_STACK_OUTPUTS = (
    "DataBucketName",
    "DataPrefix",
    "OutputUri",
    "RoleArn",
    "ModelPackageGroupName",
    "UploadRuleArn",
)
