"""`trainyard console`: the operator console in a browser (trainyard/console/)."""

from __future__ import annotations

import signal

import typer

from trainyard.cli import common
from trainyard.cli.common import _fail, _opts, app
from trainyard.cli.local import port_is_free
from trainyard.console.server import DEFAULT_PORT


@app.command("console")
def console_command(
    ctx: typer.Context,
    port: int = typer.Option(DEFAULT_PORT, "--port", min=0, max=65535, help="Port on 127.0.0.1."),
    api_url: str | None = typer.Option(
        None,
        "--api-url",
        help="Trainyard API (default: the global --api-url, i.e. the local stack). A deployed "
        "one is called with SigV4 from your AWS credentials by the console's server; the "
        "browser never sees them.",
    ),
) -> None:
    """Serve the operator console (queue, timeline, tenants, plans) on 127.0.0.1."""
    from trainyard.console.server import ConsoleServer

    url = api_url or _opts(ctx).api_url
    if port and not port_is_free(port):
        _fail(
            "PortInUse",
            f"--port {port}: 127.0.0.1:{port} is already in use (a console of `trainyard "
            f"local up` or `trainyard demo`? open http://127.0.0.1:{port})",
        )
    stop, previous = common.stop_on_sigterm()
    server = ConsoleServer(url, port=port).start()
    try:
        signed = " (signed with SigV4)" if server.console.proxy.sigv4 else ""
        # Plain print: people and scripts copy the address.
        print(f"console       {server.url}  over the API {url}{signed}")
        print("ready; Ctrl-C to stop", flush=True)
        common.wait_until_stopped(stop)
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.stop()
