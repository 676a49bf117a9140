"""Uploads through the API, the domain's decisions (trainyard_core/tenants/uploads.py)
and what the signer hands to AWS (trainyard_core/upload_signer.py), offline."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from botocore.stub import Stubber
from trainyard_core.clock import VirtualClock
from trainyard_core.config import Settings
from trainyard_core.errors import DomainError
from trainyard_core.limits import (
    MULTIPART_UPLOAD_SECONDS,
    S3_PART_MAX_BYTES,
    S3_PART_MIN_BYTES,
    S3_POST_MAX_BYTES,
    UPLOAD_PARTS_MAX,
    UPLOAD_URL_SECONDS,
)
from trainyard_core.models import Tenant, TenantStatus
from trainyard_core.ports.uploads import (
    CompletedPart,
    MultipartStart,
    PresignedPart,
    PresignedPost,
    UploadRefused,
    UploadTarget,
)
from trainyard_core.store.upload_plans import MemoryUploadPlans
from trainyard_core.tenants.uploads import TenantUploads, part_sizes, validate_file_name
from trainyard_core.upload_signer import S3UploadSigner, session_policy

from trainyard.local.iam.policy import Request, evaluate

GIB, MIB = 1024**3, 1024**2
NOW = datetime(2026, 1, 1, tzinfo=UTC)


class FakeSigner:
    def __init__(self, used: int | None = 0) -> None:
        self.used = used
        self.calls: list[tuple[str, Any]] = []
        self.refuse: UploadRefused | None = None

    def data_bytes(self, target: UploadTarget, *, max_pages: int) -> int | None:
        return self.used

    def presign_post(self, target: UploadTarget, **kwargs: Any) -> PresignedPost:
        self.calls.append(("post", kwargs))
        return PresignedPost("https://s3/", {"key": target.key}, NOW)

    def start_multipart(self, target: UploadTarget, **kwargs: Any) -> MultipartStart:
        self.calls.append(("multipart", kwargs))
        parts = [PresignedPart(n, f"u{n}", s) for n, s in enumerate(kwargs["part_sizes"], 1)]
        return MultipartStart("up-1", parts, NOW)

    def presign_parts(
        self, target: UploadTarget, upload_id: str, parts: list[tuple[int, int]], expires_in: int
    ) -> tuple[list[PresignedPart], datetime]:
        self.calls.append(
            ("parts", {"upload_id": upload_id, "parts": parts, "expires_in": expires_in})
        )
        return [PresignedPart(n, f"r{n}", s) for n, s in parts], NOW

    def complete_multipart(self, target: UploadTarget, upload_id: str, parts: Any) -> str:
        if self.refuse:
            raise self.refuse
        return '"etag"'

    def abort_multipart(self, target: UploadTarget, upload_id: str) -> None:
        if self.refuse:
            raise self.refuse


def tenant(status: TenantStatus = TenantStatus.ACTIVE, plan: str = "basic") -> Tenant:
    return Tenant(
        tenant_id="acme",
        plan=plan,
        status=status,
        isolation="pool",
        data_bucket="trainyard-pool-123456789012",
        data_prefix="tenants/acme/data/",
        created_at="2026-01-01T00:00:00.000Z",
        updated_at="2026-01-01T00:00:00.000Z",
    )


def refusal(call: Any) -> tuple[int, str, str]:
    with pytest.raises(DomainError) as caught:
        call()
    return caught.value.status, caught.value.code, caught.value.message


# --- file names


@pytest.mark.parametrize(
    "name",
    [
        "../x.csv",
        "a/../../b.csv",
        "sub/x.csv",
        "..\\x.csv",
        ".csv",
        "x.CSV.txt",
        "notes.txt",
        "x",
        "a" * 252 + ".csv",
        "-rf.csv",
        "*.csv",
        "x?.csv",
        "ünïcode.csv",
        "a b.csv",
    ],
)
def test_file_names_that_are_not_one_plain_csv_file_are_refused(name: str) -> None:
    status, code, message = refusal(lambda: validate_file_name(name))
    assert (status, code) == (400, "InvalidFileName") and message


@pytest.mark.parametrize("name", ["part-1.csv", "Train_2026.01.CSV", "a" * 251 + ".csv"])
def test_plain_csv_file_names_are_accepted(name: str) -> None:
    assert validate_file_name(name) == name


# --- multipart arithmetic (S3: 5 MiB..5 GiB a part but the last, at most 10,000 parts)


@pytest.mark.parametrize(
    "size", [100 * MIB + 1, 64 * MIB * 3, 10 * GIB + 7, 999 * 5 * GIB, UPLOAD_PARTS_MAX * 5 * GIB]
)
def test_parts_respect_s3s_part_limits_and_add_up(size: int) -> None:
    sizes = part_sizes(size)
    assert sum(sizes) == size and 1 <= len(sizes) <= UPLOAD_PARTS_MAX
    assert all(S3_PART_MIN_BYTES <= s <= S3_PART_MAX_BYTES for s in sizes[:-1])
    assert 1 <= sizes[-1] <= S3_PART_MAX_BYTES


def test_no_plan_can_promise_a_file_larger_than_its_parts_can_carry() -> None:
    with pytest.raises(ValueError):
        Settings.model_validate(
            {"plans": {"basic": {**_basic(), "maxUploadBytes": UPLOAD_PARTS_MAX * 5 * GIB + 1}}}
        )


def _basic() -> dict[str, Any]:
    return Settings().plans["basic"].model_dump(by_alias=True)


# --- grants


def test_a_small_file_gets_a_post_bounded_by_its_length() -> None:
    signer = FakeSigner()
    grant = TenantUploads(Settings(), signer, MemoryUploadPlans()).grant(
        tenant(), "part-1.csv", 1234
    )
    assert grant.post is not None and grant.target.key == "tenants/acme/data/part-1.csv"
    assert signer.calls == [
        ("post", {"content_type": "text/csv", "max_bytes": 1234, "expires_in": UPLOAD_URL_SECONDS})
    ]


def test_without_a_length_the_post_takes_at_most_the_plan_the_quota_room_and_5_gb() -> None:
    settings = Settings()
    basic = settings.plans["basic"]
    signer = FakeSigner(used=basic.data_quota_bytes - 500)
    TenantUploads(settings, signer, MemoryUploadPlans()).grant(tenant(), "x.csv", None)
    assert signer.calls[0][1]["max_bytes"] == 500
    signer = FakeSigner(used=0)
    TenantUploads(settings, signer, MemoryUploadPlans()).grant(
        tenant(plan="premium"), "x.csv", None
    )
    assert signer.calls[0][1]["max_bytes"] == S3_POST_MAX_BYTES  # premium: 50 GiB files


def test_a_large_file_gets_a_multipart_upload_with_signed_part_sizes() -> None:
    signer = FakeSigner()
    grant = TenantUploads(Settings(), signer, MemoryUploadPlans()).grant(
        tenant(plan="premium"), "big.csv", 6 * GIB
    )
    assert grant.multipart is not None and grant.post is None
    ((kind, kwargs),) = signer.calls
    assert kind == "multipart" and sum(kwargs["part_sizes"]) == 6 * GIB
    assert kwargs["expires_in"] == 3600  # a role-chained session's longest


def test_a_file_over_the_plans_max_upload_bytes_is_413() -> None:
    max_bytes = Settings().plans["basic"].max_upload_bytes
    assert refusal(
        lambda: TenantUploads(Settings(), FakeSigner(), MemoryUploadPlans()).grant(
            tenant(), "x.csv", max_bytes + 1
        )
    )[:2] == (413, "UploadTooLarge")


def test_the_data_quota_is_checked_before_anything_is_signed() -> None:
    quota = Settings().plans["basic"].data_quota_bytes
    signer = FakeSigner(used=quota - 10)
    status, code, message = refusal(
        lambda: TenantUploads(Settings(), signer, MemoryUploadPlans()).grant(tenant(), "x.csv", 11)
    )
    assert (status, code) == (409, "DataQuotaExceeded") and "dataQuotaBytes" in message
    assert signer.calls == []
    full = FakeSigner(used=quota)
    assert refusal(
        lambda: TenantUploads(Settings(), full, MemoryUploadPlans()).grant(tenant(), "x.csv", None)
    )[1] == ("DataQuotaExceeded")
    unknown = FakeSigner(used=None)
    assert refusal(
        lambda: TenantUploads(Settings(), unknown, MemoryUploadPlans()).grant(tenant(), "x.csv", 1)
    )[:2] == (
        409,
        "TooManyDataObjects",
    )


@pytest.mark.parametrize(
    "status",
    [
        TenantStatus.SUSPENDED,
        TenantStatus.OFFBOARDING,
        TenantStatus.PROVISIONING,
        TenantStatus.MIGRATING,
        TenantStatus.FAILED,
    ],
)
def test_only_an_active_tenant_gets_uploads(status: TenantStatus) -> None:
    signer = FakeSigner()
    result = refusal(
        lambda: TenantUploads(Settings(), signer, MemoryUploadPlans()).grant(
            tenant(status), "x.csv", 1
        )
    )
    assert result[:2] == (409, "TenantNotAccepting") and status.value in result[2]
    assert signer.calls == []


def _started(
    signer: FakeSigner | None = None, clock: VirtualClock | None = None
) -> tuple[TenantUploads, str, int]:
    """A multipart upload of big.csv (130 MiB: three parts) the API started."""
    uploads = TenantUploads(
        Settings(), signer or FakeSigner(), MemoryUploadPlans(), clock=clock or VirtualClock(NOW)
    )
    grant = uploads.grant(tenant(plan="premium"), "big.csv", 130 * MIB)
    assert grant.multipart is not None and len(grant.multipart.parts) == 3
    return uploads, grant.multipart.upload_id, 3


def _all_parts(count: int) -> list[CompletedPart]:
    return [CompletedPart(n, f'"e{n}"') for n in range(1, count + 1)]


KEY = "tenants/acme/data/big.csv"


def test_completing_checks_the_key_and_the_parts_against_the_stored_upload() -> None:
    uploads, upload_id, count = _started()
    part = _all_parts(count)
    for key in (
        "tenants/bob/data/big.csv",
        "tenants/acme/data/../x.csv",
        "tenants/acme/data/x.csv",
    ):
        assert refusal(lambda k=key: uploads.complete(tenant(), k, upload_id, part))[:2] == (
            400,
            "InvalidUploadKey",
        )
    for parts in (
        [],
        [CompletedPart(2, "e"), CompletedPart(1, "e"), CompletedPart(3, "e")],
        [CompletedPart(1, ""), CompletedPart(2, "e"), CompletedPart(3, "e")],
        part[:2],  # fewer parts than planned: a shorter file than was quota-checked
        [*part, CompletedPart(4, "e")],
    ):
        assert refusal(lambda p=parts: uploads.complete(tenant(), KEY, upload_id, p))[:2] == (
            400,
            "InvalidParts",
        )
    # The key is the stored one whether or not the client names it.
    target, etag = uploads.complete(tenant(), None, upload_id, part)
    assert etag == '"etag"' and target.key == KEY
    # Completed: the upload is no longer in progress.
    assert refusal(lambda: uploads.complete(tenant(), KEY, upload_id, part))[:2] == (
        404,
        "UploadNotFound",
    )


def test_an_upload_id_the_api_did_not_start_for_the_tenant_is_404() -> None:
    uploads, upload_id, _count = _started()
    other = tenant().model_copy(update={"tenant_id": "bob", "data_prefix": "tenants/bob/data/"})
    for who, upload in ((tenant(), "not-started"), (other, upload_id)):
        assert refusal(lambda w=who, u=upload: uploads.complete(w, None, u, _all_parts(3)))[:2] == (
            404,
            "UploadNotFound",
        )
        assert refusal(lambda w=who, u=upload: uploads.abort(w, None, u))[:2] == (
            404,
            "UploadNotFound",
        )
        assert refusal(lambda w=who, u=upload: uploads.resign_parts(w, u, [1]))[:2] == (
            404,
            "UploadNotFound",
        )


def test_s3s_refusals_of_a_completion_are_4xx() -> None:
    signer = FakeSigner()
    uploads, upload_id, count = _started(signer)
    signer.refuse = UploadRefused("NoSuchUpload", "gone")
    assert refusal(lambda: uploads.complete(tenant(), KEY, upload_id, _all_parts(count)))[:2] == (
        404,
        "UploadNotFound",
    )
    signer.refuse = UploadRefused("EntityTooSmall", "small")
    assert refusal(lambda: uploads.complete(tenant(), KEY, upload_id, _all_parts(count)))[:2] == (
        400,
        "InvalidParts",
    )


def test_parts_are_resigned_with_their_planned_sizes() -> None:
    signer = FakeSigner()
    clock = VirtualClock(NOW)
    uploads, upload_id, _count = _started(signer, clock)
    clock.advance(3000)  # the first URLs are near their expiry
    parts, _ = uploads.resign_parts(tenant(), upload_id, [3, 2])
    assert [(p.part_number, p.size) for p in parts] == [(2, 64 * MIB), (3, 2 * MIB)]
    assert signer.calls[-1] == (
        "parts",
        {"upload_id": upload_id, "parts": [(2, 64 * MIB), (3, 2 * MIB)], "expires_in": 3600},
    )
    # Near the deadline the URLs live no longer than the upload (STS's 15 minutes at least).
    clock.set(NOW + timedelta(seconds=MULTIPART_UPLOAD_SECONDS - 1200))
    uploads.resign_parts(tenant(), upload_id, [1])
    assert signer.calls[-1][1]["expires_in"] == 1200
    clock.set(NOW + timedelta(seconds=MULTIPART_UPLOAD_SECONDS))
    assert refusal(lambda: uploads.resign_parts(tenant(), upload_id, [1]))[:2] == (
        404,
        "UploadNotFound",
    )
    # Past the deadline it can still be aborted (its parts are billed until then).
    assert uploads.abort(tenant(), None, upload_id).key == KEY


@pytest.mark.parametrize("numbers", [[0], [4], [1, 1], [-1], []])
def test_resigning_parts_outside_the_upload_is_400(numbers: list[int]) -> None:
    uploads, upload_id, _ = _started()
    assert refusal(lambda: uploads.resign_parts(tenant(), upload_id, numbers))[:2] == (
        400,
        "InvalidPartNumbers",
    )


# --- what AWS gets (offline: botocore presigns without the network)

TARGET = UploadTarget(
    "acme", "trainyard-pool-123456789012", "tenants/acme/data/", "tenants/acme/data/part-1.csv"
)


def _signer(policies: list[str]) -> S3UploadSigner:
    sts = boto3.client("sts", region_name="us-east-1")
    stubber = Stubber(sts)
    expiration = datetime.now(UTC) + timedelta(minutes=15)
    for _ in range(3):
        stubber.add_response(
            "assume_role",
            {
                "Credentials": {
                    "AccessKeyId": "ASIAEXAMPLEEXAMPLE00",
                    "SecretAccessKey": "secret",
                    "SessionToken": "token",
                    "Expiration": expiration,
                }
            },
        )
    stubber.activate()
    original = sts.assume_role

    def assume(**kwargs: Any) -> Any:
        policies.append(kwargs["Policy"])
        assert kwargs["DurationSeconds"] in (900, 3600)
        assert kwargs["RoleSessionName"] == "upload-acme"
        return original(**kwargs)

    sts.assume_role = assume  # type: ignore[method-assign]
    return S3UploadSigner("arn:aws:iam::123456789012:role/trainyard-uploader", "us-east-1", sts=sts)


def test_the_post_policy_allows_one_key_text_csv_a_size_range_and_15_minutes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    policies: list[str] = []
    post = _signer(policies).presign_post(
        TARGET, content_type="text/csv", max_bytes=1000, expires_in=UPLOAD_URL_SECONDS
    )
    policy = json.loads(base64.b64decode(post.fields["policy"]))
    conditions = policy["conditions"]
    assert {"bucket": TARGET.bucket} in conditions and {"key": TARGET.key} in conditions
    assert {"Content-Type": "text/csv"} in conditions
    assert ["content-length-range", 1, 1000] in conditions
    assert not any(isinstance(c, list) and c[0] == "starts-with" for c in conditions)
    expires = datetime.fromisoformat(policy["expiration"].replace("Z", "+00:00"))
    assert timedelta(0) < expires - datetime.now(UTC) <= timedelta(seconds=UPLOAD_URL_SECONDS)
    assert post.fields["x-amz-security-token"] == "token"  # a session's, not a role's keys
    assert post.url.startswith("https://") and TARGET.bucket in post.url
    assert post.expires_at <= datetime.now(UTC) + timedelta(seconds=UPLOAD_URL_SECONDS)


def test_every_part_url_signs_its_content_length(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    signer = _signer([])
    made: list[Any] = []

    def session_client(*args: Any, **kwargs: Any) -> Any:
        # The client the signer builds from the session, with CreateMultipartUpload stubbed.
        client = boto3.client(*args, **kwargs)
        stub = Stubber(client)
        stub.add_response("create_multipart_upload", {"UploadId": "up-1"})
        stub.activate()
        made.append(kwargs)
        return client

    signer._s3_factory = session_client
    start = signer.start_multipart(
        TARGET, content_type="text/csv", part_sizes=[5 * MIB, 7], expires_in=3600
    )
    for part, size in zip(start.parts, (5 * MIB, 7), strict=True):
        query = parse_qs(urlsplit(part.url).query)
        assert "content-length" in query["X-Amz-SignedHeaders"][0].split(";")
        assert query["partNumber"] == [str(part.part_number)] and part.size == size
        assert int(query["X-Amz-Expires"][0]) <= 3600
        assert query["X-Amz-Security-Token"] == ["token"]
    assert made[0]["aws_session_token"] == "token"


def test_a_session_policy_allows_the_one_key_and_nothing_else() -> None:
    document = json.loads(session_policy(TARGET, "aws", ["s3:PutObject"], list_prefix=True))
    bucket = f"arn:aws:s3:::{TARGET.bucket}"

    def allowed(action: str, resource: str, context: dict[str, str] | None = None) -> bool:
        return evaluate([document], Request(action, resource, context or {})).allowed

    assert allowed("s3:PutObject", f"{bucket}/{TARGET.key}")
    assert not allowed("s3:PutObject", f"{bucket}/tenants/acme/data/other.csv")
    assert not allowed("s3:PutObject", f"{bucket}/tenants/acme-corp/data/part-1.csv")
    assert not allowed("s3:GetObject", f"{bucket}/{TARGET.key}")
    assert allowed("s3:ListBucketVersions", bucket, {"s3:prefix": "tenants/acme/data/"})
    assert not allowed("s3:ListBucketVersions", bucket, {"s3:prefix": "tenants/"})
    assert not allowed("s3:ListBucketVersions", bucket)
    assert not allowed("s3:ListBucket", bucket, {"s3:prefix": "tenants/acme/data/"})


def test_the_longest_possible_session_policy_fits_stss_limit() -> None:
    longest = UploadTarget(
        "a" * 32,
        "b" * 63,
        "tenants/" + "a" * 32 + "/data/",
        "tenants/" + "a" * 32 + "/data/" + "c" * 251 + ".csv",
    )
    text = session_policy(
        longest, "aws-us-gov", ["s3:PutObject", "s3:AbortMultipartUpload"], list_prefix=True
    )
    assert len(text) <= 2048


def test_an_upload_can_be_aborted_whatever_the_tenants_status() -> None:
    uploads, upload_id, count = _started()
    assert uploads.abort(tenant(TenantStatus.SUSPENDED), KEY, upload_id).key == KEY
    uploads, upload_id, count = _started()
    suspended = tenant(TenantStatus.SUSPENDED)
    assert refusal(lambda: uploads.complete(suspended, KEY, upload_id, _all_parts(count)))[:2] == (
        409,
        "TenantNotAccepting",
    )
