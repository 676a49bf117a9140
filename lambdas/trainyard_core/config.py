"""Trainyard settings: plans, limits, instance types, prices, thresholds.

One source of truth. Defaults live here; a platform team overrides them with
the ``trainyard`` key of ``cdk.json`` context and/or a JSON file named by
``TRAINYARD_CONFIG``. The CDK app resolves the settings once and ships the
resolved JSON *inside* every Lambda's code asset (``trainyard_settings.json``,
named by ``TRAINYARD_SETTINGS_FILE``): not in the environment, whose 4 KB limit
a larger plan table would break. The local runtime does the same with a file of
its own, so both worlds run on identical settings.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

# The training catalog's models and names live in catalog.py (re-exported here).
from trainyard_core.catalog import AUTO_ALGORITHM as AUTO_ALGORITHM
from trainyard_core.catalog import PROBLEM_TYPES as PROBLEM_TYPES
from trainyard_core.catalog import Algorithm as Algorithm
from trainyard_core.catalog import AutoRule as AutoRule
from trainyard_core.catalog import AutoSelection as AutoSelection
from trainyard_core.catalog import DefaultTraining as DefaultTraining
from trainyard_core.catalog import HyperparameterSpec as HyperparameterSpec
from trainyard_core.catalog import ProblemType as ProblemType
from trainyard_core.catalog import SchemaDriftMode as SchemaDriftMode
from trainyard_core.catalog import SettingsModel as _Model
from trainyard_core.catalog import TrainingImage as TrainingImage
from trainyard_core.catalog import default_algorithms as _default_algorithms
from trainyard_core.limits import MAX_UPLOAD_BYTES_LIMIT

# Inline JSON (tests and tools); deployed handlers read the file below instead.
SETTINGS_ENV = "TRAINYARD_SETTINGS"
# Path of the resolved settings (relative paths: from the Lambda task root).
SETTINGS_FILE_ENV = "TRAINYARD_SETTINGS_FILE"
DEPLOYED_SETTINGS_FILE = "trainyard_settings.json"
CONFIG_FILE_ENV = "TRAINYARD_CONFIG"
CONTEXT_KEY = "trainyard"

Isolation = Literal["silo", "pool"]


class AutoApprove(_Model):
    """Approve a newly registered model of the plan's tenants without a person: its
    ``metric`` reaches ``min`` and beats the tenant's newest approved version."""

    metric: str = Field(default="auc", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    min: float


class SizingRule(_Model):
    """Runs of at least ``min_bytes`` of input train on this instance type, count and
    volume (the plan's ``sizing``: the last rule a run reaches applies)."""

    min_bytes: int = Field(ge=0)
    instance_type: str = Field(min_length=1, max_length=64, pattern=r"^ml\.[a-z0-9.]+$")
    instance_count: int = Field(default=1, ge=1, le=100)
    # SageMaker's ResourceConfig.VolumeSizeInGB: 1-16384 (botocore shape).
    volume_size_gb: int = Field(default=30, ge=1, le=16384)


class Plan(_Model):
    name: str
    max_concurrent_runs: int = Field(ge=1)
    max_concurrent_runs_per_tenant: int = Field(ge=1)
    # Work-conserving tenant cap: runs a tenant may hold beyond its cap, only in
    # slots no tenant of any plan below its cap can use (policy.py). 0 = the
    # tenant cap is a hard limit (the default: a plan opts in, as it is a promise
    # about how much of the plan one tenant may take).
    max_borrowed_runs_per_tenant: int = Field(default=0, ge=0)
    weight: int = Field(ge=1)
    isolation: Isolation
    training_instance_type: str
    training_instance_count: int = Field(default=1, ge=1)
    # The training job's storage volume (ResourceConfig.VolumeSizeInGB) without a rule.
    training_volume_size_gb: int = Field(default=30, ge=1, le=16384)
    # By the run's total input bytes, ascending ``minBytes``: a larger instance for
    # more data. Empty: every run trains on the fields above (the default).
    sizing: list[SizingRule] = Field(default_factory=list, max_length=20)
    # None = unlimited.
    monthly_training_hours: float | None = Field(default=None, ge=0)
    # None = every model waits for a person (POST /tenants/{id}/models/{v}/approve).
    auto_approve: AutoApprove | None = None
    # Uploads through the API (POST /tenants/{id}/uploads): the largest file one
    # upload may be (S3's content-length-range; above MULTIPART_THRESHOLD_BYTES a
    # multipart upload), and the bytes a tenant may keep under its data prefix.
    max_upload_bytes: int = Field(default=1024**3, ge=1, le=MAX_UPLOAD_BYTES_LIMIT)
    data_quota_bytes: int = Field(default=10 * 1024**3, ge=1)

    @field_validator("sizing")
    @classmethod
    def _ascending(cls, rules: list[SizingRule]) -> list[SizingRule]:
        bounds = [rule.min_bytes for rule in rules]
        if bounds != sorted(set(bounds)):
            raise ValueError("sizing rules must have strictly ascending minBytes")
        return rules

    def api_dict(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True)


class XgboostSettings(_Model):
    framework_version: str = "1.7-1"
    hyperparameters: dict[str, str] = Field(
        default_factory=lambda: {
            "objective": "binary:logistic",
            "eval_metric": "auc",
            "num_round": "50",
            "max_depth": "4",
            "eta": "0.2",
            "subsample": "0.9",
        }
    )


class WebhookSettings(_Model):
    """Tenant webhooks (trainyard_core/webhooks/): how deliveries are retried and sent."""

    # Attempts in all, the webhook queue's maxReceiveCount (SQS allows 1-1000): after
    # the last one the event goes to the dead-letter queue and the delivery is failed.
    max_attempts: int = Field(default=5, ge=1, le=1000)
    # Attempt n failed -> the message is hidden for base * 2^(n-1) s (at most the cap;
    # SQS allows 12 h in all) before the next attempt (ChangeMessageVisibility).
    retry_base_seconds: int = Field(default=30, ge=0)
    retry_max_seconds: int = Field(default=900, ge=0, le=43200)
    # One attempt's deadline, in all: resolving the name, connecting, sending and
    # reading the whole answer (a receiver trickling bytes cannot stretch it); less
    # when the function's invocation has less time left. A slow receiver is a failure.
    timeout_seconds: float = Field(default=5, gt=0, le=10)
    # Delivery records expire (DynamoDB TTL) this many days after they were created.
    delivery_retention_days: int = Field(default=30, ge=1, le=365)
    # The embedded stack only (tests receive on http://127.0.0.1:<port>); the CDK app
    # refuses to synthesize with it on.
    allow_loopback_http: bool = False


class RetrainingSettings(_Model):
    """Scheduled retraining (tenants/retraining.py): a tenant's ``retrain.every``."""

    # Shortest period a tenant may ask for (seconds; tests use a few).
    min_interval_seconds: int = Field(default=3600, ge=1)
    max_interval_days: int = Field(default=366, ge=1)
    # Due tenants checked per lifecycle run (one S3 listing each); the rest wait a
    # minute, so thousands of tenants due at once are worked off in order.
    checks_per_run: int = Field(default=100, ge=1, le=1000)
    # Objects listed per check (1,000 a ListObjectsV2 call): beyond it the data's
    # fingerprint covers the first ones only (docs: scaling limits).
    max_objects: int = Field(default=10_000, ge=1)
    # Seconds of each lifecycle run (of the onboarding function's 29) the checks may
    # take before the tenants' provisioning, migrations and offboarding get theirs.
    budget_seconds: float = Field(default=10, gt=0, le=20)


class Settings(_Model):
    stack_name: str = "TrainyardPlatform"
    # Prefix of every physical name (tables, queues, roles, stacks).
    resource_prefix: str = Field(default="trainyard", pattern=r"^[a-z][a-z0-9-]{1,15}$")
    region: str = "us-east-1"
    global_max_concurrent_runs: int = Field(default=20, ge=1)
    # Entry plans share the pool bucket (no per-tenant bucket to hit the account's
    # bucket quota); premium buys a dedicated (silo) bucket.
    plans: dict[str, Plan] = Field(
        default_factory=lambda: {
            "basic": Plan(
                name="basic",
                max_concurrent_runs=4,
                max_concurrent_runs_per_tenant=1,
                weight=1,
                isolation="pool",
                training_instance_type="ml.m5.large",
                monthly_training_hours=10,
                max_upload_bytes=1024**3,
                data_quota_bytes=10 * 1024**3,
            ),
            "standard": Plan(
                name="standard",
                max_concurrent_runs=8,
                max_concurrent_runs_per_tenant=2,
                weight=2,
                isolation="pool",
                training_instance_type="ml.m5.xlarge",
                monthly_training_hours=50,
                max_upload_bytes=5 * 1024**3,
                data_quota_bytes=100 * 1024**3,
            ),
            "premium": Plan(
                name="premium",
                max_concurrent_runs=12,
                max_concurrent_runs_per_tenant=4,
                weight=4,
                isolation="silo",
                training_instance_type="ml.m5.2xlarge",
                monthly_training_hours=None,
                max_upload_bytes=50 * 1024**3,
                data_quota_bytes=1024**4,
            ),
        }
    )
    default_plan: str = "basic"
    processing_instance_type: str = "ml.m5.large"
    sklearn_framework_version: str = "1.2-1"
    xgboost: XgboostSettings = Field(default_factory=XgboostSettings)
    # AUC a model must reach to be registered; below it the pipeline fails.
    metric_threshold: float = Field(default=0.6, ge=0, le=1)
    # The threshold of the other problem types' primary metric (the pipeline's
    # evaluation defines which metric and its direction); binary uses metricThreshold.
    metric_thresholds: dict[str, float] = Field(
        default_factory=lambda: {"multiclass": 0.5, "regression": 0.0}
    )
    # The training catalog: what tenants may train (GET /algorithms).
    algorithms: dict[str, Algorithm] = Field(default_factory=_default_algorithms)
    auto_algorithm: AutoSelection = Field(default_factory=AutoSelection)
    default_training: DefaultTraining = Field(default_factory=DefaultTraining)
    model_approval_status: Literal["Approved", "PendingManualApproval", "Rejected"] = (
        "PendingManualApproval"
    )
    # On-demand USD per instance-hour (us-east-1 list prices) for cost estimates.
    instance_prices_usd_per_hour: dict[str, float] = Field(
        default_factory=lambda: {
            "ml.m5.large": 0.115,
            "ml.m5.xlarge": 0.23,
            "ml.m5.2xlarge": 0.461,
            "ml.m5.4xlarge": 0.922,
            "ml.c5.xlarge": 0.204,
            "ml.c5.2xlarge": 0.408,
        }
    )
    reconcile_interval_minutes: int = Field(default=1, ge=1)
    # A run stuck in STARTING this long is re-examined by the reconciler.
    # One reconcile tick: a start lost in a crash is retried (same token) at the next tick.
    starting_timeout_seconds: int = Field(default=60, ge=10)
    max_start_attempts: int = Field(default=5, ge=1)
    # POST /tenants/{id}/runs/{runId}/retry: how often one FAILED run may be tried
    # again (each retry is recorded on the run, so this also bounds its item).
    max_run_retries: int = Field(default=3, ge=0, le=10)
    # A tenant stack whose create fails (a resource's error: a missing permission, a
    # taken name) is deleted and created again by the lifecycle schedule, this many
    # attempts in all; then the tenant is FAILED (a repeated POST /tenants starts over).
    provisioning_attempts: int = Field(default=5, ge=1)
    # The first retry runs at the next lifecycle run; each later one waits twice as long
    # as the one before, starting with this (60, 120, 240 s after the failure).
    provisioning_retry_seconds: int = Field(default=60, ge=0)
    # Tenant stacks on an older tenant template than the deployed one (a redeploy
    # changed it) are updated to it by the lifecycle schedule: at most this many
    # UpdateStack calls per run, oldest first (0: none; tenants/rollout.py).
    tenant_stack_updates_per_run: int = Field(default=5, ge=0)
    # A run executing longer than this is reported stuck (metric RunsStuck, alarm,
    # reason on the run). SageMaker's own job limits default to 24 h.
    stuck_run_hours: float = Field(default=24, gt=0)
    # Powertools layer (public, AWS-published) used by every Lambda.
    powertools_layer_version: int = 18
    # Full layer ARN instead (partitions where AWS publishes it from other accounts,
    # or a copy in your own account).
    powertools_layer_arn: str | None = None
    log_retention_days: int = 30
    # Tenant data buckets (silo buckets, the pool bucket) are versioned: an overwritten
    # or deleted file's old version is kept this many days (lifecycle
    # NoncurrentVersionExpiration; it counts against the plan's dataQuotaBytes until then).
    data_noncurrent_version_days: int = Field(default=30, ge=1)
    # API Gateway logging needs the account-wide API Gateway CloudWatch role
    # (AWS::ApiGateway::Account, one per account and region): "off" touches nothing
    # account-wide; "useAccountRole" logs with the role the account already has;
    # "createAccountRole" also sets that role (overwriting any existing one).
    api_logging: Literal["off", "useAccountRole", "createAccountRole"] = "off"
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    retraining: RetrainingSettings = Field(default_factory=RetrainingSettings)

    @field_validator("plans")
    @classmethod
    def _plan_keys_match_names(cls, plans: dict[str, Plan]) -> dict[str, Plan]:
        for key, plan in plans.items():
            if key != plan.name:
                raise ValueError(f"plan key {key!r} does not match its name {plan.name!r}")
            if not key.isalnum() or not key.islower():
                raise ValueError(f"plan name {key!r} must be lowercase alphanumeric")
        if not plans:
            raise ValueError("at least one plan is required")
        return plans

    @model_validator(mode="after")
    def _check_references(self) -> Settings:
        if self.default_plan not in self.plans:
            raise ValueError(f"default plan {self.default_plan!r} is not a plan")
        for plan in self.plans.values():
            if plan.max_concurrent_runs_per_tenant > plan.max_concurrent_runs:
                raise ValueError(f"plan {plan.name}: per-tenant cap exceeds plan cap")
            borrowing = plan.max_concurrent_runs_per_tenant + plan.max_borrowed_runs_per_tenant
            if borrowing > plan.max_concurrent_runs:
                raise ValueError(
                    f"plan {plan.name}: per-tenant cap plus borrowing exceeds plan cap"
                )
            types = [plan.training_instance_type, *(r.instance_type for r in plan.sizing)]
            for instance_type in types:
                if instance_type not in self.instance_prices_usd_per_hour:
                    raise ValueError(f"plan {plan.name}: no price for {instance_type}")
        self._check_catalog()
        return self

    def _check_catalog(self) -> None:
        if not self.algorithms:
            raise ValueError("the algorithm catalog needs at least one algorithm")
        for key, algorithm in self.algorithms.items():
            if key != algorithm.name:
                raise ValueError(f"algorithm key {key!r} does not match its name")
            if key == AUTO_ALGORITHM:
                raise ValueError(f"{AUTO_ALGORITHM!r} is reserved for the automatic choice")
            unknown = sorted(set(algorithm.plans or ()) - set(self.plans))
            if unknown:
                raise ValueError(f"algorithm {key}: unknown plans {unknown}")
        named = [rule.algorithm for rule in self.auto_algorithm.rules]
        for name in (*named, self.auto_algorithm.default, self.default_training.algorithm):
            if name not in self.algorithms:
                raise ValueError(f"algorithm {name!r} is not in the catalog")
        default = self.algorithms[self.default_training.algorithm]
        if default.plans is not None or self.default_training.problem_type not in (
            default.problem_types
        ):
            # Tenants that chose nothing train it, on every plan.
            raise ValueError(
                f"defaultTraining: {default.name!r} must be allowed on every plan and "
                f"support {self.default_training.problem_type!r}"
            )
        for problem_type in self.metric_thresholds:
            if problem_type not in PROBLEM_TYPES:
                raise ValueError(f"metricThresholds: unknown problem type {problem_type!r}")

    def metric_threshold_for(self, problem_type: str) -> float:
        if problem_type == "binary":
            return self.metric_thresholds.get("binary", self.metric_threshold)
        return self.metric_thresholds.get(problem_type, self.metric_threshold)

    def plan(self, name: str) -> Plan:
        return self.plans[name]

    def training_instance_types(self) -> list[str]:
        """Every instance type a plan trains on (its own and its sizing rules'): the
        pipeline role may create training jobs on these only (infra/pipeline.py)."""
        types = {p.training_instance_type for p in self.plans.values()}
        types |= {r.instance_type for p in self.plans.values() for r in p.sizing}
        return sorted(types)

    def price_per_hour(self, instance_type: str) -> float:
        return self.instance_prices_usd_per_hour.get(instance_type, 0.0)

    def to_json(self) -> str:
        return json.dumps(self.model_dump(by_alias=True), sort_keys=True, separators=(",", ":"))


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


# Free-form maps whose keys are data (hyperparameter names, instance types), not fields.
_VERBATIM_MAPS = frozenset({"instancePricesUsdPerHour", "metricThresholds"})
# Maps whose keys are data but whose values are settings (catalog entries).
_DATA_KEYED_MAPS = frozenset({"hyperparameters", "algorithms"})


def _camel_keys(data: Any) -> Any:
    # Accept snake_case and camelCase in config files alike.
    if isinstance(data, dict):
        out = {}
        for key, value in data.items():
            name = to_camel(key) if "_" in key else key
            if name in _VERBATIM_MAPS:
                out[name] = value
            elif name in _DATA_KEYED_MAPS and isinstance(value, dict):
                out[name] = {k: _camel_keys(v) for k, v in value.items()}
            else:
                out[name] = _camel_keys(value)
        return out
    return data


def resolve_settings(*overrides: dict[str, Any] | None) -> Settings:
    """Defaults, then each override in order (later wins), deep-merged."""
    merged: dict[str, Any] = Settings().model_dump(by_alias=True)
    for override in overrides:
        if override:
            override = _camel_keys(override)
            plans = override.get("plans")
            if isinstance(plans, dict):
                # A plan override names its own key; fill in `name` for brevity.
                override = dict(override)
                override["plans"] = {k: {"name": k, **v} for k, v in plans.items()}
            algorithms = override.get("algorithms")
            if isinstance(algorithms, dict):
                # So does a catalog entry.
                override = dict(override)
                override["algorithms"] = {
                    k: {"name": k, **v} if isinstance(v, dict) else v for k, v in algorithms.items()
                }
            merged = _deep_merge(merged, override)
    return Settings.model_validate(merged)


def read_cdk_context(project_root: Path) -> dict[str, Any]:
    cdk_json = project_root / "cdk.json"
    if not cdk_json.exists():
        return {}
    context = json.loads(cdk_json.read_text()).get("context", {})
    value = context.get(CONTEXT_KEY, {})
    return value if isinstance(value, dict) else {}


def read_config_file(path: str | None = None) -> dict[str, Any]:
    path = path or os.environ.get(CONFIG_FILE_ENV)
    if not path:
        return {}
    return json.loads(Path(path).read_text())


def load_project_settings(
    project_root: Path, context_override: dict[str, Any] | None = None
) -> Settings:
    """What the CDK app and the local runtime both call: cdk.json, then file, then -c."""
    return resolve_settings(read_cdk_context(project_root), read_config_file(), context_override)


def settings_from_env() -> Settings:
    """What a Lambda calls: the resolved settings its deployer shipped with it."""
    raw = os.environ.get(SETTINGS_ENV)
    if raw:
        return Settings.model_validate_json(raw)
    path = os.environ.get(SETTINGS_FILE_ENV)
    if not path:
        return Settings()
    file = Path(path)
    if not file.is_absolute():
        file = Path(os.environ.get("LAMBDA_TASK_ROOT", ".")) / file
    return Settings.model_validate_json(file.read_text())
