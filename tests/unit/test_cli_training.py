"""`trainyard algorithms`, `tenants update --algorithm ...`, `train --algorithm ...`."""

from __future__ import annotations

import json

from tests.unit.test_cli import TENANT, Routes, api, invoke  # noqa: F401  (fixture)


def test_algorithms_lists_the_catalog_with_ranges_plans_and_how_auto_picks(
    api: tuple[str, Routes],  # noqa: F811
) -> None:
    url, routes = api
    routes.table[("GET", "/algorithms")] = (
        200,
        {
            "algorithms": [
                {
                    "name": "xgboost",
                    "description": "",
                    "framework": "xgboost",
                    "frameworkVersion": "1.7-1",
                    "problemTypes": ["binary", "regression"],
                    "hyperparameters": {
                        "eta": {"type": "float", "default": 0.2, "min": 0.001, "max": 1}
                    },
                    "plans": ["premium"],
                }
            ],
            "auto": {"rules": [{"maxBytes": 1048576, "algorithm": "linear"}], "default": "xgboost"},
            "default": {"algorithm": "xgboost", "problemType": "binary"},
        },
    )
    result = invoke(url, "algorithms")
    assert result.exit_code == 0, result.output
    for text in ("xgboost 1.7-1", "eta=0.2", "(0.001..1)", "premium", "<= 1 MiB: linear"):
        assert text in result.output


def test_update_sends_the_training_choice_with_hyperparameters_as_given(
    api: tuple[str, Routes],  # noqa: F811
) -> None:
    url, routes = api
    routes.table[("PATCH", "/tenants/acme")] = (200, TENANT)
    result = invoke(
        url,
        "tenants",
        "update",
        "acme",
        "--algorithm",
        "xgboost",
        "--problem-type",
        "regression",
        "--hyperparameter",
        "eta=0.3",
        "--hyperparameter",
        "num_round=80",
        "--schema-drift",
        "fail",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(routes.seen[0][2]) == {
        "training": {
            "algorithm": "xgboost",
            "problemType": "regression",
            "hyperparameters": {"eta": "0.3", "num_round": "80"},
            "schemaDrift": "fail",
        }
    }


def test_a_hyperparameter_without_a_value_is_refused_before_calling_the_api(
    api: tuple[str, Routes],  # noqa: F811
) -> None:
    url, routes = api
    result = invoke(url, "tenants", "update", "acme", "--hyperparameter", "eta")
    assert result.exit_code == 1 and result.stderr.startswith("error InvalidHyperparameter:")
    assert routes.seen == []


def test_train_sends_this_runs_algorithm(api: tuple[str, Routes]) -> None:  # noqa: F811
    url, routes = api
    routes.table[("POST", "/tenants/acme/runs")] = (
        202,
        {"runId": "0190aaaabbbbccccddddeeeeffff0009", "tenantId": "acme", "status": "QUEUED"},
    )
    result = invoke(url, "train", "acme", "--algorithm", "auto")
    assert result.exit_code == 0, result.output
    assert json.loads(routes.seen[0][2]) == {"training": {"algorithm": "auto"}}
