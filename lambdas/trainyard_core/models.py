"""Domain records: tenants and runs. Pure data, camelCase on the wire (docs/architecture.md §5)."""

from __future__ import annotations

import os
import re
import secrets
import time
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from trainyard_core import limits
from trainyard_core.lineage import RunLineage
from trainyard_core.training import RunTraining, TrainingChoice

TENANT_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]*[a-z0-9]$")
# A usage month, YYYY-MM (the API, the usage query and the OpenAPI document).
MONTH_RE = re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])$")
TENANT_ID_MIN, TENANT_ID_MAX = 3, 32
# Names that would collide with routes, AWS prefixes or our own resources.
RESERVED_TENANT_IDS = frozenset(
    {
        "aws",
        "amazon",
        "admin",
        "root",
        "platform",
        "system",
        "trainyard",
        "tenants",
        "plans",
        "queue",
        "health",
        "runs",
        "usage",
        "default",
        "sagemaker",
        "null",
        "none",
        "pool",  # <prefix>-pool-<account> is the shared pool bucket
    }
)


class TenantStatus(StrEnum):
    PROVISIONING = "PROVISIONING"
    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED"
    OFFBOARDING = "OFFBOARDING"
    FAILED = "FAILED"
    # A plan change across isolation models: stack update, then data move.
    MIGRATING = "MIGRATING"


class RunStatus(StrEnum):
    QUEUED = "QUEUED"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    STOPPED = "STOPPED"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_RUN_STATUSES

    @property
    def holds_slot(self) -> bool:
        return self in (RunStatus.STARTING, RunStatus.RUNNING)


TERMINAL_RUN_STATUSES = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.STOPPED})


def now_utc() -> datetime:
    return datetime.now(UTC)


def iso_ms(moment: datetime | None) -> str | None:
    """ISO-8601 UTC with milliseconds, as the API promises."""
    if moment is None:
        return None
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )


