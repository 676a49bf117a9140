"""End to end, in a real account or on the embedded stack: the same scenario.

    report = run_e2e(target)     # a Target: AwsTarget (real account) or EmbeddedTarget
    report.ok, report.checks     # each check with what it saw and how long it took

Scenario: check the bootstrap -> deploy -> onboard one silo and one pool tenant ->
upload training data -> wait for a registered model in each tenant's own group ->
check each job ran as that tenant's role and carries its tenant tag -> offboard
with purge (data and models gone) -> destroy -> list what is left (and delete it
on request). Nothing here knows which target it drives: the embedded stack test
(tests/integration/test_e2e_driver.py) runs exactly this code.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, Protocol

from botocore.exceptions import ClientError
from trainyard_core import wiring
from trainyard_core.config import Settings

from trainyard.api_client import ApiError, TrainyardApi
from trainyard.aws.leftovers import (
    Deployment,
    Leftover,
    delete_leftovers,
    find_leftovers,
    tenant_stacks,
)
from trainyard.data import tenant_csv

TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


class CheckFailed(AssertionError):
    pass


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    seconds: float


@dataclass
class Report:
    target: str
    checks: list[Check] = field(default_factory=list)
    leftovers: list[Leftover] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]


@dataclass(frozen=True)
class Timeouts:
    onboard: float = 600
    run: float = 3600
    offboard: float = 900
    poll: float = 10


class Target(Protocol):
    """Where the scenario runs."""

    name: str
    settings: Settings
    account: str
    timeouts: Timeouts

    def preflight(self) -> str:
        """Raise CheckFailed if the account is not ready (e.g. not bootstrapped)."""

    def deploy(self) -> str:
        """Deploy the platform; returns the onboarding API's base URL."""

    def api(self) -> TrainyardApi: ...

    def client(self, service: str) -> Any: ...

    def destroy(self) -> str: ...


