"""Files the platform keeps in its own bucket: the pipeline step scripts and the
tenant stack templates, each set under a content-hashed prefix.

Why the platform bucket and not the CDK asset bucket: the onboarding Lambda
reads the tenant templates at every CreateStack (CloudFormation reads a
TemplateURL with the caller's credentials), and the asset bucket's encryption is
the bootstrap's choice (`--bootstrap-kms-key-id` may name a key whose policy
only delegates to IAM). The platform bucket is SSE-S3 and Trainyard's own, so
the runtime never depends on how the account was bootstrapped; only this
deployment, at deploy time, reads the asset bucket (and says so loudly if it
cannot). Hashed prefixes: an execution or a stack keeps finding the version it
started with (nothing is pruned)."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from aws_cdk import Aws, RemovalPolicy, Stack, Token
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_deployment as s3deploy
from constructs import Construct
from trainyard_core.arns import partition_of
from trainyard_core.config import Settings

from infra.lambdas import retention
from infra.nag import acknowledge, acknowledge_findings


def _staged(files: Mapping[str, Path]) -> str:
    staging = Path(tempfile.mkdtemp(prefix="trainyard-platform-files-"))
    # CDK copies assets into the cloud assembly; the staging dir is only a source.
    atexit.register(shutil.rmtree, staging, ignore_errors=True)
    for key, source in files.items():
        target = staging / key
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    return str(staging)


class PlatformFiles(Construct):
    """One BucketDeployment of ``files`` (object key -> local file) into ``bucket``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        bucket: s3.IBucket,
        files: Mapping[str, Path],
    ) -> None:
        super().__init__(scope, construct_id)
        self.bucket = bucket
        # Own role and log group: the deployment Lambda gets no AWS-managed policy.
        log_group = logs.LogGroup(
            self,
            "DeploymentLogs",
            retention=retention(settings.log_retention_days),
            removal_policy=RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE,
        )
        role = iam.Role(
            self,
            "DeploymentRole",
            description="Copies step scripts and tenant templates into the platform bucket",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[log_group.log_group_arn],
            )
        )
        stack = Stack.of(self)
        region = stack.region
        # The bootstrap's asset bucket, cdk-<qualifier>-assets-<account>-<region>.
        qualifier = getattr(stack.synthesizer, "bootstrap_qualifier", None) or "hnb659fds"
        assets = f"cdk-{qualifier}-assets"
        assets_bucket = f"arn:{Aws.PARTITION}:s3:::{assets}-{Aws.ACCOUNT_ID}-{region}"
        # How cdk-nag prints the asset bucket CDK's own grant names (literal partition
        # and, when the deployment knows it, literal account).
        account = "<AWS::AccountId>" if Token.is_unresolved(stack.account) else stack.account
        nag_assets = f"arn:{partition_of(region)}:s3:::{assets}-{account}-{region}"
        # A bootstrap with a customer key (--bootstrap-kms-key-id) encrypts the source
        # zip; decrypting is allowed only through S3 and only for that bucket's objects.
        role.add_to_policy(
            iam.PolicyStatement(
                sid="DecryptBootstrapAssets",
                actions=["kms:Decrypt"],
                resources=["*"],
                conditions={
                    "StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"},
                    "StringLike": {
                        "kms:EncryptionContext:aws:s3:arn": [assets_bucket, f"{assets_bucket}/*"]
                    },
                },
            )
        )
        self.deployment = s3deploy.BucketDeployment(
            self,
            "Deployment",
            sources=[s3deploy.Source.asset(_staged(files))],
            destination_bucket=bucket,
            # Older versions stay for executions and stacks still using them.
            prune=False,
            retain_on_delete=True,
            role=role,
            log_group=log_group,
            memory_limit=256,
        )
        acknowledge_findings(
            role,
            "IAM5",
            {
                "Action::s3:GetBucket*": "BucketDeployment's read grant on the CDK asset bucket.",
                "Action::s3:GetObject*": "BucketDeployment's read grant on the CDK asset bucket.",
                "Action::s3:List*": "BucketDeployment lists the source asset and destination.",
                "Action::s3:Abort*": "BucketDeployment's write grant on the platform bucket.",
                "Action::s3:DeleteObject*": "BucketDeployment's write grant (prune is off).",
                f"Resource::{nag_assets}/*": ("Objects of the CDK asset bucket (the source zip)."),
                "Resource::<PlatformBucket.Arn>/*": (
                    "Objects of the platform bucket (code/ and templates/)."
                ),
                "Resource::*": (
                    "kms:Decrypt of the bootstrap asset key, whose id is a bootstrap choice "
                    "unknown at synth; limited to S3 use on the asset bucket's objects by "
                    "kms:ViaService and the kms:EncryptionContext:aws:s3:arn condition."
                ),
            },
        )
        # The deployment's provider function is a stack-level singleton CDK creates.
        for child in Stack.of(self).node.children:
            if child.node.id.startswith("Custom::CDKBucketDeployment"):
                acknowledge(
                    child,
                    "L1",
                    "CDK-managed BucketDeployment provider; its runtime is chosen by aws-cdk-lib "
                    "and it runs only at deploy time to copy the platform's files.",
                )

    def url(self, key: str) -> str:
        """The https URL CloudFormation's TemplateURL takes (virtual-hosted style)."""
        return f"https://{self.bucket.bucket_name}.s3.{Aws.REGION}.{Aws.URL_SUFFIX}/{key}"

    def object_arn(self, key: str) -> str:
        return self.bucket.arn_for_objects(key)
