"""Field limits: every caller- or data-controlled value written into an item.

One home for the bounds, so no upload, failure message or exception text can
grow an item past DynamoDB's 400 KB (an item the table refuses is a run that
never ends, and a sweep that raises for everyone: docs/faults.md). Pure.

The failure-reason bound is above what SageMaker itself returns, so its reasons
are never cut (botocore's shapes, ``sagemaker/2017-07-24/service-2.json``):
``DescribePipelineExecution.FailureReason`` max 1300, the listing's
``PipelineExecutionSummary.PipelineExecutionFailureReason`` max 3072, a step's or
job's ``FailureReason`` max 1024. It only cuts what no AWS API would return (a
local runner, a hand-made event, our own messages quoting an exception).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

# DynamoDB's item limit: names and values, UTF-8 (developer guide, "Service,
# account, and table quotas": 400 KB). moto refuses a little above 405,000 bytes.
DYNAMODB_ITEM_MAX_BYTES = 400 * 1024
# SQS and EventBridge: 256 KiB a message / event entry.
MESSAGE_MAX_BYTES = 256 * 1024

FAILURE_REASON_MAX_CHARS = 4096  # > 3072, SageMaker's longest (see above)
REASON_MAX_CHARS = 1024  # an ignored/rejected upload's reason, a log extra
S3_KEY_MAX_CHARS = 1024  # S3: a key is at most 1024 bytes of UTF-8
NAME_MAX_CHARS = 256  # a metric name, a bucket, an ETag, a version id
ARN_MAX_CHARS = 2048  # SageMaker's ModelPackageArn shape: max 2048
# A QUEUED run coalesces any number of uploads; it lists the first ones and
# counts the rest (``Trigger.objectsOmitted``): 100 x ~1.3 KB at most.
TRIGGER_OBJECTS_MAX = 100
# A rejected upload's free-form detail.
DETAIL_MAX_BYTES = 16 * 1024
# A tenant webhook's URL (browsers and most servers stop near 2,000 characters).
WEBHOOK_URL_MAX_CHARS = 2048
# Metrics the pipeline's evaluation step reports for one run.
METRICS_MAX = 50
# Retries kept on a run (the settings' max_run_retries is at most this): each entry
# holds two reasons of FAILURE_REASON_MAX_CHARS, so ten stay far below 400 KB.
RUN_RETRIES_MAX = 10
# A run's data report (rows, columns, class balance or target range, missing values)
# as compact JSON: preprocess keeps it this small, the recorder and the store enforce it.
DATA_REPORT_MAX_CHARS = 4096
# The uploads a tenant made that started no run (``Tenant.ignoredUploads``).
IGNORED_UPLOADS_MAX = 20
# Why a model was approved or rejected: SageMaker's ApprovalDescription (UpdateModelPackage,
# botocore shape: 0-1024 characters matching ".*", i.e. one line).
MODEL_REASON_MAX_CHARS = 1024
# A model package's customer metadata value (botocore: 1-256 characters).
METADATA_VALUE_MAX_CHARS = 256

# A training choice (Tenant.training, Run.trainingRequest, Run.training): at most this
# many hyperparameters, each a catalog name (checked) with a value of at most this many
# characters; 50 x ~330 bytes keeps a tenant or run item far below 400 KB.
HYPERPARAMETERS_MAX = 50
HYPERPARAMETER_VALUE_MAX_CHARS = 256
# A pipeline parameter's value (StartPipelineExecution, botocore shape String1024): the
# effective hyperparameters travel as one JSON object, so it must fit (checked when a
# tenant or run chooses, and for the catalog's defaults).
PIPELINE_PARAMETER_MAX_CHARS = 1024

_MARK = " …[truncated {n} more characters]"


class ItemTooLargeError(ValueError):
    """What DynamoDB answers (ValidationException) for an item over 400 KB; the
    in-memory stores raise it too, so both backends refuse the same writes."""

    def __init__(self, size: int) -> None:
        super().__init__(
            f"Item size has exceeded the maximum allowed size ({size} > "
            f"{DYNAMODB_ITEM_MAX_BYTES} bytes)"
        )
        self.size = size


def bounded(text: str, max_chars: int) -> str:
    """``text`` at most ``max_chars`` long: the start (where a reason says what
    failed) kept, and the cut marked with how much was left off."""
    if len(text) <= max_chars:
        return text
    # The marker's own length comes out of the budget, so the bound holds.
    mark = _MARK.format(n=len(text))
    keep = max(0, max_chars - len(mark))
    return text[:keep] + _MARK.format(n=len(text) - keep)


def bounded_or_none(text: str | None, max_chars: int) -> str | None:
    return None if text is None else bounded(text, max_chars)


def failure_reason(text: str | None) -> str | None:
    """A run's or tenant's failure reason, bounded."""
    return bounded_or_none(text, FAILURE_REASON_MAX_CHARS)


def _value_size(value: Any) -> int:
    if value is None or isinstance(value, bool):
        return 1
    if isinstance(value, str):
        return len(value.encode("utf-8"))
    if isinstance(value, bytes | bytearray):
        return len(value)
    if isinstance(value, int | float | Decimal):
        # About one byte per two significant digits, plus one.
        digits = len(str(value).lstrip("-").replace(".", "").lstrip("0")) or 1
        return (digits + 1) // 2 + 1
    if isinstance(value, dict):
        return 3 + sum(len(str(k).encode("utf-8")) + _value_size(v) + 1 for k, v in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return 3 + sum(_value_size(v) + 1 for v in value)
    return len(str(value).encode("utf-8"))


def item_size(item: dict[str, Any]) -> int:
    """An item's size as DynamoDB counts it: attribute names plus values, UTF-8
    ("Item sizes and formats" in the developer guide)."""
    return sum(len(name.encode("utf-8")) + _value_size(v) for name, v in item.items())


def check_item_size(item: dict[str, Any]) -> None:
    """Refuse an item DynamoDB would refuse (the in-memory twins call this)."""
    size = item_size(item)
    if size > DYNAMODB_ITEM_MAX_BYTES:
        raise ItemTooLargeError(size)


# --- uploads through the API (POST /tenants/{id}/uploads; tenants/uploads.py)
# S3: "the maximum allowable size of an upload using POST is 5 GB"; a part is 5 MiB
# to 5 GiB (the last one may be smaller), at most 10,000 parts.
S3_POST_MAX_BYTES = 5 * 1024**3
S3_PART_MIN_BYTES = 5 * 1024**2
S3_PART_MAX_BYTES = 5 * 1024**3
S3_PARTS_MAX = 10_000
# Files above this get a multipart upload (parts of at least MULTIPART_PART_BYTES).
MULTIPART_THRESHOLD_BYTES = 100 * 1024**2
MULTIPART_PART_BYTES = 64 * 1024**2
# One answer lists every part's presigned URL (~1.5 KB each, the session token
# included): 1,000 keep it far below Lambda's 6 MB response limit.
UPLOAD_PARTS_MAX = 1_000
# So a plan's maxUploadBytes is at most 1,000 parts of 5 GiB.
MAX_UPLOAD_BYTES_LIMIT = UPLOAD_PARTS_MAX * S3_PART_MAX_BYTES
# A presigned POST lives 15 minutes; a multipart upload's part URLs an hour, the
# longest a role-chained session (a Lambda assuming the uploader role) may last.
UPLOAD_URL_SECONDS = 900
MULTIPART_URL_SECONDS = 3600
# A multipart upload's plan (state table, with this TTL) lives a day: its parts are
# re-signed (POST .../parts, an hour at a time), completed or aborted until then.
MULTIPART_UPLOAD_SECONDS = 24 * 3600
UPLOAD_FILE_NAME_MAX_BYTES = 255  # one path segment (SageMaker stages it as a file)
# The quota check lists the data prefix's object versions (current and noncurrent):
# at most this many pages of 1,000 versions.
DATA_QUOTA_LIST_PAGES = 50
# Tenant data buckets abort a multipart upload this many days after it was started
# (lifecycle AbortIncompleteMultipartUpload; 1 is S3's least). S3 adds the days to
# the initiation time and acts at the next midnight UTC after it, so no upload is
# aborted before 24 h, 24 times its part URLs' MULTIPART_URL_SECONDS: a client that
# sends its parts while their URLs are valid has the rest of the day to complete.
# An abandoned upload's parts (stored and billed, and not counted by the data quota)
# are gone within at most 2 days.
MULTIPART_ABORT_DAYS = 1
assert MULTIPART_ABORT_DAYS * 86_400 >= MULTIPART_URL_SECONDS
ETAG_MAX_CHARS = 256
# A run's lineage (trainyard_core/lineage.py): the first input objects the
# scheduler saw at the start, each <= ~1.4 KB (a 1024-byte key, an ETag, a
# version id), cut by count and by characters so the run item stays far below
# DynamoDB's 400 KB; the rest are counted and covered by a digest.
LINEAGE_INPUTS_MAX = 100
LINEAGE_INPUTS_MAX_CHARS = 32 * 1024
# Objects (current versions and delete markers) one start lists at most: one
# ListObjectVersions page, so a start costs one S3 request whatever the prefix holds.
LINEAGE_LIST_MAX_KEYS = 1000
