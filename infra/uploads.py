"""The uploader role: what presigned uploads are signed with (docs/isolation.md).

A URL presigned with a role is as powerful as that role. The onboarding Lambda's
own role writes every tenant's bucket (data moves, purges), so it signs nothing:
it assumes this role for each request with a session policy naming the one key
(``trainyard_core/upload_signer.py``). This role alone reaches only the tenants'
data prefixes (no artifacts, no platform bucket, no other service), so even a bug
in that session policy cannot reach beyond data that trains, and its sessions are
role-chained (at most an hour), so every URL dies with its session.
"""

from __future__ import annotations

from aws_cdk import Aws, Duration
from aws_cdk import aws_iam as iam
from constructs import Construct
from trainyard_core import wiring

from infra.lambdas import TrainyardFunction
from infra.nag import acknowledge_findings


class TenantUploads(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: wiring.Names,
        onboarding: TrainyardFunction,
    ) -> None:
        super().__init__(scope, construct_id)
        partition, account = Aws.PARTITION, Aws.ACCOUNT_ID
        silo = f"arn:{partition}:s3:::{names.prefix}-*-{account}"
        pool = f"arn:{partition}:s3:::{names.pool_bucket(account)}"
        platform = f"arn:{partition}:s3:::{names.platform_bucket(account)}"
        data = names.silo_data_prefix
        pool_data = names.pool_data_prefix("*")
        policy = iam.PolicyDocument(
            statements=[
                # What the presigned POST, CreateMultipartUpload, the presigned parts,
                # CompleteMultipartUpload and AbortMultipartUpload are authorized on.
                iam.PolicyStatement(
                    sid="UploadTenantData",
                    actions=["s3:PutObject", "s3:AbortMultipartUpload"],
                    resources=[f"{silo}/{data}*", f"{pool}/{pool_data}*"],
                ),
                # The data quota: the bytes of every object version (current and
                # noncurrent) under one tenant's data prefix (ListObjectVersions).
                iam.PolicyStatement(
                    sid="MeasureTenantData",
                    actions=["s3:ListBucketVersions"],
                    resources=[silo],
                    conditions={"StringLike": {"s3:prefix": [data, pool_data]}},
                ),
                # The silo pattern also matches the platform's own two buckets.
                iam.PolicyStatement(
                    sid="NeverPlatformBuckets",
                    effect=iam.Effect.DENY,
                    actions=["s3:*"],
                    resources=[platform, f"{platform}/*", f"{pool}/{data}*"],
                ),
            ]
        )
        self.role = iam.Role(
            self,
            "Role",
            role_name=names.uploader_role,
            description="Trainyard presigned uploads (assumed per request, narrowed to one key)",
            assumed_by=iam.ArnPrincipal(onboarding.role.role_arn),
            max_session_duration=Duration.hours(1),
            inline_policies={"TenantUploads": policy},
        )
        self.role.grant_assume_role(onboarding.role)
        onboarding.function.node.add_dependency(self.role)
        acknowledge_findings(
            self.role,
            "IAM5",
            {
                f"Resource::arn:<AWS::Partition>:s3:::{names.prefix}-*-<AWS::AccountId>/{data}*": (
                    "Silo tenants' buckets are created at onboarding; only their data/ "
                    "prefix, and every session is narrowed to one key by its session policy."
                ),
                f"Resource::arn:<AWS::Partition>:s3:::{names.pool_bucket('<AWS::AccountId>')}"
                f"/{pool_data}*": (
                    "Pool tenants' data prefixes (tenants/<id>/data/); every session is "
                    "narrowed to one tenant's key by its session policy."
                ),
                f"Resource::arn:<AWS::Partition>:s3:::{names.prefix}-*-<AWS::AccountId>": (
                    "Listing only under a tenant's data prefix (s3:prefix condition), for "
                    "the data quota."
                ),
            },
        )
