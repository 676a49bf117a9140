"""Platform storage: the DynamoDB tables from `wiring.tables()` and the platform bucket."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Aws, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct
from trainyard_core import wiring
from trainyard_core.limits import MULTIPART_ABORT_DAYS

from infra.nag import acknowledge_findings

# Inside the platform bucket: pipeline step code, and tenant buckets' access logs.
CODE_PREFIX = "code/"
ACCESS_LOGS_PREFIX = "access-logs/"
ACCESS_LOG_RETENTION_DAYS = 365
# access-logs/<name>/ of the pool bucket ("pool" is a reserved tenant id).
POOL_LOGS_NAME = "pool"


def _account(scope: Construct) -> str:
    """The stack's account: a literal when the deployment knows it (cdk deploy with
    credentials sets CDK_DEFAULT_ACCOUNT), else the AWS::AccountId token. A literal
    name is what `cdk deploy --import-existing-resources` can adopt after a destroy."""
    return Stack.of(scope).account


def tenant_data_bucket(
    scope: Construct,
    logical_id: str,
    *,
    bucket_name: str,
    log_bucket: object,
    log_prefix: object,
    logs_for: str,
    noncurrent_version_days: int,
) -> s3.Bucket:
    """A bucket that holds tenant data (a silo tenant's own, or the shared pool):
    encrypted, private, TLS only, versioned, native S3 -> EventBridge notifications
    (the L1 property; CDK's ``event_bridge_enabled`` would add a custom-resource
    Lambda), server access logs into the platform bucket. Kept on stack deletion and
    replacement, not after the failed create that made it (a kept bucket of a failed
    create would make every retry fail on its fixed name).

    Lifecycle: what S3 stores (and bills) beyond the current objects is bounded. An
    overwritten or deleted file's noncurrent version expires after
    ``noncurrent_version_days`` (settings ``dataNoncurrentVersionDays``; the data
    quota counts it until then), a delete marker left alone is removed, and a
    multipart upload neither completed nor aborted is aborted after
    ``MULTIPART_ABORT_DAYS`` (limits.py says why that value)."""
    bucket = s3.Bucket(
        scope,
        logical_id,
        bucket_name=bucket_name,
        encryption=s3.BucketEncryption.S3_MANAGED,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        enforce_ssl=True,
        versioned=True,
        removal_policy=RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE,
        lifecycle_rules=[
            s3.LifecycleRule(
                id="AbortIncompleteMultipartUploads",
                abort_incomplete_multipart_upload_after=Duration.days(MULTIPART_ABORT_DAYS),
            ),
            s3.LifecycleRule(
                id="ExpireNoncurrentVersions",
                noncurrent_version_expiration=Duration.days(noncurrent_version_days),
                expired_object_delete_marker=True,
            ),
        ],
    )
    cfn_bucket = bucket.node.default_child
    assert isinstance(cfn_bucket, s3.CfnBucket)
    # Stable, readable logical ids: templates are published and diffed.
    cfn_bucket.override_logical_id(logical_id)
    cfn_bucket.add_property_override(
        "NotificationConfiguration.EventBridgeConfiguration.EventBridgeEnabled", True
    )
    cfn_bucket.add_property_override(
        "LoggingConfiguration", {"DestinationBucketName": log_bucket, "LogFilePrefix": log_prefix}
    )
    Validations.of(bucket).acknowledge(
        Acknowledgment(
            id="AwsSolutions-S1",
            reason=(
                "Server access logging is configured with an L1 override to the platform "
                f"bucket ({logs_for}), which cdk-nag cannot see on the L2 bucket."
            ),
        )
    )
    return bucket


def _attr(name: str) -> dynamodb.Attribute:
    # wiring.TableSpec: every key attribute is a string.
    return dynamodb.Attribute(name=name, type=dynamodb.AttributeType.STRING)


class Storage(Construct):
    """Tables keyed by physical name (as in `wiring.tables`) and the platform bucket."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: wiring.Names,
        noncurrent_version_days: int,
    ) -> None:
        super().__init__(scope, construct_id)
        self.names = names
        self.tables: dict[str, dynamodb.Table] = {}
        for table_name, spec in wiring.tables(names).items():
            table = dynamodb.Table(
                self,
                spec.logical_id,
                table_name=table_name,
                partition_key=_attr(spec.partition_key),
                sort_key=_attr(spec.sort_key) if spec.sort_key else None,
                billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
                point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                    point_in_time_recovery_enabled=True
                ),
                encryption=dynamodb.TableEncryption.AWS_MANAGED,
                time_to_live_attribute=spec.ttl_attribute,
                # Tenants and run history are the product's records: kept when the stack
                # is deleted or the table replaced, but not after a failed first create
                # (that would block every retry with "already exists").
                removal_policy=RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE,
            )
            cfn_table = table.node.default_child
            assert isinstance(cfn_table, dynamodb.CfnTable)
            # The wiring names the logical id; the local runtime and IAM findings use it.
            cfn_table.override_logical_id(spec.logical_id)
            for index in spec.indexes:
                table.add_global_secondary_index(
                    index_name=index.name,
                    partition_key=_attr(index.partition_key),
                    sort_key=_attr(index.sort_key) if index.sort_key else None,
                    projection_type=dynamodb.ProjectionType.ALL,
                )
            self.tables[table_name] = table

        self.bucket = s3.Bucket(
            self,
            "PlatformBucket",
            # Deterministic per account: the tenant template names it without a parameter.
            bucket_name=names.platform_bucket(_account(self)),
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            versioned=True,
            # Access logs are audit evidence: kept, except after a failed first create.
            removal_policy=RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="ExpireAccessLogs",
                    prefix=ACCESS_LOGS_PREFIX,
                    expiration=Duration.days(ACCESS_LOG_RETENTION_DAYS),
                ),
                s3.LifecycleRule(
                    id="ExpireOldCodeVersions",
                    noncurrent_version_expiration=Duration.days(30),
                ),
            ],
        )
        cfn_bucket = self.bucket.node.default_child
        assert isinstance(cfn_bucket, s3.CfnBucket)
        # Stable logical id: IAM findings and other stacks' readers refer to it.
        cfn_bucket.override_logical_id("PlatformBucket")
        # Tenant silo buckets deliver their S3 server access logs here
        # (access-logs/<tenant>/), so every tenant bucket is audited without a
        # log bucket per tenant. Only buckets of this account and prefix may write.
        self.bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="TenantBucketAccessLogs",
                principals=[iam.ServicePrincipal("logging.s3.amazonaws.com")],
                actions=["s3:PutObject"],
                resources=[self.bucket.arn_for_objects(f"{ACCESS_LOGS_PREFIX}*")],
                conditions={
                    "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                    "ArnLike": {"aws:SourceArn": f"arn:{Aws.PARTITION}:s3:::{names.prefix}-*"},
                },
            )
        )
        Validations.of(self.bucket).acknowledge(
            Acknowledgment(
                id="AwsSolutions-S1",
                reason=(
                    "The platform bucket is itself the access-log destination of the tenant "
                    "buckets and otherwise holds only CloudFormation-deployed pipeline code; "
                    "logging it into itself would loop, and its writes are CloudTrail-audited."
                ),
            )
        )

        self.pool_bucket = self._pool_bucket(names, noncurrent_version_days)
        self._specs = wiring.tables(names)

    def _pool_bucket(self, names: wiring.Names, noncurrent_version_days: int) -> s3.Bucket:
        """The shared bucket of pool tenants (plans with `pool` isolation): each owns
        tenants/<id>/, reachable only through its own role and rule (tenant stack)."""
        return tenant_data_bucket(
            self,
            "PoolBucket",
            bucket_name=names.pool_bucket(_account(self)),
            log_bucket={"Ref": "PlatformBucket"},
            log_prefix=f"{ACCESS_LOGS_PREFIX}{POOL_LOGS_NAME}/",
            logs_for=f"{ACCESS_LOGS_PREFIX}{POOL_LOGS_NAME}/",
            noncurrent_version_days=noncurrent_version_days,
        )

    @property
    def table_list(self) -> list[dynamodb.Table]:
        return list(self.tables.values())

    def grant_run_results(self, role: iam.IRole) -> None:
        """The recorder only reads a run (did it record this model already?) and writes
        its metrics and model package (GetItem, UpdateItem)."""
        # Not Table.grant: it adds the indexes ("/index/*"), which UpdateItem never uses.
        iam.Policy(
            self,
            "RunResultsWriter",
            statements=[
                iam.PolicyStatement(
                    actions=["dynamodb:GetItem", "dynamodb:UpdateItem"],
                    resources=[self.tables[self.names.runs_table].table_arn],
                )
            ],
            roles=[role],  # type: ignore[list-item]
        )

    def grant_webhooks(self, role: iam.IRole, actions: list[str]) -> None:
        """``dynamodb:<action>`` on the webhooks table (no indexes: it has none)."""
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=[f"dynamodb:{action}" for action in actions],
                resources=[self.tables[self.names.webhooks_table].table_arn],
            )
        )

    def grant_tables(self, role: iam.IRole) -> None:
        """Read/write on every table and its indexes (the handlers share the data layer),
        but the webhooks table: its two users get exactly their calls (grant_webhooks)."""
        for name, table in self.tables.items():
            if name != self.names.webhooks_table:
                table.grant_read_write_data(role)
        findings = {
            f"Resource::<{spec.logical_id}.Arn>/index/*": (
                f"Queries on the global secondary indexes of {name}."
            )
            for name, spec in self._specs.items()
            if spec.indexes
        }
        acknowledge_findings(role, "IAM5", findings)
