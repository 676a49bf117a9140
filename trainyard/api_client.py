"""HTTP client of the onboarding API (docs/architecture.md §5), local or deployed.

The same paths and JSON locally and in AWS; the only difference is auth: a
deployed API Gateway uses IAM auth, so ``sigv4=True`` signs every request with
the default boto3 credentials (service ``execute-api``).

Methods and paths come from the API's route table and request bodies from its
models (``trainyard_handlers.api``), so the client cannot drift from the
handler. Answers are the JSON as sent (dicts), which the CLI reads.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from trainyard_handlers.api.models import (
    AbortUploadRequest,
    CompletedPartBody,
    CompleteUploadRequest,
    CreateTenantRequest,
    CreateUploadRequest,
    ModelDecisionRequest,
    PresignUploadPartsRequest,
    PutWebhookRequest,
    TriggerRunRequest,
    UpdateTenantRequest,
)
from trainyard_handlers.api.routes import route

DEFAULT_LOCAL_API_URL = "http://127.0.0.1:8787"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


class ApiError(Exception):
    """An error answer of the API: HTTP status plus the envelope's code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def is_local_url(url: str) -> bool:
    return (urlsplit(url).hostname or "") in LOOPBACK_HOSTS


def region_from_url(url: str) -> str | None:
    """The region of an ``https://<id>.execute-api.<region>.amazonaws.com`` URL."""
    parts = (urlsplit(url).hostname or "").split(".")
    if len(parts) >= 4 and parts[1] == "execute-api":
        return parts[2]
    return None


def _seg(value: str) -> str:
    # Tenant and run ids are validated server-side; quoting keeps odd input a 4xx, not a new path.
    return quote(value, safe="")


