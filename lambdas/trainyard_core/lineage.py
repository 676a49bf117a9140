"""A run's lineage: what it was trained from and with, recorded at its start. Pure.

Why the input objects are listed by the scheduler at the start, not by the
preprocess step: in File mode the processing container sees files, not ETags or
version ids, and listing afterwards (recorder) could name objects written after
the job read its data. At the start the scheduler lists the prefix once
(ListObjectVersions, one page: ``limits.LINEAGE_LIST_MAX_KEYS``), with its own
role, scoped to the tenants' data prefixes. Preprocess downloads the prefix
moments later: an object written in that gap is read without being listed; the
version ids (the data buckets are versioned) say exactly which bytes each listed
key had, and ``inputsDigest`` identifies the whole listed set when some are cut.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Protocol

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from trainyard_core import limits
from trainyard_core.training import RunTraining

# The problem type's primary metric (pipeline/contract.py reads it from here):
# the condition compares it with MetricThreshold, the model package carries it.
PRIMARY_METRICS = {"binary": "auc", "multiclass": "macro_f1", "regression": "r2"}
# Where preprocess writes a run's data report and schema.json, under <OutputUri><RunId>
# (pipeline/contract.py); the next run's schema-drift check reads the schema from there.
DATA_REPORT_SUFFIX = "/data-report"


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class LineageInput(_Wire):
    key: str  # relative to the tenant's data prefix
    etag: str
    size: int
    version_id: str | None = None  # None: the bucket was not versioned when it was written


@dataclass
class InputListing:
    """The current training files under a data prefix, as one listing saw them."""

    objects: list[LineageInput] = field(default_factory=list)
    # The listing stopped at its bound: more objects may exist than it saw.
    truncated: bool = False


class InputListingPort(Protocol):
    def current_inputs(self, bucket: str, prefix: str, max_keys: int) -> InputListing: ...


class RunLineage(_Wire):
    # None: the inputs could not be listed at the start (logged and counted).
    inputs: list[LineageInput] | None = None
    inputs_omitted: int = 0  # listed, not stored (limits.LINEAGE_INPUTS_MAX[_CHARS])
    inputs_truncated: bool = False  # the listing itself stopped at its bound
    # sha256 of every listed object (key, ETag, size, version), stored or omitted.
    inputs_digest: str | None = None
    definition_version: str | None = None
    # From the run's ``training`` (the same values; lineage is self-contained).
    problem_type: str
    algorithm: str
    image_uri: str | None = None
    hyperparameters: dict[str, str]
    metric: str | None = None
    metric_threshold: float


def definition_version(definition_json: str) -> str:
    """The deployed pipeline definition's version: the hash of its JSON body (the
    CDK stack and the embedded stack hand it to the scheduler)."""
    return "sha256:" + hashlib.sha256(definition_json.encode()).hexdigest()


def inputs_digest(objects: list[LineageInput]) -> str:
    canonical = json.dumps(
        sorted([o.key, o.etag, o.size, o.version_id] for o in objects),
        separators=(",", ":"),
    )
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def build_lineage(
    listing: InputListing | None, definition: str | None, training: RunTraining
) -> RunLineage:
    """Bounded: the first ``LINEAGE_INPUTS_MAX`` objects (key order) within
    ``LINEAGE_INPUTS_MAX_CHARS``; the rest are counted in ``inputsOmitted``."""
    kept: list[LineageInput] | None = None
    omitted = 0
    digest = None
    if listing is not None:
        ordered = sorted(listing.objects, key=lambda o: o.key)
        kept, chars = [], 0
        for item in ordered:
            size = len(item.model_dump_json(by_alias=True))
            if (
                len(kept) >= limits.LINEAGE_INPUTS_MAX
                or chars + size > limits.LINEAGE_INPUTS_MAX_CHARS
            ):
                break
            kept.append(item)
            chars += size
        omitted = len(ordered) - len(kept)
        digest = inputs_digest(ordered)
    return RunLineage(
        inputs=kept,
        inputs_omitted=omitted,
        inputs_truncated=listing.truncated if listing is not None else False,
        inputs_digest=digest,
        definition_version=definition,
        problem_type=training.problem_type,
        algorithm=training.algorithm,
        image_uri=training.image_uri,
        hyperparameters=dict(training.hyperparameters),
        metric=PRIMARY_METRICS.get(training.problem_type),
        metric_threshold=training.metric_threshold,
    )
