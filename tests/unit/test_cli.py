"""The `trainyard` CLI: error formatting, help, uploads to the right S3 key, output modes.

The API is a real HTTP server on 127.0.0.1 answering canned JSON; S3 is moto's
server (the same thing the embedded stack runs), so the CLI's real boto3 and
requests code paths are exercised.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner

from trainyard import data
from trainyard.cli import app, render

runner = CliRunner()

TENANT = {
    "tenantId": "acme",
    "plan": "basic",
    "status": "ACTIVE",
    "isolation": "silo",
    "dataBucket": "trainyard-acme-123456789012",
    "dataPrefix": "data/",
    "roleArn": "arn:aws:iam::123456789012:role/trainyard/tenants/trainyard-tenant-acme",
    "modelPackageGroupName": "trainyard-acme",
    "createdAt": "2024-05-01T12:00:00.000Z",
    "updatedAt": "2024-05-01T12:00:00.000Z",
}


class Routes:
    """path -> (status, body); unknown paths answer the API's 404 envelope."""

    def __init__(self) -> None:
        self.table: dict[tuple[str, str], tuple[int, Any]] = {}
        self.seen: list[tuple[str, str, bytes]] = []


@pytest.fixture
def api() -> Iterator[tuple[str, Routes]]:
    routes = Routes()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            routes.seen.append((self.command, self.path, body))
            status, payload = routes.table.get(
                (self.command, self.path),
                (404, {"error": {"code": "NotFound", "message": f"no {self.path}"}}),
            )
            raw = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", routes
    finally:
        server.shutdown()
        server.server_close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def _s3(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


def invoke(url: str, *args: str, env: dict[str, str] | None = None) -> Any:
    return runner.invoke(app, ["--api-url", url, *args], env=env)


def test_help_lists_every_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in (
        "tenants",
        "upload",
        "runs",
        "train",
        "usage",
        "queue",
        "plans",
        "demo",
        "local",
    ):
        assert command in result.output
    tenants_help = runner.invoke(app, ["tenants", "--help"]).output
    for command in ("create", "list", "show", "update", "delete"):
        assert command in tenants_help
    assert "--aws-port" in runner.invoke(app, ["local", "up", "--help"]).output


def test_api_error_is_printed_as_code_and_message_with_exit_1(
    api: tuple[str, Routes],
) -> None:
    url, routes = api
    routes.table[("POST", "/tenants")] = (
        409,
        {"error": {"code": "TenantExists", "message": "tenant acme already exists"}},
    )
    result = invoke(url, "tenants", "create", "acme", "--plan", "basic")
    assert result.exit_code == 1
    assert result.stderr.strip() == "error TenantExists: tenant acme already exists"
    assert "Traceback" not in result.output


def test_unreachable_api_is_a_one_line_error_not_a_traceback() -> None:
    result = invoke("http://127.0.0.1:9", "tenants", "list")
    assert result.exit_code == 1
    assert result.stderr.startswith("error ConnectionError: cannot reach the API")
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_create_sends_tenant_and_plan_and_shows_the_tenant(api: tuple[str, Routes]) -> None:
    url, routes = api
    routes.table[("POST", "/tenants")] = (201, TENANT)
    result = invoke(url, "tenants", "create", "acme", "--plan", "basic")
    assert result.exit_code == 0, result.output
    assert json.loads(routes.seen[0][2]) == {"tenantId": "acme", "plan": "basic"}
    assert "trainyard-acme-123456789012" in result.output


def test_json_flag_prints_the_api_answer_verbatim(api: tuple[str, Routes]) -> None:
    url, routes = api
    routes.table[("GET", "/tenants/acme")] = (200, TENANT)
    result = invoke(url, "--json", "tenants", "show", "acme")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == TENANT


def test_update_rejects_unknown_status_before_calling_the_api(api: tuple[str, Routes]) -> None:
    url, routes = api
    result = invoke(url, "tenants", "update", "acme", "--status", "deleted")
    assert result.exit_code == 1
    assert result.stderr.startswith("error InvalidStatus:")
    assert routes.seen == []


def test_update_sends_only_the_given_fields(api: tuple[str, Routes]) -> None:
    url, routes = api
    routes.table[("PATCH", "/tenants/acme")] = (200, {**TENANT, "status": "SUSPENDED"})
    result = invoke(url, "tenants", "update", "acme", "--status", "suspended")
    assert result.exit_code == 0, result.output
    assert json.loads(routes.seen[0][2]) == {"status": "SUSPENDED"}


def test_delete_with_purge_asks_the_api_to_purge(api: tuple[str, Routes]) -> None:
    url, routes = api
    routes.table[("DELETE", "/tenants/acme?purge=true")] = (
        202,
        {**TENANT, "status": "OFFBOARDING"},
    )
    result = invoke(url, "tenants", "delete", "acme", "--purge")
    assert result.exit_code == 0, result.output
    assert "data purged" in result.output


def test_upload_puts_each_file_under_the_tenants_data_prefix(
    api: tuple[str, Routes], moto_endpoint: str, tmp_path: Path
) -> None:
    url, routes = api
    routes.table[("GET", "/tenants/acme")] = (200, TENANT)
    s3 = _s3(moto_endpoint)
    s3.create_bucket(Bucket=TENANT["dataBucket"])
    first = tmp_path / "january.csv"
    first.write_bytes(data.tenant_csv("acme", part=0, parts=2))
    nested = tmp_path / "sub"
    nested.mkdir()
    second = nested / "february.csv"
    second.write_bytes(data.tenant_csv("acme", part=1, parts=2))

    result = invoke(
        url,
        "--aws-endpoint-url",
        moto_endpoint,
        "upload",
        "--direct",
        "acme",
        str(first),
        str(second),
    )

    assert result.exit_code == 0, result.output
    listed = s3.list_objects_v2(Bucket=TENANT["dataBucket"])["Contents"]
    assert sorted(o["Key"] for o in listed) == ["data/february.csv", "data/january.csv"]
    body = s3.get_object(Bucket=TENANT["dataBucket"], Key="data/january.csv")["Body"].read()
    assert body == first.read_bytes()
    assert "s3://trainyard-acme-123456789012/data/january.csv" in result.output


def test_upload_finds_the_aws_endpoint_the_local_api_announces(
    api: tuple[str, Routes], moto_endpoint: str, tmp_path: Path
) -> None:
    # `trainyard local up` on non-default ports: no --aws-endpoint-url needed.
    url, routes = api
    routes.table[("GET", "/health")] = (200, {"status": "ok", "awsEndpointUrl": moto_endpoint})
    routes.table[("GET", "/tenants/acme")] = (200, {**TENANT, "dataBucket": "announced-bucket"})
    s3 = _s3(moto_endpoint)
    s3.create_bucket(Bucket="announced-bucket")
    path = tmp_path / "train.csv"
    path.write_bytes(data.tenant_csv("acme"))
    result = runner.invoke(
        app,
        ["--api-url", url, "upload", "--direct", "acme", str(path)],
        env={"AWS_ENDPOINT_URL": None},
    )
    assert result.exit_code == 0, result.output
    assert s3.head_object(Bucket="announced-bucket", Key="data/train.csv")["ContentLength"] > 0


def test_upload_works_without_any_aws_credentials_locally(
    api: tuple[str, Routes], moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, routes = api
    tenant = {**TENANT, "dataBucket": "nocreds-bucket"}
    routes.table[("GET", "/tenants/acme")] = (200, tenant)
    _s3(moto_endpoint).create_bucket(Bucket="nocreds-bucket")
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    path = tmp_path / "train.csv"
    path.write_bytes(data.tenant_csv("acme"))
    result = invoke(
        url, "--aws-endpoint-url", moto_endpoint, "upload", "--direct", "acme", str(path)
    )
    assert result.exit_code == 0, result.output


def test_upload_goes_through_the_apis_presigned_post_by_default(
    api: tuple[str, Routes], moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, routes = api
    s3 = _s3(moto_endpoint)
    s3.create_bucket(Bucket="presigned-bucket")
    grant = s3.generate_presigned_post(Bucket="presigned-bucket", Key="data/train.csv")
    routes.table[("POST", "/tenants/acme/uploads")] = (
        201,
        {"method": "POST", "key": "data/train.csv", "expiresAt": "x", **grant},
    )
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    path = tmp_path / "train.csv"
    path.write_bytes(data.tenant_csv("acme"))
    result = invoke(url, "upload", "acme", str(path))
    assert result.exit_code == 0, result.output
    asked = [
        json.loads(b) for m, p, b in routes.seen if (m, p) == ("POST", "/tenants/acme/uploads")
    ]
    assert asked == [{"fileName": "train.csv", "contentLength": path.stat().st_size}]
    stored = s3.get_object(Bucket="presigned-bucket", Key="data/train.csv")["Body"].read()
    assert stored == path.read_bytes()
    assert "uploaded data/train.csv" in result.output


def test_upload_to_a_tenant_that_takes_no_uploads_is_a_clear_error(
    api: tuple[str, Routes], tmp_path: Path
) -> None:
    url, routes = api
    routes.table[("POST", "/tenants/acme/uploads")] = (
        409,
        {"error": {"code": "TenantNotAccepting", "message": "tenant acme is PROVISIONING"}},
    )
    path = tmp_path / "train.csv"
    path.write_text("f0,label\n1,0\n")
    result = invoke(url, "upload", "acme", str(path))
    assert result.exit_code == 1
    assert result.stderr.startswith("error TenantNotAccepting:")


def test_upload_to_a_tenant_still_provisioning_is_a_clear_error(
    api: tuple[str, Routes], tmp_path: Path
) -> None:
    url, routes = api
    routes.table[("GET", "/tenants/acme")] = (
        202,
        {**TENANT, "status": "PROVISIONING", "dataBucket": None, "dataPrefix": None},
    )
    path = tmp_path / "train.csv"
    path.write_text("f0,label\n1,0\n")
    result = invoke(url, "upload", "--direct", "acme", str(path))
    assert result.exit_code == 1
    assert result.stderr.startswith("error TenantNotReady:")


def test_upload_to_a_missing_bucket_is_an_error_line_not_a_traceback(
    api: tuple[str, Routes], moto_endpoint: str, tmp_path: Path
) -> None:
    url, routes = api
    routes.table[("GET", "/tenants/acme")] = (200, {**TENANT, "dataBucket": "no-such-bucket"})
    path = tmp_path / "train.csv"
    path.write_text("f0,label\n1,0\n")
    result = invoke(
        url, "--aws-endpoint-url", moto_endpoint, "upload", "--direct", "acme", str(path)
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("error NoSuchBucket:")


RUNS = [
    {
        "runId": "0190aaaabbbbccccddeeeeffff0001",
        "tenantId": "acme",
        "plan": "basic",
        "status": "SUCCEEDED",
        "trigger": {"type": "s3", "objects": [{"key": "data/a.csv", "etag": "e", "size": 1}]},
        "queuedAt": "2024-05-01T12:00:00.000Z",
        "startedAt": "2024-05-01T12:00:01.000Z",
        "endedAt": "2024-05-01T12:00:30.000Z",
        "metrics": {"auc": 0.9312},
        "modelPackageArn": (
            "arn:aws:sagemaker:us-east-1:123456789012:model-package/trainyard-acme/1"
        ),
    },
    {
        "runId": "0190aaaabbbbccccddeeeeffff0000",
        "tenantId": "acme",
        "plan": "basic",
        "status": "FAILED",
        "trigger": {"type": "manual", "objects": []},
        "queuedAt": "2024-05-01T11:00:00.000Z",
        "failureReason": "no 'label' column",
        "metrics": {},
    },
]


def test_runs_table_shows_status_auc_and_failure_reason(
    api: tuple[str, Routes], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, routes = api
    routes.table[("GET", "/tenants/acme/runs?limit=20")] = (200, {"runs": RUNS})
    # The console is built at import; a wide one keeps the table's cells unwrapped.
    from rich.console import Console

    from trainyard.cli import common

    monkeypatch.setattr(common, "console", Console(width=200))
    result = runner.invoke(app, ["--api-url", url, "runs", "acme"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for text in ("eeeeffff0001", "SUCCEEDED", "0.931", "FAILED", "no 'label' column"):
        assert text in result.output


def test_runs_table_shows_each_problem_types_primary_metric(
    api: tuple[str, Routes], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, routes = api
    runs = [
        {
            "runId": f"0190aaaabbbbccccddddeeeeffff00{i}",
            "status": "SUCCEEDED",
            "trigger": {"type": "s3", "objects": []},
            "training": {"problemType": problem_type, "algorithm": "linear"},
            "metrics": metrics,
        }
        for i, (problem_type, metrics) in enumerate(
            [
                ("regression", {"rmse": 4.25, "r2": 0.9134}),
                ("multiclass", {"accuracy": 0.8, "macro_f1": 0.7781}),
                ("binary", {"auc": 0.9512, "accuracy": 0.9}),
            ],
            start=10,
        )
    ]
    routes.table[("GET", "/tenants/acme/runs?limit=20")] = (200, {"runs": runs})
    from rich.console import Console

    from trainyard.cli import common

    monkeypatch.setattr(common, "console", Console(width=200))
    result = runner.invoke(app, ["--api-url", url, "runs", "acme"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for text in ("r2=0.913", "macro_f1=0.778", "auc=0.951"):
        assert text in result.output
    # The regression run's AUC does not exist: no "-" where its R² is.
    row = next(line for line in result.output.splitlines() if "eeeeffff0010" in line)
    assert "r2=0.913" in row


def test_runs_watch_without_a_tty_prints_plain_lines_and_stops_when_all_ended(
    api: tuple[str, Routes],
) -> None:
    url, routes = api
    routes.table[("GET", "/tenants/acme/runs?limit=5")] = (200, {"runs": RUNS})
    result = invoke(url, "runs", "acme", "--watch", "--limit", "5", "--interval", "0.1")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines == [
        "acme run eeeeffff0000 FAILED auc=- no 'label' column",
        "acme run eeeeffff0001 SUCCEEDED auc=0.931 "
        "arn:aws:sagemaker:us-east-1:123456789012:model-package/trainyard-acme/1",
    ]


def test_runs_watch_shows_where_a_queued_run_is_when_it_starts_and_why_it_waits(
    api: tuple[str, Routes],
) -> None:
    url, routes = api
    soon = datetime.now(UTC) + timedelta(minutes=12, seconds=10)
    queued = {
        "runId": "0190aaaabbbbccccddddeeeeffff0002",
        "plan": "basic",
        "status": "QUEUED",
        "queuePosition": 2,
        "estimatedStartAt": soon.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "waitingFor": {"code": "PLAN_CAP", "message": "plan basic runs 4 of its 4"},
        "failureReason": None,
        "metrics": {},
    }
    routes.table[("GET", "/tenants/acme/runs?limit=20")] = (200, {"runs": [queued]})

    def start() -> None:
        time.sleep(0.4)
        done = {**queued, "status": "SUCCEEDED", "waitingFor": None, "queuePosition": None}
        routes.table[("GET", "/tenants/acme/runs?limit=20")] = (200, {"runs": [done]})

    threading.Thread(target=start, daemon=True).start()
    result = invoke(url, "runs", "acme", "--watch", "--interval", "0.1")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == (
        "acme run eeeeffff0002 QUEUED auc=- #2 in the basic queue, starts in ~12 min; "
        "PLAN_CAP: plan basic runs 4 of its 4"
    )
    assert "SUCCEEDED" in lines[-1] and len(lines) == 2  # the estimate ticking prints nothing


def test_an_estimated_start_reads_as_a_relative_time() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert render.relative_start(None, now) == ""
    assert render.relative_start("2026-01-01T12:00:10.000Z", now) == "any moment now"
    assert render.relative_start("2026-01-01T12:01:00.000Z", now) == "in ~60 s"
    assert render.relative_start("2026-01-01T12:12:00.000Z", now) == "in ~12 min"
    assert render.relative_start("2026-01-01T15:00:00.000Z", now) == "in ~3.0 h"
    held = {"status": "QUEUED", "plan": "basic", "queuePosition": 3, "estimatedStartAt": None}
    held["waitingFor"] = {"code": "SUSPENDED", "message": "tenant is SUSPENDED"}
    assert render.wait_summary(held, now) == (
        "#3 in the basic queue, start unknown; SUSPENDED: tenant is SUSPENDED"
    )


def test_plans_and_queue_render(api: tuple[str, Routes]) -> None:
    url, routes = api
    routes.table[("GET", "/plans")] = (
        200,
        {
            "plans": [
                {
                    "name": "premium",
                    "maxConcurrentRuns": 12,
                    "maxConcurrentRunsPerTenant": 4,
                    "weight": 4,
                    "isolation": "silo",
                    "trainingInstanceType": "ml.m5.2xlarge",
                    "trainingInstanceCount": 1,
                    "monthlyTrainingHours": None,
                }
            ],
            "globalMaxConcurrentRuns": 20,
        },
    )
    routes.table[("GET", "/queue")] = (
        200,
        {
            "plans": [
                {
                    "plan": "basic",
                    "queued": 1,
                    "running": 4,
                    "runs": [
                        {
                            "tenantId": "acme",
                            "runId": "0190aaaabbbbccccddeeeeffff0009",
                            "queuePosition": 1,
                            "queuedAt": "2024-05-01T12:00:00.000Z",
                        }
                    ],
                }
            ]
        },
    )
    env = {"COLUMNS": "200"}
    plans = runner.invoke(app, ["--api-url", url, "plans"], env=env)
    assert plans.exit_code == 0 and "unlimited" in plans.output and "20" in plans.output
    queue = runner.invoke(app, ["--api-url", url, "queue"], env=env)
    assert queue.exit_code == 0, queue.output
    assert "eeeeffff0009" in queue.output and "acme" in queue.output


def test_local_up_on_a_busy_port_is_a_clear_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = runner.invoke(
            app, ["local", "up", "--aws-port", str(port), "--api-port", str(_free_port())]
        )
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error PortInUse: --aws-port {port}:")


def test_queue_renders_the_per_plan_mapping_the_api_returns(api: tuple[str, Routes]) -> None:
    url, routes = api
    routes.table[("GET", "/queue")] = (
        200,
        {
            "basic": {
                "cap": 4,
                "queued": 2,
                "running": 4,
                "runs": [
                    {
                        "tenantId": "acme",
                        "runId": "0190aaaabbbbccccddddeeeeffff0007",
                        "queuePosition": 1,
                        "queuedAt": "2024-05-01T12:00:00.000Z",
                    },
                ],
            },
            "premium": {"cap": 12, "queued": 0, "running": 0, "runs": []},
        },
    )
    result = runner.invoke(app, ["--api-url", url, "queue"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for text in ("basic", "premium", "cap", "eeeeffff0007", "acme"):
        assert text in result.output


def test_a_port_left_in_time_wait_by_a_stopped_stack_counts_as_free() -> None:
    import socket

    from trainyard.cli import port_is_free

    listener = socket.socket()
    # As the stack's servers (werkzeug, http.server) do: reuse-address listeners.
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    assert not port_is_free(port)  # a live server is still refused
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = listener.accept()
    accepted.close()  # the server side closes first: its port enters TIME_WAIT
    client.close()
    listener.close()
    assert port_is_free(port)


def test_train_starts_a_run_and_says_where_it_waits(api: tuple[str, Routes]) -> None:
    url, routes = api
    routes.table[("POST", "/tenants/acme/runs")] = (
        202,
        {
            "runId": "0190aaaabbbbccccddddeeeeffff0009",
            "tenantId": "acme",
            "plan": "basic",
            "status": "QUEUED",
            "queuePosition": 3,
        },
    )
    result = invoke(url, "train", "acme")
    assert result.exit_code == 0, result.output
    assert "QUEUED" in result.output and "#3 in the basic queue" in result.output
    assert ("POST", "/tenants/acme/runs") in [(m, p) for m, p, _ in routes.seen]


def test_runs_retry_retries_a_failed_run_with_the_reason(api: tuple[str, Routes]) -> None:
    url, routes = api
    run_id = "0190aaaabbbbccccddddeeeeffff0009"
    routes.table[("POST", f"/tenants/acme/runs/{run_id}/retry")] = (
        202,
        {
            "runId": run_id,
            "tenantId": "acme",
            "plan": "basic",
            "status": "QUEUED",
            "queuePosition": 1,
            "retries": [{"attempt": 1, "requestedAt": "2026-12-02T10:00:00.000Z"}],
        },
    )
    result = invoke(url, "runs", "retry", "acme", run_id, "--reason", "flaky")
    assert result.exit_code == 0, result.output
    assert "QUEUED" in result.output and "retry 1" in result.output
    ((_, _, body),) = [s for s in routes.seen if s[1].endswith("/retry")]
    assert json.loads(body) == {"reason": "flaky"}


def test_usage_shows_hours_against_the_budget_and_cost(api: tuple[str, Routes]) -> None:
    url, routes = api
    body = {
        "tenantId": "acme",
        "month": "2026-11",
        "runs": 4,
        "trainingSeconds": 5400.0,
        "trainingHours": 1.5,
        "costEstimateUsd": 0.1725,
        "budgetHours": 10,
    }
    routes.table[("GET", "/tenants/acme/usage?month=2026-11")] = (200, body)
    result = runner.invoke(
        app, ["--api-url", url, "usage", "acme", "--month", "2026-11"], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    for text in ("2026-11", "1.50", "10", "0.17"):
        assert text in result.output
    as_json = invoke(url, "--json", "usage", "acme", "--month", "2026-11")
    assert json.loads(as_json.output) == body


def test_queue_watch_follows_the_backlog_until_it_drains(api: tuple[str, Routes]) -> None:
    url, routes = api

    def body(queued: int, running: int) -> dict[str, Any]:
        return {"basic": {"cap": 4, "queued": queued, "running": running, "runs": []}}

    routes.table[("GET", "/queue")] = (200, body(2, 4))

    def drain() -> None:
        time.sleep(0.5)
        routes.table[("GET", "/queue")] = (200, body(0, 1))
        time.sleep(0.5)
        routes.table[("GET", "/queue")] = (200, body(0, 0))

    threading.Thread(target=drain, daemon=True).start()
    result = invoke(url, "queue", "--watch", "--interval", "0.1")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "basic: queued=2 running=4/4",
        "basic: queued=0 running=1/4",
        "basic: queued=0 running=0/4",
    ]


def test_runs_watch_says_it_waits_when_the_tenant_has_no_run_yet(
    api: tuple[str, Routes],
) -> None:
    url, routes = api
    routes.table[("GET", "/tenants/acme/runs?limit=20")] = (200, {"runs": []})
    done = {
        "runId": "0190aaaabbbbccccddddeeeeffff0001",
        "status": "SUCCEEDED",
        "metrics": {"auc": 0.9},
    }

    def appear() -> None:
        time.sleep(0.4)
        routes.table[("GET", "/tenants/acme/runs?limit=20")] = (200, {"runs": [done]})

    threading.Thread(target=appear, daemon=True).start()
    result = invoke(url, "runs", "acme", "--watch", "--interval", "0.1")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "no runs for acme yet; waiting for one (Ctrl-C to stop)"
    assert "SUCCEEDED" in lines[-1] and len(lines) == 2


def test_upload_presigns_the_parts_again_when_their_urls_near_expiry(
    api: tuple[str, Routes], moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trainyard.api_client import _seg

    url, routes = api
    s3 = _s3(moto_endpoint)
    s3.create_bucket(Bucket="parts-bucket")
    key = "data/big.csv"
    upload_id = s3.create_multipart_upload(Bucket="parts-bucket", Key=key)["UploadId"]
    path = tmp_path / "big.csv"
    path.write_bytes(b"a,b\n" + b"1,2\n" * 100)
    sizes = [200, path.stat().st_size - 200]

    def part_url(number: int, size: int) -> str:
        return str(
            s3.generate_presigned_url(
                "upload_part",
                Params={
                    "Bucket": "parts-bucket",
                    "Key": key,
                    "UploadId": upload_id,
                    "PartNumber": number,
                    "ContentLength": size,
                },
            )
        )

    def stamp(moment: datetime) -> str:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")

    now = datetime.now(UTC)
    # The first URLs expire in two minutes: too soon to start a part's PUT with them.
    stale = [
        {"partNumber": n, "url": f"{url}/stale-url-used", "size": s} for n, s in enumerate(sizes, 1)
    ]
    base = f"/tenants/acme/uploads/{_seg(upload_id)}"
    routes.table[("POST", "/tenants/acme/uploads")] = (
        201,
        {
            "method": "PUT",
            "key": key,
            "uploadId": upload_id,
            "parts": stale,
            "expiresAt": stamp(now + timedelta(minutes=2)),
        },
    )
    fresh = [{"partNumber": n, "url": part_url(n, s), "size": s} for n, s in enumerate(sizes, 1)]
    routes.table[("POST", f"{base}/parts")] = (
        200,
        {"parts": fresh, "expiresAt": stamp(now + timedelta(hours=1))},
    )
    routes.table[("POST", f"{base}/complete")] = (
        200,
        {"key": key, "uploadId": upload_id, "status": "COMPLETED", "eTag": '"x"'},
    )
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    result = invoke(url, "upload", "acme", str(path))
    assert result.exit_code == 0, result.output
    asked = [json.loads(b) for m, p, b in routes.seen if (m, p) == ("POST", f"{base}/parts")]
    assert asked == [{"partNumbers": [1, 2]}]
    assert not [p for m, p, _ in routes.seen if "stale" in p]
    completed = [json.loads(b) for m, p, b in routes.seen if (m, p) == ("POST", f"{base}/complete")]
    assert [p["partNumber"] for p in completed[0]["parts"]] == [1, 2]
    listed = s3.list_parts(Bucket="parts-bucket", Key=key, UploadId=upload_id)["Parts"]
    assert [(p["PartNumber"], p["Size"]) for p in listed] == list(enumerate(sizes, 1))
