"""Bad input on the embedded stack: bad training files, odd object keys, events for
buckets nobody owns, and a table of bad API requests. Each ends in a FAILED run
with a clear reason, a rejection with a reason, or a 4xx with a code and message;
never a handler crash loop and never a 5xx."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest
from trainyard_core.store.runs_dynamodb import DynamoRunRepository

from trainyard.data import (
    empty_csv,
    missing_label_csv,
    non_numeric_csv,
    not_csv,
    single_class_csv,
    tenant_csv,
)
from trainyard.local.observations import all_runs, cap_violations
from trainyard.local.stack import EmbeddedStack

from .conftest import Api, wait_for

pytestmark = pytest.mark.integration

TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


def _repo(stack: EmbeddedStack) -> DynamoRunRepository:
    return DynamoRunRepository(stack.names.runs_table, stack.names.state_table)


def _runs(stack: EmbeddedStack, tenant: str) -> list[dict[str, Any]]:
    return [r.api_dict() for r in _repo(stack).list_runs(tenant, limit=100)[0]]


def _finished_runs(stack: EmbeddedStack, tenant: str, uploads: int) -> list[dict[str, Any]]:
    def done() -> list[dict[str, Any]] | None:
        runs = _runs(stack, tenant)
        objects = sum(len(r["trigger"]["objects"]) for r in runs)
        ok = runs and objects == uploads and all(r["status"] in TERMINAL for r in runs)
        return runs if ok else None

    return wait_for(done, timeout=120, interval=0.5, what=f"{tenant}'s runs to finish")


def _wrong_column_count(tenant: str) -> bytes:
    lines = tenant_csv(tenant).decode().splitlines()
    lines[5] += ",0.5"  # one row with an extra field
    return ("\n".join(lines) + "\n").encode()


def _huge(tenant: str, target_bytes: int = 3_000_000) -> bytes:
    # The tenant's dataset repeated to a few MB: bounded, but far above a demo file.
    body = tenant_csv(tenant)
    header, _, rows = body.partition(b"\n")
    return header + b"\n" + rows * max(1, target_bytes // len(rows))


def _edited(tenant: str, edit: Any) -> bytes:
    lines = tenant_csv(tenant).decode().splitlines()
    header, rows = lines[0], lines[1:]
    return ("\n".join([header, *edit(header.split(","), rows)]) + "\n").encode()


def _blank_cells(columns: list[str], rows: list[str]) -> list[str]:
    # The first column's cell left empty in the first 3 rows.
    return [
        ",".join("" if i < 3 and j == 0 else v for j, v in enumerate(r.split(",")))
        for i, r in enumerate(rows)
    ]


def _label_two(columns: list[str], rows: list[str]) -> list[str]:
    at = columns.index("label")
    first = rows[0].split(",")
    first[at] = "2"
    return [",".join(first), *rows[1:]]


BAD_FILES = {
    "empty": (lambda t: empty_csv(), "a.csv is empty"),
    "not-csv": (lambda t: not_csv(), "is not a readable CSV file"),
    "wrong-column-count": (_wrong_column_count, "is not a readable CSV file"),
    "non-numeric": (non_numeric_csv, "non-numeric value 'high'"),
    "missing-label": (missing_label_csv, "no 'label' column"),
    "single-class": (single_class_csv, "'label' has a single class"),
    "too-few-rows": (
        lambda t: _edited(t, lambda c, rows: rows[:12]),
        "only 12 data rows; at least 20 are needed",
    ),
    "missing-values": (
        lambda t: _edited(t, _blank_cells),
        "has 3 missing value(s), the first in data row 1",
    ),
    "not-binary": (
        lambda t: _edited(t, _label_two),
        "'label' must be 0 or 1 for a binary problem, found ['2']",
    ),
}


@pytest.fixture(autouse=True)
def no_cap_exceeded(stack: EmbeddedStack) -> Any:
    yield
    assert cap_violations(all_runs(stack), stack.settings) == []


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_bad_training_file_fails_its_run_with_the_reason_and_nothing_crashes(
    stack: EmbeddedStack, onboard: Any, case: str
) -> None:
    make, reason = BAD_FILES[case]
    tid = f"bad-{case[:12]}-{uuid.uuid4().hex[:4]}"
    tenant = onboard(tid, "standard")
    errors = stack.runtime.errors
    stack.client("s3").put_object(
        Bucket=tenant["dataBucket"], Key=f"{tenant['dataPrefix']}a.csv", Body=make(tid)
    )
    (run,) = _finished_runs(stack, tid, 1)
    assert run["status"] == "FAILED"
    assert run["failureReason"].startswith("Step Preprocess failed: ")
    assert reason in run["failureReason"]
    assert "Traceback" not in run["failureReason"]
    # Failed in preprocess: no training job was started (or paid for).
    steps = stack.engine.result(run["executionArn"]).steps
    assert [(step.name, step.status) for step in steps] == [("Preprocess", "Failed")]
    assert stack.wait_idle(30)
    assert stack.runtime.errors == errors  # no handler failed on the way
    assert _repo(stack).counters().tenants.get(tid, 0) == 0


def test_a_file_of_a_few_megabytes_trains_like_a_small_one(
    stack: EmbeddedStack, onboard: Any
) -> None:
    tid = f"bad-huge-{uuid.uuid4().hex[:4]}"
    tenant = onboard(tid, "premium")
    body = _huge(tid)
    assert len(body) > 2_500_000
    stack.client("s3").put_object(
        Bucket=tenant["dataBucket"], Key=f"{tenant['dataPrefix']}big.csv", Body=body
    )
    (run,) = _finished_runs(stack, tid, 1)
    assert run["status"] == "SUCCEEDED", run["failureReason"]
    assert run["trigger"]["objects"][0]["size"] == len(body)


def test_object_keys_with_spaces_unicode_plus_and_percent_each_land_in_a_run(
    stack: EmbeddedStack, onboard: Any
) -> None:
    tid = f"bad-keys-{uuid.uuid4().hex[:4]}"
    tenant = onboard(tid, "premium")
    names = ["my file.csv", "données-日本.csv", "a+b.csv", "100%25 sure%.csv"]
    s3 = stack.client("s3")
    for i, name in enumerate(names):
        s3.put_object(
            Bucket=tenant["dataBucket"],
            Key=f"{tenant['dataPrefix']}{name}",
            Body=tenant_csv(tid, part=i, parts=len(names)),
        )
    runs = _finished_runs(stack, tid, len(names))
    assert all(r["status"] == "SUCCEEDED" for r in runs), [r["failureReason"] for r in runs]
    keys = sorted(o["key"] for r in runs for o in r["trigger"]["objects"])
    assert keys == sorted(f"{tenant['dataPrefix']}{n}" for n in names)


def test_an_upload_event_for_a_bucket_nobody_owns_is_rejected_with_the_reason(
    stack: EmbeddedStack,
) -> None:
    bucket = f"stranger-{uuid.uuid4().hex[:8]}"
    errors = stack.runtime.errors
    event = {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": stack.account_id,
        "time": "2026-01-01T00:00:00Z",
        "region": stack.region,
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": {"key": "data/steal.csv", "size": 10, "etag": "abc"},
        },
    }
    stack.faults.send(stack.names.intake_queue("premium"), event)

    def rejected() -> list[Any]:
        return [r for r in _repo(stack).list_rejections(200) if r.bucket == bucket]

    (rejection,) = wait_for(rejected, timeout=30, what="a rejection")
    assert rejection.reason == "no tenant owns this storage location"
    assert rejection.key == "data/steal.csv" and rejection.tenant_id is None
    assert stack.wait_idle(30)  # acked, not retried
    assert stack.runtime.errors == errors
    assert not any(r["trigger"]["objects"] and bucket in json.dumps(r) for r in all_runs(stack))


# --------------------------------------------------------------------- API table

OVERSIZED = json.dumps({"tenantId": "big-body", "plan": "x" * 20_000})
# {"tenantId": "other", "runId": "1"}: a well-formed runs token of another tenant.
OTHERS_TOKEN = "eyJ0ZW5hbnRJZCI6ICJvdGhlciIsICJydW5JZCI6ICIxIn0="
FORGED_TOKEN = "eyJ4IjogMX0="  # {"x": 1}
# {"tenantId": "zzz"}: a tenants start key of the right shape, but not one we signed.
FORGED_KEY_TOKEN = "eyJ0ZW5hbnRJZCI6ICJ6enoifQ=="
DEEP_JSON = '{"tenantId": ' + "[" * 3000 + "]" * 3000 + ', "plan": "basic"}'
HUGE_INT_JSON = '{"tenantId": ' + "9" * 5000 + ', "plan": "basic"}'


def _create(tenant_id: Any, plan: Any = "basic", **extra: Any) -> dict[str, Any]:
    return {"json": {"tenantId": tenant_id, "plan": plan, **extra}}


BAD = 400
API_CASES: list[tuple[str, str, str, dict[str, Any], int, str]] = [
    # id, method, path, request kwargs, status, error code
    ("id-1-char", "POST", "/tenants", _create("a"), BAD, "InvalidTenantId"),
    ("id-2-chars", "POST", "/tenants", _create("ab"), BAD, "InvalidTenantId"),
    ("id-33-chars", "POST", "/tenants", _create("a" * 33), BAD, "InvalidTenantId"),
    ("id-64-chars", "POST", "/tenants", _create("a" * 64), BAD, "InvalidTenantId"),
    ("id-uppercase", "POST", "/tenants", _create("Acme"), BAD, "InvalidTenantId"),
    ("id-unicode", "POST", "/tenants", _create("ünïcode"), BAD, "InvalidTenantId"),
    ("id-underscore", "POST", "/tenants", _create("a_b_c"), BAD, "InvalidTenantId"),
    ("id-leading-hyphen", "POST", "/tenants", _create("-abc"), BAD, "InvalidTenantId"),
    ("id-trailing-hyphen", "POST", "/tenants", _create("abc-"), BAD, "InvalidTenantId"),
    ("id-double-hyphen", "POST", "/tenants", _create("ab--cd"), BAD, "InvalidTenantId"),
    ("id-reserved", "POST", "/tenants", _create("admin"), BAD, "ReservedTenantId"),
    ("id-reserved-aws", "POST", "/tenants", _create("aws"), BAD, "ReservedTenantId"),
    ("unknown-plan", "POST", "/tenants", _create("okay-id", "gold"), BAD, "UnknownPlan"),
    ("id-wrong-type", "POST", "/tenants", _create(123), BAD, "InvalidBody"),
    ("plan-wrong-type", "POST", "/tenants", _create("okay-id", ["basic"]), BAD, "InvalidBody"),
    ("extra-field", "POST", "/tenants", _create("okay-id", x=1), BAD, "InvalidBody"),
    ("missing-field", "POST", "/tenants", {"json": {"tenantId": "okay-id"}}, BAD, "InvalidBody"),
    ("array-body", "POST", "/tenants", {"json": [1, 2]}, BAD, "InvalidBody"),
    ("empty-body", "POST", "/tenants", {"data": b""}, BAD, "EmptyBody"),
    ("blank-body", "POST", "/tenants", {"data": b"  \n "}, BAD, "EmptyBody"),
    ("malformed-json", "POST", "/tenants", {"data": b"{not json"}, BAD, "MalformedJson"),
    ("binary-body", "POST", "/tenants", {"data": b"\xff\xfe\x00"}, BAD, "MalformedJson"),
    ("oversized-body", "POST", "/tenants", {"data": OVERSIZED}, 413, "PayloadTooLarge"),
    ("limit-zero", "GET", "/tenants?limit=0", {}, BAD, "InvalidLimit"),
    ("limit-too-big", "GET", "/tenants?limit=101", {}, BAD, "InvalidLimit"),
    ("limit-not-a-number", "GET", "/tenants?limit=ten", {}, BAD, "InvalidLimit"),
    ("limit-negative", "GET", "/tenants?limit=-1", {}, BAD, "InvalidLimit"),
    ("json-nested-3000-deep", "POST", "/tenants", {"data": DEEP_JSON}, BAD, "InvalidBody"),
    ("json-5000-digit-integer", "POST", "/tenants", {"data": HUGE_INT_JSON}, BAD,
     "MalformedJson"),
    ("json-nan", "POST", "/tenants", {"data": '{"tenantId": NaN, "plan": "basic"}'}, BAD,
     "MalformedJson"),
    ("limit-superscript-two", "GET", "/tenants?limit=²", {}, BAD, "InvalidLimit"),
    ("limit-arabic-indic-three", "GET", "/tenants?limit=٣", {}, BAD, "InvalidLimit"),
    ("runs-limit-superscript-two", "GET", "/tenants/{t}/runs?limit=²", {}, BAD, "InvalidLimit"),
    ("month-arabic-indic-digits", "GET", "/tenants/{t}/usage?month=٢٠٢٦-01", {}, BAD,
     "InvalidMonth"),
    ("token-unsigned-start-key", "GET", f"/tenants?nextToken={FORGED_KEY_TOKEN}", {}, BAD,
     "InvalidNextToken"),
    ("token-garbage", "GET", "/tenants?nextToken=garbage", {}, BAD, "InvalidNextToken"),
    ("token-forged", "GET", f"/tenants?nextToken={FORGED_TOKEN}", {}, BAD, "InvalidNextToken"),
    ("runs-token-garbage", "GET", "/tenants/{t}/runs?nextToken=x!", {}, BAD, "InvalidNextToken"),
    ("runs-token-forged", "GET", f"/tenants/{{t}}/runs?nextToken={FORGED_TOKEN}", {}, BAD,
     "InvalidNextToken"),
    ("runs-token-of-another-tenant", "GET", f"/tenants/{{t}}/runs?nextToken={OTHERS_TOKEN}", {},
     BAD, "InvalidNextToken"),
    ("runs-limit", "GET", "/tenants/{t}/runs?limit=500", {}, BAD, "InvalidLimit"),
    ("month-13", "GET", "/tenants/{t}/usage?month=2026-13", {}, BAD, "InvalidMonth"),
    ("month-short", "GET", "/tenants/{t}/usage?month=2026-1", {}, BAD, "InvalidMonth"),
    ("month-words", "GET", "/tenants/{t}/usage?month=last", {}, BAD, "InvalidMonth"),
    ("unknown-run", "GET", "/tenants/{t}/runs/nope", {}, 404, "RunNotFound"),
    ("unknown-tenant", "GET", "/tenants/nobody-here", {}, 404, "TenantNotFound"),
    ("unknown-tenant-runs", "GET", "/tenants/nobody-here/runs", {}, 404, "TenantNotFound"),
    ("unknown-tenant-trigger", "POST", "/tenants/nobody-here/runs", {}, 404, "TenantNotFound"),
    ("unknown-tenant-delete", "DELETE", "/tenants/nobody-here", {}, 404, "TenantNotFound"),
    ("update-nothing", "PATCH", "/tenants/{t}", {"json": {}}, BAD, "EmptyUpdate"),
    ("update-bad-status", "PATCH", "/tenants/{t}", {"json": {"status": "GONE"}}, BAD,
     "InvalidStatus"),
    ("update-unknown-plan", "PATCH", "/tenants/{t}", {"json": {"plan": "gold"}}, BAD,
     "UnknownPlan"),
    ("update-wrong-type", "PATCH", "/tenants/{t}", {"json": {"plan": 5}}, BAD, "InvalidBody"),
    ("update-extra-field", "PATCH", "/tenants/{t}", {"json": {"x": "y"}}, BAD, "InvalidBody"),
    ("update-malformed", "PATCH", "/tenants/{t}", {"data": b"{bad"}, BAD, "MalformedJson"),
    ("purge-not-bool", "DELETE", "/tenants/{t}?purge=maybe", {}, BAD, "InvalidPurge"),
    ("create-again-other-plan", "POST", "/tenants", _create("{t}", "premium"), 409,
     "TenantExists"),
]  # fmt: skip


@pytest.fixture(scope="module")
def api_tenant(onboard: Any) -> str:
    tid = f"bad-api-{uuid.uuid4().hex[:4]}"
    onboard(tid, "basic")
    return tid


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code"),
    [case[1:] for case in API_CASES],
    ids=[case[0] for case in API_CASES],
)
def test_bad_api_requests_get_a_4xx_with_a_code_and_message(
    api: Api,
    api_tenant: str,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
    code: str,
) -> None:
    if "json" in kwargs and isinstance(kwargs["json"], dict):
        kwargs = {"json": {k: (v.replace("{t}", api_tenant) if isinstance(v, str) else v)
                           for k, v in kwargs["json"].items()}}  # fmt: skip
    resp = api.call(method, path.replace("{t}", api_tenant), **kwargs)
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert error["code"] == code
    assert error["message"] and "Traceback" not in error["message"]


def _read_http_reply(conn: Any) -> bytes:
    """Headers and body may arrive in separate segments: read up to Content-Length."""
    reply = b""
    while True:
        head, sep, body = reply.partition(b"\r\n\r\n")
        if sep:
            length = re.search(rb"content-length: *(\d+)", head, re.I)
            if length is None or len(body) >= int(length.group(1)):
                return reply
        chunk = conn.recv(65536)
        if not chunk:
            return reply
        reply += chunk


def test_a_request_with_a_non_numeric_content_length_gets_a_400(stack: EmbeddedStack) -> None:
    import socket
    from urllib.parse import urlsplit

    where = urlsplit(stack.api_url)
    with socket.create_connection((where.hostname, where.port), timeout=10) as conn:
        conn.sendall(
            b"POST /tenants HTTP/1.1\r\nHost: local\r\nContent-Type: application/json\r\n"
            b"Content-Length: abc\r\n\r\n{}"
        )
        reply = _read_http_reply(conn)
    status_line, _, rest = reply.decode().partition("\r\n")
    assert status_line.split()[1] == "400"
    body = json.loads(rest.split("\r\n\r\n", 1)[1])
    assert body["error"]["code"] == "InvalidRequest"


def test_a_page_token_works_as_handed_out_and_is_refused_once_edited(
    api: Api, onboard: Any, api_tenant: str
) -> None:
    import base64

    onboard(f"bad-page-{uuid.uuid4().hex[:4]}", "basic")  # at least two tenants
    first = api.get("/tenants?limit=1")
    assert first.status_code == 200, first.text
    token = first.json()["nextToken"]
    assert api.get("/tenants", params={"limit": "1", "nextToken": token}).status_code == 200
    payload, mac = token.split(".")
    key = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    edited = base64.urlsafe_b64encode(json.dumps({**key, "tenantId": "a"}).encode()).decode()
    for forged in (f"{edited.rstrip('=')}.{mac}", edited, token[:-2]):
        resp = api.get("/tenants", params={"limit": "1", "nextToken": forged})
        assert resp.status_code == 400 and resp.json()["error"]["code"] == "InvalidNextToken"
    # A runs token of the caller's own tenant, hand-made: refused as well.
    own = json.dumps({"tenantId": api_tenant, "runId": "0" * 32}).encode()
    resp = api.get(
        f"/tenants/{api_tenant}/runs",
        params={"nextToken": base64.urlsafe_b64encode(own).decode()},
    )
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "InvalidNextToken"


def test_a_chunked_request_and_an_encoded_path_reach_the_api_as_api_gateway_delivers_them(
    stack: EmbeddedStack, api: Api, api_tenant: str
) -> None:
    import socket
    from urllib.parse import urlsplit

    tid = f"bad-chunk-{uuid.uuid4().hex[:4]}"
    body = json.dumps({"tenantId": tid, "plan": "basic"}).encode()
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    where = urlsplit(stack.api_url)
    with socket.create_connection((where.hostname, where.port), timeout=30) as conn:
        conn.sendall(
            b"POST /tenants HTTP/1.1\r\nHost: local\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + chunked
        )
        reply = _read_http_reply(conn)
    assert reply.split(b" ", 2)[1] in (b"201", b"202"), reply
    encoded = api_tenant.replace("-", "%2D")
    resp = api.get(f"/tenants/{encoded}")
    assert resp.status_code == 200 and resp.json()["tenantId"] == api_tenant
    for method in ("OPTIONS", "TRACE"):
        resp = api.call(method, "/tenants")
        assert resp.status_code == 403
        assert resp.json() == {"message": "Missing Authentication Token"}


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/nope"), ("PUT", "/tenants"), ("HEAD", "/plans"), ("GET", "/tenants/a/b/c/d")],
)
def test_an_unknown_route_or_method_is_refused_as_api_gateway_refuses_it(
    api: Api, method: str, path: str
) -> None:
    # A REST API with IAM auth answers these itself, before any Lambda is invoked.
    resp = api.call(method, path)
    assert resp.status_code == 403
    assert resp.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
    if method != "HEAD":
        assert resp.json() == {"message": "Missing Authentication Token"}
