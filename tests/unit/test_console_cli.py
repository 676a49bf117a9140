"""`trainyard console`: its options, a busy port, and the server it starts."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests
from typer.testing import CliRunner

from trainyard.cli import app

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_console_help_names_the_port_and_the_api() -> None:
    result = runner.invoke(app, ["console", "--help"])
    assert result.exit_code == 0
    assert "--port" in result.output and "--api-url" in result.output


def test_console_on_a_busy_port_is_a_clear_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = runner.invoke(app, ["console", "--port", str(port)])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error PortInUse: --port {port}:")


def test_console_serves_pages_that_say_the_api_is_down_and_stops_on_sigterm() -> None:
    port, dead_api = _free_port(), _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "trainyard.cli",
            "console",
            "--port",
            str(port),
            "--api-url",
            f"http://127.0.0.1:{dead_api}",
        ],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        page = None
        deadline = time.monotonic() + 30
        while page is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                page = requests.get(f"http://127.0.0.1:{port}/queue", timeout=10)
            except requests.ConnectionError:
                time.sleep(0.2)
        assert page is not None, "the console never answered"
        assert page.status_code == 502 and "cannot reach the API" in page.text
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, output
    assert f"console       http://127.0.0.1:{port}" in output
