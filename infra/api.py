"""The onboarding API: API Gateway REST (IAM auth on every method) -> onboarding Lambda,
and what that Lambda may do (tenant registry, tenant stacks)."""

from __future__ import annotations

from aws_cdk import Aws, RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from constructs import Construct
from trainyard_core import wiring
from trainyard_core.config import Settings
from trainyard_handlers.api.routes import gateway_resources

from infra.lambdas import TrainyardFunction, retention
from infra.nag import acknowledge, acknowledge_findings
from infra.pipeline import pipeline_arn
from infra.queues import Queues
from infra.registry import grant_model_versions, grant_put_events
from infra.storage import ACCESS_LOGS_PREFIX, CODE_PREFIX, Storage
from infra.tenant_template import TenantProvisioning

STAGE_NAME = "v1"
# Control-plane traffic (onboarding, listing): modest defaults protect the
# registry table and the CloudFormation API from a runaway client.
THROTTLE_RATE_LIMIT = 50
THROTTLE_BURST_LIMIT = 100

# The API's route table (trainyard_handlers.api.routes, what the handler's routers
# serve) as resource path -> methods. Explicit resources, not {proxy+}: unknown
# paths never reach the Lambda, path parameters are validated, and IAM policies
# can grant per route.
RESOURCES: dict[str, tuple[str, ...]] = gateway_resources()

# API Gateway's own 4xx/5xx (auth, throttling, validation) in the API's error shape.
_ERROR_TEMPLATE = (
    '{"error": {"code": "$context.error.responseType", "message": $context.error.messageString}}'
)