def _wait(what: str, probe: Callable[[], Any], timeout: float, poll: float) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(poll)
    raise CheckFailed(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {last!r}")


class Scenario:
    def __init__(self, target: Target, tenants: list[tuple[str, str]], log: Callable[[str], None]):
        self.target = target
        self.tenants = tenants
        self.log = log
        self.report = Report(target.name)
        self.names = wiring.Names.from_settings(target.settings)
        self.seen: dict[str, dict[str, Any]] = {}  # tenant id -> tenant (as ACTIVE)
        self.runs: dict[str, dict[str, Any]] = {}

    @contextmanager
    def check(self, name: str) -> Iterator[list[str]]:
        started, notes = time.monotonic(), []
        self.log(f"... {name}")
        try:
            yield notes
        except Exception as exc:
            self.report.checks.append(
                Check(name, False, f"{type(exc).__name__}: {exc}", time.monotonic() - started)
            )
            self.log(f"FAIL {name}: {exc}")
            raise
        self.report.checks.append(Check(name, True, "; ".join(notes), time.monotonic() - started))
        self.log(f"ok   {name} {'; '.join(notes)}")

    # ------------------------------------------------------------ the steps

    def onboard(self, api: TrainyardApi) -> None:
        t = self.target.timeouts
        for tenant_id, plan in self.tenants:
            with self.check(f"onboard {tenant_id} ({plan})") as notes:
                api.create_tenant(tenant_id, plan)

                def active(tenant_id: str = tenant_id) -> dict[str, Any] | None:
                    tenant = api.get_tenant(tenant_id)
                    if tenant["status"] == "FAILED":
                        raise CheckFailed(f"{tenant_id} FAILED: {tenant.get('failureReason')}")
                    return tenant if tenant["status"] == "ACTIVE" else None

                tenant = _wait(f"{tenant_id} ACTIVE", active, t.onboard, t.poll)
                expected = self.target.settings.plan(plan).isolation
                if tenant["isolation"] != expected:
                    raise CheckFailed(f"{tenant_id} is {tenant['isolation']}, plan says {expected}")
                self.seen[tenant_id] = tenant
                notes.append(
                    f"{tenant['isolation']} s3://{tenant['dataBucket']}/{tenant['dataPrefix']}"
                )

    def train(self, api: TrainyardApi) -> None:
        s3 = self.target.client("s3")
        for tenant_id, tenant in self.seen.items():
            s3.put_object(
                Bucket=tenant["dataBucket"],
                Key=f"{tenant['dataPrefix']}e2e.csv",
                Body=tenant_csv(tenant_id),
            )
        t = self.target.timeouts
        for tenant_id in self.seen:
            with self.check(f"{tenant_id}: upload trains a registered model") as notes:

                def ended(tenant_id: str = tenant_id) -> dict[str, Any] | None:
                    runs = api.list_runs(tenant_id).get("runs", [])
                    return runs[0] if runs and runs[0]["status"] in TERMINAL else None

                run = _wait(f"{tenant_id}'s run", ended, t.run, t.poll)
                if run["status"] != "SUCCEEDED" or not run.get("modelPackageArn"):
                    raise CheckFailed(
                        f"run {run['runId']} {run['status']}: {run.get('failureReason')}"
                    )
                self.runs[tenant_id] = run
                group = self.seen[tenant_id]["modelPackageGroupName"]
                packages = self.target.client("sagemaker").list_model_packages(
                    ModelPackageGroupName=group
                )["ModelPackageSummaryList"]
                arns = {p["ModelPackageArn"] for p in packages}
                if run["modelPackageArn"] not in arns:
                    raise CheckFailed(f"{run['modelPackageArn']} is not in {group}")
                notes.append(f"{run['modelPackageArn']} (metrics {run.get('metrics')})")

    def jobs(self) -> None:
        sm = self.target.client("sagemaker")
        for tenant_id, run in self.runs.items():
            with self.check(f"{tenant_id}: every job ran as its role, tagged") as notes:
                execution = str(run["executionArn"]).rsplit("/", 1)[-1]
                jobs = [
                    ("processing", j["ProcessingJobName"])
                    for j in sm.list_processing_jobs(NameContains=execution)[
                        "ProcessingJobSummaries"
                    ]
                ] + [
                    ("training", j["TrainingJobName"])
                    for j in sm.list_training_jobs(NameContains=execution)["TrainingJobSummaries"]
                ]
                if len(jobs) < 3:  # preprocess, train, evaluate
                    raise CheckFailed(f"found {len(jobs)} jobs of execution {execution}: {jobs}")
                role = self.seen[tenant_id]["roleArn"]
                for kind, name in jobs:
                    if kind == "processing":
                        job = sm.describe_processing_job(ProcessingJobName=name)
                        arn = job["ProcessingJobArn"]
                    else:
                        job = sm.describe_training_job(TrainingJobName=name)
                        arn = job["TrainingJobArn"]
                    if job["RoleArn"] != role:
                        raise CheckFailed(f"{name} ran as {job['RoleArn']}, not {role}")
                    tags = {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=arn)["Tags"]}
                    if tags.get(wiring.TENANT_TAG_KEY) != tenant_id:
                        raise CheckFailed(f"{name} tags {tags} do not name {tenant_id}")
                notes.append(f"{len(jobs)} jobs")

    def offboard(self, api: TrainyardApi) -> None:
        t = self.target.timeouts
        sm, s3 = self.target.client("sagemaker"), self.target.client("s3")
        for tenant_id, tenant in self.seen.items():
            with self.check(f"offboard {tenant_id} with purge") as notes:
                api.delete_tenant(tenant_id, purge=True)

                def gone(tenant_id: str = tenant_id) -> bool:
                    try:
                        api.get_tenant(tenant_id)
                    except ApiError as exc:
                        return exc.status == 404
                    return False

                _wait(f"{tenant_id} gone", gone, t.offboard, t.poll)
                group = tenant["modelPackageGroupName"]
                try:
                    sm.describe_model_package_group(ModelPackageGroupName=group)
                except ClientError as exc:
                    error = exc.response.get("Error", {})
                    gone = error.get("Code") == "ResourceNotFound" or "does not exist" in str(
                        error.get("Message", "")
                    )
                    if not gone:
                        raise
                else:
                    raise CheckFailed(f"model package group {group} survived the purge")
                root = self.names.tenant_location(
                    tenant["isolation"], tenant_id, self.target.account
                )[1]
                try:
                    page = s3.list_object_versions(Bucket=tenant["dataBucket"], Prefix=root)
                    left = len(page.get("Versions", [])) + len(page.get("DeleteMarkers", []))
                except ClientError as exc:
                    if exc.response.get("Error", {}).get("Code") != "NoSuchBucket":
                        raise
                    left = 0  # the silo bucket itself is gone
                if left:
                    raise CheckFailed(
                        f"{left} objects left under s3://{tenant['dataBucket']}/{root}"
                    )
                notes.append("stack, data and models gone")


