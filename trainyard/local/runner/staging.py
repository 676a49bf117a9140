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

from .expressions import split_s3_uri, to_text
from .records import StepFailure

OPT_ML = "/opt/ml"


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


def download(s3: Any, uri: str, dest: Path, what: str) -> None:
    """An S3Prefix input: every key starting with the prefix, kept relative to the
    prefix's last "/" (a single object lands by its name). None found fails the job."""
    bucket, prefix = split_s3_uri(uri)
    dest.mkdir(parents=True, exist_ok=True)
    base = prefix[: prefix.rfind("/") + 1]
    count = 0
    for key in _keys(s3, bucket, prefix):
        relative = key[len(base) :]
        if not relative or relative.endswith("/"):
            continue  # "folder" placeholder objects
        target = dest / relative
        if ".." in Path(relative).parts:
            raise StepFailure(f"S3 key {key!r} escapes the input directory")
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, key, str(target))
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
