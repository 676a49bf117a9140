"""The training catalog's settings models: what a tenant may train (algorithms, their
images and hyperparameters), how ``auto`` picks by data volume, and the default.
Part of the settings (``config.py`` re-exports every name); pure pydantic.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

# What a tenant's model predicts: a 0/1 label, an integer class, a number.
ProblemType = Literal["binary", "multiclass", "regression"]
SchemaDriftMode = Literal["warn", "fail"]
PROBLEM_TYPES: tuple[str, ...] = ("binary", "multiclass", "regression")
# An algorithm a tenant may name, or "auto" (chosen per run by data volume).
AUTO_ALGORITHM = "auto"
NAME_PATTERN = r"^[a-z][a-z0-9-]{0,31}$"
_HYPERPARAMETER_NAME = r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$"


class SettingsModel(BaseModel):
    """Every settings model: camelCase on the wire, no unknown keys, immutable."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class HyperparameterSpec(SettingsModel):
    """One hyperparameter of a catalog entry: its type, default and what it allows."""

    type: Literal["integer", "float", "string"]
    default: int | float | str
    # Inclusive bounds (numbers), or the allowed values (strings).
    min: float | None = None
    max: float | None = None
    choices: list[str] | None = Field(default=None, min_length=1, max_length=50)
    description: str = Field(default="", max_length=256)

    @model_validator(mode="after")
    def _default_allowed(self) -> HyperparameterSpec:
        numeric = self.type != "string"
        if numeric and self.choices is not None:
            raise ValueError("choices are for string hyperparameters")
        if not numeric and (self.min is not None or self.max is not None):
            raise ValueError("min/max are for numeric hyperparameters")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min exceeds max")
        from trainyard_core.training import coerce_hyperparameter  # pure; avoids a cycle

        coerce_hyperparameter(self, self.default)  # raises when the default is not allowed
        return self


class TrainingImage(SettingsModel):
    """A SageMaker framework image: resolved to a URI per region (``uri``) when the
    settings are resolved for a deployment (``pipeline/images.py``, the SageMaker
    SDK's ``image_uris``), so the scheduler reads it without the SDK. A ``uri`` set
    in the settings (a provider's own image) is used as it is."""

    framework: str = Field(min_length=1, max_length=64)
    version: str = Field(min_length=1, max_length=64)
    uri: str | None = Field(default=None, max_length=255)


class Algorithm(SettingsModel):
    """A catalog entry: a training image, what it solves and its hyperparameters."""

    name: str = Field(pattern=NAME_PATTERN)
    description: str = Field(default="", max_length=256)
    image: TrainingImage
    problem_types: list[ProblemType] = Field(min_length=1)
    hyperparameters: dict[str, HyperparameterSpec] = Field(default_factory=dict, max_length=50)
    # The plans whose tenants may use it; None = every plan.
    plans: list[str] | None = None

    @field_validator("hyperparameters")
    @classmethod
    def _names(cls, specs: dict[str, HyperparameterSpec]) -> dict[str, HyperparameterSpec]:
        import re

        for key in specs:
            if not re.match(_HYPERPARAMETER_NAME, key):
                raise ValueError(f"hyperparameter name {key!r} is not {_HYPERPARAMETER_NAME}")
        return specs

    @model_validator(mode="after")
    def _defaults_fit_a_pipeline_parameter(self) -> Algorithm:
        from trainyard_core.training import TrainingError, effective_hyperparameters

        try:
            effective_hyperparameters(self, {})
        except TrainingError as exc:
            raise ValueError(f"algorithm {self.name}: {exc.message}") from None
        return self

    def allowed_on(self, plan: str) -> bool:
        return self.plans is None or plan in self.plans

    def api_dict(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude={"image": {"uri"}})


class AutoRule(SettingsModel):
    """``auto``: runs of at most ``max_bytes`` of input train with ``algorithm``."""

    max_bytes: int = Field(ge=0)
    algorithm: str = Field(pattern=NAME_PATTERN)


class AutoSelection(SettingsModel):
    """How ``auto`` picks: the first rule a run's input bytes fit (ascending), else
    ``default``. A rule whose algorithm the plan or problem type cannot use is skipped."""

    rules: list[AutoRule] = Field(
        default_factory=lambda: [AutoRule(max_bytes=1024**2, algorithm="linear")], max_length=20
    )
    default: str = Field(default="xgboost", pattern=NAME_PATTERN)

    @field_validator("rules")
    @classmethod
    def _ascending(cls, rules: list[AutoRule]) -> list[AutoRule]:
        bounds = [rule.max_bytes for rule in rules]
        if bounds != sorted(set(bounds)):
            raise ValueError("auto rules must have strictly ascending maxBytes")
        return rules


class DefaultTraining(SettingsModel):
    """What a tenant that chose nothing trains (today's behaviour: XGBoost, binary)."""

    algorithm: str = Field(default="xgboost", pattern=NAME_PATTERN)
    problem_type: ProblemType = "binary"
    # A run whose columns changed since the tenant's last successful run: reported
    # (warn) or failed in preprocess, before the training job (fail).
    schema_drift: SchemaDriftMode = "warn"


def _hp(kind: str, default: int | float | str, lo: float | None, hi: float | None, text: str):
    return HyperparameterSpec(type=kind, default=default, min=lo, max=hi, description=text)  # type: ignore[arg-type]


def default_algorithms() -> dict[str, Algorithm]:
    sklearn = TrainingImage(framework="sklearn", version="1.2-1")
    return {
        "xgboost": Algorithm(
            name="xgboost",
            description="SageMaker's built-in XGBoost: gradient-boosted trees, for larger data.",
            image=TrainingImage(framework="xgboost", version="1.7-1"),
            problem_types=["binary", "multiclass", "regression"],
            hyperparameters={
                "num_round": _hp("integer", 50, 1, 1000, "Boosting rounds."),
                "max_depth": _hp("integer", 4, 1, 20, "Maximum depth of a tree."),
                "eta": _hp("float", 0.2, 0.001, 1, "Learning rate."),
                "subsample": _hp("float", 0.9, 0.1, 1, "Share of rows sampled per tree."),
            },
        ),
        "linear": Algorithm(
            name="linear",
            description="scikit-learn: logistic regression (binary, multiclass) or ridge "
            "regression (regression), for small data.",
            image=sklearn,
            problem_types=["binary", "multiclass", "regression"],
            hyperparameters={
                "C": _hp("float", 1.0, 0.0001, 10000, "Inverse regularization (logistic)."),
                "alpha": _hp("float", 1.0, 0, 10000, "Regularization strength (ridge)."),
                "max_iter": _hp("integer", 1000, 10, 100000, "Solver iterations."),
            },
        ),
        "random-forest": Algorithm(
            name="random-forest",
            description="scikit-learn random forest (classifier or regressor), for small data.",
            image=sklearn,
            problem_types=["binary", "multiclass", "regression"],
            hyperparameters={
                "n_estimators": _hp("integer", 100, 1, 1000, "Trees in the forest."),
                "max_depth": _hp("integer", 0, 0, 100, "Maximum depth of a tree; 0 = unlimited."),
                "min_samples_leaf": _hp("integer", 1, 1, 1000, "Fewest rows in a leaf."),
            },
        ),
    }
