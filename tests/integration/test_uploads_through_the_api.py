"""Uploads through the API on the embedded stack (POST /tenants/{id}/uploads): a
tenant with no AWS credentials sends its files as presigned S3 requests, and S3
itself (the embedded stack's gate, trainyard/local/iam/presigned.py) refuses what
the signed policy or the signer's IAM permissions do not allow."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import boto3
import pytest
import requests
from botocore.config import Config
from trainyard_core.ports.uploads import UploadTarget
from trainyard_core.upload_signer import session_policy
from trainyard_handlers import dependencies

from trainyard.api_client import TrainyardApi
from trainyard.data import tenant_csv
from trainyard.local.stack import EmbeddedStack
from trainyard.uploads import upload_file

from .conftest import Api, wait_for

pytestmark = pytest.mark.integration

TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
MIB = 1024**2


def _runs(api: Api, tenant_id: str) -> list[dict[str, Any]]:
    resp = api.get(f"/tenants/{tenant_id}/runs")
    assert resp.status_code == 200, resp.text
    return resp.json()["runs"]


def _grant(api: Api, tenant_id: str, body: dict[str, Any]) -> dict[str, Any]:
    resp = api.post(f"/tenants/{tenant_id}/uploads", json=body)
    assert resp.status_code == 201, resp.text
    return resp.json()


def _s3_error(resp: requests.Response) -> tuple[int, str]:
    code = resp.text.split("<Code>", 1)[-1].split("</Code>", 1)[0] if "<Code>" in resp.text else ""
    return resp.status_code, code


def _post(grant: dict[str, Any], data: bytes, **field_changes: str) -> requests.Response:
    fields = {**grant["fields"], **field_changes}
    return requests.post(
        grant["url"], data=fields, files={"file": ("f.csv", data, "text/csv")}, timeout=30
    )


# The client: plain HTTP only, in a process with no AWS settings or credentials at all.
_CLIENT = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from trainyard.api_client import TrainyardApi
    from trainyard.uploads import upload_file

    api_url, tenant, first, *rest = sys.argv[1:]
    api = TrainyardApi(api_url)
    done = [upload_file(api, tenant, Path(first))]
    # The later files join the QUEUED run once the first file's run holds the slot.
    deadline = time.monotonic() + 120
    while not any(r["status"] in ("STARTING", "RUNNING", "SUCCEEDED", "FAILED")
                  for r in api.list_runs(tenant)["runs"]):
        assert time.monotonic() < deadline, "no run started"
        time.sleep(0.2)
    done += [upload_file(api, tenant, Path(p)) for p in rest]
    assert "botocore" not in sys.modules and "boto3" not in sys.modules, "an AWS SDK was used"
    print(json.dumps(done))
    """
)