def default_tenants(settings: Settings) -> list[tuple[str, str]]:
    """One tenant per isolation model, on the first plan that uses it; unique ids."""
    suffix = uuid.uuid4().hex[:6]
    out = []
    for isolation in ("silo", "pool"):
        plan = next(p.name for p in settings.plans.values() if p.isolation == isolation)
        out.append((f"e2e-{isolation}-{suffix}", plan))
    return out


def run_e2e(
    target: Target,
    *,
    tenants: list[tuple[str, str]] | None = None,
    delete_leftovers_after: bool = False,
    log: Callable[[str], None] = print,
) -> Report:
    scenario = Scenario(target, tenants or default_tenants(target.settings), log)
    attempted = False  # a deploy that failed half-way leaves resources too
    api: TrainyardApi | None = None
    try:
        with scenario.check("account ready (credentials, CDK bootstrap)") as notes:
            notes.append(target.preflight())
        attempted = True
        with scenario.check("deploy the platform") as notes:
            notes.append(target.deploy())
        api = target.api()
        with scenario.check("API answers") as notes:
            notes.append(f"{len(api.plans()['plans'])} plans")
        scenario.onboard(api)
        scenario.train(api)
        scenario.jobs()
        scenario.offboard(api)
    except Exception as exc:  # the report says which check failed; clean up regardless
        log(f"scenario stopped: {exc}")
    finally:
        if attempted:
            _clean_up(scenario, target, api, delete_leftovers_after)
    return scenario.report


def _clean_up(
    scenario: Scenario, target: Target, api: TrainyardApi | None, delete_retained: bool
) -> None:
    deployment = Deployment.of(target.settings, target.account)
    ids = [tenant_id for tenant_id, _ in scenario.tenants]
    if api is not None:
        # A scenario stopped half-way: offboard its tenants before the platform goes
        # (their stacks need the platform's CloudFormation service role to be deleted).
        for tenant_id in ids:
            with suppress(Exception):
                api.delete_tenant(tenant_id, purge=True)
        with suppress(Exception):
            _wait(
                "tenants offboarded",
                lambda: not tenant_stacks(target.client, deployment),
                target.timeouts.offboard,
                target.timeouts.poll,
            )
    with suppress(Exception), scenario.check("what is left after the scenario") as notes:
        scenario.report.leftovers = find_leftovers(target.client, deployment)
        notes.append(", ".join(str(i) for i in scenario.report.leftovers) or "nothing")
        tenant_left = [i for i in scenario.report.leftovers if any(t in i.name for t in ids)]
        if tenant_left:
            raise CheckFailed(f"tenant resources left: {tenant_left}")
    with suppress(Exception), scenario.check("destroy the platform") as notes:
        notes.append(target.destroy())
    if delete_retained:
        with suppress(Exception), scenario.check("delete what destroy retained") as notes:
            items = find_leftovers(target.client, deployment)
            failed = delete_leftovers(target.client, items)
            if failed:
                raise CheckFailed(f"could not delete {failed}")
            notes.append(f"{len(items)} deleted")
