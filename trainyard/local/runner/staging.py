"""A job's data with SageMaker's directory contract: ``/opt/ml`` mapped to a local
folder, S3 inputs downloaded into it before the job, outputs uploaded after it.

Which identity moves the data is the caller's choice (SageMaker stages a job's data
as the job's RoleArn: ``acting_as`` around these calls)."""

from __future__ import annotations

import re
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from trainyard_core.uploads import unstageable_key

from .expressions import split_s3_uri, to_text
from .records import StepFailure

OPT_ML = "/opt/ml"
# Linux's limits on the job's volume: a name (one path component) and a whole path.
PATH_MAX_BYTES = 4096
_SHOWN_KEY_CHARS = 120


def _shown(key: str) -> str:
    return key if len(key) <= _SHOWN_KEY_CHARS else key[: _SHOWN_KEY_CHARS - 1] + "…"


def unstageable(relative: str, container_dir: str) -> str | None:
    """Why an S3 key (relative to its input prefix) cannot be a file in the job's
    container, or None. SageMaker's File mode keeps the key's relative path, so a
    key that is no valid path fails the real job too; here it fails with a reason
    that names the key, never a local path. The per-segment rule is intake's too."""
    reason = unstageable_key(relative)
    if reason is None and len(f"{container_dir}/{relative}".encode()) > PATH_MAX_BYTES:
        reason = f"its path is longer than {PATH_MAX_BYTES} bytes"
    return reason


def job_root(workdir: Path) -> Path:
    """A fresh local stand-in for a job's /opt/ml (with the output/ folder jobs expect)."""
    root = workdir / "opt-ml"
    shutil.rmtree(root, ignore_errors=True)
    (root / "output").mkdir(parents=True)
    return root


def map_path(container_path: str, root: Path) -> Path:
    """Where a container path under /opt/ml is in the job's local root."""
    if container_path != OPT_ML and not container_path.startswith(OPT_ML + "/"):
        raise StepFailure(f"local path {container_path!r} is outside {OPT_ML}")
    relative = container_path[len(OPT_ML) :].lstrip("/")
    if ".." in Path(relative).parts:
        raise StepFailure(f"local path {container_path!r} escapes {OPT_ML}")
    return root / relative


def map_arg(arg: Any, root: Path) -> str:
    # Rewrites /opt/ml wherever it starts a path, also inside --flag=/opt/ml/...
    return re.sub(r"(?<![\w/])/opt/ml(?=/|$|\s)", str(root), to_text(arg))


def download(s3: Any, uri: str, dest: Path, what: str, container_dir: str = OPT_ML) -> None:
    """An S3Prefix input: every key starting with the prefix, kept relative to the
    prefix's last "/" (a single object lands by its name). None found fails the job;
    so does a key that cannot be a file there (``unstageable``)."""
    bucket, prefix = split_s3_uri(uri)
    dest.mkdir(parents=True, exist_ok=True)
    base = prefix[: prefix.rfind("/") + 1]
    count = 0
    for key in _keys(s3, bucket, prefix):
        relative = key[len(base) :]
        if not relative or relative.endswith("/"):
            continue  # "folder" placeholder objects
        why = unstageable(relative, container_dir)
        if why is not None:
            raise StepFailure(
                f"ClientError: Data download failed: S3 object {_shown(key)!r} in input data "
                f"source {what!r} cannot be a file in the container: {why}"
            )
        target = dest / relative
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, key, str(target))
        except OSError as exc:  # e.g. "a.csv" and "a.csv/b.csv": a name both file and folder
            raise StepFailure(
                f"ClientError: Data download failed: S3 object {_shown(key)!r} in input data "
                f"source {what!r}: {exc.strerror or type(exc).__name__}"
            ) from None
        count += 1
    if count == 0:
        raise StepFailure(
            f"ClientError: No S3 objects found under S3 URL {uri!r} given in input "
            f"data source {what!r}"
        )


def _keys(s3: Any, bucket: str, prefix: str) -> Iterator[str]:
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            yield item["Key"]


def upload(s3: Any, local: Path, uri: str) -> None:
    """An EndOfJob output: every file under ``local``, by its relative path."""
    bucket, prefix = split_s3_uri(uri)
    prefix = prefix.rstrip("/")
    for path in sorted(local.rglob("*")):
        if path.is_file():
            relative = path.relative_to(local).as_posix()
            key = f"{prefix}/{relative}" if prefix else relative
            s3.upload_file(str(path), bucket, key)


def pack_model(root: Path) -> Path:
    """A training job's /opt/ml/model as the model.tar.gz SageMaker uploads."""
    archive = root / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted((root / "model").rglob("*")):
            tar.add(path, arcname=path.relative_to(root / "model").as_posix())
    return archive