def _path_params(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")]


class OnboardingApi(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        names: wiring.Names,
        onboarding: TrainyardFunction,
        storage: Storage,
        provisioning: TenantProvisioning,
        queues: Queues,
    ) -> None:
        super().__init__(scope, construct_id)
        self._grant(names, onboarding, storage, provisioning)
        # Provisioning, migrations and offboarding finish without anyone reading the tenant.
        self.lifecycle_rule = onboarding.schedule(
            self, "LifecycleRule", settings.reconcile_interval_minutes
        )
        # A manual run wakes the scheduler through its plan's intake queue.
        for pair in queues.intake.values():
            pair.queue.grant_send_messages(onboarding.role)
            onboarding.role.add_to_policy(
                iam.PolicyStatement(actions=["sqs:GetQueueUrl"], resources=[pair.queue.queue_arn])
            )
        # Offboarding with ?purge=true deletes a retained tenant bucket and its objects.
        # ListBucket also serves the retrain schedule's look at a tenant's data prefix
        # (tenants/retraining.py): narrowing this statement must keep it.
        tenant_buckets = f"arn:{Aws.PARTITION}:s3:::{names.prefix}-*-{Aws.ACCOUNT_ID}"
        onboarding.role.add_to_policy(
            iam.PolicyStatement(
                sid="PurgeTenantBuckets",
                actions=["s3:ListBucketVersions", "s3:ListBucket", "s3:DeleteBucket"],
                resources=[tenant_buckets],
            )
        )
        onboarding.role.add_to_policy(
            iam.PolicyStatement(
                sid="PurgeTenantObjects",
                actions=["s3:DeleteObject", "s3:DeleteObjectVersion"],
                resources=[f"{tenant_buckets}/*"],
            )
        )
        # A plan change across isolation models moves the tenant's objects between
        # its silo bucket and its prefix of the pool bucket (both match the pattern).
        onboarding.role.add_to_policy(
            iam.PolicyStatement(
                sid="MigrateTenantObjects",
                actions=["s3:GetObject", "s3:PutObject"],
                resources=[f"{tenant_buckets}/*"],
            )
        )
        # The platform bucket matches the pattern above; it is never a tenant's to purge,
        # nor a source of data moves (its code/ and access-logs/); templates/ is read
        # for CreateStack (ReadTenantTemplates).
        platform = f"arn:{Aws.PARTITION}:s3:::{names.platform_bucket(Aws.ACCOUNT_ID)}"
        onboarding.role.add_to_policy(
            iam.PolicyStatement(
                sid="NeverPurgePlatformBucket",
                effect=iam.Effect.DENY,
                actions=[
                    "s3:DeleteBucket",
                    "s3:DeleteObject",
                    "s3:DeleteObjectVersion",
                    "s3:PutObject",
                ],
                resources=[platform, f"{platform}/*"],
            )
        )
        onboarding.role.add_to_policy(
            iam.PolicyStatement(
                sid="NeverMovePlatformObjects",
                effect=iam.Effect.DENY,
                actions=["s3:GetObject"],
                resources=[f"{platform}/{CODE_PREFIX}*", f"{platform}/{ACCESS_LOGS_PREFIX}*"],
            )
        )
        # Offboarding with ?purge=true also removes the tenant's retained model registry
        # (packages first: SageMaker refuses to delete a group holding any); creating
        # a tenant checks that no earlier tenant of that id left a group behind (its
        # DescribeModelPackageGroup is granted once, by grant_model_versions below).
        acct = f"{Aws.REGION}:{Aws.ACCOUNT_ID}"
        sm = f"arn:{Aws.PARTITION}:sagemaker:{acct}"
        onboarding.role.add_to_policy(
            iam.PolicyStatement(
                sid="PurgeTenantModels",
                actions=[
                    "sagemaker:DeleteModelPackageGroup",
                    "sagemaker:DeleteModelPackage",
                ],
                resources=[
                    f"{sm}:model-package-group/{names.prefix}-*",
                    f"{sm}:model-package/{names.prefix}-*/*",
                ],
            )
        )
        onboarding.role.add_to_policy(
            iam.PolicyStatement(
                sid="ListTenantModels",
                actions=["sagemaker:ListModelPackages"],
                resources=["*"],  # a list action without resource-level permissions
            )
        )
        # A purge first stops the tenant's pipeline executions and waits until they
        # have ended (a running one would write artifacts and models after it).
        executions = f"{pipeline_arn(names)}/execution/*"
        onboarding.role.add_to_policy(
            iam.PolicyStatement(
                sid="StopTenantExecutions",
                actions=["sagemaker:DescribePipelineExecution", "sagemaker:StopPipelineExecution"],
                resources=[executions],
            )
        )
        # Manual runs (run.queued), model approval and rejection (model.*) are published.
        grant_put_events(onboarding.role)
        # GET /tenants/{id}/models and its approve/reject (ListModelPackages is above);
        # they name a version by number, found from its group's ARN (by_number).
        grant_model_versions(onboarding.role, names, listed=False, by_number=True)
        # Nor is the shared pool bucket: purges and moves touch one tenant's prefix only.
        onboarding.role.add_to_policy(
            iam.PolicyStatement(
                sid="NeverDeletePoolBucket",
                effect=iam.Effect.DENY,
                actions=["s3:DeleteBucket"],
                resources=[f"arn:{Aws.PARTITION}:s3:::{names.pool_bucket(Aws.ACCOUNT_ID)}"],
            )
        )
        acknowledge_findings(
            onboarding.role,
            "IAM5",
            {
                f"Resource::arn:<AWS::Partition>:s3:::{names.prefix}-*-<AWS::AccountId>": (
                    "Tenant buckets are created per tenant at onboarding, after deploy; the "
                    "pattern admits only this account's prefixed buckets, the platform "
                    "bucket is denied explicitly."
                ),
                f"Resource::arn:<AWS::Partition>:s3:::{names.prefix}-*-<AWS::AccountId>/*": (
                    "Objects of the per-tenant buckets above (and of the pool bucket), for "
                    "purge on offboarding and data moves on plan changes."
                ),
                "Resource::arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>:"
                f"model-package-group/{names.prefix}-*": (
                    "Tenant model package groups, named <prefix>-<tenant> at onboarding; "
                    "described and deleted only by a purge."
                ),
                "Resource::arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>:"
                f"model-package/{names.prefix}-*/*": (
                    "The model versions inside those groups, deleted by a purge."
                ),
                "Resource::arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>:"
                f"pipeline/{names.pipeline_name}/execution/*": (
                    "Executions of this one pipeline (ids generated at start): a purge stops "
                    "the offboarded tenant's and waits for them to end."
                ),
                "Resource::*": (
                    "sagemaker:ListModelPackages supports no resource-level permissions; it "
                    "only lists, and deletion is scoped to tenant groups above."
                ),
            },
        )

        # Logging (access and execution) needs the account's API Gateway CloudWatch
        # role, an account-wide setting: only "createAccountRole" sets it.
        logging_on = settings.api_logging != "off"
        logging: dict[str, object] = {"logging_level": apigw.MethodLoggingLevel.OFF}
        if logging_on:
            access_logs = logs.LogGroup(
                self,
                "AccessLogs",
                retention=retention(settings.log_retention_days),
                removal_policy=RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE,
            )
            logging = {
                "logging_level": apigw.MethodLoggingLevel.ERROR,
                "access_log_destination": apigw.LogGroupLogDestination(access_logs),
                "access_log_format": apigw.AccessLogFormat.json_with_standard_fields(
                    caller=True,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=True,
                ),
            }
        self.api = apigw.RestApi(
            self,
            "Api",
            rest_api_name=f"{names.prefix}-onboarding",
            description="Trainyard onboarding API (tenants, plans, runs, queue)",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            cloud_watch_role=settings.api_logging == "createAccountRole",
            cloud_watch_role_removal_policy=(
                RemovalPolicy.RETAIN if settings.api_logging == "createAccountRole" else None
            ),
            deploy_options=apigw.StageOptions(
                stage_name=STAGE_NAME,
                tracing_enabled=True,
                metrics_enabled=True,
                data_trace_enabled=False,  # bodies may carry tenant details
                throttling_rate_limit=THROTTLE_RATE_LIMIT,
                throttling_burst_limit=THROTTLE_BURST_LIMIT,
                **logging,  # type: ignore[arg-type]
            ),
            default_method_options=apigw.MethodOptions(
                authorization_type=apigw.AuthorizationType.IAM
            ),
        )
        # CDK's auto-named "Endpoint" output is replaced by the stack's "ApiUrl".
        self.api.node.try_remove_child("Endpoint")
        validator = self.api.add_request_validator(
            "Validator",
            request_validator_name="params-and-body",
            validate_request_parameters=True,
            validate_request_body=True,
        )
        integration = apigw.LambdaIntegration(onboarding.function, allow_test_invoke=False)
        for path, methods in RESOURCES.items():
            resource = self.api.root.resource_for_path(path)
            params = {f"method.request.path.{p}": True for p in _path_params(path)}
            for method in methods:
                resource.add_method(
                    method,
                    integration,
                    authorization_type=apigw.AuthorizationType.IAM,
                    request_validator=validator,
                    request_parameters=params or None,
                )
        for response_type in (apigw.ResponseType.DEFAULT_4_XX, apigw.ResponseType.DEFAULT_5_XX):
            self.api.add_gateway_response(
                f"Gateway{response_type.response_type}",
                type=response_type,
                templates={"application/json": _ERROR_TEMPLATE},
            )

        acknowledge(
            self.api,
            "APIG3",
            "Callers are AWS principals of the platform (SigV4, AWS_IAM on every method); the "
            "stage is throttled. A WAF web ACL is an optional add-on for the platform team.",
        )
        acknowledge(
            self.api,
            "COG4",
            "Machine-to-machine control plane: AWS_IAM authorization (SigV4) on every method "
            "instead of a Cognito user pool.",
        )
        if settings.api_logging == "createAccountRole":
            acknowledge_findings(
                self.api,
                "IAM4",
                [
                    "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                    "AmazonAPIGatewayPushToCloudWatchLogs"
                ],
                "Account-level API Gateway logging role; AWS's managed policy is the "
                "documented minimum for it.",
            )
        if not logging_on:
            why = (
                "API Gateway logging needs the account-wide API Gateway CloudWatch role, which "
                "this stack does not set unless apiLogging=createAccountRole (it would replace "
                "a platform team's own); set apiLogging=useAccountRole where the account has "
                "one. Every request still reaches the onboarding Lambda, which logs it."
            )
            acknowledge(self.api, "APIG1", why)
            acknowledge(self.api, "APIG6", why)

    @property
    def url(self) -> str:
        return self.api.url

    def _grant(
        self,
        names: wiring.Names,
        onboarding: TrainyardFunction,
        storage: Storage,
        provisioning: TenantProvisioning,
    ) -> None:
        role = onboarding.role
        storage.grant_tables(role)
        tenant_stacks = (
            f"arn:{Aws.PARTITION}:cloudformation:{Aws.REGION}:{Aws.ACCOUNT_ID}:"
            f"stack/{names.tenant_stack('*')}/*"
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="TenantStacks",
                actions=[
                    "cloudformation:CreateStack",
                    "cloudformation:UpdateStack",
                    "cloudformation:DeleteStack",
                    "cloudformation:DescribeStacks",
                    "cloudformation:DescribeStackEvents",
                    # CreateStack with Tags also authorizes TagResource (tag on create).
                    "cloudformation:TagResource",
                ],
                resources=[tenant_stacks],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="PassTenantStackRole",
                actions=["iam:PassRole"],
                resources=[provisioning.service_role.role_arn],
                conditions={
                    "StringEquals": {"iam:PassedToService": "cloudformation.amazonaws.com"}
                },
            )
        )
        # CreateStack(TemplateURL=...) reads the template with the caller's rights.
        role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadTenantTemplates",
                actions=["s3:GetObject"],
                resources=provisioning.template_object_arns,
            )
        )
        acknowledge_findings(
            role,
            "IAM5",
            {
                "Resource::arn:<AWS::Partition>:cloudformation:<AWS::Region>:<AWS::AccountId>:"
                f"stack/{names.tenant_stack('*')}/*": (
                    "Tenant stacks only (named per tenant at onboarding; the trailing "
                    "segment is CloudFormation's stack id)."
                ),
            },
        )
