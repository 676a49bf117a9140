"""Presigned S3 requests on the embedded stack, checked as S3 checks them.

moto's S3 takes a POST form upload or a presigned URL without looking at its
signature, policy, expiry or signer: it would store a key outside the signed
prefix, any content type and any size. A client holding a presigned request sends
it as plain HTTP (no SDK, so no enforcer hook sees it), so this WSGI gate in front
of moto checks what S3 does, with S3's error codes:

- the signature (SigV4 over the POST policy, or over the canonical request of a
  presigned URL, its signed headers such as Content-Length included) with the
  secret of the embedded STS session that signed it, and its session token;
- expiry: the session's (ExpiredToken), the POST policy's ``expiration`` and the
  URL's ``X-Amz-Expires`` (AccessDenied);
- a POST policy's conditions (exact ``bucket``, ``key`` and other fields,
  ``starts-with``, ``content-length-range``) and that every form field is covered
  by one; S3's 5 GB POST limit. As S3 does, a form is read up to its ``file``
  field: fields after it are ignored (they neither meet nor break a condition, nor
  set metadata or the content type; moto is handed the form without them);
- the signer's IAM permission for the object (its role's policies and its
  session policy, with the enforcer's evaluator);
- an S3 request to a bucket with no signature at all is anonymous: denied.

Requests signed in the Authorization header pass through (the SDK's; the enforcer
evaluates them as their principal before they are sent). Presigned requests are
modelled for the embedded STS's sessions only (the embedded account has no IAM
users): any other access key is InvalidAccessKeyId, as S3 answers for unknown keys.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

from .enforcer import AccessDenied, Enforcer
from .sessions import find_session

log = logging.getLogger("trainyard.local.iam")

S3_POST_MAX_BYTES = 5 * 1024**3
PRESIGN_MAX_SECONDS = 7 * 24 * 3600
ALGORITHM = "AWS4-HMAC-SHA256"
# Form fields no policy condition needs to cover (S3's POST documentation).
_UNCOVERED = {"x-amz-signature", "file", "policy"}

Environ = dict[str, Any]
StartResponse = Callable[..., Any]


class Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _error_body(code: str, message: str) -> bytes:
    from xml.sax.saxutils import escape

    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
        "<RequestId>trainyard-local</RequestId></Error>"
    ).encode()


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = _hmac(("AWS4" + secret).encode(), date)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    return key


def _parse_amz_date(value: str) -> datetime:
    try:
        return datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise Refused(
            400, "AuthorizationQueryParametersError", f"bad X-Amz-Date {value!r}"
        ) from None


class PresignedS3Gate:
    def __init__(
        self,
        app: Callable[[Environ, StartResponse], Iterable[bytes]],
        enforcer: Enforcer,
        *,
        region: str,
        partition: str,
        buckets: Callable[[], Iterable[str]],
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.app = app
        self.enforcer = enforcer
        self.region = region
        self.partition = partition
        self.buckets = buckets
        self.now = now

    # ------------------------------------------------------------------ WSGI
    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        try:
            self._check(environ)
        except Refused as refused:
            log.warning("S3 refused a presigned request: %s %s", refused.code, refused.message)
            body = _error_body(refused.code, refused.message)
            start_response(
                f"{refused.status} {'Forbidden' if refused.status == 403 else 'Bad Request'}",
                [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))],
            )
            return [body]
        return self.app(environ, start_response)

    def _check(self, environ: Environ) -> None:
        query = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
        method = environ.get("REQUEST_METHOD", "GET")
        content_type = environ.get("CONTENT_TYPE", "")
        if "X-Amz-Credential" in query:
            self._check_query(environ, query, method)
        elif environ.get("HTTP_AUTHORIZATION"):
            return  # the SDK's requests: evaluated by the enforcer before sending
        elif method == "POST" and content_type.startswith("multipart/form-data"):
            if self._bucket_of(environ) is not None:
                self._check_post(environ)
        elif self._bucket_of(environ) is not None:
            raise Refused(403, "AccessDenied", "Access Denied (an anonymous request)")

    def _bucket_of(self, environ: Environ) -> str | None:
        first = environ.get("PATH_INFO", "/").lstrip("/").split("/", 1)[0]
        return first if first and first in set(self.buckets()) else None

    # ------------------------------------------------------------- sessions
    def _session(self, access_key: str, token: str | None) -> Any:
        session = find_session(access_key)
        if session is None:
            raise Refused(
                403,
                "InvalidAccessKeyId",
                "The AWS Access Key Id you provided does not exist in our records.",
            )
        if token != session.session_token:
            raise Refused(
                403, "InvalidToken", "The provided token is malformed or otherwise invalid."
            )
        if self.now() >= session.expiration:
            raise Refused(400, "ExpiredToken", "The provided token has expired.")
        return session

    def _scope(self, credential: str) -> tuple[str, str, str]:
        parts = credential.split("/")
        if len(parts) != 5 or parts[3] != "s3" or parts[4] != "aws4_request":
            raise Refused(
                400, "AuthorizationQueryParametersError", f"bad credential {credential!r}"
            )
        if parts[2] != self.region:
            raise Refused(
                400, "AuthorizationQueryParametersError", f"credential region must be {self.region}"
            )
        return parts[0], parts[1], "/".join(parts[1:])

    def _authorize(self, session: Any, service_op: str, params: dict[str, Any]) -> None:
        try:
            self.enforcer.check_call(session.principal(), "s3", service_op, params)
        except AccessDenied as denied:
            raise Refused(403, "AccessDenied", str(denied)) from None

    # ----------------------------------------------------------- POST forms
    def _check_post(self, environ: Environ) -> None:
        from werkzeug.formparser import parse_form_data

        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        body = form_through_file(body, environ.get("CONTENT_TYPE", ""))
        environ["wsgi.input"] = io.BytesIO(body)  # moto reads it again
        environ["CONTENT_LENGTH"] = str(len(body))
        copy = dict(environ)
        copy["wsgi.input"] = io.BytesIO(body)
        _, form, files = parse_form_data(copy)
        fields = {name.lower(): value for name, value in form.items()}
        upload = files.get("file")
        if upload is None:
            raise Refused(
                400, "InvalidArgument", "POST requires exactly one file upload per request."
            )
        size = len(upload.read())
        bucket = environ.get("PATH_INFO", "/").lstrip("/").split("/", 1)[0]
        for required in ("policy", "x-amz-credential", "x-amz-signature", "x-amz-date", "key"):
            if required not in fields:
                raise Refused(
                    400, "InvalidArgument", f"Bucket POST must contain a field named '{required}'."
                )
        if fields.get("x-amz-algorithm") != ALGORITHM:
            raise Refused(400, "InvalidArgument", f"x-amz-algorithm must be {ALGORITHM}")
        access_key, date, _scope = self._scope(fields["x-amz-credential"])
        session = self._session(access_key, fields.get("x-amz-security-token"))
        key = signing_key(session.secret_access_key, date, self.region, "s3")
        expected = hmac.new(key, fields["policy"].encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, fields["x-amz-signature"]):
            raise Refused(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )
        try:
            policy = json.loads(base64.b64decode(fields["policy"]))
            expiration = datetime.fromisoformat(str(policy["expiration"]).replace("Z", "+00:00"))
        except (ValueError, KeyError, TypeError):
            raise Refused(
                400, "InvalidPolicyDocument", "Invalid Policy: Invalid JSON or no expiration."
            ) from None
        if self.now() >= expiration:
            raise Refused(403, "AccessDenied", "Invalid according to Policy: Policy expired.")
        values = {**fields, "bucket": bucket}
        covered: set[str] = set()
        for condition in policy.get("conditions", []):
            covered |= _check_condition(condition, values, size)
        extra = sorted(set(fields) - covered - _UNCOVERED)
        extra = [name for name in extra if not name.startswith("x-ignore-")]
        if extra:
            raise Refused(
                403, "AccessDenied", f"Invalid according to Policy: Extra input fields: {extra[0]}"
            )
        if size > S3_POST_MAX_BYTES:
            raise Refused(
                400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size"
            )
        self._authorize(session, "PutObject", {"Bucket": bucket, "Key": fields["key"]})

    # ------------------------------------------------------- presigned URLs
    def _check_query(self, environ: Environ, query: dict[str, str], method: str) -> None:
        if query.get("X-Amz-Algorithm") != ALGORITHM:
            raise Refused(
                400, "AuthorizationQueryParametersError", f"X-Amz-Algorithm must be {ALGORITHM}"
            )
        access_key, _, scope = self._scope(query["X-Amz-Credential"])
        signed_at = _parse_amz_date(query.get("X-Amz-Date", ""))
        try:
            expires = int(query.get("X-Amz-Expires", ""))
        except ValueError:
            raise Refused(
                400, "AuthorizationQueryParametersError", "X-Amz-Expires must be a number"
            ) from None
        if not 1 <= expires <= PRESIGN_MAX_SECONDS:
            raise Refused(
                400,
                "AuthorizationQueryParametersError",
                "X-Amz-Expires must be 1 to 604800 seconds",
            )
        if self.now() > signed_at + timedelta(seconds=expires):
            raise Refused(403, "AccessDenied", "Request has expired")
        session = self._session(access_key, query.get("X-Amz-Security-Token"))
        canonical = self._canonical_request(environ, query, method)
        to_sign = "\n".join(
            (ALGORITHM, query["X-Amz-Date"], scope, hashlib.sha256(canonical.encode()).hexdigest())
        )
        key = signing_key(session.secret_access_key, scope.split("/")[0], self.region, "s3")
        expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, query.get("X-Amz-Signature", "")):
            raise Refused(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )
        self._authorize(session, *self._operation(environ, query, method))

    @staticmethod
    def _raw_path(environ: Environ) -> str:
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
        if raw:
            return str(raw).split("?", 1)[0]
        return quote(environ.get("PATH_INFO", "/"), safe="/~")

    def _canonical_request(self, environ: Environ, query: dict[str, str], method: str) -> str:
        pairs = parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        canonical_query = "&".join(
            f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}"
            for k, v in sorted(pairs)
            if k != "X-Amz-Signature"
        )
        signed = query.get("X-Amz-SignedHeaders", "")
        headers = []
        for name in signed.split(";"):
            if name == "content-length":
                value = environ.get("CONTENT_LENGTH", "")
            elif name == "content-type":
                value = environ.get("CONTENT_TYPE", "")
            else:
                value = environ.get("HTTP_" + name.upper().replace("-", "_"), "")
            headers.append(f"{name}:{' '.join(str(value).split())}\n")
        payload = query.get("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD")
        return "\n".join(
            (method, self._raw_path(environ), canonical_query, "".join(headers), signed, payload)
        )

    def _operation(
        self, environ: Environ, query: dict[str, str], method: str
    ) -> tuple[str, dict[str, Any]]:
        path = unquote(self._raw_path(environ)).lstrip("/")
        bucket, _, key = path.partition("/")
        params: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if method == "PUT" and "uploadId" in query and "partNumber" in query:
            return "UploadPart", params
        if method == "PUT" and not key:
            raise Refused(403, "AccessDenied", "a presigned bucket request is not modelled")
        return {"PUT": "PutObject", "GET": "GetObject", "HEAD": "HeadObject"}.get(
            method, f"{method}Presigned"
        ), params


def form_through_file(body: bytes, content_type: str) -> bytes:
    """A multipart/form-data body as S3 reads a POST upload: its parts up to and
    including the ``file`` part, then the closing delimiter. S3's POST Object: "The
    file or text content must be the last field in the form"; S3 ignores the fields
    after it. A body with no ``file`` part is returned as it is."""
    from werkzeug.http import parse_options_header

    boundary = parse_options_header(content_type)[1].get("boundary")
    if not boundary:
        return body
    delimiter = b"--" + boundary.encode("latin-1")
    position = body.find(delimiter)
    while position != -1:
        headers_start = position + len(delimiter)
        if body[headers_start : headers_start + 2] == b"--":
            break  # the closing delimiter
        headers_end = body.find(b"\r\n\r\n", headers_start)
        following = body.find(b"\r\n" + delimiter, headers_end)
        if headers_end == -1 or following == -1:
            break
        if _part_name(body[headers_start:headers_end].decode("latin-1")) == "file":
            return body[:following] + b"\r\n" + delimiter + b"--\r\n"
        position = following + 2
    return body


def _part_name(headers: str) -> str | None:
    from werkzeug.http import parse_options_header

    for line in headers.split("\r\n"):
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-disposition":
            return parse_options_header(value.strip())[1].get("name")
    return None


def _check_condition(condition: Any, values: dict[str, str], size: int) -> set[str]:
    """One condition of a POST policy against the form; the field names it covers."""
    failed = Refused(
        403,
        "AccessDenied",
        f"Invalid according to Policy: Policy Condition failed: {json.dumps(condition)}",
    )
    if isinstance(condition, dict):
        if len(condition) != 1:
            raise Refused(
                400, "InvalidPolicyDocument", "Invalid Policy: a condition names one field"
            )
        ((name, expected),) = condition.items()
        if values.get(name.lower()) != expected:
            raise failed
        return {name.lower()}
    if not isinstance(condition, list) or not condition:
        raise Refused(400, "InvalidPolicyDocument", f"Invalid Policy: bad condition {condition!r}")
    operator = str(condition[0]).lower()
    if operator == "content-length-range" and len(condition) == 3:
        try:
            low, high = int(condition[1]), int(condition[2])
        except (TypeError, ValueError):
            raise Refused(400, "InvalidPolicyDocument", "Invalid Policy: bad range") from None
        if size > high:
            raise Refused(
                400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size"
            )
        if size < low:
            raise Refused(
                400,
                "EntityTooSmall",
                "Your proposed upload is smaller than the minimum allowed size",
            )
        return set()
    if operator in ("eq", "starts-with") and len(condition) == 3:
        name = str(condition[1]).lstrip("$").lower()
        actual, expected = values.get(name), str(condition[2])
        holds = actual == expected if operator == "eq" else (actual or "").startswith(expected)
        if actual is None or not holds:
            raise failed
        return {name}
    raise Refused(400, "InvalidPolicyDocument", f"Invalid Policy: unknown condition {condition!r}")


def s3_bucket_names(account: str, partition: str) -> Callable[[], Iterable[str]]:
    def names() -> Iterable[str]:
        from moto.s3.models import s3_backends

        return s3_backends[account][partition].buckets.keys()

    return names


def gated_moto_server(ip_address: str, port: int, gate: Callable[[Any], Any]) -> Any:
    """moto's ThreadedMotoServer with ``gate`` wrapped around its WSGI application."""
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    class GatedMotoServer(ThreadedMotoServer):
        def _server_entry(self) -> None:
            app = gate(DomainDispatcherApplication(create_backend_app))
            self._server = make_server(
                self._ip_address, self._port, app, True, request_handler=MotoRequestHandler
            )
            self._server_ready_event.set()
            self._server.serve_forever()

    return GatedMotoServer(ip_address=ip_address, port=port, verbose=False)