class TrainyardApi:
    def __init__(
        self,
        base_url: str,
        *,
        sigv4: bool = False,
        region: str | None = None,
        timeout: float = 10,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.sigv4 = sigv4
        self.region = region or region_from_url(base_url)
        self.timeout = timeout
        self._session = requests.Session()
        self._credentials: Any = None

    # --- transport

    def _signed_headers(
        self, method: str, url: str, body: bytes | None, headers: dict[str, str]
    ) -> dict[str, str]:
        # Imported lazily: the local path never needs botocore's credential chain.
        import boto3
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        if self._credentials is None:
            session = boto3.Session()
            credentials = session.get_credentials()
            if credentials is None:
                raise ApiError(
                    0, "NoCredentials", "SigV4 signing needs AWS credentials (none found)"
                )
            self._credentials = credentials
            self.region = self.region or session.region_name
        if not self.region:
            raise ApiError(0, "NoRegion", "SigV4 signing needs a region (set AWS_REGION)")
        request = AWSRequest(method=method, url=url, data=body, headers=headers)
        SigV4Auth(self._credentials.get_frozen_credentials(), "execute-api", self.region).add_auth(
            request
        )
        return dict(request.headers.items())

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: dict[str, Any] | None = None,
    ) -> Any:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        prepared = requests.Request(method, self.base_url + path, params=query).prepare()
        url = prepared.url or self.base_url + path
        body = json.dumps(json_body).encode() if json_body is not None else None
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self.sigv4:
            # Sign the exact URL (with its encoded query) and body that will be sent.
            headers = self._signed_headers(method, url, body, headers)
        try:
            response = self._session.request(
                method, url, data=body, headers=headers, timeout=self.timeout
            )
        except requests.ConnectionError:
            hint = (
                " (is it running? start it with: trainyard local up)"
                if is_local_url(self.base_url)
                else ""
            )
            raise ApiError(
                0, "ConnectionError", f"cannot reach the API at {self.base_url}{hint}"
            ) from None
        except requests.Timeout:
            raise ApiError(
                0, "Timeout", f"no answer from {self.base_url} within {self.timeout}s"
            ) from None
        return self._parse(response)

    @staticmethod
    def _parse(response: requests.Response) -> Any:
        try:
            payload = response.json() if response.content else None
        except ValueError:
            payload = None
        if response.ok:
            return payload if payload is not None else {}
        error = payload.get("error") if isinstance(payload, dict) else None
        if isinstance(error, dict) and "code" in error:
            raise ApiError(response.status_code, str(error["code"]), str(error.get("message", "")))
        # API Gateway's own rejections (e.g. 403 from IAM auth) use {"message": ...}.
        message = payload.get("message") if isinstance(payload, dict) else None
        raise ApiError(
            response.status_code,
            f"Http{response.status_code}",
            str(message or response.reason or "request failed"),
        )

    def call(
        self,
        operation_id: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: dict[str, Any] | None = None,
        **path: str,
    ) -> Any:
        """One route of the table, by operation id; ``path`` fills its path parameters."""
        entry = route(operation_id)
        url_path = entry.path.format(**{name: _seg(value) for name, value in path.items()})
        return self.request(entry.method, url_path, params=params, json_body=json_body)

    # --- routes (trainyard_handlers.api.routes)

    def health(self) -> dict[str, Any]:
        return self.call("health")

    def plans(self) -> dict[str, Any]:
        return self.call("listPlans")

    def create_tenant(self, tenant_id: str, plan: str) -> dict[str, Any]:
        body = CreateTenantRequest(tenantId=tenant_id, plan=plan).model_dump()
        return self.call("createTenant", json_body=body)

    def list_tenants(
        self, *, limit: int | None = None, next_token: str | None = None
    ) -> dict[str, Any]:
        return self.call("listTenants", params={"limit": limit, "nextToken": next_token})

    def all_tenants(self) -> list[dict[str, Any]]:
        """Every tenant, following nextToken."""
        tenants: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            page = self.list_tenants(limit=100, next_token=token)
            tenants.extend(page.get("tenants", []))
            token = page.get("nextToken")
            if not token:
                return tenants

    def get_tenant(self, tenant_id: str) -> dict[str, Any]:
        return self.call("getTenant", tenantId=tenant_id)

    def update_tenant(
        self,
        tenant_id: str,
        *,
        plan: str | None = None,
        status: str | None = None,
        training: dict[str, Any] | None = None,
        retrain_every: str | None = None,
        retrain_off: bool = False,
    ) -> dict[str, Any]:
        """``retrain_every`` sets the retrain schedule (an ISO-8601 period such as
        "P7D"); ``retrain_off`` removes it."""
        body = UpdateTenantRequest.model_validate(
            {"plan": plan, "status": status, "training": training}
        ).model_dump(by_alias=True, exclude_none=True)
        if retrain_off:
            body["retrain"] = None
        elif retrain_every is not None:
            body["retrain"] = {"every": retrain_every}
        return self.call("updateTenant", json_body=body, tenantId=tenant_id)

    def delete_tenant(self, tenant_id: str, *, purge: bool = False) -> dict[str, Any]:
        params = {"purge": "true"} if purge else None
        return self.call("offboardTenant", params=params, tenantId=tenant_id)

    def list_runs(
        self, tenant_id: str, *, limit: int | None = None, next_token: str | None = None
    ) -> dict[str, Any]:
        return self.call(
            "listRuns", params={"limit": limit, "nextToken": next_token}, tenantId=tenant_id
        )

    def get_run(self, tenant_id: str, run_id: str) -> dict[str, Any]:
        return self.call("getRun", tenantId=tenant_id, runId=run_id)

    def retry_run(self, tenant_id: str, run_id: str, reason: str | None = None) -> dict[str, Any]:
        body = {"reason": reason} if reason is not None else None
        return self.call("retryRun", json_body=body, tenantId=tenant_id, runId=run_id)

    def trigger_run(
        self, tenant_id: str, *, training: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        if training is None:
            return self.call("triggerRun", tenantId=tenant_id)
        body = TriggerRunRequest.model_validate({"training": training}).model_dump(
            by_alias=True, exclude_none=True
        )
        return self.call("triggerRun", json_body=body, tenantId=tenant_id)

    def algorithms(self) -> dict[str, Any]:
        return self.call("listAlgorithms")

    def usage(self, tenant_id: str, *, month: str | None = None) -> dict[str, Any]:
        return self.call("getUsage", params={"month": month}, tenantId=tenant_id)

    def queue(self) -> dict[str, Any]:
        return self.call("getQueue")

    def list_models(
        self, tenant_id: str, *, limit: int | None = None, next_token: str | None = None
    ) -> dict[str, Any]:
        return self.call(
            "listModels", params={"limit": limit, "nextToken": next_token}, tenantId=tenant_id
        )

    def approve_model(
        self, tenant_id: str, version: int, *, reason: str | None = None
    ) -> dict[str, Any]:
        body = ModelDecisionRequest(reason=reason).model_dump(exclude_none=True)
        return self.call("approveModel", json_body=body, tenantId=tenant_id, version=str(version))

    def reject_model(
        self, tenant_id: str, version: int, *, reason: str | None = None
    ) -> dict[str, Any]:
        body = ModelDecisionRequest(reason=reason).model_dump(exclude_none=True)
        return self.call("rejectModel", json_body=body, tenantId=tenant_id, version=str(version))

    # --- uploads (the file itself goes to S3 with trainyard/uploads.py, no credentials)

    def create_upload(
        self, tenant_id: str, file_name: str, content_length: int | None = None
    ) -> dict[str, Any]:
        body = CreateUploadRequest(fileName=file_name, contentLength=content_length)
        return self.call(
            "createUpload", json_body=body.model_dump(exclude_none=True), tenantId=tenant_id
        )

    def complete_upload(
        self, tenant_id: str, upload_id: str, key: str, parts: list[tuple[int, str]]
    ) -> dict[str, Any]:
        body = CompleteUploadRequest(
            key=key, parts=[CompletedPartBody(partNumber=n, eTag=e) for n, e in parts]
        )
        return self.call(
            "completeUpload", json_body=body.model_dump(), tenantId=tenant_id, uploadId=upload_id
        )

    def presign_upload_parts(
        self, tenant_id: str, upload_id: str, part_numbers: list[int]
    ) -> dict[str, Any]:
        body = PresignUploadPartsRequest(partNumbers=part_numbers).model_dump()
        return self.call(
            "presignUploadParts", json_body=body, tenantId=tenant_id, uploadId=upload_id
        )

    def abort_upload(self, tenant_id: str, upload_id: str, key: str) -> dict[str, Any]:
        body = AbortUploadRequest(key=key).model_dump()
        return self.call("abortUpload", json_body=body, tenantId=tenant_id, uploadId=upload_id)

    def put_webhook(
        self, tenant_id: str, url: str, events: list[str] | None = None
    ) -> dict[str, Any]:
        body = PutWebhookRequest(url=url, events=events).model_dump(exclude_none=True)
        return self.call("putWebhook", json_body=body, tenantId=tenant_id)

    def get_webhook(self, tenant_id: str) -> dict[str, Any]:
        return self.call("getWebhook", tenantId=tenant_id)

    def delete_webhook(self, tenant_id: str) -> dict[str, Any]:
        return self.call("deleteWebhook", tenantId=tenant_id)

    def webhook_deliveries(
        self, tenant_id: str, *, limit: int | None = None, next_token: str | None = None
    ) -> dict[str, Any]:
        return self.call(
            "listWebhookDeliveries",
            params={"limit": limit, "nextToken": next_token},
            tenantId=tenant_id,
        )
