"""Run lineage: the bounded record of what a run was trained from and with."""

from __future__ import annotations

from datetime import UTC, datetime

from trainyard_core import limits
from trainyard_core.clock import VirtualClock
from trainyard_core.config import Settings
from trainyard_core.lineage import (
    InputListing,
    LineageInput,
    build_lineage,
    definition_version,
    inputs_digest,
)
from trainyard_core.scheduling.service import SchedulerService
from trainyard_core.store.runs_memory import InMemoryRunRepository
from trainyard_core.store.tenants import InMemoryTenantRepository
from trainyard_core.training import TrainingChoice, resolve_run_training

from trainyard.testing.scheduling import FakePipeline, RecordingMetrics, make_tenant

SETTINGS = Settings()
TRAINING = resolve_run_training(
    SETTINGS,
    SETTINGS.plan("basic"),
    TrainingChoice(algorithm="random-forest", problem_type="regression"),
    None,
    123,
)


def _objects(n: int, key_chars: int = 10) -> list[LineageInput]:
    return [
        LineageInput(
            key=f"{i:05d}".ljust(key_chars, "k") + ".csv",
            etag=f'"e{i}"',
            size=i,
            version_id=f"v{i}",
        )
        for i in range(n)
    ]


def test_lineage_lists_every_input_with_etag_and_version_and_what_the_run_trains_with() -> None:
    objects = _objects(3)
    lineage = build_lineage(InputListing(list(reversed(objects))), "sha256:abc", TRAINING)
    assert lineage.inputs == objects  # key order
    assert lineage.inputs_omitted == 0 and not lineage.inputs_truncated
    assert lineage.definition_version == "sha256:abc"
    assert lineage.problem_type == "regression" and lineage.algorithm == "random-forest"
    assert lineage.hyperparameters == TRAINING.hyperparameters
    assert lineage.metric == "r2"
    assert lineage.metric_threshold == TRAINING.metric_threshold


def test_lineage_keeps_the_first_inputs_and_counts_the_rest_under_one_digest() -> None:
    objects = _objects(limits.LINEAGE_INPUTS_MAX + 7)
    lineage = build_lineage(InputListing(objects, truncated=True), None, TRAINING)
    assert lineage.inputs == objects[: limits.LINEAGE_INPUTS_MAX]
    assert lineage.inputs_omitted == 7 and lineage.inputs_truncated
    # The digest covers the omitted ones too: another 7th-from-last object changes it.
    changed = objects[:-1] + [objects[-1].model_copy(update={"etag": '"other"'})]
    assert lineage.inputs_digest == inputs_digest(objects) != inputs_digest(changed)


def test_lineage_stays_within_its_character_budget_with_the_longest_keys() -> None:
    objects = _objects(limits.LINEAGE_INPUTS_MAX, key_chars=limits.S3_KEY_MAX_CHARS - 4)
    lineage = build_lineage(InputListing(objects), None, TRAINING)
    assert lineage.inputs is not None and 0 < len(lineage.inputs) < len(objects)
    stored = sum(len(o.model_dump_json(by_alias=True)) for o in lineage.inputs)
    assert stored <= limits.LINEAGE_INPUTS_MAX_CHARS
    assert len(lineage.inputs) + lineage.inputs_omitted == len(objects)


def test_the_definition_version_changes_with_the_definition() -> None:
    assert definition_version('{"a":1}') == definition_version('{"a":1}')
    assert definition_version('{"a":1}') != definition_version('{"a":2}')


class _Listing:
    def __init__(self, listing: InputListing | None) -> None:
        self.listing, self.calls = listing, []

    def current_inputs(self, bucket: str, prefix: str, max_keys: int) -> InputListing:
        self.calls.append((bucket, prefix, max_keys))
        if self.listing is None:
            raise RuntimeError("AccessDenied")
        return self.listing


def _start_one(listing: _Listing):
    runs, tenants, pipeline = InMemoryRunRepository(), InMemoryTenantRepository(), FakePipeline()
    metrics = RecordingMetrics()
    service = SchedulerService(
        SETTINGS,
        runs,
        tenants,
        pipeline,
        clock=VirtualClock(datetime(2026, 3, 10, 12, 0, tzinfo=UTC)),
        metrics=metrics,
        inputs=listing,
        definition_version="sha256:def",
    )
    tenant = make_tenant("acme", "basic")
    tenants.create(tenant)
    result = service.handle_upload(str(tenant.data_bucket), "data/train.csv", etag="e", size=10)
    assert result.run
    service.dispatch()
    run = runs.get_run("acme", result.run.run_id)
    assert run and run.execution_arn
    return tenant, run, metrics


def test_a_started_run_records_its_inputs_listed_before_the_start_and_the_definition() -> None:
    listing = _Listing(InputListing(_objects(2)))
    tenant, run, _ = _start_one(listing)
    assert listing.calls == [(tenant.data_bucket, tenant.data_prefix, limits.LINEAGE_LIST_MAX_KEYS)]
    assert run.lineage and run.lineage.inputs == _objects(2)
    assert run.lineage.definition_version == "sha256:def"
    assert run.training and run.lineage.image_uri == run.training.image_uri
    assert run.api_dict()["lineage"]["inputs"][0]["versionId"] == "v0"


def test_a_listing_that_fails_still_starts_the_run_and_says_the_inputs_are_unknown() -> None:
    _, run, metrics = _start_one(_Listing(None))
    assert run.lineage and run.lineage.inputs is None
    assert run.lineage.definition_version == "sha256:def"
    assert metrics.values("LineageListingErrors") == [1]
