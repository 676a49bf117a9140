"""What happens around a migration while it is under way, on the embedded stack:
uploads made during it, a run that is running when it starts, an offboarding with
purge in the middle of it, and API requests that must not move data inline."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from trainyard_core.store.runs_dynamodb import DynamoRunRepository
from trainyard_handlers import dependencies

from trainyard.data import tenant_csv
from trainyard.local.stack import EmbeddedStack

from .conftest import Api, wait_for

pytestmark = pytest.mark.integration

TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
# S3 calls that move or remove data: none of them may happen inside an API request.
BULK_CALLS = ("CopyObject", "UploadPartCopy", "DeleteObject", "DeleteObjects", "DeleteBucket")


class S3BulkCalls:
    """Counts the S3 calls that move or remove data, made by any thread but the
    lifecycle schedule's (botocore hooks on the default session the handlers use)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def __call__(self, event_name: str, **_: Any) -> None:
        thread = threading.current_thread().name
        if not thread.startswith("schedule-"):
            with self._lock:
                self.calls.append((thread, event_name.rsplit(".", 1)[-1]))


@contextmanager
def s3_bulk_calls() -> Iterator[S3BulkCalls]:
    if boto3.DEFAULT_SESSION is None:
        boto3.setup_default_session()
    events = boto3.DEFAULT_SESSION.events
    counter = S3BulkCalls()
    for name in BULK_CALLS:
        events.register(f"before-call.s3.{name}", counter, unique_id=f"bulk-count-{name}")
    # Clients copy the session's hooks when created: the API builds new ones now.
    dependencies.reset(*dependencies.ONBOARDING)
    try:
        yield counter
    finally:
        for name in BULK_CALLS:
            events.unregister(f"before-call.s3.{name}", unique_id=f"bulk-count-{name}")
        dependencies.reset(*dependencies.ONBOARDING)


def _keys(stack: EmbeddedStack, bucket: str, prefix: str = "") -> list[str]:
    pages = stack.client("s3").get_paginator("list_objects_v2")
    try:
        return sorted(
            o["Key"]
            for page in pages.paginate(Bucket=bucket, Prefix=prefix)
            for o in page.get("Contents", [])
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "NoSuchBucket":
            return []
        raise


def _runs(api: Api, tenant_id: str) -> list[dict[str, Any]]:
    resp = api.get(f"/tenants/{tenant_id}/runs")
    assert resp.status_code == 200, resp.text
    return resp.json()["runs"]


def _timed(api: Api, method: str, path: str, **kwargs: Any) -> tuple[Any, float]:
    started = time.monotonic()
    resp = api.call(method, path, **kwargs)
    return resp, time.monotonic() - started


def _schedule_until(stack: EmbeddedStack, api: Api, tenant_id: str, done: Any) -> Any:
    """The lifecycle schedule, now and again, until ``done(GET answer)`` holds."""

    def advanced() -> Any:
        stack.advance_tenants_now()
        resp = api.get(f"/tenants/{tenant_id}")
        return done(resp)

    return wait_for(advanced, timeout=60, interval=0.5, what=f"{tenant_id} to advance")


def _put_many(stack: EmbeddedStack, bucket: str, prefix: str, count: int) -> list[str]:
    s3 = stack.client("s3")
    keys = [f"{prefix}part-{i:03d}.bin" for i in range(count)]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"x" * 64)
    return keys


def test_api_requests_on_a_migrating_tenant_with_many_objects_move_no_data_and_answer_at_once(
    stack: EmbeddedStack, api: Api, onboard: Any
) -> None:
    tenant_id = "mig-inline"
    onboard(tenant_id, "basic")
    pool = stack.names.pool_bucket(stack.account_id)
    root = f"tenants/{tenant_id}/"
    moved = _put_many(stack, pool, f"{root}artifacts/old/", 40)

    with s3_bulk_calls() as bulk:
        for method, path, body in (
            ("PATCH", f"/tenants/{tenant_id}", {"plan": "premium"}),
            ("GET", f"/tenants/{tenant_id}", None),
            ("PATCH", f"/tenants/{tenant_id}", {"plan": "premium"}),  # a retry
            ("GET", "/tenants", None),
            ("GET", f"/tenants/{tenant_id}", None),
        ):
            resp, seconds = _timed(api, method, path, json=body)
            assert resp.status_code == 200, (method, path, resp.text)
            assert seconds < 5, (method, path, seconds)
        assert api.get(f"/tenants/{tenant_id}").json()["status"] == "MIGRATING"
        assert bulk.calls == []  # the requests recorded the intent and moved nothing
    assert _keys(stack, pool, root) == moved

    # The lifecycle schedule does the moving.
    _schedule_until(stack, api, tenant_id, lambda r: r.json()["status"] == "ACTIVE")
    silo = stack.names.silo_bucket(tenant_id, stack.account_id)
    assert _keys(stack, silo) == sorted(k.removeprefix(root) for k in moved)
    assert _keys(stack, pool, root) == []


