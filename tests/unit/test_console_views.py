"""What the console's pages make of the API's JSON: issue 15's fields when present,
a dash when absent, and the Timeline's bars and cap lines where the runs were."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from trainyard.console import timeline, views
from trainyard.console.fetch import Result

NOW = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)


def _ts(minutes_ago: float) -> str:
    return (NOW - timedelta(minutes=minutes_ago)).isoformat().replace("+00:00", "Z")


def _run(run_id: str, tenant: str, plan: str, status: str, **times: float) -> dict[str, Any]:
    return {
        "runId": run_id,
        "tenantId": tenant,
        "plan": plan,
        "status": status,
        **{k: _ts(v) for k, v in times.items()},
    }


PLANS = Result(
    data={
        "plans": [
            {"name": "basic", "weight": 1, "maxConcurrentRuns": 4},
            {"name": "premium", "weight": 4, "maxConcurrentRuns": 12},
        ],
        "globalMaxConcurrentRuns": 20,
    }
)


def test_a_queued_run_shows_why_it_waits_and_when_it_should_start() -> None:
    queue = Result(
        data={
            "basic": {
                "queued": 2,
                "running": 4,
                "cap": 4,
                "runs": [
                    {
                        "runId": "r1",
                        "tenantId": "acme",
                        "queuePosition": 1,
                        "queuedAt": _ts(3),
                        "waitingFor": {"code": "PLAN_CAP", "message": "plan basic is full"},
                        "estimatedStartAt": _ts(-2),
                    },
                    # An API from before issue 15: only the older free-text reason.
                    {
                        "runId": "r2",
                        "tenantId": "b",
                        "queuePosition": 2,
                        "queuedAt": _ts(1),
                        "waitingReason": "tenant suspended",
                    },
                ],
            }
        }
    )
    page = views.queue_page(queue, PLANS, NOW)
    (basic,) = page["sections"]
    first, second = basic["waiting"]
    assert (first["waitingCode"], first["waitingMessage"]) == ("PLAN_CAP", "plan basic is full")
    assert first["estimatedStart"].startswith("in 2m 00s")
    assert (second["waitingCode"], second["waitingMessage"]) == ("—", "tenant suspended")
    assert second["estimatedStart"] == "—"  # the field is absent
    assert basic["share"] == "4.0"  # 20 x 1/5
    assert (page["running"], page["queued"], page["globalCap"]) == (4, 2, "20")


def test_an_estimate_the_api_cannot_make_reads_unknown() -> None:
    assert views.estimated_start({"estimatedStartAt": None}, NOW) == "unknown"


def test_usage_against_the_budget() -> None:
    usage = Result(data={"trainingHours": 2.5, "budgetHours": 10, "costEstimateUsd": 1.234})
    assert views.budget(usage) == {
        "text": "2.50 h of 10.00 h (25.0%)",
        "percent": 25.0,
        "cost": "$1.23",
    }
    unlimited = Result(data={"trainingHours": 1, "budgetHours": None, "costEstimateUsd": 0.001})
    assert views.budget(unlimited)["text"] == "1.00 h of unlimited"
    assert views.budget(unlimited)["cost"] == "$0.0010"


def test_a_missing_route_says_not_available_and_a_denial_says_denied() -> None:
    absent = Result(status=403, code="Http403", message="Missing Authentication Token")
    assert absent.absent and views.model_count(absent) == "not available on this API"
    denied = Result(status=403, code="Http403", message="The security token is invalid.")
    assert not denied.absent and "denied the console's credentials" in denied.describe()
    assert views.model_count(Result(data={"models": [{}, {}], "nextToken": "x"})) == "2+"
    assert not Result(status=404, code="TenantNotFound", message="no").absent


def test_timeline_has_a_bar_per_run_a_wait_outline_and_the_cap_line() -> None:
    runs = [
        _run("ok1", "acme", "basic", "SUCCEEDED", queuedAt=50, startedAt=45, endedAt=20),
        _run("run1", "acme", "basic", "RUNNING", queuedAt=15, startedAt=10),
        _run("wait1", "beta", "basic", "QUEUED", queuedAt=5),
        _run("old", "beta", "basic", "FAILED", queuedAt=600, startedAt=590, endedAt=580),
    ]
    drawn = timeline.build(runs, {"basic": 4, "premium": 12}, NOW, hours=1)
    basic = next(p for p in drawn["plans"] if p["name"] == "basic")
    bars = {b["runId"]: b for b in basic["bars"]}
    assert set(bars) == {"ok1", "run1", "wait1"}  # the old run ended before the window
    # acme's runs did not overlap: one row; beta's one run: one row.
    assert [r["tenantId"] for r in basic["rows"]] == ["acme", "beta"]
    ok, running, waiting = bars["ok1"], bars["run1"], bars["wait1"]
    assert ok["x"] < running["x"] and ok["x"] + ok["w"] < running["x"]  # ended before
    assert running["x"] + running["w"] == timeline.WIDTH - timeline.RIGHT  # runs until now
    assert waiting["x"] is None and waiting["qw"] > 0  # waiting: outline only
    assert "QUEUED" in waiting["label"] and "beta" in waiting["label"]
    # One running at most in this window: the cap line of 4 sits above the curve.
    assert basic["strip"]["peak"] == 1 and basic["strip"]["capY"] < basic["strip"]["baseY"]
    premium = next(p for p in drawn["plans"] if p["name"] == "premium")
    assert premium["empty"] and premium["cap"] == 12


def test_a_run_waiting_behind_a_running_one_gets_a_lane_of_its_own() -> None:
    runs = [
        _run("first", "acme", "basic", "RUNNING", queuedAt=10, startedAt=9),
        _run("second", "acme", "basic", "QUEUED", queuedAt=5),
    ]
    (basic,) = timeline.build(runs, {"basic": 4}, NOW, hours=1)["plans"]
    assert [r["tenantId"] for r in basic["rows"]] == ["acme", ""]
    first, second = sorted(basic["bars"], key=lambda b: b["y"])
    assert (first["runId"], second["runId"]) == ("first", "second")
    assert second["y"] - first["y"] == timeline.ROW


def test_the_automatic_window_zooms_to_recent_runs() -> None:
    runs = [_run("a", "acme", "basic", "SUCCEEDED", queuedAt=1, startedAt=0.8, endedAt=0.5)]
    assert timeline.auto_hours(runs, NOW) * 60 == 2  # at least two minutes
    runs.append(_run("b", "acme", "basic", "SUCCEEDED", queuedAt=60, startedAt=50, endedAt=40))
    assert 60 < timeline.auto_hours(runs, NOW) * 60 < 70
    assert timeline.auto_hours([], NOW) * 60 == 2


def _trained(problem_type: str, metrics: dict[str, float]) -> dict[str, Any]:
    run = _run("r-" + problem_type, "acme", "basic", "SUCCEEDED", queuedAt=5, startedAt=4)
    training = {"algorithm": "random-forest", "problemType": problem_type}
    training |= {"instanceType": "ml.m5.large", "instanceCount": 1}
    return run | {"metrics": metrics, "training": training, "instanceType": "ml.m5.xlarge",
                  "instanceCount": 2, "dataReport": {"rows": 1200, "columns": 8}}  # fmt: skip


def test_each_problem_types_run_shows_its_primary_metric_by_name() -> None:
    binary = views.run_row(_trained("binary", {"auc": 0.9312}), NOW)
    multi = views.run_row(_trained("multiclass", {"macro_f1": 0.71, "accuracy": 0.8}), NOW)
    reg = views.run_row(_trained("regression", {"r2": 0.874, "rmse": 1.2}), NOW)
    assert binary["primaryMetric"] == "AUC 0.931"
    assert multi["primaryMetric"] == "macro-F1 0.710 (accuracy 0.800)"
    assert reg["primaryMetric"] == "R² 0.874 (RMSE 1.200)"
    # The instance type the run was sized to at dispatch, its algorithm and data.
    assert (reg["instance"], reg["algorithm"]) == ("2 x ml.m5.xlarge", "random-forest")
    assert reg["data"] == "1,200 rows, 8 columns"
    # Columns changed since the tenant's last successful run (schema drift, warn).
    drifted = _trained("binary", {"auc": 0.9})
    drifted["dataReport"]["schemaDrift"] = {
        "drifted": True, "added": ["f9"], "removed": ["f1"], "removedOmitted": 2,
        "reordered": True,
    }  # fmt: skip
    row = views.run_row(drifted, NOW)
    assert row["data"] == "1,200 rows, 8 columns, columns changed: +1 -3 reordered"
    # A run from before per-tenant training settings: binary, AUC not yet known.
    old = views.run_row(_run("r0", "acme", "basic", "RUNNING", queuedAt=2), NOW)
    assert (old["primaryMetric"], old["instance"], old["data"]) == ("AUC —", "—", "—")


def test_tenant_supplied_hyperparameters_and_reasons_are_escaped_on_the_page() -> None:
    from trainyard.console.pages import Page
    from trainyard.console.server import Console

    tenant = {
        "tenantId": "acme",
        "status": "ACTIVE",
        "training": {
            "algorithm": "auto",
            "problemType": "regression",
            "hyperparameters": {"<b>k": "<script>x</script>"},
        },
        "retrain": {"every": "P7D", "nextDueAt": _ts(-60)},
    }
    run = _trained("regression", {"r2": 0.5}) | {"failureReason": "<img src=x onerror=1>"}
    page = Page("tenants", "Tenant acme", "tenant.html")
    page.context = {
        "tenantId": "acme", "tenant": tenant, "training": views.training_settings(tenant),
        "budget": {"text": "—", "percent": None, "cost": "—"}, "runs": [views.run_row(run, NOW)],
        "models": [], "deliveries": [], "webhook": "none set",
    }  # fmt: skip
    html = Console("http://127.0.0.1:1").render(page, fragment=True)
    assert "<script>" not in html and "<img" not in html and "<b>k" not in html
    assert "&lt;b&gt;k=&lt;script&gt;x&lt;/script&gt;" in html
    assert "every P7D" in html and "R² 0.500" in html


def test_the_plans_page_shows_each_plans_sizing_rules_by_input_data() -> None:
    plans = Result(
        {
            "plans": [
                {"name": "basic", "maxConcurrentRuns": 4, "trainingInstanceType": "ml.m5.large"},
                {
                    "name": "premium",
                    "maxConcurrentRuns": 12,
                    "trainingInstanceType": "ml.m5.2xlarge",
                    "sizing": [
                        {"minBytes": 0, "instanceType": "ml.m5.large", "instanceCount": 1},
                        {"minBytes": 1024**3, "instanceType": "ml.m5.4xlarge", "instanceCount": 2},
                    ],
                },
            ]
        }
    )
    rows = {r["name"]: r for r in views.plan_rows(plans)}
    assert rows["basic"]["sizing"] == views.DASH
    assert rows["premium"]["sizing"] == (
        "from 0 B: 1 x ml.m5.large; from 1.0 GiB: 2 x ml.m5.4xlarge"
    )


def test_the_plans_page_lists_the_training_catalog_and_how_auto_picks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from trainyard_core.config import Settings
    from trainyard_handlers import dependencies
    from trainyard_handlers.api.algorithms import list_algorithms

    from trainyard.console.pages import Page
    from trainyard.console.server import Console

    # The API's own answer for the default settings (not whatever an earlier test
    # of this worker left in the environment).
    monkeypatch.setattr(dependencies, "settings", Settings)
    answer = list_algorithms()
    catalog = Result(answer)
    rows = {r["name"]: r for r in views.algorithm_rows(catalog)}
    plans = {a["name"]: ", ".join(a["plans"]) for a in answer["algorithms"]}
    assert set(rows) == {"xgboost", "linear", "random-forest"}
    assert rows["xgboost"]["image"] == "xgboost 1.7-1"
    assert rows["linear"]["image"] == "sklearn 1.2-1"
    assert rows["random-forest"]["plans"] == plans["random-forest"] != ""
    assert rows["linear"]["problemTypes"] == "binary, multiclass, regression"
    assert "eta=0.2 (0.001..1)" in rows["xgboost"]["hyperparameters"]
    assert views.auto_rule_text(catalog) == "up to 1.0 MiB: linear; larger: xgboost"
    page = Page("plans", "Plans", "plans.html")
    page.context = {"rows": [], "algorithms": list(rows.values()), "autoRule": "x"}
    html = Console("http://127.0.0.1:1").render(page, fragment=True)
    assert 'data-algorithm="random-forest"' in html and "Algorithms" in html
    # The API unreachable: no table, the page says so elsewhere (errors).
    assert views.algorithm_rows(Result(None, status=503)) == []


def test_the_run_page_shows_what_it_trained_with_its_data_lineage_and_retries() -> None:
    from trainyard.console import run_view
    from trainyard.console.pages import Page
    from trainyard.console.server import Console

    run = _trained("binary", {"auc": 0.93})
    run["training"] |= {
        "chosenBy": {"mode": "auto", "inputBytes": 4096, "thresholdBytes": 1048576},
        "hyperparameters": {"C": "1.0", "<b>x": "<script>y</script>"},
        "imageUri": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1",
        "volumeSizeGb": 30,
        "metricThreshold": 0.6,
        "schemaDrift": "warn",
        "schemaBaselineRunId": "r-prev",
    }
    run["dataReport"] |= {
        "classBalance": {"0": 600, "1": 600},
        "schemaDrift": {"baseline": True, "baselineRunId": "r-prev", "drifted": True,
                        "added": ["f9"], "removed": [], "reordered": False, "mode": "warn"},
    }  # fmt: skip
    run["lineage"] = {
        "definitionVersion": "sha256:abc123",
        "inputsDigest": "d1g3st",
        "inputs": [{"key": "data/<img>.csv", "etag": "e1", "size": 10, "versionId": "v1"}],
        "inputsOmitted": 0,
    }
    run["retries"] = [{"attempt": 1, "requestedAt": "2026-03-10T11:00:00Z", "mode": "RESUMED"}]
    detail = run_view.run_detail(run, NOW)
    training = {p["label"]: p["value"] for p in detail["training"]}
    assert training["Chosen by"] == "auto: 4096 bytes of input (rule up to 1048576 bytes)"
    assert training["Image"].endswith("sagemaker-scikit-learn:1.2-1")
    assert training["Schema baseline run"] == "r-prev"
    data = {p["label"]: p["value"] for p in detail["data"]}
    assert data["Class balance"] == "0: 600, 1: 600"
    assert data["Columns changed"] == "added f9 since run r-prev (warn)"
    lineage = {p["label"]: p["value"] for p in detail["lineage"]}
    assert lineage["Pipeline definition version"] == "sha256:abc123"
    assert detail["inputs"][0]["version"] == "v1"
    assert {p["label"]: p["value"] for p in detail["retries"][0]}["How"] == "RESUMED"

    page = Page("tenants", "Run", "run.html")
    page.context = {"tenantId": "acme", "runId": "r-binary", "detail": detail}
    html = Console("http://127.0.0.1:1").render(page, fragment=True)
    assert "<script>" not in html and "<img>" not in html and "<b>x" not in html
    assert "&lt;b&gt;x=&lt;script&gt;y&lt;/script&gt;" in html
    assert "sha256:abc123" in html and "Retry 1" in html
