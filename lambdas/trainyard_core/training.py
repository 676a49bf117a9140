"""What a run trains: the tenant's choice checked against the catalog, ``auto``
by data volume, and the plan's instance sizing by data volume. Pure (no boto3).

A tenant (``PATCH /tenants/{id}``) and a manual run (``POST /tenants/{id}/runs``)
give a :class:`TrainingChoice`; :func:`validate_choice` checks it against the
catalog and the plan (a 400 naming the offending field otherwise) and stores the
hyperparameters as canonical strings (SageMaker's own hyperparameter type, and no
floats for DynamoDB). At dispatch :func:`resolve_run_training` merges the run's
choice over the tenant's over the settings' default, picks ``auto``, fills in the
defaults and sizes the instance: the :class:`RunTraining` recorded on the run.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from trainyard_core.errors import InvalidRequest
from trainyard_core.limits import (
    HYPERPARAMETER_VALUE_MAX_CHARS,
    HYPERPARAMETERS_MAX,
    PIPELINE_PARAMETER_MAX_CHARS,
)

if TYPE_CHECKING:
    from trainyard_core.config import Algorithm, HyperparameterSpec, Plan, Settings


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class TrainingChoice(_Wire):
    """A tenant's (or one run's) training settings; every field optional."""

    algorithm: str | None = Field(
        default=None, max_length=64, description='A catalog name (GET /algorithms) or "auto".'
    )
    problem_type: Literal["binary", "multiclass", "regression"] | None = None
    hyperparameters: dict[str, str | int | float | bool] | None = Field(
        default=None,
        max_length=HYPERPARAMETERS_MAX,
        description="Of the algorithm; the catalog's defaults fill in the rest.",
    )
    schema_drift: Literal["warn", "fail"] | None = Field(
        default=None,
        description="Columns added, removed or reordered since the tenant's last successful "
        "run: reported in the run's dataReport (warn) or the run fails before training (fail).",
    )


class AlgorithmChoice(_Wire):
    """How the run's algorithm was chosen: named, or ``auto`` by its input bytes."""

    mode: Literal["explicit", "auto", "default"]
    input_bytes: int | None = None
    # auto: the rule's maxBytes the run fit (None: above every rule, the default).
    threshold_bytes: int | None = None


class RunTraining(_Wire):
    """What a run trained with, recorded when it was started."""

    algorithm: str
    chosen_by: AlgorithmChoice
    problem_type: str
    hyperparameters: dict[str, str]
    image_uri: str | None = None
    instance_type: str
    instance_count: int
    volume_size_gb: int
    input_bytes: int
    metric_threshold: float
    schema_drift: Literal["warn", "fail"] = "warn"
    # The run whose schema the drift check compared with (None: no earlier success).
    schema_baseline_run_id: str | None = None

    def hyperparameters_json(self, settings: Settings) -> str:
        """The ``Hyperparameters`` pipeline parameter: a JSON object, values typed
        as the catalog defines them."""
        return hyperparameters_json(settings.algorithms[self.algorithm], self.hyperparameters)


def hyperparameters_json(algorithm: Algorithm, values: dict[str, str]) -> str:
    specs = algorithm.hyperparameters
    typed = {
        key: _typed(specs[key], value) if key in specs else value for key, value in values.items()
    }
    return json.dumps(typed, sort_keys=True, separators=(",", ":"))


def effective_hyperparameters(algorithm: Algorithm, given: dict[str, str]) -> dict[str, str]:
    """``given`` (canonical) with the catalog's defaults filled in; TrainingError when
    the JSON would not fit a pipeline parameter (StartPipelineExecution refuses it)."""
    values = {
        key: given[key] if key in given else coerce_hyperparameter(spec, spec.default)
        for key, spec in algorithm.hyperparameters.items()
    }
    size = len(hyperparameters_json(algorithm, values))
    if size > PIPELINE_PARAMETER_MAX_CHARS:
        raise TrainingError(
            "InvalidHyperparameter",
            "training.hyperparameters",
            f"the hyperparameters of {algorithm.name!r} take {size} characters as JSON; "
            f"a pipeline parameter holds at most {PIPELINE_PARAMETER_MAX_CHARS}",
        )
    return values


