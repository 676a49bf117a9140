"""The S3 handlers: AWS::S3::Bucket (encryption, versioning, public access block,
ownership controls, logging, EventBridge notifications, lifecycle rules, tags) and
AWS::S3::BucketPolicy."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from infra import cfn_permissions as perms

from .base import Context, Handler, HandlerError, Live, Properties, error_code, unsupported

# CloudFormation's LifecycleConfiguration rule properties this handler translates
# into PutBucketLifecycleConfiguration's shape (the tenant data buckets' rules).
_RULE_KEYS = frozenset(
    {
        "Id",
        "Status",
        "Prefix",
        "AbortIncompleteMultipartUpload",
        "NoncurrentVersionExpiration",
        "NoncurrentVersionExpirationInDays",
        "ExpirationInDays",
        "ExpiredObjectDeleteMarker",
    }
)


def lifecycle_rules(value: Properties, type_name: str = perms.BUCKET) -> list[dict[str, Any]]:
    """A bucket's CloudFormation LifecycleConfiguration as S3's API takes it."""
    rules: list[dict[str, Any]] = []
    for rule in value.get("Rules", []):
        extra = set(rule) - _RULE_KEYS
        if extra:
            raise unsupported(type_name, f"LifecycleConfiguration rule {sorted(extra)}")
        out: dict[str, Any] = {
            "Status": str(rule["Status"]),
            "Filter": {"Prefix": str(rule.get("Prefix", ""))},
        }
        if "Id" in rule:
            out["ID"] = str(rule["Id"])
        if "AbortIncompleteMultipartUpload" in rule:
            days = rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"]
            out["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": int(days)}
        noncurrent = dict(rule.get("NoncurrentVersionExpiration", {}))
        if "NoncurrentVersionExpirationInDays" in rule:
            noncurrent["NoncurrentDays"] = rule["NoncurrentVersionExpirationInDays"]
        if noncurrent:
            out["NoncurrentVersionExpiration"] = {k: int(v) for k, v in noncurrent.items()}
        expiration: dict[str, Any] = {}
        if "ExpirationInDays" in rule:
            expiration["Days"] = int(rule["ExpirationInDays"])
        if "ExpiredObjectDeleteMarker" in rule:
            expiration["ExpiredObjectDeleteMarker"] = rule["ExpiredObjectDeleteMarker"] in (
                True,
                "true",
            )
        if expiration:
            out["Expiration"] = expiration
        rules.append(out)
    return rules


class BucketHandler(Handler):
    type_name = perms.BUCKET
    attributes = frozenset(
        {"Arn", "DomainName", "RegionalDomainName", "DualStackDomainName", "WebsiteURL"}
    )
    name_property = "BucketName"
    name_limit = 63
    lower_names = True

    def arn(self, ctx: Context, name: str, props: Properties) -> str:
        return f"arn:{ctx.partition}:s3:::{name}"

    def create(self, ctx: Context, live: Live) -> None:
        s3 = ctx.clients("s3")
        try:
            s3.head_bucket(Bucket=live.name)
            taken = True
        except ClientError as exc:
            taken = error_code(exc) not in ("404", "NoSuchBucket", "NotFound")
        if taken:
            raise HandlerError("AlreadyExists", f"{live.name} already exists")
        kwargs: dict[str, Any] = {"Bucket": live.name}
        if ctx.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": ctx.region}
        s3.create_bucket(**kwargs)
        live.physical_id = live.name
        live.attributes = {
            "Arn": self.arn(ctx, live.name, live.properties),
            "DomainName": f"{live.name}.s3.amazonaws.com",
            "RegionalDomainName": f"{live.name}.s3.{ctx.region}.amazonaws.com",
            "DualStackDomainName": f"{live.name}.s3.dualstack.{ctx.region}.amazonaws.com",
            "WebsiteURL": f"http://{live.name}.s3-website-{ctx.region}.amazonaws.com",
        }
        self._configure(s3, live.name, {}, live.properties)

    def update(self, ctx: Context, live: Live, old: Properties, new: Properties) -> None:
        self._configure(ctx.clients("s3"), str(live.physical_id), old, new)

    def _configure(self, s3: Any, bucket: str, old: Properties, new: Properties) -> None:
        # Ownership first: it decides whether ACL-based settings apply at all.
        for key in (
            "OwnershipControls",
            "BucketEncryption",
            "PublicAccessBlockConfiguration",
            "VersioningConfiguration",
            "LoggingConfiguration",
            "NotificationConfiguration",
            "LifecycleConfiguration",
            "Tags",
        ):
            if new.get(key) != old.get(key):
                getattr(self, f"_set_{key}")(s3, bucket, new.get(key), old.get(key))

    def _set_OwnershipControls(self, s3: Any, bucket: str, value: Any, old: Any) -> None:
        if value is None:
            s3.delete_bucket_ownership_controls(Bucket=bucket)
        else:
            s3.put_bucket_ownership_controls(
                Bucket=bucket, OwnershipControls={"Rules": value["Rules"]}
            )

    def _set_BucketEncryption(self, s3: Any, bucket: str, value: Any, old: Any) -> None:
        if value is None:
            s3.delete_bucket_encryption(Bucket=bucket)
            return
        rules = []
        for rule in value["ServerSideEncryptionConfiguration"]:
            out: dict[str, Any] = {}
            if "ServerSideEncryptionByDefault" in rule:
                out["ApplyServerSideEncryptionByDefault"] = dict(
                    rule["ServerSideEncryptionByDefault"]
                )
            if "BucketKeyEnabled" in rule:
                out["BucketKeyEnabled"] = bool(rule["BucketKeyEnabled"])
            rules.append(out)
        s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": rules})

    def _set_PublicAccessBlockConfiguration(
        self, s3: Any, bucket: str, value: Any, old: Any
    ) -> None:
        if value is None:
            s3.delete_public_access_block(Bucket=bucket)
        else:
            config = {k: bool(v) for k, v in value.items()}
            s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=config)

    def _set_VersioningConfiguration(self, s3: Any, bucket: str, value: Any, old: Any) -> None:
        # A versioned bucket can only be suspended, never unversioned again.
        status = value["Status"] if value is not None else "Suspended"
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": status})

    def _set_LoggingConfiguration(self, s3: Any, bucket: str, value: Any, old: Any) -> None:
        if value is None:
            s3.put_bucket_logging(Bucket=bucket, BucketLoggingStatus={})
            return
        extra = set(value) - {"DestinationBucketName", "LogFilePrefix"}
        if extra:
            raise unsupported(self.type_name, f"LoggingConfiguration {sorted(extra)}")
        enabled = {
            "TargetBucket": value.get("DestinationBucketName", bucket),
            "TargetPrefix": value.get("LogFilePrefix", ""),
        }
        s3.put_bucket_logging(Bucket=bucket, BucketLoggingStatus={"LoggingEnabled": enabled})

    def _set_NotificationConfiguration(self, s3: Any, bucket: str, value: Any, old: Any) -> None:
        value = value or {}
        extra = set(value) - {"EventBridgeConfiguration"}
        if extra:
            raise unsupported(self.type_name, f"NotificationConfiguration {sorted(extra)}")
        config: dict[str, Any] = {}
        if value.get("EventBridgeConfiguration", {}).get("EventBridgeEnabled") in (True, "true"):
            config["EventBridgeConfiguration"] = {}
        s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=config)

    def _set_LifecycleConfiguration(self, s3: Any, bucket: str, value: Any, old: Any) -> None:
        if value is None:
            s3.delete_bucket_lifecycle(Bucket=bucket)
        else:
            s3.put_bucket_lifecycle_configuration(
                Bucket=bucket, LifecycleConfiguration={"Rules": lifecycle_rules(value)}
            )

    def _set_Tags(self, s3: Any, bucket: str, value: Any, old: Any) -> None:
        if value:
            s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": list(value)})
        else:
            s3.delete_bucket_tagging(Bucket=bucket)

    def delete(self, ctx: Context, live: Live) -> None:
        try:
            ctx.clients("s3").delete_bucket(Bucket=live.physical_id)
        except ClientError as exc:
            if error_code(exc) != "NoSuchBucket":
                raise


class BucketPolicyHandler(Handler):
    type_name = perms.BUCKET_POLICY
    taggable = False
    name_property = "Bucket"

    def arn(self, ctx: Context, name: str, props: Properties) -> str:
        return f"arn:{ctx.partition}:s3:::{name}"

    def create(self, ctx: Context, live: Live) -> None:
        s3 = ctx.clients("s3")
        try:
            s3.get_bucket_policy(Bucket=live.name)
            raise HandlerError(
                "AlreadyExists", f"The bucket policy already exists on bucket {live.name}."
            )
        except ClientError as exc:
            if error_code(exc) != "NoSuchBucketPolicy":
                raise
        s3.put_bucket_policy(Bucket=live.name, Policy=json.dumps(live.properties["PolicyDocument"]))
        live.physical_id = live.name

    def update(self, ctx: Context, live: Live, old: Properties, new: Properties) -> None:
        ctx.clients("s3").put_bucket_policy(
            Bucket=live.physical_id, Policy=json.dumps(new["PolicyDocument"])
        )

    def delete(self, ctx: Context, live: Live) -> None:
        try:
            ctx.clients("s3").delete_bucket_policy(Bucket=live.physical_id)
        except ClientError as exc:
            if error_code(exc) != "NoSuchBucket":
                raise
