"""Schema drift on the embedded stack: a tenant whose columns changed since its last
successful run is told so in the run's dataReport (warn, the default) or its run fails
in preprocess, before any training job, with what changed (fail); one run can accept
the new columns. The baseline reaches the job as a processing input read with the
tenant's role (IAM enforced), the first run's as the platform's no-baseline marker."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest

from trainyard.local.stack import EmbeddedStack

from .conftest import Api, wait_for

pytestmark = pytest.mark.integration

TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


def _csv(columns: list[str], rows: int = 240, seed: int = 5) -> bytes:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, len(columns))).round(4)
    y = (x[:, 0] - x[:, 1] + rng.normal(scale=0.3, size=rows) > 0).astype(int)
    out = io.StringIO()
    out.write(",".join([*columns, "label"]) + "\n")
    np.savetxt(out, np.column_stack([x, y]), fmt=["%.4f"] * len(columns) + ["%d"], delimiter=",")
    return out.getvalue().encode()


def _run(api: Api, tenant_id: str, after: set[str]) -> dict[str, Any]:
    """The tenant's first terminal run not in ``after``."""

    def terminal() -> dict[str, Any] | None:
        runs = api.get(f"/tenants/{tenant_id}/runs").json()["runs"]
        return next((r for r in runs if r["status"] in TERMINAL and r["runId"] not in after), None)

    return wait_for(terminal, timeout=300, interval=2, what=f"a new run of {tenant_id}")


def test_drifted_columns_are_reported_or_fail_before_training_by_the_tenants_setting(
    stack: EmbeddedStack, api: Api, onboard: Any
) -> None:
    tenants = {name: onboard(name, "basic") for name in ("sd-strict", "sd-lenient")}
    resp = api.call("PATCH", "/tenants/sd-strict", json={"training": {"schemaDrift": "fail"}})
    assert resp.status_code == 200, resp.text
    assert resp.json()["training"]["schemaDrift"] == "fail"
    bad = api.call("PATCH", "/tenants/sd-strict", json={"training": {"schemaDrift": "maybe"}})
    assert bad.status_code == 400 and "schemaDrift" in bad.text

    s3 = stack.client("s3")

    def upload(name: str, columns: list[str]) -> None:
        tenant = tenants[name]
        key = f"{tenant['dataPrefix']}data.csv"  # the same file, new columns
        s3.put_object(Bucket=tenant["dataBucket"], Key=key, Body=_csv(columns))

    for name in tenants:
        upload(name, ["f0", "f1", "f2"])
    first = {name: _run(api, name, set()) for name in tenants}
    for run in first.values():
        assert run["status"] == "SUCCEEDED", run
        assert run["training"]["schemaBaselineRunId"] is None
        assert run["dataReport"]["schemaDrift"]["baseline"] is False

    for name in tenants:
        upload(name, ["f0", "f1", "f3"])  # f2 renamed to f3
    second = {name: _run(api, name, {first[name]["runId"]}) for name in tenants}

    strict = second["sd-strict"]
    assert strict["status"] == "FAILED", strict
    assert strict["training"]["schemaDrift"] == "fail"
    assert strict["training"]["schemaBaselineRunId"] == first["sd-strict"]["runId"]
    reason = strict["failureReason"]
    assert (
        "the columns changed since the tenant's last successful run "
        f"(run {first['sd-strict']['runId']})" in reason
    )
    assert "training.schemaDrift 'warn'" in reason  # how to accept them
    assert "added ['f3']" in reason and "removed ['f2']" in reason
    result = stack.engine.result(strict["executionArn"])
    # Failed in preprocess: no training job was started (or paid for).
    assert [(s.name, s.status) for s in result.steps] == [("Preprocess", "Failed")]

    lenient = second["sd-lenient"]
    assert lenient["status"] == "SUCCEEDED", lenient
    drift = lenient["dataReport"]["schemaDrift"]
    assert drift == {
        "mode": "warn",
        "baseline": True,
        "baselineRunId": first["sd-lenient"]["runId"],
        "drifted": True,
        "added": ["f3"],
        "removed": ["f2"],
        "reordered": False,
    }

    # The strict tenant accepts the new columns for one run; the failed run in
    # between is no baseline, its last success still is.
    resp = api.post("/tenants/sd-strict/runs", json={"training": {"schemaDrift": "warn"}})
    assert resp.status_code == 202, resp.text
    accepted = _run(api, "sd-strict", {first["sd-strict"]["runId"], strict["runId"]})
    assert accepted["status"] == "SUCCEEDED", accepted
    assert accepted["training"]["schemaBaselineRunId"] == first["sd-strict"]["runId"]
    assert accepted["dataReport"]["schemaDrift"]["drifted"] is True
    tenant = api.get("/tenants/sd-strict").json()
    assert tenant["training"]["schemaDrift"] == "fail"  # the tenant's setting is unchanged