class TrainingError(InvalidRequest):
    """A 400 that names the offending field (``training.hyperparameters.eta``)."""

    def __init__(self, code: str, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", code=code)
        self.field = field


# --- hyperparameter values


def _typed(spec: HyperparameterSpec, canonical: str) -> int | float | str:
    if spec.type == "integer":
        return int(canonical)
    if spec.type == "float":
        return float(canonical)
    return canonical


def coerce_hyperparameter(spec: HyperparameterSpec, value: Any) -> str:
    """``value`` as the canonical string of ``spec``'s type; ValueError (with what
    is wrong) when it has the wrong type or is out of range. Strings of numbers are
    accepted for numeric types (hyperparameters are strings to SageMaker)."""
    if isinstance(value, bool):
        raise ValueError(f"must be {_kind(spec)}, not a boolean")
    if spec.type == "string":
        if not isinstance(value, str):
            raise ValueError("must be a string")
        if len(value) > HYPERPARAMETER_VALUE_MAX_CHARS:
            raise ValueError(f"must be at most {HYPERPARAMETER_VALUE_MAX_CHARS} characters")
        if spec.choices is not None and value not in spec.choices:
            raise ValueError(f"must be one of {spec.choices}")
        return value
    number = _number(spec, value)
    if spec.min is not None and number < spec.min:
        raise ValueError(f"must be at least {_show(spec.min)}")
    if spec.max is not None and number > spec.max:
        raise ValueError(f"must be at most {_show(spec.max)}")
    return str(number)


def _kind(spec: HyperparameterSpec) -> str:
    return {"integer": "an integer", "float": "a number", "string": "a string"}[spec.type]


def _show(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else str(bound)


def _number(spec: HyperparameterSpec, value: Any) -> int | float:
    if isinstance(value, str):
        text = value.strip()
        if len(text) > 64:
            raise ValueError(f"must be {_kind(spec)}")
        try:
            value = int(text) if spec.type == "integer" else float(text)
        except ValueError:
            raise ValueError(f"must be {_kind(spec)}") from None
    if spec.type == "integer":
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int):
            raise ValueError("must be an integer")
        return value
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError("must be a finite number")
    return float(value)


# --- a tenant's or a run's choice


def validate_choice(
    settings: Settings, plan: str, choice: TrainingChoice, *, base: TrainingChoice | None = None
) -> TrainingChoice:
    """``choice`` (merged over ``base``, the tenant's stored one) checked against the
    catalog and ``plan``; hyperparameters canonical. Raises :class:`TrainingError`."""
    merged = merge_choices(base, choice)
    name = merged.algorithm
    problem_type = merged.problem_type or settings.default_training.problem_type
    if name != "auto":
        # No algorithm named: the settings' default must fit the plan and problem type.
        algorithm = _algorithm(settings, name or settings.default_training.algorithm, plan)
        if problem_type not in algorithm.problem_types:
            named = choice.problem_type is not None or name is None
            field = "problemType" if named else "algorithm"
            raise TrainingError(
                "ProblemTypeNotSupported",
                f"training.{field}",
                f"algorithm {algorithm.name!r} does not support problem type {problem_type!r} "
                f"(it supports {algorithm.problem_types})",
            )
    elif not _auto_candidates(settings, plan, problem_type):
        raise TrainingError(
            "ProblemTypeNotSupported",
            "training.problemType",
            f"no algorithm that auto may pick on plan {plan!r} supports {problem_type!r}",
        )
    hyperparameters = merged.hyperparameters
    if hyperparameters:
        hyperparameters = _check_hyperparameters(settings, plan, name, hyperparameters)
    return merged.model_copy(update={"hyperparameters": hyperparameters})


def merge_choices(base: TrainingChoice | None, over: TrainingChoice | None) -> TrainingChoice:
    """``over``'s fields over ``base``'s. Hyperparameters merge key by key, unless
    ``over`` names another algorithm (the old algorithm's ones would not apply)."""
    base = base or TrainingChoice()
    over = over or TrainingChoice()
    switched = over.algorithm is not None and over.algorithm != base.algorithm
    hyperparameters = dict(base.hyperparameters or {}) if not switched else {}
    hyperparameters.update(over.hyperparameters or {})
    return TrainingChoice(
        algorithm=over.algorithm if over.algorithm is not None else base.algorithm,
        problem_type=over.problem_type or base.problem_type,
        hyperparameters=hyperparameters or None,
        schema_drift=over.schema_drift or base.schema_drift,
    )


def _algorithm(settings: Settings, name: str, plan: str) -> Algorithm:
    algorithm = settings.algorithms.get(name)
    if algorithm is None:
        raise TrainingError(
            "UnknownAlgorithm",
            "training.algorithm",
            f"unknown algorithm {name!r}: one of {sorted(settings.algorithms)} or 'auto'",
        )
    if not algorithm.allowed_on(plan):
        raise TrainingError(
            "AlgorithmNotAllowed",
            "training.algorithm",
            f"algorithm {name!r} is not available on plan {plan!r} (plans: {algorithm.plans})",
        )
    return algorithm


def _check_hyperparameters(
    settings: Settings, plan: str, name: str | None, values: dict[str, Any]
) -> dict[str, str]:
    if name is None or name == "auto":
        # Which algorithm's? auto picks per run: only hyperparameters that every
        # algorithm it may pick knows (and accepts) can be given.
        candidates = _auto_candidates(settings, plan, None) if name == "auto" else []
        if name is None:
            candidates = [_algorithm(settings, settings.default_training.algorithm, plan)]
    else:
        candidates = [settings.algorithms[name]]
    out: dict[str, str] = {}
    for key, value in values.items():
        field = f"training.hyperparameters.{key}"
        canonical = None
        for algorithm in candidates:
            spec = algorithm.hyperparameters.get(key)
            if spec is None:
                raise TrainingError(
                    "UnknownHyperparameter",
                    field,
                    f"algorithm {algorithm.name!r} has no hyperparameter {key!r} "
                    f"(it has {sorted(algorithm.hyperparameters)})",
                )
            try:
                canonical = coerce_hyperparameter(spec, value)
            except ValueError as exc:
                raise TrainingError("InvalidHyperparameter", field, str(exc)) from None
        if canonical is not None:
            out[key] = canonical
    for algorithm in candidates:
        effective_hyperparameters(algorithm, out)  # raises when too long for the pipeline
    return out


def _auto_candidates(settings: Settings, plan: str, problem_type: str | None) -> list[Algorithm]:
    names = [rule.algorithm for rule in settings.auto_algorithm.rules]
    names.append(settings.auto_algorithm.default)
    out = []
    for name in dict.fromkeys(names):
        algorithm = settings.algorithms[name]
        if algorithm.allowed_on(plan) and (
            problem_type is None or problem_type in algorithm.problem_types
        ):
            out.append(algorithm)
    return out


# --- at dispatch


def pick_auto(
    settings: Settings, plan: str, problem_type: str, input_bytes: int
) -> tuple[Algorithm, AlgorithmChoice]:
    """The first auto rule whose ``maxBytes`` the run's input fits and whose algorithm
    the plan and problem type can use; else the default (or the last usable one)."""
    for rule in settings.auto_algorithm.rules:
        algorithm = settings.algorithms[rule.algorithm]
        usable = algorithm.allowed_on(plan) and problem_type in algorithm.problem_types
        if input_bytes <= rule.max_bytes and usable:
            choice = AlgorithmChoice(
                mode="auto", input_bytes=input_bytes, threshold_bytes=rule.max_bytes
            )
            return algorithm, choice
    candidates = _auto_candidates(settings, plan, problem_type)
    default = settings.algorithms[settings.auto_algorithm.default]
    algorithm = default if default in candidates else (candidates or [default])[-1]
    last = settings.auto_algorithm.rules[-1].max_bytes if settings.auto_algorithm.rules else None
    return algorithm, AlgorithmChoice(mode="auto", input_bytes=input_bytes, threshold_bytes=last)


def instance_sizing(plan: Plan, input_bytes: int) -> tuple[str, int, int]:
    """(instance type, count, volume GB) for a run of ``input_bytes``: the last of the
    plan's sizing rules whose ``minBytes`` it reaches, else the plan's own fields."""
    chosen = (plan.training_instance_type, plan.training_instance_count)
    volume = plan.training_volume_size_gb
    for rule in plan.sizing:
        if input_bytes >= rule.min_bytes:
            chosen, volume = (rule.instance_type, rule.instance_count), rule.volume_size_gb
    return chosen[0], chosen[1], volume


def resolve_run_training(
    settings: Settings,
    plan: Plan,
    tenant_choice: TrainingChoice | None,
    run_choice: TrainingChoice | None,
    input_bytes: int,
) -> RunTraining:
    """Everything the run trains with. Raises :class:`TrainingError` when the stored
    choice no longer fits the catalog or the plan (settings or plan changed)."""
    merged = validate_choice(
        settings, plan.name, run_choice or TrainingChoice(), base=tenant_choice
    )
    problem_type = merged.problem_type or settings.default_training.problem_type
    if merged.algorithm == "auto":
        algorithm, chosen_by = pick_auto(settings, plan.name, problem_type, input_bytes)
    elif merged.algorithm is not None:
        algorithm = settings.algorithms[merged.algorithm]
        chosen_by = AlgorithmChoice(mode="explicit")
    else:
        algorithm = _algorithm(settings, settings.default_training.algorithm, plan.name)
        chosen_by = AlgorithmChoice(mode="default")
    hyperparameters = effective_hyperparameters(algorithm, dict(merged.hyperparameters or {}))
    instance_type, count, volume = instance_sizing(plan, input_bytes)
    return RunTraining(
        algorithm=algorithm.name,
        chosen_by=chosen_by,
        problem_type=problem_type,
        hyperparameters=hyperparameters,
        image_uri=algorithm.image.uri,
        instance_type=instance_type,
        instance_count=count,
        volume_size_gb=volume,
        input_bytes=input_bytes,
        metric_threshold=settings.metric_threshold_for(problem_type),
        schema_drift=merged.schema_drift or settings.default_training.schema_drift,
    )
