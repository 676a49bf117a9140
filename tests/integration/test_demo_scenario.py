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


def test_demo_onboards_three_plans_and_every_upload_trains_a_registered_model(
    stack: EmbeddedStack,
) -> None:
    from trainyard.demo import run_demo

    # The session's shared stack (one per process); tenant ids of our own so
    # other integration tests' tenants and runs cannot interfere.
    tenants = [("demo-basic", "basic"), ("demo-standard", "standard"), ("demo-premium", "premium")]
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
    assert "OK: 3 tenants on 3 plans" in report
    for tenant, _plan in tenants:
        assert tenant in report


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
