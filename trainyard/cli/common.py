"""What every `trainyard` command shares: the Typer apps, the consoles, the global
options and the one way failures are reported."""

from __future__ import annotations

import functools
import json
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console

from trainyard.api_client import DEFAULT_LOCAL_API_URL, ApiError, TrainyardApi, is_local_url
from trainyard.aws.cli import aws_app

DEFAULT_LOCAL_AWS_ENDPOINT = "http://127.0.0.1:4566"
LOCAL_REGION = "us-east-1"
TERMINAL_RUN_STATUSES = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})
TENANT_STATUSES = ("ACTIVE", "SUSPENDED")

app = typer.Typer(
    name="trainyard",
    help="Multi-tenant ML training triggers: onboard tenants, upload data, follow runs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
tenants_app = typer.Typer(
    help="Onboard, inspect, change and offboard tenants.", no_args_is_help=True
)
local_app = typer.Typer(
    help="The embedded local stack (no AWS account, no Docker).", no_args_is_help=True
)
app.add_typer(tenants_app, name="tenants")
app.add_typer(local_app, name="local")
app.add_typer(aws_app, name="aws")

console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class Options:
    api_url: str
    aws_endpoint_url: str | None
    json_output: bool

    @property
    def local(self) -> bool:
        return is_local_url(self.api_url)

    def api(self) -> TrainyardApi:
        # A deployed API Gateway uses IAM auth; only loopback URLs go unsigned.
        return TrainyardApi(self.api_url, sigv4=not self.local)

    def local_aws_endpoint(self, api: TrainyardApi) -> str:
        """The embedded AWS endpoint: as given, else as the local API announces it on
        /health (so `local up` on other ports needs no extra flag), else the default."""
        if self.aws_endpoint_url:
            return self.aws_endpoint_url
        try:
            announced = api.health().get("awsEndpointUrl")
        except ApiError:
            announced = None
        return str(announced) if announced else DEFAULT_LOCAL_AWS_ENDPOINT

    def s3(self, api: TrainyardApi) -> Any:
        import boto3

        if not self.local:
            # Real AWS: the default credential chain and region; endpoint only if asked.
            return boto3.client("s3", endpoint_url=self.aws_endpoint_url)
        session = boto3.Session()
        kwargs: dict[str, Any] = {}
        if session.get_credentials() is None:
            # The embedded stack accepts any credentials; don't make people invent some.
            kwargs = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}
        return boto3.client(
            "s3",
            endpoint_url=self.local_aws_endpoint(api),
            region_name=LOCAL_REGION,
            **kwargs,
        )


def _fail(code: str, message: str) -> NoReturn:
    err_console.print(f"error {code}: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def handles_errors(func: F) -> F:
    """Every failure a user can cause becomes ``error <code>: <message>`` and exit 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return func(*args, **kwargs)
        except ApiError as exc:
            _fail(exc.code, exc.message)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            _fail(str(error.get("Code", "AwsError")), str(error.get("Message", exc)))
        except BotoCoreError as exc:
            _fail(type(exc).__name__, str(exc))
        except OSError as exc:
            _fail(type(exc).__name__, str(exc))
        except KeyboardInterrupt:
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _opts(ctx: typer.Context) -> Options:
    return ctx.find_root().obj


def _print_json(data: Any) -> None:
    # Plain print, not rich: machine-readable output must not be wrapped or coloured.
    print(json.dumps(data, indent=2, sort_keys=True))


@app.callback()
def _global(
    ctx: typer.Context,
    api_url: str = typer.Option(
        DEFAULT_LOCAL_API_URL,
        "--api-url",
        envvar="TRAINYARD_API_URL",
        help="Onboarding API. Loopback = the local stack; anything else is signed with SigV4.",
    ),
    aws_endpoint_url: str | None = typer.Option(
        None,
        "--aws-endpoint-url",
        envvar="AWS_ENDPOINT_URL",
        help="AWS endpoint for `upload --direct`. Default: "
        f"{DEFAULT_LOCAL_AWS_ENDPOINT} with a local API, real AWS otherwise.",
    ),
    json_output: bool = typer.Option(False, "--json", help="Machine-readable JSON output."),
) -> None:
    ctx.obj = Options(api_url=api_url, aws_endpoint_url=aws_endpoint_url, json_output=json_output)


def stop_on_sigterm() -> tuple[threading.Event, Any]:
    """An event SIGTERM sets, and the handler it replaced (restore it when done)."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    return stop, signal.signal(signal.SIGTERM, on_signal)


def wait_until_stopped(stop: threading.Event) -> None:
    """Block until SIGTERM (``stop``) or Ctrl-C: a foreground server's main loop."""
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass


def training_body(
    algorithm: str | None,
    problem_type: str | None,
    hyperparameters: list[str] | None,
    schema_drift: str | None = None,
) -> dict[str, Any] | None:
    """The API's ``training`` object from ``--algorithm``, ``--problem-type``,
    ``--hyperparameter k=v`` (values as text: the API checks them against the catalog)
    and ``--schema-drift``."""
    values: dict[str, str] = {}
    for item in hyperparameters or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            _fail("InvalidHyperparameter", f"--hyperparameter {item!r}: give NAME=VALUE")
        values[key.strip()] = value.strip()
    body: dict[str, Any] = {}
    if algorithm is not None:
        body["algorithm"] = algorithm
    if problem_type is not None:
        body["problemType"] = problem_type
    if values:
        body["hyperparameters"] = values
    if schema_drift is not None:
        body["schemaDrift"] = schema_drift
    return body or None


ALGORITHM_HELP = "A name from `trainyard algorithms`, or auto (chosen by data volume)."
PROBLEM_TYPE_HELP = "binary, multiclass or regression."
HYPERPARAMETER_HELP = "NAME=VALUE of the algorithm (repeatable)."
SCHEMA_DRIFT_HELP = (
    "warn: train and report columns changed since the last successful run; "
    "fail: fail such a run before training."
)