def parse_iso(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def new_run_id(moment: datetime | None = None) -> str:
    """A UUIDv7-style 32-hex id: time-ordered (newest-first listing is a key sort)
    and exactly the 32 characters StartPipelineExecution's ClientRequestToken needs."""
    ms = int((moment.timestamp() if moment else time.time()) * 1000)
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80 | (0x7 << 76) | (rand & ((1 << 76) - 1))
    return f"{value:032x}"


def new_token() -> str:
    return secrets.token_hex(8)


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    def api_dict(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, mode="json", exclude=self._internal_fields())

    @classmethod
    def _internal_fields(cls) -> set[str]:
        return set()


class IgnoredUpload(_Wire):
    """An object created under a tenant's data prefix that started no run."""

    key: str
    size: int | None = None
    reason: str
    at: str
    etag: str | None = None


class RetrainSchedule(_Wire):
    """A tenant's retrain schedule: a run on its current data every `every` (an
    ISO-8601 duration), when the data changed since its last successful run."""

    every: str
    next_due_at: str
    last_checked_at: str | None = None
    # What the last check did: "queued", "unchanged", "no data", "deferred: ...".
    last_outcome: str | None = None
    last_run_id: str | None = None


class Tenant(_Wire):
    tenant_id: str
    plan: str
    status: TenantStatus
    isolation: Literal["silo", "pool"]
    data_bucket: str | None = None
    data_prefix: str | None = None
    output_uri: str | None = None
    role_arn: str | None = None
    model_package_group_name: str | None = None
    stack_name: str | None = None
    failure_reason: str | None = None
    created_at: str
    updated_at: str
    # Internal bookkeeping (not part of the API shape).
    queued_run_id: str | None = None
    version: int = 0
    # While MIGRATING: the isolation model being moved to (the location fields
    # above stay on the old storage until the data is verified at the new one).
    migrating_to: Literal["silo", "pool"] | None = None
    # When the tenant took its current location: S3 objects created there before
    # it (migration copies) are not uploads and start no run.
    location_since: str | None = None
    # While MIGRATING: when the migration was asked for (uploads moved after it are
    # recorded by the migration) and "<bucket>/<data prefix>" of the new location;
    # once ACTIVE again, the location it left (late events from there are its own).
    migration_started_at: str | None = None
    alt_location: str | None = None
    # While OFFBOARDING: its data and models go once the stack (the upload rule, the
    # job role) is gone, so nothing uploads or trains into what is being purged.
    purge_requested: bool = False
    # The latest uploads under the data prefix that started no run (not *.csv),
    # newest last, at most limits.IGNORED_UPLOADS_MAX: the tenant can see why.
    # Written only by intake (``TenantRepository.record_ignored_upload``).
    ignored_uploads: list[IgnoredUpload] = Field(default_factory=list)
    # The tenant template version (templates/<version>/ in the platform bucket) the
    # stack was last created or updated from, recorded once that was COMPLETE; None
    # (tenants from before it was recorded) counts as outdated (tenants/rollout.py).
    template_version: str | None = None
    # The version of a stack create or update asked for and not confirmed yet: the
    # create while PROVISIONING, the template swap while MIGRATING, the rollout's
    # update of an ACTIVE or SUSPENDED tenant. When the rollout last asked for one.
    template_requested: str | None = None
    template_update_at: str | None = None
    # What its runs train (PATCH /tenants/{id} "training"); None: the settings' default.
    training: TrainingChoice | None = None
    retrain: RetrainSchedule | None = None
    # What the retrain schedule's last check saw under the data prefix (sha256 of
    # each training file's key, ETag and size) and when: a deletion is a change
    # only this can show (tenants/retraining.py).
    retrain_fingerprint: str | None = None
    retrain_fingerprint_at: str | None = None
    # The run the schedule queued when it took that fingerprint (its input data).
    retrain_fingerprint_run_id: str | None = None

    @classmethod
    def _internal_fields(cls) -> set[str]:
        return {
            "queued_run_id",
            "version",
            "location_since",
            "purge_requested",
            "migration_started_at",
            "alt_location",
            "template_version",
            "template_requested",
            "template_update_at",
            "retrain_fingerprint",
            "retrain_fingerprint_at",
            "retrain_fingerprint_run_id",
        }


class TriggerObject(_Wire):
    key: str
    etag: str | None = None
    size: int | None = None
    bucket: str | None = None
    version_id: str | None = None


class Trigger(_Wire):
    type: Literal["s3", "manual", "schedule"]
    # The first limits.TRIGGER_OBJECTS_MAX uploads; later ones are only counted
    # (the run trains on every CSV under the prefix either way).
    objects: list[TriggerObject] = Field(default_factory=list)
    objects_omitted: int = 0
    # A manual run's input: the bytes under the tenant's data prefix when it was
    # asked for (an upload-triggered run counts its uploads: ``input_bytes``).
    data_bytes: int | None = None

    @property
    def input_bytes(self) -> int:
        """The run's data volume (auto's and the sizing rules' measure): the listed
        uploads' sizes (a key uploaded again counts once, its last size), or the
        data prefix's bytes for a manual run."""
        if self.data_bytes is not None:
            return self.data_bytes
        sizes = {(o.bucket, o.key): o.size or 0 for o in self.objects}
        return sum(sizes.values())


class WaitingCode(StrEnum):
    """Why a run has not started yet (docs/architecture.md §5, README "When and why")."""

    PLAN_CAP = "PLAN_CAP"  # the plan's slots are taken (or by the runs ahead of it)
    GLOBAL_CAP = "GLOBAL_CAP"  # the platform-wide cap is taken
    TENANT_CAP = "TENANT_CAP"  # the tenant already holds its plan's runs per tenant
    BUDGET = "BUDGET"  # the tenant's monthly training hours are used up
    SUSPENDED = "SUSPENDED"
    MIGRATING = "MIGRATING"  # the tenant's data moves between isolation models
    # Extensions: a tenant in no state to train (PROVISIONING, FAILED), a plan
    # not configured, a slot free and the next dispatch not made yet, and an
    # admitted (STARTING) run whose pipeline start is retried after an error.
    TENANT_INACTIVE = "TENANT_INACTIVE"
    PLAN_UNKNOWN = "PLAN_UNKNOWN"
    DISPATCH_PENDING = "DISPATCH_PENDING"
    START_RETRY = "START_RETRY"


class WaitingFor(_Wire):
    code: WaitingCode
    message: str


class RetryMode(StrEnum):
    """How a FAILED run was tried again: SageMaker's RetryPipelineExecution resumed its
    execution from the failed step (the steps that succeeded are not run again), or,
    when that execution could not be retried, a new execution started from the top."""

    RESUMED = "RESUMED"
    RESTARTED = "RESTARTED"


class RunRetry(_Wire):
    """One ``POST /tenants/{id}/runs/{runId}/retry`` of a FAILED run (newest last)."""

    attempt: int = Field(description="1 for the run's first retry, 2 for the next, ...")
    requested_at: str
    reason: str | None = Field(default=None, description="Why, as the caller said.")
    requested_by: str | None = Field(
        default=None, description="The IAM identity that asked for it."
    )
    previous_failure_reason: str | None = None
    previous_execution_arn: str | None = None
    previous_ended_at: str | None = None
    previous_plan: str | None = Field(
        default=None, description="The plan the failed execution ran under."
    )
    mode: RetryMode | None = Field(
        default=None, description="Set when it starts: RESUMED or RESTARTED."
    )
    fallback_reason: str | None = Field(
        default=None, description="Why the execution could not be resumed (RESTARTED)."
    )
    execution_arn: str | None = None


class Run(_Wire):
    run_id: str
    tenant_id: str
    plan: str
    status: RunStatus
    trigger: Trigger
    queued_at: str
    started_at: str | None = None
    ended_at: str | None = None
    execution_arn: str | None = None
    model_package_arn: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    data_report: dict[str, Any] | None = Field(
        default=None,
        description="What preprocess found in the run's data: problemType, rows, columns, "
        "featureColumns, classBalance (classification) or targetRange (regression), "
        "missingValues. Set when the run trained.",
    )
    failure_reason: str | None = None
    instance_type: str | None = None
    instance_count: int | None = None
    training_seconds: float | None = None
    cost_estimate_usd: float | None = None
    queue_position: int | None = Field(
        default=None,
        description="While QUEUED: 1-based place in its plan's dispatch order (fair order, "
        "then runs held back); computed per read.",
    )
    # Why it has not started (QUEUED, or STARTING with a start retried); never a
    # failure. Stored only when the scheduler's reason changes; the read model
    # (scheduling/waiting.py) derives the capacity reasons and, like
    # queue_position, estimated_start_at at read time (never stored).
    waiting_for: WaitingFor | None = Field(
        default=None,
        description="Why it has not started (QUEUED, or STARTING while its start is retried); "
        "null once it started. Never a failure: see failureReason.",
    )
    estimated_start_at: str | None = Field(
        default=None,
        description="While QUEUED: ISO-8601 UTC estimate of its start from the plan's recent "
        "run durations, the runs ahead and the free slots; null when unknown (no history, "
        "held back).",
    )
    # POST /tenants/{id}/runs "training": this run's choice, over the tenant's.
    training_request: TrainingChoice | None = None
    # What it trains with (algorithm and how it was chosen, problem type, the
    # effective hyperparameters, image, instances), recorded when it is started.
    training: RunTraining | None = None
    lineage: RunLineage | None = Field(
        default=None,
        description="What it was trained from and with, recorded at its start: inputs (the "
        "training files under the data prefix: key, etag, size, versionId; the first "
        f"{limits.LINEAGE_INPUTS_MAX}), inputsOmitted, inputsTruncated, inputsDigest, "
        "definitionVersion (the pipeline definition's hash), problemType, algorithm, "
        "imageUri, hyperparameters, metric, metricThreshold.",
    )
    retries: list[RunRetry] = Field(
        default_factory=list,
        description="Each retry of the run after it FAILED, oldest first (bounded by the "
        "settings' maxRunRetries): when and why, the failure it followed and whether "
        "the execution was resumed or restarted.",
    )
    start_attempts: int = 0
    updated_at: str | None = None

    @classmethod
    def _internal_fields(cls) -> set[str]:
        return {"start_attempts", "updated_at"}

    @property
    def retry(self) -> RunRetry | None:
        """The latest retry, if the run was ever retried."""
        return self.retries[-1] if self.retries else None

    @property
    def client_request_token(self) -> str:
        # StartPipelineExecution's idempotency token (32-128 characters): a restart
        # after a retry is a new execution, so it needs a token of its own.
        retry = self.retry
        return self.run_id if retry is None else f"{self.run_id}-restart-{retry.attempt}"

    @property
    def retry_token(self) -> str:
        """RetryPipelineExecution's idempotency token for the latest retry."""
        retry = self.retry
        return f"{self.run_id}-retry-{retry.attempt if retry else 0}"

    @property
    def display_name(self) -> str:
        # <= 82 chars of [a-zA-Z0-9-]: tenant id (<= 32) + dash + 12 hex.
        return f"{self.tenant_id}-{self.run_id[-12:]}"
