"""IAM is enforced on the embedded stack for every principal AWS would use: take one
permission out of the policy CDK synthesized, and the run or the onboarding fails
with the AccessDenied reason AWS would give; put it back and it works again.

Each case edits the deployed role through IAM (what an operator's console edit
would do) and restores it, so the cases share one stack."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from trainyard.data import tenant_csv
from trainyard.local.stack import EmbeddedStack

from .conftest import Api, wait_for

pytestmark = pytest.mark.integration

TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


def _strip(document: dict[str, Any], action: str, resource_part: str) -> tuple[dict, int]:
    """The document without ``action`` in statements whose resources mention
    ``resource_part`` (a statement left with no action is dropped)."""
    removed, statements = 0, []
    for statement in document["Statement"]:
        actions = statement.get("Action", [])
        actions = [actions] if isinstance(actions, str) else list(actions)
        resources = statement.get("Resource", [])
        resources = [resources] if isinstance(resources, str) else resources
        if statement["Effect"] == "Allow" and any(resource_part in r for r in resources):
            kept = [a for a in actions if a.lower() != action.lower()]
            removed += len(actions) - len(kept)
            if not kept:
                continue
            statement = {**statement, "Action": kept}
        statements.append(statement)
    return {**document, "Statement": statements}, removed


@contextmanager
def without(
    stack: EmbeddedStack, role_arn: str, action: str, resource_part: str = ""
) -> Iterator[None]:
    iam = stack.client("iam")
    role = role_arn.rsplit("/", 1)[1]
    originals = {
        name: iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
        for name in iam.list_role_policies(RoleName=role)["PolicyNames"]
    }
    removed = 0
    for name, document in originals.items():
        stripped, count = _strip(document, action, resource_part)
        if count and stripped["Statement"]:
            iam.put_role_policy(RoleName=role, PolicyName=name, PolicyDocument=json.dumps(stripped))
        elif count:  # nothing left of it: IAM refuses an empty policy
            iam.delete_role_policy(RoleName=role, PolicyName=name)
        removed += count
    assert removed, f"{role} has no {action} on *{resource_part}* to take away"
    try:
        yield
    finally:
        for name, document in originals.items():
            iam.put_role_policy(RoleName=role, PolicyName=name, PolicyDocument=json.dumps(document))


@pytest.fixture(scope="module")
def tenant(api: Api, onboard: Callable[[str, str], dict[str, Any]]) -> dict[str, Any]:
    return onboard(f"iam-{uuid.uuid4().hex[:6]}", "premium")


def _runs(api: Api, tenant_id: str) -> list[dict[str, Any]]:
    return list(api.get(f"/tenants/{tenant_id}/runs").json()["runs"])


def _finished(api: Api, tenant_id: str, count: int) -> dict[str, Any]:
    """The newest run, once ``count`` runs of the tenant have ended."""

    def done() -> dict[str, Any] | None:
        runs = _runs(api, tenant_id)
        ended = [r for r in runs if r["status"] in TERMINAL]
        return runs[0] if len(ended) >= count and runs[0]["status"] in TERMINAL else None

    return wait_for(done, timeout=180, interval=0.5, what=f"{count} ended runs of {tenant_id}")


def _train(stack: EmbeddedStack, api: Api, tenant: dict[str, Any], count: int) -> dict[str, Any]:
    if count == 1:
        stack.client("s3").put_object(
            Bucket=tenant["dataBucket"],
            Key=f"{tenant['dataPrefix']}data.csv",
            Body=tenant_csv(tenant["tenantId"]),
        )
    else:
        response = api.post(f"/tenants/{tenant['tenantId']}/runs")
        assert response.status_code == 202, response.text
    return _finished(api, tenant["tenantId"], count)


# (case id, whose role, action, resource part, failing step shown in failureReason)
CASES = [
    # SageMaker reads the property file (JsonGet) as the *pipeline* role.
    ("pipeline-reads-evaluation", "pipeline", "s3:GetObject", "evaluation.json", "CheckMetric"),
    # ... and preprocess's data report, an argument of the recorder's Lambda step.
    ("pipeline-reads-data-report", "pipeline", "s3:GetObject", "data-report.json", "RecordRun"),
    # The job's data access is the tenant role's.
    ("job-reads-tenant-data", "tenant", "s3:GetObject", "/data/", "Preprocess"),
    # Creating a job passes the tenant role: the pipeline role's iam:PassRole.
    ("pipeline-passes-tenant-role", "pipeline", "iam:PassRole", "/tenants/", "Preprocess"),
    # The Lambda step runs as the recorder's own role.
    ("recorder-writes-the-run", "recorder", "dynamodb:UpdateItem", "runs", "RecordRun"),
]


@pytest.mark.parametrize(
    ("case", "whose", "action", "part", "step"), CASES, ids=[c[0] for c in CASES]
)
def test_a_missing_permission_fails_the_run_with_access_denied_until_restored(
    stack: EmbeddedStack,
    api: Api,
    tenant: dict[str, Any],
    case: str,
    whose: str,
    action: str,
    part: str,
    step: str,
) -> None:
    assert stack.platform is not None
    role = {
        "pipeline": stack.platform.pipeline_role_arn,
        "tenant": tenant["roleArn"],
        "recorder": stack.platform.function_role_arns["recorder"],
    }[whose]
    ended = len([r for r in _runs(api, tenant["tenantId"]) if r["status"] in TERMINAL])
    assert stack.runtime is not None
    seen = len(stack.runtime.invocations)
    with without(stack, role, action, part):
        failed = _train(stack, api, tenant, ended + 1)
    assert failed["status"] == "FAILED", failed
    if whose == "recorder":
        # A Lambda whose call is denied fails as a handler error (logs, Errors metric).
        errors = [i.error for i in stack.runtime.invocations[seen:] if i.function == "recorder"]
        assert any(e and "AccessDeniedException" in e for e in errors), errors
    reason = failed["failureReason"]
    assert f"Step {step} failed" in reason, reason
    assert f"is not authorized to perform: {action}" in reason, reason
    assert failed["modelPackageArn"] is None

    restored = _train(stack, api, tenant, ended + 2)
    assert restored["status"] == "SUCCEEDED", restored
    assert restored["modelPackageArn"]


def test_the_scheduler_without_start_permission_fails_the_run_with_the_reason_until_restored(
    stack: EmbeddedStack, api: Api, onboard: Callable[[str, str], dict[str, Any]]
) -> None:
    """A permission error is not retried for ever (it is configuration, not load): the
    run fails at once with IAM's reason; once the permission is back, runs start."""
    assert stack.platform is not None
    tenant = onboard(f"iam-{uuid.uuid4().hex[:6]}", "standard")
    scheduler = stack.platform.function_role_arns["scheduler"]
    with without(stack, scheduler, "sagemaker:StartPipelineExecution"):
        failed = _train(stack, api, tenant, 1)
    assert failed["status"] == "FAILED", failed
    assert failed["executionArn"] is None
    assert (
        "not authorized to perform: sagemaker:StartPipelineExecution" in failed["failureReason"]
    ), failed
    restored = _train(stack, api, tenant, 2)
    assert restored["status"] == "SUCCEEDED", restored


def test_onboarding_without_passing_the_stack_role_fails_with_access_denied_until_restored(
    stack: EmbeddedStack, api: Api
) -> None:
    assert stack.platform is not None
    tenant_id = f"iam-{uuid.uuid4().hex[:6]}"
    onboarding = stack.platform.function_role_arns["onboarding"]
    with without(stack, onboarding, "iam:PassRole"):
        response = api.post("/tenants", json={"tenantId": tenant_id, "plan": "basic"})
        assert response.status_code in (201, 202), response.text
        body = api.get(f"/tenants/{tenant_id}").json()
        assert body["status"] != "ACTIVE", body
        assert "not authorized to perform: iam:PassRole" in (body["failureReason"] or ""), body
    response = api.post("/tenants", json={"tenantId": tenant_id, "plan": "basic"})
    stack.advance_tenants_now()
    body = wait_for(
        lambda: (b := api.get(f"/tenants/{tenant_id}").json())["status"] == "ACTIVE" and b,
        timeout=30,
        what=f"{tenant_id} ACTIVE",
    )
    assert body["failureReason"] is None
