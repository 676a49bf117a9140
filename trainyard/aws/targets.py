"""Where the end-to-end scenario runs: a real account, or the embedded stack."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError
from trainyard_core.config import Settings, load_project_settings

from trainyard.api_client import TrainyardApi
from trainyard.aws.e2e import CheckFailed, Timeouts

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# CDK's bootstrap stack; templates of aws-cdk-lib 2.27x require bootstrap version 6
# or newer (the BootstrapVersion rule).
BOOTSTRAP_STACK = "CDKToolkit"
MIN_BOOTSTRAP_VERSION = 6
CDK_TIMEOUT_SECONDS = 3600
DEFAULT_QUALIFIER = "hnb659fds"


def bootstrap_qualifier(project_root: Path = PROJECT_ROOT) -> str:
    """The bootstrap qualifier the app deploys with (cdk.json may set another)."""
    context = json.loads((project_root / "cdk.json").read_text()).get("context", {})
    return str(context.get("@aws-cdk/core:bootstrapQualifier") or DEFAULT_QUALIFIER)


class AwsTarget:
    """A real account: the caller's credentials (the default boto3 chain), `npx cdk`
    for deploy and destroy, SigV4 for the API.

    Each run deploys a platform of its own (prefix ``e2e-<run>``, stack
    ``TrainyardE2e<run>``), so it can never update, destroy or clean up a deployment
    that was there before; it refuses to start if that stack exists."""

    name = "aws"

    def __init__(
        self,
        *,
        project_root: Path = PROJECT_ROOT,
        timeouts: Timeouts | None = None,
        run_id: str | None = None,
    ) -> None:
        self.project_root = project_root
        self.run_id = run_id or uuid.uuid4().hex[:6]
        self.override = {
            "resourcePrefix": f"e2e-{self.run_id}",
            "stackName": f"TrainyardE2e{self.run_id}",
        }
        self.settings = load_project_settings(project_root, self.override)
        self.session = boto3.session.Session(region_name=self.settings.region)
        self.timeouts = timeouts or Timeouts()
        self.account = ""
        self._api_url = ""

    def client(self, service: str) -> Any:
        return self.session.client(service)

    def preflight(self) -> str:
        identity = self.client("sts").get_caller_identity()
        self.account = identity["Account"]
        cfn = self.client("cloudformation")
        try:
            (stack,) = cfn.describe_stacks(StackName=BOOTSTRAP_STACK)["Stacks"]
        except ClientError as exc:
            raise CheckFailed(
                f"account {self.account} is not CDK-bootstrapped in {self.settings.region}: run "
                f"`npx cdk bootstrap aws://{self.account}/{self.settings.region}` ({exc})"
            ) from None
        parameter = f"/cdk-bootstrap/{bootstrap_qualifier(self.project_root)}/version"
        version = int(self.client("ssm").get_parameter(Name=parameter)["Parameter"]["Value"])
        if version < MIN_BOOTSTRAP_VERSION:
            raise CheckFailed(
                f"bootstrap version {version} < {MIN_BOOTSTRAP_VERSION}: re-bootstrap"
            )
        try:
            cfn.describe_stacks(StackName=self.settings.stack_name)
        except ClientError:
            pass  # as it should be: this run's stack is new
        else:
            raise CheckFailed(
                f"stack {self.settings.stack_name} already exists: refusing to touch it"
            )
        return (
            f"{identity['Arn']} in {self.account}; {stack['StackStatus']}, bootstrap "
            f"v{version}; this run: prefix {self.settings.resource_prefix}, "
            f"stack {self.settings.stack_name}"
        )

    def _cdk(self, *args: str) -> None:
        env = {
            **os.environ,
            "CDK_DEFAULT_ACCOUNT": self.account,
            "CDK_DEFAULT_REGION": self.settings.region,
        }
        command = ["npx", "cdk", *args, "-c", f"trainyard={json.dumps(self.override)}"]
        with tempfile.TemporaryFile(mode="w+") as log:
            try:
                # The CLI's progress goes to the terminal (make e2e-aws runs pytest -s);
                # its errors are kept for the report.
                result = subprocess.run(
                    command,
                    cwd=self.project_root,
                    env=env,
                    stderr=log,
                    check=False,
                    timeout=CDK_TIMEOUT_SECONDS,
                )
            except subprocess.TimeoutExpired:
                raise CheckFailed(
                    f"cdk {args[0]} did not finish in {CDK_TIMEOUT_SECONDS} s"
                ) from None
            log.seek(0)
            if result.returncode != 0:
                raise CheckFailed(f"cdk {args[0]} failed:\n{log.read()[-4000:]}")

    def deploy(self) -> str:
        with tempfile.TemporaryDirectory() as tmp:
            outputs = Path(tmp) / "outputs.json"
            self._cdk(
                "deploy",
                self.settings.stack_name,
                "--require-approval",
                "never",
                "--outputs-file",
                str(outputs),
            )
            values = json.loads(outputs.read_text())[self.settings.stack_name]
        self._api_url = values["ApiUrl"]
        return f"{self.settings.stack_name} deployed; API {self._api_url}"

    def api(self) -> TrainyardApi:
        return TrainyardApi(self._api_url, sigv4=True, region=self.settings.region, timeout=30)

    def destroy(self) -> str:
        self._cdk("destroy", self.settings.stack_name, "--force")
        return f"{self.settings.stack_name} destroyed"


class EmbeddedTarget:
    """The embedded local stack: deploy starts it, destroy stops it (a running stack
    handed in is only borrowed: deploy and destroy leave it as it is)."""

    name = "embedded"

    def __init__(
        self, settings: Settings | None = None, *, stack: Any = None, **stack_options: Any
    ) -> None:
        from trainyard.local.stack import ACCOUNT_ID, EmbeddedStack

        self._borrowed = stack is not None
        self.stack = (
            stack if stack is not None else EmbeddedStack(settings=settings, **stack_options)
        )
        self.settings = self.stack.settings
        self.account = ACCOUNT_ID
        # Local jobs take seconds; the lifecycle schedule is fired instead of awaited.
        self.timeouts = Timeouts(onboard=60, run=240, offboard=60, poll=0.5)

    def client(self, service: str) -> Any:
        return self.stack.client(service)

    def preflight(self) -> str:
        return "embedded stack: no account, no bootstrap"

    def deploy(self) -> str:
        if not self._borrowed:
            self.stack.start()
        return f"embedded stack at {self.stack.aws_endpoint_url}"

    def api(self) -> TrainyardApi:
        return _TickingApi(self.stack)

    def destroy(self) -> str:
        if self._borrowed:
            return "embedded stack left running (borrowed)"
        self.stack.stop()
        return "embedded stack stopped"


class _TickingApi(TrainyardApi):
    """The local API, with the one-minute lifecycle schedule fired on every tenant read
    (the embedded stack's schedule would otherwise make the scenario wait a minute)."""

    def __init__(self, stack: Any) -> None:
        super().__init__(stack.api_url)
        self._stack = stack

    def get_tenant(self, tenant_id: str) -> dict[str, Any]:
        self._stack.advance_tenants_now()
        return super().get_tenant(tenant_id)
