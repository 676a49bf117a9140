"""`trainyard demo` and `trainyard local up`: the embedded stack."""

from __future__ import annotations

import json
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import typer

from trainyard.cli import common
from trainyard.cli.common import (
    _fail,
    _opts,
    app,
    local_app,
)


@app.command()
def demo(
    timeout: float = typer.Option(600, "--timeout", help="Give up after this many seconds."),
    console_port: int = typer.Option(
        8788, "--console-port", min=0, max=65535, help="Watch it in the console on this port."
    ),
) -> None:
    """Run the scripted multi-tenant scenario on a fresh embedded stack.

    While it runs, the operator console shows it (the address is printed) and the
    stack's API is on 127.0.0.1:8787 when that port is free, so a `trainyard console`
    started elsewhere sees it too.
    """
    from trainyard.demo import run_demo
    from trainyard.local.stack import EmbeddedStack

    print("starting the embedded stack (moto + local Lambda runtime + pipeline runner)...")
    stack = EmbeddedStack(aws_port=0, api_port=8787 if port_is_free(8787) else 0, quiet=True)
    try:
        stack.start()
    except Exception as exc:  # the stack's own error is the useful part, not our frames
        print(f"FAILED: could not start the embedded stack: {type(exc).__name__}: {exc}")
        raise typer.Exit(1) from None
    server, note = _start_console(stack.api_url, console_port)
    print(f"console: {note}", flush=True)
    try:
        # run_demo sizes its own console (wide when not a TTY, so CI logs stay readable).
        code = run_demo(timeout=timeout, stack=stack)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    finally:
        if server is not None:
            server.stop()
        try:
            stack.stop()
        except Exception as exc:  # the runs' verdict stands; say what went wrong
            print(f"warning: stopping the embedded stack failed: {type(exc).__name__}: {exc}")
    raise typer.Exit(code)


# --- local stack


def port_is_free(port: int) -> bool:
    """Checked up front: a busy port would otherwise surface as a vague start-up timeout."""
    with socket.socket() as probe:
        # Like the servers themselves: connections of a stopped stack lingering in
        # TIME_WAIT must not block an immediate restart on the same port.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _start_console(api_url: str, port: int) -> tuple[Any, str]:
    """The operator console beside the stack; a busy port only skips it (the stack is
    what `local up` is for, and `trainyard console --port N` starts one elsewhere)."""
    from trainyard.console.server import ConsoleServer

    if port and not port_is_free(port):
        return None, f"not started: 127.0.0.1:{port} is in use (trainyard console --port N)"
    try:
        server = ConsoleServer(api_url, port=port).start()
    except OSError as exc:  # taken between the check and the bind
        return None, f"not started: 127.0.0.1:{port}: {exc.strerror}"
    return server, f"{server.url}  (queue, timeline, tenants, plans in a browser)"


@local_app.command("up")
def local_up(
    ctx: typer.Context,
    aws_port: int = typer.Option(4566, "--aws-port", min=0, max=65535, help="AWS endpoint port."),
    api_port: int = typer.Option(8787, "--api-port", min=0, max=65535, help="Onboarding API port."),
    console_port: int = typer.Option(
        8788, "--console-port", min=0, max=65535, help="Operator console port (busy: skipped)."
    ),
    workdir: Path | None = typer.Option(
        None, "--workdir", file_okay=False, help="Keep pipeline files here (default: temp dir)."
    ),
) -> None:
    """Run the embedded stack in the foreground until Ctrl-C / SIGTERM.

    All state (tenants, runs, uploaded objects, models) is in this process's memory
    only: stopping or killing it loses everything, and the next start begins empty.
    There is no persistent mode. Work directories that a killed stack left behind
    are removed at the next start.
    """
    from trainyard.local.stack import IN_MEMORY_NOTICE, EmbeddedStack

    opts = _opts(ctx)
    stop, previous = common.stop_on_sigterm()
    stack = EmbeddedStack(aws_port=aws_port, api_port=api_port, workdir=workdir, quiet=True)
    console_server = None
    try:
        for name, port in (("--aws-port", aws_port), ("--api-port", api_port)):
            if port and not port_is_free(port):
                _fail("PortInUse", f"{name} {port}: 127.0.0.1:{port} is already in use")
        try:
            stack.start()
        except Exception as exc:  # one line for people; the cause is in the message
            _fail("StartFailed", f"cannot start the embedded stack: {type(exc).__name__}: {exc}")
        console_server, console_note = _start_console(stack.api_url, console_port)
        endpoints = {
            "awsEndpointUrl": stack.aws_endpoint_url,
            "apiUrl": stack.api_url,
            "region": stack.region,
            "accountId": stack.account_id,
            "persistent": False,
            "consoleUrl": console_server.url if console_server else None,
        }
        if opts.json_output:
            print(json.dumps(endpoints), flush=True)
        else:
            # Plain print: endpoint lines must never be wrapped (people and scripts copy them).
            print(
                f"AWS endpoint  {stack.aws_endpoint_url}  (region {stack.region}, any credentials)"
            )
            print(f"API           {stack.api_url}  (GET /health)")
            print(f"console       {console_note}")
            print(
                f"use it:       export AWS_ENDPOINT_URL={stack.aws_endpoint_url} "
                f"TRAINYARD_API_URL={stack.api_url}"
            )
            print(f"note:         {IN_MEMORY_NOTICE}")
            print("ready; Ctrl-C to stop", flush=True)
        sys.stdout.flush()
        common.wait_until_stopped(stop)
    finally:
        signal.signal(signal.SIGTERM, previous)
        if console_server is not None:
            console_server.stop()
        try:
            stack.stop()
        except Exception as exc:  # still one line, not a traceback, and a failing exit code
            _fail("StopFailed", f"stopping the embedded stack failed: {type(exc).__name__}: {exc}")
    if not opts.json_output:
        common.console.print("stopped")
