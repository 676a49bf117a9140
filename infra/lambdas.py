"""The one way Trainyard builds a Lambda function from a `wiring.HandlerSpec`.

Every handler gets the same runtime, architecture, code asset, Powertools layer,
tracing, log group and environment shape, so the local runtime (which builds
the same environment from the same wiring) and AWS cannot drift apart.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import Any

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct
from trainyard_core import wiring
from trainyard_core.arns import partition_of
from trainyard_core.config import DEPLOYED_SETTINGS_FILE, Settings

from infra.nag import acknowledge, acknowledge_findings

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LAMBDAS_DIR = PROJECT_ROOT / "lambdas"

# One runtime and architecture for all handlers, matching the Powertools layer
# variant below (the layer ships compiled pydantic-core wheels per arch).
RUNTIME = lambda_.Runtime.PYTHON_3_12
ARCHITECTURE = lambda_.Architecture.ARM_64
_LAYER_ARCH = {"arm64": "arm64", "x86_64": "x86_64"}[ARCHITECTURE.name]
POWERTOOLS_LAYER_ACCOUNT = "017000801446"

# Caches, tests and packaging leftovers never belong in the deployed zip.
CODE_EXCLUDES = [
    "**/__pycache__",
    "**/*.pyc",
    "**/.pytest_cache",
    "**/.ruff_cache",
    "**/tests",
    "**/*.egg-info",
]


def powertools_layer_arn(region: str, settings: Settings) -> str:
    """The public, AWS-published Powertools v3 layer (also provides pydantic), or the
    layer ARN the settings name."""
    if settings.powertools_layer_arn:
        return settings.powertools_layer_arn
    partition = partition_of(region)
    if partition != "aws":
        # AWS publishes the layer from other accounts outside the commercial partition.
        raise ValueError(
            f"region {region} is in partition {partition}: set powertoolsLayerArn to the "
            "Powertools for AWS Lambda (Python) v3 layer published there (or a copy in "
            "your account)"
        )
    return (
        f"arn:{partition}:lambda:{region}:{POWERTOOLS_LAYER_ACCOUNT}:layer:"
        f"AWSLambdaPowertoolsPythonV3-python312-{_LAYER_ARCH}:"
        f"{settings.powertools_layer_version}"
    )


def lambdas_code(settings: Settings) -> lambda_.AssetCode:
    """The handler package as a zip asset (shared by all functions of a stack), with
    the resolved settings beside it (``TRAINYARD_SETTINGS_FILE``): settings change
    the code version, exactly as a changed environment would."""
    staging = Path(tempfile.mkdtemp(prefix="trainyard-lambdas-"))
    # CDK copies assets into the cloud assembly; the staging dir is only a source.
    atexit.register(shutil.rmtree, staging, ignore_errors=True)
    shutil.copytree(
        LAMBDAS_DIR,
        staging,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", ".ruff_cache"),
    )
    (staging / DEPLOYED_SETTINGS_FILE).write_text(settings.to_json())
    return lambda_.Code.from_asset(str(staging), exclude=CODE_EXCLUDES)


# What one unresolved reference (a name or ARN CloudFormation fills in) may take.
_REFERENCE_BYTES = 256


def estimated_bytes(value: Any) -> int:
    """Upper estimate of a resolved CloudFormation value's length at deploy time."""
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, list):
        return sum(estimated_bytes(v) for v in value)
    if isinstance(value, dict):
        if "Fn::Join" in value:
            sep, parts = value["Fn::Join"]
            return sum(estimated_bytes(p) for p in parts) + len(sep) * max(0, len(parts) - 1)
        if "Fn::Sub" in value:
            text = value["Fn::Sub"] if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"][0]
            return len(text.encode()) + _REFERENCE_BYTES * text.count("${")
        return _REFERENCE_BYTES  # Ref, Fn::GetAtt, Fn::ImportValue, ...
    return len(str(value))


