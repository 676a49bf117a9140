"""Data access for uploads through the API: STS and S3 (``ports/uploads.py``).

Nothing is signed with the onboarding Lambda's own role (it may write every
tenant's bucket): each request assumes the uploader role with a session policy
that allows only the one key (and listing the versions under the one tenant's data
prefix), so a URL can reach no other object even if the domain computed a wrong
key, and it expires with that session. The uploader role itself reaches only tenants' data prefixes
(``infra/uploads.py``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from trainyard_core.arns import partition_of
from trainyard_core.ports.uploads import (
    CompletedPart,
    MultipartStart,
    PresignedPart,
    PresignedPost,
    UploadRefused,
    UploadTarget,
)

# STS: "The plaintext that you use for both inline and managed session policies
# can't exceed 2,048 characters"; AssumeRole's DurationSeconds is 900 to 3600 for
# a role-chained session.
SESSION_POLICY_MAX_CHARS = 2048
SESSION_SECONDS_MIN, SESSION_SECONDS_MAX = 900, 3600
# AWS: the bucket's regional virtual-hosted endpoint
# (https://<bucket>.s3.<region>.amazonaws.com), also in us-east-1. botocore
# otherwise presigns with the legacy global endpoint (s3.amazonaws.com), which S3
# answers with a 307 redirect for a bucket outside us-east-1 until its DNS has
# propagated (up to a day after the bucket is created): a tenant's upload fails.
_S3_AWS_CONFIG = Config(
    signature_version="s3v4",
    s3={"addressing_style": "virtual", "us_east_1_regional_endpoint": "regional"},
)
# A configured endpoint (the embedded stack's one host and port): path style, since
# <bucket>.127.0.0.1 resolves nowhere.
_S3_ENDPOINT_CONFIG = Config(signature_version="s3v4", s3={"addressing_style": "path"})


def configured_s3_endpoint(environ: Mapping[str, str] | None = None) -> str | None:
    """The S3 endpoint the process is configured with, as botocore reads it first
    (``AWS_ENDPOINT_URL_S3``, then ``AWS_ENDPOINT_URL``): None in AWS."""
    env = os.environ if environ is None else environ
    return env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None


def session_policy(
    target: UploadTarget, partition: str, actions: list[str], *, list_prefix: bool = False
) -> str:
    """The session policy of one request: ``actions`` on the target's key only, and
    (for the quota) listing exactly the target's data prefix's object versions."""
    statements: list[dict[str, Any]] = []
    if actions:
        statements.append(
            {
                "Sid": "OneKey",
                "Effect": "Allow",
                "Action": actions,
                "Resource": f"arn:{partition}:s3:::{target.bucket}/{target.key}",
            }
        )
    if list_prefix:
        statements.append(
            {
                "Sid": "ListOwnData",
                "Effect": "Allow",
                "Action": "s3:ListBucketVersions",
                "Resource": f"arn:{partition}:s3:::{target.bucket}",
                "Condition": {"StringEquals": {"s3:prefix": target.data_prefix}},
            }
        )
    text = json.dumps({"Version": "2012-10-17", "Statement": statements}, separators=(",", ":"))
    if len(text) > SESSION_POLICY_MAX_CHARS:
        raise ValueError(f"session policy of {len(text)} characters exceeds STS's 2,048")
    return text


class S3UploadSigner:
    def __init__(
        self,
        role_arn: str,
        region: str,
        *,
        sts: Any | None = None,
        s3_factory: Callable[..., Any] | None = None,
        endpoint_url: str | None = None,
    ) -> None:
        self._role_arn = role_arn
        self._region = region
        self._partition = partition_of(region)
        self._sts = sts or boto3.client("sts", region_name=region)
        self._s3_factory = s3_factory or boto3.client
        self._endpoint_url = endpoint_url or configured_s3_endpoint()

    def _s3(
        self, target: UploadTarget, actions: list[str], seconds: int, *, list_prefix: bool = False
    ) -> tuple[Any, datetime]:
        seconds = min(max(seconds, SESSION_SECONDS_MIN), SESSION_SECONDS_MAX)
        credentials = self._sts.assume_role(
            RoleArn=self._role_arn,
            # CloudTrail names the tenant on every request signed with the session.
            RoleSessionName=f"upload-{target.tenant_id}"[:64],
            Policy=session_policy(target, self._partition, actions, list_prefix=list_prefix),
            DurationSeconds=seconds,
        )["Credentials"]
        client = self._s3_factory(
            "s3",
            region_name=self._region,
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
            endpoint_url=self._endpoint_url,
            config=_S3_ENDPOINT_CONFIG if self._endpoint_url else _S3_AWS_CONFIG,
        )
        expiration = credentials["Expiration"]
        if isinstance(expiration, str):
            expiration = datetime.fromisoformat(expiration.replace("Z", "+00:00"))
        return client, expiration.astimezone(UTC)

    def data_bytes(self, target: UploadTarget, *, max_pages: int) -> int | None:
        # Every version under the prefix, current and noncurrent: S3 stores (and
        # bills) a versioned bucket's overwritten and deleted files until lifecycle
        # expires them. Delete markers have no size. In-progress multipart uploads
        # are not listed (docs/isolation.md, "Data quota", says why).
        s3, _ = self._s3(target, [], SESSION_SECONDS_MIN, list_prefix=True)
        total, pages = 0, 0
        markers: dict[str, str] = {}
        while True:
            page = s3.list_object_versions(
                Bucket=target.bucket, Prefix=target.data_prefix, **markers
            )
            pages += 1
            total += sum(int(version.get("Size", 0)) for version in page.get("Versions", []))
            if not page.get("IsTruncated"):
                return total
            if pages >= max_pages:
                return None
            markers = {"KeyMarker": page["NextKeyMarker"]}
            if page.get("NextVersionIdMarker"):
                markers["VersionIdMarker"] = page["NextVersionIdMarker"]

    def presign_post(
        self, target: UploadTarget, *, content_type: str, max_bytes: int, expires_in: int
    ) -> PresignedPost:
        s3, session_ends = self._s3(target, ["s3:PutObject"], expires_in)
        # boto3 adds the bucket and the exact key to the policy's conditions.
        post = s3.generate_presigned_post(
            Bucket=target.bucket,
            Key=target.key,
            Fields={"Content-Type": content_type},
            Conditions=[{"Content-Type": content_type}, ["content-length-range", 1, max_bytes]],
            ExpiresIn=expires_in,
        )
        expires = min(datetime.now(UTC) + timedelta(seconds=expires_in), session_ends)
        return PresignedPost(url=post["url"], fields=dict(post["fields"]), expires_at=expires)

    def start_multipart(
        self, target: UploadTarget, *, content_type: str, part_sizes: list[int], expires_in: int
    ) -> MultipartStart:
        s3, session_ends = self._s3(target, ["s3:PutObject"], expires_in)
        upload_id = s3.create_multipart_upload(
            Bucket=target.bucket, Key=target.key, ContentType=content_type
        )["UploadId"]
        numbered = list(enumerate(part_sizes, start=1))
        parts = _presign_parts(s3, target, upload_id, numbered, expires_in)
        expires = min(datetime.now(UTC) + timedelta(seconds=expires_in), session_ends)
        return MultipartStart(upload_id=upload_id, parts=parts, expires_at=expires)

    def presign_parts(
        self, target: UploadTarget, upload_id: str, parts: list[tuple[int, int]], expires_in: int
    ) -> tuple[list[PresignedPart], datetime]:
        s3, session_ends = self._s3(target, ["s3:PutObject"], expires_in)
        signed = _presign_parts(s3, target, upload_id, parts, expires_in)
        return signed, min(datetime.now(UTC) + timedelta(seconds=expires_in), session_ends)

    def complete_multipart(
        self, target: UploadTarget, upload_id: str, parts: list[CompletedPart]
    ) -> str:
        s3, _ = self._s3(target, ["s3:PutObject"], SESSION_SECONDS_MIN)
        try:
            answer = s3.complete_multipart_upload(
                Bucket=target.bucket,
                Key=target.key,
                UploadId=upload_id,
                MultipartUpload={
                    "Parts": [{"PartNumber": p.part_number, "ETag": p.etag} for p in parts]
                },
            )
        except ClientError as exc:
            raise _refused(exc) from None
        return str(answer.get("ETag", ""))

    def abort_multipart(self, target: UploadTarget, upload_id: str) -> None:
        s3, _ = self._s3(target, ["s3:AbortMultipartUpload"], SESSION_SECONDS_MIN)
        try:
            s3.abort_multipart_upload(Bucket=target.bucket, Key=target.key, UploadId=upload_id)
        except ClientError as exc:
            raise _refused(exc) from None


def _presign_parts(
    s3: Any, target: UploadTarget, upload_id: str, parts: list[tuple[int, int]], expires_in: int
) -> list[PresignedPart]:
    return [
        PresignedPart(
            part_number=number,
            # ContentLength is a signed header: S3 refuses a part of another size.
            url=s3.generate_presigned_url(
                "upload_part",
                Params={
                    "Bucket": target.bucket,
                    "Key": target.key,
                    "UploadId": upload_id,
                    "PartNumber": number,
                    "ContentLength": size,
                },
                ExpiresIn=expires_in,
            ),
            size=size,
        )
        for number, size in parts
    ]


# What S3 answers for a client's mistake in a completion or abort; anything else
# (AccessDenied, throttling) stays a ClientError for the API's error mapping.
_CLIENT_CODES = frozenset(
    {"NoSuchUpload", "InvalidPart", "InvalidPartOrder", "EntityTooSmall", "MalformedXML"}
)


def _refused(exc: ClientError) -> Exception:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    if code in _CLIENT_CODES:
        return UploadRefused(code, str(error.get("Message", code)))
    return exc