def test_purging_a_tenant_mid_migration_removes_its_data_from_both_places_and_the_id_is_clean(
    stack: EmbeddedStack, api: Api, onboard: Any
) -> None:
    tenant_id = "mig-purge"
    onboard(tenant_id, "basic")
    pool = stack.names.pool_bucket(stack.account_id)
    silo = stack.names.silo_bucket(tenant_id, stack.account_id)
    root = f"tenants/{tenant_id}/"
    keys = _put_many(stack, pool, f"{root}artifacts/old/", 30)
    patched = api.call("PATCH", f"/tenants/{tenant_id}", json={"plan": "premium"})
    assert patched.status_code == 200 and patched.json()["status"] == "MIGRATING", patched.text
    # The move is half done (as a lifecycle run that ran out of time leaves it): the
    # new bucket holds copies of half, the old prefix still holds everything.
    wait_for(lambda: silo in _buckets(stack), timeout=30, what="the silo bucket")
    s3 = stack.client("s3")
    for key in keys[:15]:
        s3.copy_object(
            CopySource={"Bucket": pool, "Key": key}, Bucket=silo, Key=key.removeprefix(root)
        )

    with s3_bulk_calls() as bulk:
        resp, seconds = _timed(api, "DELETE", f"/tenants/{tenant_id}?purge=true")
        assert resp.status_code == 202, resp.text
        assert seconds < 5 and bulk.calls == []  # the purge is the schedule's
    _schedule_until(stack, api, tenant_id, lambda r: r.status_code == 404)

    assert _keys(stack, pool, root) == []
    assert silo not in _buckets(stack)
    # Onboarded again, the id reads nothing of its predecessor.
    again = onboard(tenant_id, "basic")
    assert again["status"] == "ACTIVE"
    assert _keys(stack, pool, root) == []


def _buckets(stack: EmbeddedStack) -> set[str]:
    return {b["Name"] for b in stack.client("s3").list_buckets()["Buckets"]}


def test_uploads_during_a_plan_change_are_all_recorded_and_a_running_run_keeps_its_artifacts(
    stack: EmbeddedStack, api: Api, onboard: Any
) -> None:
    tenant_id = "mig-busy"
    onboard(tenant_id, "basic")
    pool = stack.names.pool_bucket(stack.account_id)
    silo = stack.names.silo_bucket(tenant_id, stack.account_id)
    root = f"tenants/{tenant_id}/"
    s3 = stack.client("s3")
    s3.put_object(Bucket=pool, Key=f"{root}data/first.csv", Body=tenant_csv(tenant_id))
    wait_for(
        lambda: [r["status"] for r in _runs(api, tenant_id)] == ["RUNNING"],
        timeout=60,
        interval=0.2,
        what="the first run running",
    )

    patched = api.call("PATCH", f"/tenants/{tenant_id}", json={"plan": "premium"})
    assert patched.status_code == 200 and patched.json()["status"] == "MIGRATING", patched.text
    uploaded = []
    for i in range(20):
        # Where the API says the data goes while MIGRATING: the old location.
        key = f"{root}data/during-{i:02d}.csv"
        s3.put_object(Bucket=pool, Key=key, Body=tenant_csv(tenant_id, part=i, parts=20))
        uploaded.append(key.removeprefix(root))
        if i == 9:
            stack.advance_tenants_now()  # the schedule runs meanwhile, the run still running

    def first_finished() -> dict[str, Any] | None:
        runs = _runs(api, tenant_id)
        return runs[-1] if runs[-1]["status"] in TERMINAL else None

    first = wait_for(first_finished, timeout=240, interval=1, what="the first run to finish")
    # Its data and artifacts were not moved from under it.
    assert first["status"] == "SUCCEEDED", first
    moved = _schedule_until(
        stack, api, tenant_id, lambda r: (b := r.json())["status"] == "ACTIVE" and b
    )
    assert (moved["dataBucket"], moved["isolation"]) == (silo, "silo")

    # Nothing stayed behind; the first run's model moved with everything else.
    assert _keys(stack, pool, root) == []
    assert any(
        k.startswith("artifacts/") and k.endswith("model.tar.gz") for k in _keys(stack, silo)
    )

    # Every upload S3 accepted is recorded against the tenant, as the object it is now.
    def recorded() -> set[tuple[str, str]] | None:
        found = {
            (o.get("bucket") or "", o["key"])
            for r in _runs(api, tenant_id)
            if r["runId"] != first["runId"]
            for o in r["trigger"]["objects"]
        }
        return found if {(silo, k) for k in uploaded} <= found else None

    found = wait_for(recorded, timeout=30, what="every upload recorded")
    assert found == {(silo, k) for k in uploaded}  # each once, none under the old key
    repo = DynamoRunRepository(stack.names.runs_table, stack.names.state_table)
    rejected = [r for r in repo.list_rejections(200) if tenant_id in f"{r.bucket}/{r.key}"]
    assert rejected == []