class TrainyardFunction(Construct):
    """A handler from `wiring.handlers()` with its own role and log group.

    The role is created here (not by `lambda.Function`) so it carries no
    AWS-managed policy: logs permission is scoped to this function's log group.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        spec: wiring.HandlerSpec,
        settings: Settings,
        names: wiring.Names,
        code: lambda_.Code,
        layer: lambda_.ILayerVersion,
        env_values: dict[str, str],
    ) -> None:
        super().__init__(scope, construct_id)
        self.spec = spec
        self.names = names
        function_name = names.function(spec.key)

        self.log_group = logs.LogGroup(
            self,
            "Logs",
            log_group_name=f"/aws/lambda/{function_name}",
            retention=retention(settings.log_retention_days),
            # Logs outlive the stack; they are evidence (but not a failed first create,
            # whose fixed-name log group would block the retry).
            removal_policy=RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE,
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Trainyard {spec.key} Lambda",
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[self.log_group.log_group_arn],
            )
        )
        environment = wiring.handler_environment(spec, settings, env_values)
        resolved = Stack.of(self).resolve(environment)
        wiring.check_environment_size(
            function_name, sum(len(k) + estimated_bytes(v) for k, v in resolved.items())
        )
        self.function = lambda_.Function(
            self,
            "Function",
            function_name=function_name,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler=spec.handler,
            code=code,
            layers=[layer],
            timeout=Duration.seconds(spec.timeout_seconds),
            memory_size=spec.memory_mb,
            role=self.role,
            log_group=self.log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            tracing=lambda_.Tracing.ACTIVE,
            environment=environment,
            description=f"Trainyard {spec.key} ({spec.handler})",
        )
        acknowledge(
            self.function,
            "L1",
            "Pinned to Python 3.12 on purpose: the AWS Powertools v3 layer used by every "
            "handler is published per Python version (python312 variant).",
        )
        # Active tracing adds xray:PutTraceSegments/PutTelemetryRecords on "*".
        acknowledge_findings(
            self.role,
            "IAM5",
            ["Resource::*"],
            "X-Ray PutTraceSegments/PutTelemetryRecords support no resource scoping.",
        )

    def add_queue_sources(self, queues: dict[str, sqs.IQueue]) -> None:
        """An SQS event source per queue of `spec.queues` (names from wiring)."""
        for queue_name in self.spec.queues:
            window = wiring.batching_window_seconds(self.names, queue_name)
            self.function.add_event_source(
                event_sources.SqsEventSource(
                    queues[queue_name],
                    batch_size=wiring.QUEUE_BATCH_SIZE,
                    max_batching_window=Duration.seconds(window),
                    # The handlers return partial batch failures (Powertools batch).
                    report_batch_item_failures=True,
                )
            )

    def schedule(self, scope: Construct, construct_id: str, minutes: int) -> events.Rule:
        """The EventBridge schedule of `spec.schedule_rule` (name and purpose from wiring).

        Created in ``scope`` so its logical id stays where the stack first put it
        (a fixed rule name cannot be replaced in place). No async retries: the
        next tick is the retry, and a retried sweep would overlap it."""
        if wiring.Source.SCHEDULE not in self.spec.sources or not self.spec.schedule_rule:
            raise ValueError(f"handler {self.spec.key} has no schedule in wiring")
        self.function.configure_async_invoke(retry_attempts=0)
        return events.Rule(
            scope,
            construct_id,
            rule_name=self.spec.schedule_rule,
            description=self.spec.schedule_purpose,
            schedule=events.Schedule.rate(Duration.minutes(minutes)),
            targets=[targets.LambdaFunction(self.function, retry_attempts=2)],
        )


def powertools_layer(scope: Construct, settings: Settings) -> lambda_.ILayerVersion:
    region = Stack.of(scope).region
    return lambda_.LayerVersion.from_layer_version_arn(
        scope, "PowertoolsLayer", powertools_layer_arn(region, settings)
    )


# CloudWatch Logs' allowed retention values (days) -> the CDK enum member.
_RETENTION = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    120: logs.RetentionDays.FOUR_MONTHS,
    150: logs.RetentionDays.FIVE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    400: logs.RetentionDays.THIRTEEN_MONTHS,
    545: logs.RetentionDays.EIGHTEEN_MONTHS,
    731: logs.RetentionDays.TWO_YEARS,
    1827: logs.RetentionDays.FIVE_YEARS,
    3653: logs.RetentionDays.TEN_YEARS,
}


def retention(days: int) -> logs.RetentionDays:
    """Settings carry plain days; fail loudly on a value CloudWatch does not allow."""
    try:
        return _RETENTION[days]
    except KeyError:
        raise ValueError(
            f"log_retention_days={days} is not a CloudWatch retention ({sorted(_RETENTION)})"
        ) from None
