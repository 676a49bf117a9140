"""Issue 17, items 1 and 8 on the embedded stack (docs/faults.md).

- A run whose failure message is huge (1 MB) ends FAILED with a bounded reason and
  frees its slots, and the reconcile that ends it still dispatches everyone else.
- ``train.CSV`` starts a run (the extension is case-insensitive) and an upload that
  starts none (``customer-list.xlsx``) is shown on the tenant by the API.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from trainyard_core import limits
from trainyard_core.store.runs_dynamodb import DynamoRunRepository

from trainyard.data import tenant_csv
from trainyard.local.observations import all_runs, cap_violations, executions_of
from trainyard.local.stack import EmbeddedStack

from .conftest import Api, wait_for

pytestmark = pytest.mark.integration

TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
TICK = 60.0  # the reconcile schedule's period
MB = 1024 * 1024


@pytest.fixture(autouse=True)
def clean_faults(stack: EmbeddedStack) -> Iterator[None]:
    stack.faults.reset()
    yield
    stack.faults.reset()
    assert cap_violations(all_runs(stack), stack.settings) == []


def _tid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def _repo(stack: EmbeddedStack) -> DynamoRunRepository:
    return DynamoRunRepository(stack.names.runs_table, stack.names.state_table)


def _runs(stack: EmbeddedStack, tenant: str) -> list[dict[str, Any]]:
    return [r.api_dict() for r in _repo(stack).list_runs(tenant, limit=100)[0]]


def _one_run(stack: EmbeddedStack, tenant: str, where: Any, what: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        runs = _runs(stack, tenant)
        return runs[0] if len(runs) == 1 and where(runs[0]) else None

    return wait_for(check, timeout=120, interval=0.3, what=f"{tenant}: {what}")


def _upload(stack: EmbeddedStack, tenant: dict[str, Any], name: str, body: bytes) -> None:
    stack.client("s3").put_object(
        Bucket=tenant["dataBucket"], Key=f"{tenant['dataPrefix']}{name}", Body=body
    )


def test_a_poison_run_with_a_1mb_reason_ends_failed_and_reconcile_still_dispatches_others(
    stack: EmbeddedStack, onboard: Any
) -> None:
    poison_id, other_id = _tid("pz-poison"), _tid("pz-other")
    poison, other = onboard(poison_id, "standard"), onboard(other_id, "standard")
    # A 1 MB failure message (a 1 MB numeric cell quoted back), and its status event
    # lost: only reconcile can end the run, as in the issue.
    stack.faults.fail_step(poison_id, "Preprocess", "ValueError: " + "9" * MB)
    stack.faults.drop_status_events(tenant=poison_id, statuses={"Failed"})
    _upload(stack, poison, "a.csv", tenant_csv(poison_id))
    wait_for(
        lambda: [e for e in executions_of(stack, poison_id) if e.status == "Failed"],
        timeout=120,
        interval=0.3,
        what="the poison execution to fail",
    )
    assert _runs(stack, poison_id)[0]["status"] == "RUNNING"  # holding its slots

    # The other tenant's start is throttled: only the next reconcile retries it.
    stack.faults.fail_starts(1, tenant=other_id)
    _upload(stack, other, "a.csv", tenant_csv(other_id))
    _one_run(stack, other_id, lambda r: r["status"] == "STARTING", "a throttled start")

    # Three ticks: the start's back-off is a few seconds, a tick is a minute.
    for n in range(1, 4):
        with stack.faults.later(TICK * n):
            stack.reconcile_now()

    ended = _runs(stack, poison_id)[0]
    assert ended["status"] == "FAILED"
    assert "Preprocess" in ended["failureReason"]
    assert len(ended["failureReason"]) <= limits.FAILURE_REASON_MAX_CHARS
    counters = _repo(stack).counters()
    assert counters.tenants.get(poison_id, 0) == 0  # its slots are free again
    run = _one_run(stack, other_id, lambda r: r["status"] in TERMINAL, "the other run to end")
    assert run["status"] == "SUCCEEDED", run


def test_an_upper_case_csv_starts_a_run_and_a_non_csv_upload_shows_on_the_tenant(
    stack: EmbeddedStack, api: Api, onboard: Any
) -> None:
    tid = _tid("up-case")
    tenant = onboard(tid, "standard")
    xlsx = b"PK\x03\x04 not a csv at all"
    _upload(stack, tenant, "customer-list.xlsx", xlsx)
    _upload(stack, tenant, "train.CSV", tenant_csv(tid))

    # Intake starts the run and Preprocess reads *.CSV as well: it trains.
    run = _one_run(stack, tid, lambda r: r["status"] in TERMINAL, "the train.CSV run")
    assert run["status"] == "SUCCEEDED", run
    assert [o["key"] for o in run["trigger"]["objects"]] == [f"{tenant['dataPrefix']}train.CSV"]

    def ignored() -> list[dict[str, Any]] | None:
        resp = api.get(f"/tenants/{tid}")
        assert resp.status_code == 200, resp.text
        return resp.json().get("ignoredUploads") or None

    [entry] = wait_for(ignored, timeout=30, what=f"{tid}'s ignored upload")
    assert entry["key"] == f"{tenant['dataPrefix']}customer-list.xlsx"
    assert entry["size"] == len(xlsx)
    assert ".csv" in entry["reason"] and entry["at"]
