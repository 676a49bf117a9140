"""End to end on the embedded stack: the demo scenario and `trainyard local up`."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from rich.console import Console

from trainyard.local.stack import EmbeddedStack

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def test_demo_trains_a_regression_tenant_and_a_small_data_tenant_on_auto_across_three_plans(
    stack: EmbeddedStack,
) -> None:
    from dataclasses import replace

    from trainyard.api_client import TrainyardApi
    from trainyard.demo import DEFAULT_TENANTS, run_demo

    # The session's shared stack (one per process); the demo's own tenant settings
    # under ids of our own, so other integration tests' tenants and runs cannot interfere.
    tenants = [replace(t, tenant_id=f"demo-{t.plan}") for t in DEFAULT_TENANTS]
    out = io.StringIO()
    code = run_demo(
        tenants=tenants,
        timeout=600,
        console=Console(file=out, width=220, force_terminal=False),
        stack=stack,
    )
    report = out.getvalue()
    print(report)  # shown by pytest when the assertion fails
    assert code == 0, report
    assert "OK: 3 tenants on 3 plans (binary, regression)" in report
    for t in tenants:
        assert t.tenant_id in report

    api = TrainyardApi(stack.api_url, timeout=30)
    runs = {t.tenant_id: api.list_runs(t.tenant_id)["runs"] for t in tenants}
    assert all(len(r) == 1 for r in runs.values()), runs
    (regression,) = runs["demo-premium"]
    assert regression["status"] == "SUCCEEDED"
    assert regression["training"]["problemType"] == "regression"
    assert regression["training"]["algorithm"] == "xgboost"
    assert {"r2", "rmse"} <= set(regression["metrics"])
    assert "auc" not in regression["metrics"]
    (small,) = runs["demo-basic"]
    assert small["status"] == "SUCCEEDED"
    assert small["training"]["algorithm"] == "linear"
    assert small["training"]["chosenBy"]["mode"] == "auto"
    assert small["dataReport"]["rows"] < 2000  # a few hundred rows: small data
    (default,) = runs["demo-standard"]
    assert default["training"]["algorithm"] == "xgboost"
    assert isinstance(default["metrics"]["auc"], float)
    # The summary names what each run trained and its problem type's metric.
    summary = report[report.index("runs per tenant") :].splitlines()
    rows = {t.tenant_id: next(x for x in summary if f" {t.tenant_id} " in x) for t in tenants}
    assert "auto→linear" in rows["demo-basic"] and "auc=" in rows["demo-basic"]
    assert f"r2={regression['metrics']['r2']:.3f}" in rows["demo-premium"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_local_up_serves_health_on_the_given_ports_and_stops_on_sigterm(tmp_path: Path) -> None:
    aws_port, api_port, console_port = _free_port(), _free_port(), _free_port()
    env = {**os.environ, "CI": "true"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "trainyard.cli",
            "local",
            "up",
            "--aws-port",
            str(aws_port),
            "--api-port",
            str(api_port),
            "--console-port",
            str(console_port),
            "--workdir",
            str(tmp_path),
        ],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        healthy = False
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                healthy = requests.get(f"http://127.0.0.1:{api_port}/health", timeout=2).ok
            except requests.RequestException:
                healthy = False
            if healthy:
                break
            time.sleep(0.2)
        assert healthy, "GET /health never answered 200"
        # The AWS endpoint is moto on the other port, reachable with any credentials.
        assert requests.get(f"http://127.0.0.1:{aws_port}/moto-api/", timeout=5).status_code < 500
        # The console beside it (started right after the stack), over that API.
        plans = None
        for _ in range(50):
            try:
                plans = requests.get(f"http://127.0.0.1:{console_port}/plans", timeout=10)
                break
            except requests.ConnectionError:
                time.sleep(0.2)
        assert plans is not None and plans.status_code == 200 and "premium" in plans.text
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, output
    assert f"http://127.0.0.1:{aws_port}" in output
    assert f"http://127.0.0.1:{api_port}" in output
    assert f"console       http://127.0.0.1:{console_port}" in output
    assert "Traceback" not in output
