"""The API package's one-home pieces: the route table, the response models, the
handlers' dependencies and the intake queue's wake-up message."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from trainyard_core.intake_queue import IntakeQueue
from trainyard_core.models import Run, Tenant, Trigger
from trainyard_core.wiring import Names
from trainyard_handlers import dependencies, onboarding, recorder, scheduler
from trainyard_handlers.api.models import QueuedRun, RunList, TenantList
from trainyard_handlers.api.routes import ROUTES, gateway_path, gateway_resources

ROOT = Path(__file__).resolve().parents[2]


def test_the_route_table_imports_without_powertools_or_boto3() -> None:
    # The CDK app imports it at synth time, with no credentials.
    code = (
        "import sys; import infra.api; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('boto3', 'botocore', 'aws_lambda_powertools')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_rules_and_gateway_paths_are_the_same_route() -> None:
    for route in ROUTES:
        assert gateway_path(route.rule) == route.path
    assert {r.rule for r in ROUTES if r.operation_id == "getRun"} == {
        "/tenants/<tenant_id>/runs/<run_id>"
    }


def test_gateway_resources_list_every_route_once_in_a_stable_order() -> None:
    resources = gateway_resources()
    assert list(resources) == sorted(resources)
    assert resources["/tenants/{tenantId}"] == ("GET", "PATCH", "DELETE")
    assert sum(len(m) for m in resources.values()) == len(ROUTES)


def _tenant() -> Tenant:
    return Tenant(
        tenant_id="acme",
        plan="basic",
        status="ACTIVE",
        isolation="pool",
        created_at="2026-01-01T00:00:00.000Z",
        updated_at="2026-01-01T00:00:00.000Z",
        version=3,
    )


def test_list_envelopes_carry_the_records_wire_shape_and_omit_a_missing_token() -> None:
    tenant = _tenant()
    assert TenantList(tenants=[tenant]).wire() == {"tenants": [tenant.api_dict()]}
    run = Run(
        run_id="0" * 32,
        tenant_id="acme",
        plan="basic",
        status="QUEUED",
        trigger=Trigger(type="manual"),
        queued_at="2026-01-01T00:00:00.000Z",
        start_attempts=2,
    )
    assert RunList(runs=[run], next_token="t").wire() == {
        "runs": [run.api_dict()],
        "nextToken": "t",
    }
    queued = {
        "runId": "r",
        "tenantId": "acme",
        "queuePosition": None,
        "queuedAt": "t",
        "estimatedStartAt": None,
        "waitingFor": None,
    }
    assert QueuedRun.model_validate(queued).wire() == queued


def test_a_dependency_is_built_once_and_each_handler_resets_only_its_own() -> None:
    built: list[int] = []
    dep = dependencies.Dependency(lambda: built.append(1) or len(built))
    assert (dep(), dep(), built) == (1, 1, [1])
    dep.override(7)
    assert dep() == 7
    dep.reset()
    assert dep() == 2

    sentinel: Any = object()
    dependencies.scheduler_service.override(sentinel)
    dependencies.run_repository.override(sentinel)
    try:
        onboarding.reset_dependencies()
        recorder.reset_dependencies()
        # Loading another handler must not drop what the scheduler's tests installed.
        assert scheduler.get_service() is sentinel
        scheduler.reset_dependencies()
        assert dependencies.scheduler_service._value is not sentinel
    finally:
        scheduler.reset_dependencies()
        recorder.reset_dependencies()


class _Sqs:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def get_queue_url(self, QueueName: str) -> dict[str, str]:
        return {"QueueUrl": f"https://sqs/{QueueName}"}

    def send_message(self, **kwargs: Any) -> None:
        self.sent.append(kwargs)


def test_the_wake_up_goes_to_the_plan_queue_as_the_scheduler_expects_it() -> None:
    sqs = _Sqs()
    IntakeQueue(Names(prefix="ty", plans=("basic",)), client=sqs).request_dispatch("basic")
    (sent,) = sqs.sent
    assert sent["QueueUrl"] == "https://sqs/ty-intake-basic"
    body = json.loads(sent["MessageBody"])
    assert (body["source"], body["detail-type"]) == (
        scheduler.DISPATCH_SOURCE,
        scheduler.DISPATCH_DETAIL_TYPE,
    )
