"""Settings: defaults, overrides from cdk.json context and a config file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError
from trainyard_core.config import (
    Settings,
    load_project_settings,
    resolve_settings,
    settings_from_env,
)


def test_defaults_offer_three_plans_and_a_global_cap_of_twenty() -> None:
    settings = Settings()
    assert list(settings.plans) == ["basic", "standard", "premium"]
    assert settings.global_max_concurrent_runs == 20
    for plan in settings.plans.values():
        assert plan.training_instance_type in settings.instance_prices_usd_per_hour


def test_a_plan_override_changes_only_what_it_names() -> None:
    settings = resolve_settings({"plans": {"basic": {"maxConcurrentRuns": 2}}})
    assert settings.plans["basic"].max_concurrent_runs == 2
    assert settings.plans["basic"].weight == Settings().plans["basic"].weight
    assert settings.plans["premium"] == Settings().plans["premium"]


def test_snake_case_and_camel_case_overrides_are_equivalent() -> None:
    a = resolve_settings({"global_max_concurrent_runs": 200})
    b = resolve_settings({"globalMaxConcurrentRuns": 200})
    assert a == b and a.global_max_concurrent_runs == 200


def test_cdk_context_then_config_file_then_explicit_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "cdk.json").write_text(
        json.dumps({"app": "x", "context": {"trainyard": {"globalMaxConcurrentRuns": 50}}})
    )
    config_file = tmp_path / "trainyard.json"
    config_file.write_text(json.dumps({"metricThreshold": 0.75}))
    monkeypatch.setenv("TRAINYARD_CONFIG", str(config_file))
    settings = load_project_settings(tmp_path, {"region": "eu-west-1"})
    assert settings.global_max_concurrent_runs == 50
    assert settings.metric_threshold == 0.75
    assert settings.region == "eu-west-1"


def test_a_new_plan_can_be_added_from_config() -> None:
    settings = resolve_settings(
        {
            "plans": {
                "enterprise": {
                    "maxConcurrentRuns": 10,
                    "maxConcurrentRunsPerTenant": 5,
                    "weight": 8,
                    "isolation": "silo",
                    "trainingInstanceType": "ml.m5.4xlarge",
                }
            }
        }
    )
    assert settings.plans["enterprise"].monthly_training_hours is None


@pytest.mark.parametrize(
    "override",
    [
        {"plans": {"basic": {"maxConcurrentRunsPerTenant": 99}}},
        {"plans": {"basic": {"trainingInstanceType": "ml.p5.48xlarge"}}},
        {"defaultPlan": "gold"},
        {"globalMaxConcurrentRuns": 0},
        {"unknownKnob": 1},
    ],
)
def test_inconsistent_config_is_refused_at_synth_time(override: dict) -> None:
    with pytest.raises(ValidationError):
        resolve_settings(override)


def test_lambdas_read_exactly_the_settings_the_deployer_resolved(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    resolved = resolve_settings({"metricThreshold": 0.8})
    monkeypatch.setenv("TRAINYARD_SETTINGS", resolved.to_json())
    assert settings_from_env() == resolved


def test_hyperparameter_and_price_names_are_kept_verbatim() -> None:
    settings = resolve_settings(
        {
            "xgboost": {"hyperparameters": {"num_round": "120"}},
            "instance_prices_usd_per_hour": {"ml.g5.xlarge": 1.4},
        }
    )
    assert settings.xgboost.hyperparameters["num_round"] == "120"
    assert "numRound" not in settings.xgboost.hyperparameters
    assert settings.instance_prices_usd_per_hour["ml.g5.xlarge"] == 1.4
