"""Training choices: catalog validation, auto by data volume, instance sizing, dispatch."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from trainyard_core.clock import VirtualClock
from trainyard_core.config import Settings, resolve_settings
from trainyard_core.models import RunStatus
from trainyard_core.scheduling.service import SchedulerService
from trainyard_core.store.runs_memory import InMemoryRunRepository
from trainyard_core.store.tenants import InMemoryTenantRepository
from trainyard_core.training import (
    TrainingChoice,
    TrainingError,
    instance_sizing,
    pick_auto,
    resolve_run_training,
    validate_choice,
)

from trainyard.testing.scheduling import FakePipeline, RecordingMetrics, make_tenant

SETTINGS = Settings()
MIB = 1024**2


def _error(choice: dict, plan: str = "basic", settings: Settings = SETTINGS) -> TrainingError:
    with pytest.raises(TrainingError) as caught:
        validate_choice(settings, plan, TrainingChoice.model_validate(choice))
    return caught.value


# --- validation


def test_an_unknown_algorithm_is_refused_naming_the_field() -> None:
    error = _error({"algorithm": "deep-net"})
    assert (error.code, error.field) == ("UnknownAlgorithm", "training.algorithm")


def test_an_algorithm_outside_the_tenants_plan_is_refused() -> None:
    settings = resolve_settings({"algorithms": {"random-forest": {"plans": ["premium"]}}})
    error = _error({"algorithm": "random-forest"}, plan="basic", settings=settings)
    assert (error.code, error.field) == ("AlgorithmNotAllowed", "training.algorithm")
    validate_choice(settings, "premium", TrainingChoice(algorithm="random-forest"))


def test_the_default_algorithm_must_be_open_to_every_plan() -> None:
    with pytest.raises(ValidationError, match="defaultTraining"):
        resolve_settings({"algorithms": {"xgboost": {"plans": ["premium"]}}})


def test_a_problem_type_alone_is_checked_against_the_default_algorithm() -> None:
    settings = resolve_settings({"algorithms": {"xgboost": {"problemTypes": ["binary"]}}})
    error = _error({"problemType": "regression"}, settings=settings)
    assert (error.code, error.field) == ("ProblemTypeNotSupported", "training.problemType")


def test_a_problem_type_the_algorithm_does_not_solve_is_refused() -> None:
    settings = resolve_settings({"algorithms": {"linear": {"problemTypes": ["regression"]}}})
    error = _error({"algorithm": "linear", "problemType": "binary"}, settings=settings)
    assert (error.code, error.field) == ("ProblemTypeNotSupported", "training.problemType")


def test_an_unknown_hyperparameter_is_refused_naming_it() -> None:
    error = _error({"algorithm": "xgboost", "hyperparameters": {"n_estimators": 10}})
    assert error.code == "UnknownHyperparameter"
    assert error.field == "training.hyperparameters.n_estimators"


@pytest.mark.parametrize("value", [0, 1001, 2.5, "fifty", True, "1e400"], ids=repr)
def test_an_integer_hyperparameter_out_of_range_or_of_the_wrong_type_is_refused(
    value: object,
) -> None:
    error = _error({"algorithm": "xgboost", "hyperparameters": {"num_round": value}})
    assert error.code == "InvalidHyperparameter"
    assert error.field == "training.hyperparameters.num_round"


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_a_float_hyperparameter_is_accepted_exactly_within_its_range(value: float) -> None:
    spec = SETTINGS.algorithms["xgboost"].hyperparameters["eta"]
    choice = TrainingChoice(algorithm="xgboost", hyperparameters={"eta": value})
    inside = spec.min is not None and spec.max is not None and spec.min <= value <= spec.max
    if inside:
        stored = validate_choice(SETTINGS, "basic", choice).hyperparameters
        assert stored == {"eta": str(value)}
    else:
        with pytest.raises(TrainingError) as caught:
            validate_choice(SETTINGS, "basic", choice)
        assert caught.value.field == "training.hyperparameters.eta"


@given(st.integers(min_value=-(10**6), max_value=10**6))
def test_an_integer_hyperparameter_is_accepted_exactly_within_its_range(value: int) -> None:
    choice = TrainingChoice(algorithm="random-forest", hyperparameters={"n_estimators": value})
    if 1 <= value <= 1000:
        assert validate_choice(SETTINGS, "basic", choice).hyperparameters == {
            "n_estimators": str(value)
        }
    else:
        with pytest.raises(TrainingError):
            validate_choice(SETTINGS, "basic", choice)


def test_numbers_given_as_strings_are_stored_canonically() -> None:
    choice = TrainingChoice(algorithm="xgboost", hyperparameters={"num_round": "80", "eta": 0.5})
    stored = validate_choice(SETTINGS, "basic", choice)
    assert stored.hyperparameters == {"num_round": "80", "eta": "0.5"}


def test_a_new_algorithm_drops_the_old_ones_hyperparameters_and_others_merge() -> None:
    base = validate_choice(
        SETTINGS, "basic", TrainingChoice(algorithm="xgboost", hyperparameters={"eta": 0.3})
    )
    merged = validate_choice(
        SETTINGS, "basic", TrainingChoice(hyperparameters={"max_depth": 6}), base=base
    )
    assert merged.hyperparameters == {"eta": "0.3", "max_depth": "6"}
    switched = validate_choice(SETTINGS, "basic", TrainingChoice(algorithm="linear"), base=merged)
    assert switched.algorithm == "linear" and not switched.hyperparameters


def test_auto_accepts_only_hyperparameters_every_algorithm_it_may_pick_knows() -> None:
    error = _error({"algorithm": "auto", "hyperparameters": {"eta": 0.1}})
    assert error.code == "UnknownHyperparameter"


def test_a_catalog_default_outside_its_own_range_is_a_settings_error() -> None:
    with pytest.raises(ValidationError, match="at most"):
        resolve_settings(
            {
                "algorithms": {
                    "xgboost": {
                        "hyperparameters": {"eta": {"type": "float", "default": 2, "max": 1}}
                    }
                }
            }
        )


def test_an_auto_rule_naming_no_catalog_entry_is_a_settings_error() -> None:
    with pytest.raises(ValidationError, match="not in the catalog"):
        resolve_settings({"autoAlgorithm": {"rules": [{"maxBytes": 10, "algorithm": "nope"}]}})


# --- auto and sizing


def test_auto_picks_the_small_data_algorithm_up_to_its_threshold_and_xgboost_above() -> None:
    small, how = pick_auto(SETTINGS, "basic", "binary", MIB)
    assert small.name == "linear"
    assert how.mode == "auto" and how.input_bytes == MIB and how.threshold_bytes == MIB
    large, how = pick_auto(SETTINGS, "basic", "binary", MIB + 1)
    assert large.name == "xgboost" and how.input_bytes == MIB + 1


def test_auto_skips_a_rule_whose_algorithm_the_plan_may_not_use() -> None:
    settings = resolve_settings({"algorithms": {"linear": {"plans": ["premium"]}}})
    assert pick_auto(settings, "basic", "binary", 10)[0].name == "xgboost"
    assert pick_auto(settings, "premium", "binary", 10)[0].name == "linear"


SIZED = resolve_settings(
    {
        "instancePricesUsdPerHour": {"ml.m5.4xlarge": 0.922},
        "plans": {
            "basic": {
                "sizing": [
                    {"minBytes": 10 * MIB, "instanceType": "ml.m5.xlarge"},
                    {
                        "minBytes": 100 * MIB,
                        "instanceType": "ml.m5.4xlarge",
                        "instanceCount": 2,
                        "volumeSizeGb": 200,
                    },
                ]
            }
        },
    }
)


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (0, ("ml.m5.large", 1, 30)),
        (10 * MIB - 1, ("ml.m5.large", 1, 30)),
        (10 * MIB, ("ml.m5.xlarge", 1, 30)),
        (100 * MIB, ("ml.m5.4xlarge", 2, 200)),
    ],
)
def test_sizing_rules_pick_the_instance_by_the_runs_input_bytes(
    size: int, expected: tuple[str, int, int]
) -> None:
    assert instance_sizing(SIZED.plan("basic"), size) == expected


def test_without_rules_every_run_trains_on_the_plans_instance() -> None:
    plan = SETTINGS.plan("standard")
    assert instance_sizing(plan, 10**12) == ("ml.m5.xlarge", 1, 30)


def test_sizing_rules_must_be_ascending_and_priced() -> None:
    rules = [{"minBytes": 5, "instanceType": "ml.m5.xlarge"}]
    with pytest.raises(ValidationError, match="ascending"):
        resolve_settings({"plans": {"basic": {"sizing": rules * 2}}})
    unpriced = [{"minBytes": 5, "instanceType": "ml.p4d.24xlarge"}]
    with pytest.raises(ValidationError, match="no price"):
        resolve_settings({"plans": {"basic": {"sizing": unpriced}}})


def test_a_run_records_the_effective_hyperparameters_and_threshold() -> None:
    tenant = TrainingChoice(algorithm="random-forest", problem_type="regression")
    run = TrainingChoice(hyperparameters={"n_estimators": 7})
    training = resolve_run_training(SETTINGS, SETTINGS.plan("basic"), tenant, run, 123)
    assert training.algorithm == "random-forest" and training.chosen_by.mode == "explicit"
    assert training.hyperparameters == {
        "n_estimators": "7",
        "max_depth": "0",
        "min_samples_leaf": "1",
    }
    assert json.loads(training.hyperparameters_json(SETTINGS)) == {
        "n_estimators": 7,
        "max_depth": 0,
        "min_samples_leaf": 1,
    }
    assert training.metric_threshold == SETTINGS.metric_thresholds["regression"]


# --- dispatch


def _scheduler(settings: Settings):
    runs, tenants, pipeline = InMemoryRunRepository(), InMemoryTenantRepository(), FakePipeline()
    clock = VirtualClock(datetime(2026, 3, 10, 12, 0, tzinfo=UTC))
    service = SchedulerService(
        settings, runs, tenants, pipeline, clock=clock, metrics=RecordingMetrics()
    )
    return service, runs, tenants, pipeline, clock


def test_dispatch_sizes_and_prices_each_run_by_its_uploads() -> None:
    service, runs, tenants, pipeline, clock = _scheduler(SIZED)
    recorded = {}
    for tenant_id, size in (("small", 1000), ("large", 150 * MIB)):
        tenant = make_tenant(tenant_id, "basic")
        tenants.create(tenant)
        result = service.handle_upload(
            str(tenant.data_bucket), "data/train.csv", etag="e", size=size, version_id="v"
        )
        assert result.run
        recorded[tenant_id] = result.run
    service.dispatch()
    clock.advance(3600)
    for tenant_id, run in recorded.items():
        current = runs.get_run(tenant_id, run.run_id)
        assert current and current.execution_arn
        pipeline.set_status(current.execution_arn, "Succeeded", None)
        service.handle_status(current.execution_arn, "Succeeded", display_name=current.display_name)
    small = runs.get_run("small", recorded["small"].run_id)
    large = runs.get_run("large", recorded["large"].run_id)
    assert small and large and small.status == large.status == RunStatus.SUCCEEDED
    assert (small.instance_type, small.instance_count) == ("ml.m5.large", 1)
    assert (large.instance_type, large.instance_count) == ("ml.m5.4xlarge", 2)
    assert large.training and large.training.volume_size_gb == 200
    assert small.cost_estimate_usd == pytest.approx(0.115)
    assert large.cost_estimate_usd == pytest.approx(2 * 0.922)
    params = pipeline.executions[str(large.execution_arn)].parameters
    assert params["TrainingInstanceType"] == "ml.m5.4xlarge"
    assert params["TrainingInstanceCount"] == "2" and params["TrainingVolumeSizeInGB"] == "200"


def test_a_stored_choice_the_plan_no_longer_allows_fails_the_start_with_the_reason() -> None:
    settings = resolve_settings({"algorithms": {"linear": {"plans": ["premium"]}}})
    service, runs, tenants, _, _ = _scheduler(settings)
    tenant = make_tenant("acme", "basic").model_copy(
        update={"training": TrainingChoice(algorithm="linear")}
    )
    tenants.create(tenant)
    result = service.handle_upload(
        str(tenant.data_bucket), "data/a.csv", etag="e", size=5, version_id="v"
    )
    assert result.run
    service.dispatch()
    run = runs.get_run("acme", result.run.run_id)
    assert run and run.status == RunStatus.FAILED
    assert "not available on plan 'basic'" in str(run.failure_reason)


def test_a_manual_runs_own_choice_wins_and_joins_a_queued_run() -> None:
    service, runs, tenants, pipeline, _ = _scheduler(SETTINGS)
    tenant = make_tenant("acme", "basic").model_copy(
        update={"training": TrainingChoice(algorithm="xgboost")}
    )
    tenants.create(tenant)
    queued = service.handle_upload(
        str(tenant.data_bucket), "data/a.csv", etag="e", size=5, version_id="v"
    )
    own = TrainingChoice(algorithm="linear", problem_type="regression")
    joined = service.submit_manual_run(tenant, training=own, data_bytes=None)
    assert queued.run and joined.run_id == queued.run.run_id
    service.dispatch()
    run = runs.get_run("acme", joined.run_id)
    assert run and run.training and run.training.algorithm == "linear"
    assert run.training.problem_type == "regression"
    params = pipeline.executions[str(run.execution_arn)].parameters
    assert params["Algorithm"] == "linear" and params["ProblemType"] == "regression"
    assert "NumRound" not in params  # XGBoost's own parameters only for XGBoost


def test_a_provider_adds_an_algorithm_with_an_image_of_its_own_in_the_settings() -> None:
    settings = resolve_settings(
        {
            "algorithms": {
                "lightgbm": {
                    "image": {"framework": "custom", "version": "1", "uri": "1.dkr/x:1"},
                    "problemTypes": ["regression"],
                    "hyperparameters": {
                        "objective": {"type": "string", "default": "l2", "choices": ["l2", "l1"]}
                    },
                    "plans": ["premium"],
                }
            }
        }
    )
    plan = settings.plan("premium")
    choice = TrainingChoice(algorithm="lightgbm", problem_type="regression")
    training = resolve_run_training(settings, plan, choice, None, 0)
    assert training.image_uri == "1.dkr/x:1" and training.hyperparameters == {"objective": "l2"}
    bad = TrainingChoice(
        algorithm="lightgbm", problem_type="regression", hyperparameters={"objective": "huber"}
    )
    with pytest.raises(TrainingError, match="one of"):
        validate_choice(settings, "premium", bad)


def test_hyperparameters_too_long_for_a_pipeline_parameter_are_refused() -> None:
    # StartPipelineExecution takes parameter values of at most 1,024 characters.
    specs = {f"option_{i:02d}": {"type": "string", "default": "x"} for i in range(12)}
    settings = resolve_settings(
        {
            "algorithms": {
                "custom": {
                    "image": {"framework": "custom", "version": "1", "uri": "1.dkr/x:1"},
                    "problemTypes": ["binary"],
                    "hyperparameters": specs,
                }
            }
        }
    )
    long = dict.fromkeys(specs, "v" * 80)
    choice = TrainingChoice(algorithm="custom", hyperparameters=long)
    with pytest.raises(TrainingError, match="at most 1024") as caught:
        validate_choice(settings, "basic", choice)
    assert caught.value.field == "training.hyperparameters"
    short = TrainingChoice(algorithm="custom", hyperparameters=dict.fromkeys(specs, "v" * 40))
    validate_choice(settings, "basic", short)


def test_an_upload_run_is_sized_by_all_the_data_it_trains_on_not_only_its_upload() -> None:
    """A tenant with 150 MiB already under its prefix uploads a 1 KB file: the run
    trains on all of it, so it is sized (and auto-chosen) as 150 MiB of data."""
    from trainyard_core.lineage import InputListing, LineageInput

    class _Listing:
        def current_inputs(self, bucket: str, prefix: str, max_keys: int) -> InputListing:
            return InputListing(
                [
                    LineageInput(key="old.csv", etag="o", size=150 * MIB),
                    LineageInput(key="train.csv", etag="e", size=1000),
                ]
            )

    runs, tenants, pipeline = InMemoryRunRepository(), InMemoryTenantRepository(), FakePipeline()
    service = SchedulerService(
        SIZED,
        runs,
        tenants,
        pipeline,
        clock=VirtualClock(datetime(2026, 3, 10, 12, 0, tzinfo=UTC)),
        metrics=RecordingMetrics(),
        inputs=_Listing(),
    )
    tenant = make_tenant("grown", "basic")
    tenants.create(tenant)
    result = service.handle_upload(
        str(tenant.data_bucket), "data/train.csv", etag="e", size=1000, version_id="v"
    )
    assert result.run
    service.dispatch()
    run = runs.get_run("grown", result.run.run_id)
    assert run and run.training
    assert run.training.input_bytes == 150 * MIB + 1000
    assert (run.instance_type, run.instance_count) == ("ml.m5.4xlarge", 2)