def test_a_tenant_uploads_two_files_over_plain_http_without_aws_credentials_and_they_train(
    stack: EmbeddedStack, api: Api, onboard: Any, tmp_path: Path
) -> None:
    tenant = onboard("up-acme", "basic")
    files = []
    for name, part in (("part-0.csv", 0), ("part-1.csv", 1), ("part-2.csv", 2)):
        path = tmp_path / name
        path.write_bytes(tenant_csv("up-acme", part=part, parts=3))
        files.append(str(path))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(HOME=str(tmp_path), PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run(
        [sys.executable, "-c", _CLIENT, stack.api_url, "up-acme", *files],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    uploaded = json.loads(out.stdout.strip().splitlines()[-1])
    prefix = tenant["dataPrefix"]
    assert [u["key"] for u in uploaded] == [
        prefix + "part-0.csv",
        prefix + "part-1.csv",
        prefix + "part-2.csv",
    ]
    assert {u["method"] for u in uploaded} == {"POST"}

    def both_trained() -> dict[str, Any] | None:
        for run in _runs(api, "up-acme"):
            keys = {o["key"] for o in run["trigger"].get("objects", [])}
            if {prefix + "part-1.csv", prefix + "part-2.csv"} <= keys and run["status"] in TERMINAL:
                return run
        return None

    run = wait_for(both_trained, timeout=240, interval=1, what="the run of both later files")
    assert run["status"] == "SUCCEEDED", run
    # Stored as sent.
    head = stack.client("s3").head_object(Bucket=tenant["dataBucket"], Key=prefix + "part-1.csv")
    assert head["ContentLength"] == Path(files[1]).stat().st_size


def test_s3_itself_refuses_what_the_presigned_post_does_not_allow(
    stack: EmbeddedStack, api: Api, onboard: Any
) -> None:
    tenant = onboard("up-globex", "basic")
    other = onboard("up-initech", "basic")
    data = tenant_csv("up-globex")
    grant = _grant(api, "up-globex", {"fileName": "ok.csv", "contentLength": len(data)})
    assert grant["method"] == "POST" and grant["key"] == tenant["dataPrefix"] + "ok.csv"
    s3 = stack.client("s3")

    # Another tenant's key (or anywhere outside the signed key): the policy's key condition.
    stolen = other["dataPrefix"] + "poison.csv"
    assert _s3_error(_post(grant, data, key=stolen)) == (403, "AccessDenied")
    # Any content type but text/csv.
    wrong_type = _post(grant, data, **{"Content-Type": "application/octet-stream"})
    assert _s3_error(wrong_type) == (403, "AccessDenied")
    # More bytes than signed (contentLength, under the plan's maxUploadBytes).
    assert _s3_error(_post(grant, data + b"1,2\n")) == (400, "EntityTooLarge")
    # A policy widened by hand no longer matches its signature.
    forged = json.loads(base64.b64decode(grant["fields"]["policy"]))
    forged["conditions"] = [c for c in forged["conditions"] if "key" not in c]
    widened = base64.b64encode(json.dumps(forged).encode()).decode()
    assert _s3_error(_post(grant, data, policy=widened, key=stolen)) == (
        403,
        "SignatureDoesNotMatch",
    )
    # No signature at all: anonymous, denied.
    anonymous = requests.put(f"{grant['url']}/{stolen}", data=data, timeout=30)
    assert _s3_error(anonymous) == (403, "AccessDenied")
    listed = s3.list_objects_v2(Bucket=other["dataBucket"], Prefix=other["dataPrefix"])
    assert listed.get("KeyCount", 0) == 0

    # The signer's own permission is checked too: a session narrowed to one key
    # cannot sign for another (the session policy), nor the uploader role for a
    # key outside every tenant's data prefix (the role's policy).
    uploader = stack.names.uploader_role_arn("aws", stack.account_id)
    here = UploadTarget("up-globex", tenant["dataBucket"], tenant["dataPrefix"], grant["key"])
    for key, allowed_key in (
        (stolen, grant["key"]),
        (tenant["dataPrefix"].replace("data/", "artifacts/") + "x.csv", None),
    ):
        policy_target = here if allowed_key else UploadTarget("up-globex", here.bucket, "", key)
        creds = stack.client("sts").assume_role(
            RoleArn=uploader,
            RoleSessionName="test",
            Policy=session_policy(policy_target, "aws", ["s3:PutObject"]),
        )["Credentials"]
        signed = boto3.client(
            "s3",
            endpoint_url=stack.aws_endpoint_url,
            region_name=stack.region,
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
            config=Config(signature_version="s3v4"),
        ).generate_presigned_post(
            Bucket=here.bucket,
            Key=key,
            Fields={"Content-Type": "text/csv"},
            Conditions=[{"Content-Type": "text/csv"}, ["content-length-range", 1, 10**6]],
        )
        resp = _post({"url": signed["url"], "fields": signed["fields"]}, data)
        assert _s3_error(resp) == (403, "AccessDenied"), resp.text

    # What the policy allows is stored.
    assert _post(grant, data).status_code == 204
    assert s3.head_object(Bucket=tenant["dataBucket"], Key=grant["key"])["ContentLength"] == len(
        data
    )


def test_bad_upload_requests_are_4xx_with_a_code(api: Api, onboard: Any) -> None:
    onboard("up-hooli", "basic")
    cases = [
        ({"fileName": "../other/x.csv"}, 400, "InvalidFileName"),
        ({"fileName": "notes.txt"}, 400, "InvalidFileName"),
        ({"fileName": "a" * 300 + ".csv"}, 400, "InvalidFileName"),
        ({"fileName": "x.csv", "contentLength": 0}, 400, "InvalidBody"),
        ({"fileName": "x.csv", "contentLength": 2 * 1024**3}, 413, "UploadTooLarge"),
    ]
    for body, status, code in cases:
        resp = api.post("/tenants/up-hooli/uploads", json=body)
        assert (resp.status_code, resp.json()["error"]["code"]) == (status, code), body
        assert resp.json()["error"]["message"]
    resp = api.post("/tenants/nobody-here/uploads", json={"fileName": "x.csv"})
    assert resp.status_code == 404
    # A suspended tenant takes no uploads.
    assert api.call("PATCH", "/tenants/up-hooli", json={"status": "SUSPENDED"}).status_code == 200
    resp = api.post("/tenants/up-hooli/uploads", json={"fileName": "x.csv"})
    assert (resp.status_code, resp.json()["error"]["code"]) == (409, "TenantNotAccepting")


@pytest.fixture
def small_plans(stack: EmbeddedStack, api: Api) -> Iterator[None]:
    """The onboarding function with a basic plan of 20 KB of quota and 5 MiB parts
    above 5 MiB (the same handler, STS and S3; only the numbers are smaller)."""
    from trainyard_core.tenants.uploads import TenantUploads

    # Loaded first: the runtime resets the function's dependencies when it loads it.
    assert api.get("/plans").status_code == 200
    real = dependencies.tenant_uploads()
    settings = dependencies.settings()
    basic = settings.plans["basic"].model_copy(update={"data_quota_bytes": 20_000})
    small = settings.model_copy(update={"plans": {**settings.plans, "basic": basic}})
    dependencies.tenant_uploads.override(
        TenantUploads(
            small,
            real.signer,
            real.plans,
            multipart_threshold=5 * MIB,
            part_bytes=5 * MIB,
            clock=real.clock,
        )
    )
    try:
        yield
    finally:
        dependencies.tenant_uploads.override(real)


def test_the_data_quota_is_checked_before_signing_and_bounds_the_post(
    api: Api, onboard: Any, small_plans: None
) -> None:
    tenant = onboard("up-umbrella", "basic")
    first = _grant(api, "up-umbrella", {"fileName": "a.csv", "contentLength": 12_000})
    assert _post(first, b"x" * 12_000).status_code == 204
    resp = api.post(
        "/tenants/up-umbrella/uploads", json={"fileName": "b.csv", "contentLength": 9_000}
    )
    error = resp.json()["error"]
    assert (resp.status_code, error["code"]) == (409, "DataQuotaExceeded")
    assert "dataQuotaBytes" in error["message"]
    # Without a length the POST takes at most the room left (8,000 bytes): S3 says so.
    open_ended = _grant(api, "up-umbrella", {"fileName": "b.csv"})
    assert _s3_error(_post(open_ended, b"y" * 9_000)) == (400, "EntityTooLarge")
    assert tenant["dataPrefix"] in open_ended["key"]


def test_a_multipart_upload_completes_and_trains(
    stack: EmbeddedStack, api: Api, onboard: Any, small_plans: None, tmp_path: Path
) -> None:
    tenant = onboard("up-wayne", "premium")
    base = tenant_csv("up-wayne")
    header, rows = base.split(b"\n", 1)
    body = header + b"\n" + rows * (6 * MIB // len(rows) + 1)  # > 6 MiB: two parts
    path = tmp_path / "big.csv"
    path.write_bytes(body)
    grant = _grant(api, "up-wayne", {"fileName": "big.csv", "contentLength": len(body)})
    assert grant["method"] == "PUT" and [p["size"] for p in grant["parts"]] == [
        5 * MIB,
        len(body) - 5 * MIB,
    ]
    # A part of another size than signed is refused by S3.
    short = requests.put(grant["parts"][0]["url"], data=body[: 5 * MIB - 1], timeout=60)
    assert _s3_error(short) == (403, "SignatureDoesNotMatch")
    # Someone else's key cannot be completed through this upload (nor this tenant).
    resp = api.post(
        f"/tenants/up-wayne/uploads/{grant['uploadId']}/complete",
        json={"key": "tenants/up-acme/data/x.csv", "parts": [{"partNumber": 1, "eTag": "e"}]},
    )
    assert (resp.status_code, resp.json()["error"]["code"]) == (400, "InvalidUploadKey")
    # Aborting one upload leaves nothing; then the file goes up in full.
    abort = api.post(
        f"/tenants/up-wayne/uploads/{grant['uploadId']}/abort", json={"key": grant["key"]}
    )
    assert abort.status_code == 200 and abort.json()["status"] == "ABORTED", abort.text
    again = api.post(
        f"/tenants/up-wayne/uploads/{grant['uploadId']}/abort", json={"key": grant["key"]}
    )
    assert (again.status_code, again.json()["error"]["code"]) == (404, "UploadNotFound")

    done = upload_file(TrainyardApi(stack.api_url), "up-wayne", path)
    assert done["method"] == "MULTIPART" and done["key"] == tenant["dataPrefix"] + "big.csv"
    run = wait_for(
        lambda: next((r for r in _runs(api, "up-wayne") if r["status"] in TERMINAL), None),
        timeout=300,
        interval=1,
        what="the multipart upload's run",
    )
    assert run["status"] == "SUCCEEDED", run
    assert [o["key"] for o in run["trigger"]["objects"]] == [done["key"]]
    head = stack.client("s3").head_object(Bucket=tenant["dataBucket"], Key=done["key"])
    assert head["ContentLength"] == len(body)


def test_a_multipart_upload_whose_part_urls_are_presigned_again_completes_and_is_recorded(
    stack: EmbeddedStack, api: Api, onboard: Any, small_plans: None
) -> None:
    tenant = onboard("up-stark", "premium")
    onboard("up-oscorp", "premium")
    base = tenant_csv("up-stark")
    header, rows = base.split(b"\n", 1)
    body = header + b"\n" + rows * (11 * MIB // len(rows) + 1)  # > 10 MiB: three parts
    grant = _grant(api, "up-stark", {"fileName": "slow.csv", "contentLength": len(body)})
    sizes = [p["size"] for p in grant["parts"]]
    assert grant["method"] == "PUT" and sizes == [5 * MIB, 5 * MIB, len(body) - 10 * MIB]
    parts_path = f"/tenants/up-stark/uploads/{grant['uploadId']}/parts"

    # A slow client asks for fresh URLs of the parts it has not sent yet.
    resp = api.post(parts_path, json={"partNumbers": [1, 2]})
    assert resp.status_code == 200, resp.text
    again = resp.json()
    assert [(p["partNumber"], p["size"]) for p in again["parts"]] == [(1, 5 * MIB), (2, 5 * MIB)]
    assert again["expiresAt"] >= grant["expiresAt"]
    first = dict(parse_qsl(urlsplit(grant["parts"][0]["url"]).query))
    fresh = dict(parse_qsl(urlsplit(again["parts"][0]["url"]).query))
    # Signed anew: a new session of the uploader role, narrowed to the same key.
    assert fresh["X-Amz-Credential"] != first["X-Amz-Credential"]
    assert urlsplit(again["parts"][0]["url"]).path == urlsplit(grant["parts"][0]["url"]).path

    # Parts outside the upload, unknown uploads and another tenant's: refused with a code.
    for numbers in ([4], [0], [1, 1]):
        refused = api.post(parts_path, json={"partNumbers": numbers})
        assert (refused.status_code, refused.json()["error"]["code"]) == (
            400,
            "InvalidPartNumbers",
        ), numbers
    for tenant_id, upload_id in (("up-stark", "no-such-upload"), ("up-oscorp", grant["uploadId"])):
        refused = api.post(
            f"/tenants/{tenant_id}/uploads/{upload_id}/parts", json={"partNumbers": [1]}
        )
        assert (refused.status_code, refused.json()["error"]["code"]) == (
            404,
            "UploadNotFound",
        ), tenant_id
    # Another tenant cannot complete or abort it either.
    for action, payload in (
        ("complete", {"parts": [{"partNumber": 1, "eTag": "e"}]}),
        ("abort", {}),
    ):
        refused = api.post(f"/tenants/up-oscorp/uploads/{grant['uploadId']}/{action}", json=payload)
        assert (refused.status_code, refused.json()["error"]["code"]) == (404, "UploadNotFound")

    # Parts 1 and 2 go up with the new URLs, part 3 with the first one.
    urls = [again["parts"][0]["url"], again["parts"][1]["url"], grant["parts"][2]["url"]]
    etags, offset = [], 0
    for number, (url, size) in enumerate(zip(urls, sizes, strict=True), 1):
        put = requests.put(url, data=body[offset : offset + size], timeout=60)
        assert put.status_code == 200, (number, put.text)
        etags.append({"partNumber": number, "eTag": put.headers["ETag"]})
        offset += size
    # Completing needs every planned part (fewer would store a shorter file).
    complete_path = f"/tenants/up-stark/uploads/{grant['uploadId']}/complete"
    short = api.post(complete_path, json={"parts": etags[:2]})
    assert (short.status_code, short.json()["error"]["code"]) == (400, "InvalidParts")
    # The server knows the key: the client need not repeat it.
    done = api.post(complete_path, json={"parts": etags})
    assert done.status_code == 200 and done.json()["status"] == "COMPLETED", done.text
    key = tenant["dataPrefix"] + "slow.csv"
    assert done.json()["key"] == key
    head = stack.client("s3").head_object(Bucket=tenant["dataBucket"], Key=key)
    assert head["ContentLength"] == len(body)
    # Recorded as the upload that triggers the tenant's run.
    run = wait_for(
        lambda: next(
            (
                r
                for r in _runs(api, "up-stark")
                if key in {o["key"] for o in r["trigger"].get("objects", [])}
            ),
            None,
        ),
        timeout=120,
        interval=1,
        what="the run of the re-signed upload",
    )
    assert run["tenantId"] == "up-stark"
    # Completed: no longer in progress, nothing to re-sign.
    gone = api.post(parts_path, json={"partNumbers": [3]})
    assert (gone.status_code, gone.json()["error"]["code"]) == (404, "UploadNotFound")
