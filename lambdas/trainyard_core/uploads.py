"""What an upload must be to train: the one rule, read by intake, the migration's
record of moved uploads and the local runner's staging. Pure."""

from __future__ import annotations

TRAINING_SUFFIX = ".csv"
# A training job stages each input object at its key relative to the input prefix
# (SageMaker's File mode), so a key must also be a valid relative path on Linux.
PATH_SEGMENT_MAX_BYTES = 255


def is_training_file(key: str) -> bool:
    """What starts a run: the extension ``.csv``, any case."""
    return key.casefold().endswith(TRAINING_SUFFIX)


def unstageable_key(relative: str) -> str | None:
    """Why an S3 key (relative to the tenant's data prefix) cannot be a file in a
    training job, or None. Such an object fails every run while it exists, in AWS
    as on the embedded stack: intake says so at upload, the job names the key."""
    parts = relative.split("/")
    if any(part in (".", "..") for part in parts):
        return "it has a '.' or '..' path segment"
    if any(part == "" for part in parts):
        return "it has an empty path segment ('//' or a leading '/')"
    longest = max(len(part.encode()) for part in parts)
    if longest > PATH_SEGMENT_MAX_BYTES:
        return f"a path segment is {longest} bytes long (the limit is {PATH_SEGMENT_MAX_BYTES})"
    return None
