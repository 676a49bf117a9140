"""Sending a file through the API's presigned upload (``POST /tenants/{id}/uploads``).

Plain HTTP: the presigned POST or part URLs carry the only authority needed, so
this needs no AWS credentials and sends none (a fresh ``requests`` session, no
auth, nothing from the environment's AWS settings). Used by ``trainyard upload``
and the integration tests.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests

from trainyard.api_client import ApiError, TrainyardApi

UPLOAD_TIMEOUT_SECONDS = 300
# Part URLs last an hour: parts not sent yet are presigned again this long before
# they expire (a part's PUT, up to UPLOAD_TIMEOUT_SECONDS, must start in time).
RESIGN_BEFORE = timedelta(seconds=UPLOAD_TIMEOUT_SECONDS + 60)


class UploadFailed(ApiError):
    """S3 refused the presigned request (its HTTP status, error code and message)."""


def _s3_error(response: requests.Response) -> UploadFailed:
    import re

    text = response.text or ""
    code = re.search(r"<Code>([^<]*)</Code>", text)
    message = re.search(r"<Message>([^<]*)</Message>", text)
    return UploadFailed(
        response.status_code,
        code.group(1) if code else f"Http{response.status_code}",
        message.group(1) if message else (response.reason or "S3 refused the upload"),
    )


def _plain_session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # no proxies or netrc credentials from the environment
    return session


def send_post(grant: dict[str, Any], data: bytes, file_name: str) -> requests.Response:
    """The presigned POST of ``grant`` with ``data`` as its file (S3's form upload)."""
    with _plain_session() as session:
        response = session.post(
            grant["url"],
            data=grant["fields"],
            files={"file": (file_name, data, grant["fields"].get("Content-Type", "text/csv"))},
            timeout=UPLOAD_TIMEOUT_SECONDS,
        )
    if response.status_code not in (200, 201, 204):
        raise _s3_error(response)
    return response


def _expires_at(grant: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(grant["expiresAt"]).replace("Z", "+00:00"))


def send_parts(
    grant: dict[str, Any],
    path: Path,
    *,
    resign: Callable[[list[int]], dict[str, Any]] | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[tuple[int, str]]:
    """PUT each presigned part of ``grant`` (its signed size from ``path``); their
    ETags. With ``resign`` (POST .../parts), the parts not sent yet are presigned
    again when their URLs near expiry: a slow link outlasts the first hour."""
    done: list[tuple[int, str]] = []
    parts = list(grant["parts"])
    expires_at = _expires_at(grant)
    with _plain_session() as session, path.open("rb") as source:
        for index, part in enumerate(parts):
            if resign is not None and now() >= expires_at - RESIGN_BEFORE:
                fresh = resign([int(p["partNumber"]) for p in parts[index:]])
                by_number = {int(p["partNumber"]): p for p in fresh["parts"]}
                parts[index:] = [by_number[int(p["partNumber"])] for p in parts[index:]]
                expires_at = _expires_at(fresh)
                part = parts[index]
            chunk = source.read(int(part["size"]))
            response = session.put(part["url"], data=chunk, timeout=UPLOAD_TIMEOUT_SECONDS)
            if response.status_code != 200:
                raise _s3_error(response)
            done.append((int(part["partNumber"]), response.headers["ETag"]))
    return done


def upload_file(api: TrainyardApi, tenant_id: str, path: Path) -> dict[str, Any]:
    """Upload one file through the API; returns the key, size and how it went."""
    size = path.stat().st_size
    grant = api.create_upload(tenant_id, path.name, size)
    if grant["method"] == "POST":
        send_post(grant, path.read_bytes(), path.name)
        return {"key": grant["key"], "size": size, "method": "POST"}
    try:
        parts = send_parts(
            grant,
            path,
            resign=lambda numbers: api.presign_upload_parts(tenant_id, grant["uploadId"], numbers),
        )
        done = api.complete_upload(tenant_id, grant["uploadId"], grant["key"], parts)
    except BaseException:
        # Parts of an upload never completed are stored (and billed) until aborted.
        with contextlib.suppress(ApiError):
            api.abort_upload(tenant_id, grant["uploadId"], grant["key"])
        raise
    return {"key": grant["key"], "size": size, "method": "MULTIPART", "eTag": done.get("eTag")}
