"""IAM enforcement in the embedded stack: every AWS call is made *as someone*.

AWS authorizes each request against the policies of the principal that makes
it: a Lambda function's calls as its execution role, the pipeline's
pipeline-level work (property files, model registration, job creation) as the
pipeline role, a job's data access as its ``RoleArn``, a stack's resource
operations as the CloudFormation service role. Locally all of them share one
process, so the principal is carried in a context variable:

    with acting_as(Principal(role_arn, "trainyard-scheduler")):
        boto3.client("dynamodb").get_item(...)   # evaluated as that role

``Enforcer.attach(session)`` hooks a boto3 session: while a principal is set,
each call is mapped to its IAM requests (``actions.py``) and evaluated against
the role's policies as the embedded IAM (moto) holds them, plus the bucket policy
for S3 requests; a denied call gets AWS's AccessDenied error without reaching the
backend. Calls made with no principal (the platform bootstrap, tests, the CLI as
the developer, AWS services' own internals) are not evaluated.
"""

from __future__ import annotations

import contextvars
import json
import logging
import threading
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

from botocore.awsrequest import AWSResponse

from .actions import Scope, UnmodelledOperation, requests_for
from .moto_gaps import (
    check_eventbridge_deliveries,
    disable_moto_bucket_policy_check,
    restore_moto_bucket_policy_check,
    uncheck_eventbridge_deliveries,
)
from .policy import (
    IDENTITY_DENY,
    IMPLICIT_DENY,
    RESOURCE_DENY,
    Decision,
    Request,
    RequestPrincipal,
    evaluate,
    evaluate_resource_policy,
    trust_names,
)
from .sessions import SessionExpired, session_of
from .sts_limits import VALIDATION_ERROR, assume_role_refusal

log = logging.getLogger("trainyard.local.iam")

_HOOK_ID = "trainyard-iam"
_API_PARAMS = "trainyard_iam_api_params"


@dataclass(frozen=True)
class Principal:
    """An assumed-role session: the role and the session name AWS gives it."""

    role_arn: str
    session: str
    # An STS session's inline session policy (AssumeRole's Policy): the session may
    # do only what both it and the role's policies allow.
    session_policy: str | None = None

    @property
    def role_name(self) -> str:
        return self.role_arn.rsplit("/", 1)[-1]

    @property
    def account(self) -> str:
        return self.role_arn.split(":")[4]

    @property
    def partition(self) -> str:
        return self.role_arn.split(":")[1]

    @property
    def arn(self) -> str:
        """As AWS names it in AccessDenied messages."""
        return (
            f"arn:{self.partition}:sts::{self.account}:assumed-role/{self.role_name}/{self.session}"
        )


_current: ContextVar[Principal | None] = ContextVar("trainyard_iam_principal", default=None)


def current_principal() -> Principal | None:
    return _current.get()


@contextmanager
def acting_as(principal: Principal | None) -> Iterator[Principal | None]:
    """AWS calls made in this block (in this thread) are that principal's."""
    token = _current.set(principal)
    try:
        yield principal
    finally:
        _current.reset(token)


# AWS's error code and HTTP status for a denied request, per service protocol.
_DENIED: dict[str, tuple[str, int]] = {
    "s3": ("AccessDenied", 403),
    "sqs": ("AccessDenied", 403),
    "iam": ("AccessDenied", 403),
    "cloudformation": ("AccessDenied", 403),
    "sts": ("AccessDenied", 403),
    "lambda": ("AccessDeniedException", 403),
    "dynamodb": ("AccessDeniedException", 400),
    "sagemaker": ("AccessDeniedException", 400),
    "events": ("AccessDeniedException", 400),
    "cloudwatch": ("AccessDenied", 403),
    "logs": ("AccessDeniedException", 400),
    "secretsmanager": ("AccessDeniedException", 400),
}

_WHY = {
    IDENTITY_DENY: "with an explicit deny in an identity-based policy",
    RESOURCE_DENY: "with an explicit deny in a resource-based policy",
}


class AccessDenied(Exception):
    """A denied request, worded as AWS words it."""

    def __init__(self, principal: Principal, request: Request, decision: Decision) -> None:
        self.principal = principal
        self.request = request
        self.decision = decision
        why = _WHY.get(
            decision.denial, f"because no identity-based policy allows the {request.action} action"
        )
        super().__init__(
            f"User: {principal.arn} is not authorized to perform: {request.action} "
            f"on resource: {request.resource} {why}"
        )


class AssumeRoleDenied(Exception):
    """A service could not assume a role (its trust policy does not allow it)."""


class PolicyStore(Protocol):
    def identity_policies(self, role_arn: str) -> list[dict[str, Any]]:
        """Inline and attached managed policy documents of a role."""

    def permissions_boundary(self, role_arn: str) -> dict[str, Any] | None: ...

    def trust_policy(self, role_arn: str) -> dict[str, Any] | None: ...

    def max_session_duration(self, role_arn: str) -> int | None:
        """The role's MaxSessionDuration (seconds); None if there is no such role."""

    def resource_policy(self, request: Request) -> dict[str, Any] | None:
        """The resource-based policy that also decides the request (bucket policy)."""


def _document(raw: Any) -> dict[str, Any]:
    if isinstance(raw, str):
        from urllib.parse import unquote

        text = raw if raw.lstrip().startswith("{") else unquote(raw)
        return dict(json.loads(text))
    return dict(raw)


class MotoPolicyStore:
    """Policies as the embedded account's IAM and S3 (moto, in process) hold them."""

    def __init__(self, account_id: str, partition: str = "aws") -> None:
        self.account_id = account_id
        self.partition = partition

    def _role(self, role_arn: str) -> Any:
        from moto.iam.models import iam_backends

        backend = iam_backends[self.account_id][self.partition]
        name = role_arn.rsplit("/", 1)[-1]
        try:
            return backend.get_role(name)
        except Exception:
            return None

    def identity_policies(self, role_arn: str) -> list[dict[str, Any]]:
        role = self._role(role_arn)
        if role is None:
            return []
        documents = [_document(doc) for doc in role.policies.values()]
        for managed in role.managed_policies.values():
            documents.append(_document(_default_version(managed)))
        return documents

    def permissions_boundary(self, role_arn: str) -> dict[str, Any] | None:
        role = self._role(role_arn)
        arn = getattr(role, "permissions_boundary_arn", None) if role is not None else None
        if not arn:
            return None
        from moto.iam.models import iam_backends

        policy = iam_backends[self.account_id][self.partition].get_policy(arn)
        return _document(_default_version(policy))

    def trust_policy(self, role_arn: str) -> dict[str, Any] | None:
        role = self._role(role_arn)
        return _document(role.assume_role_policy_document) if role is not None else None

    def max_session_duration(self, role_arn: str) -> int | None:
        role = self._role(role_arn)
        if role is None:
            return None
        return int(getattr(role, "max_session_duration", None) or 3600)

    def resource_policy(self, request: Request) -> dict[str, Any] | None:
        if request.action.lower() == "sts:assumerole":
            return self.trust_policy(request.resource)
        if not request.action.lower().startswith("s3:"):
            return None
        bucket = request.resource.split(":::", 1)[-1].split("/", 1)[0]
        from moto.s3.models import s3_backends

        found = s3_backends[self.account_id][self.partition].buckets.get(bucket)
        policy = getattr(found, "policy", None) if found is not None else None
        return (
            _document(policy.decode() if isinstance(policy, bytes) else policy) if policy else None
        )


def _default_version(policy: Any) -> Any:
    for version in policy.versions:
        if version.is_default:
            return version.document
    return policy.versions[-1].document


class _ContextExecutor(ThreadPoolExecutor):
    """s3transfer's worker threads act for whoever started the transfer (in AWS
    every thread of a process uses the same credentials)."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        return super().submit(contextvars.copy_context().run, fn, *args, **kwargs)


def _propagate_to_transfer_threads(on: bool) -> None:
    from s3transfer.futures import BoundedExecutor

    BoundedExecutor.EXECUTOR_CLS = _ContextExecutor if on else ThreadPoolExecutor


@dataclass(frozen=True)
class Evaluation:
    principal: str
    action: str
    resource: str
    allowed: bool


class Enforcer:
    def __init__(self, store: PolicyStore, scope: Scope) -> None:
        self.store = store
        self.scope = scope
        self._sessions: list[Any] = []
        self._lock = threading.Lock()
        # Recent decisions (newest last), for tests and for people debugging a denial.
        self.evaluations: deque[Evaluation] = deque(maxlen=5000)
        self.denials: list[AccessDenied] = []
        # EventBridge deliveries a queue policy refused: (rule arn, queue arn, why).
        self.refused_deliveries: list[tuple[str, str, str]] = []

    # ------------------------------------------------------------ decisions

    def _delivery_denied(self, rule_arn: str, queue_arn: str, why: str) -> None:
        log.warning("EventBridge rule %s may not deliver to %s: %s", rule_arn, queue_arn, why)
        with self._lock:
            self.refused_deliveries.append((rule_arn, queue_arn, why))

    def decide(self, principal: Principal, request: Request) -> Decision:
        context: dict[str, Any] = {
            "aws:PrincipalArn": principal.role_arn,
            "aws:PrincipalAccount": principal.account,
            "aws:SecureTransport": "true",  # every SDK call to AWS is HTTPS
            **request.context,
        }
        full = Request(request.action, request.resource, context)
        who = RequestPrincipal(arn=principal.role_arn, account=principal.account)
        decision = evaluate(
            self.store.identity_policies(principal.role_arn),
            full,
            resource_document=self.store.resource_policy(full),
            principal=who,
        )
        if decision.allowed and full.action.lower() == "sts:assumerole":
            # The target role's trust policy must name the caller (or its account,
            # and then the caller's own policies must allow it too: evaluated above).
            trust = self.store.trust_policy(full.resource)
            if trust is None or not trust_names(trust, full, who):
                decision = Decision(False, IMPLICIT_DENY)
        if decision.allowed:
            boundary = self.store.permissions_boundary(principal.role_arn)
            if boundary is not None:
                bounded = evaluate([boundary], full)
                if not bounded.allowed:
                    decision = bounded
        if decision.allowed and principal.session_policy is not None:
            limited = evaluate([_document(principal.session_policy)], full)
            if not limited.allowed:
                decision = limited
        return decision

    def check(self, principal: Principal, requests: Iterable[Request]) -> None:
        """Raise ``AccessDenied`` for the first request the principal may not make."""
        for request in requests:
            decision = self.decide(principal, request)
            with self._lock:
                self.evaluations.append(
                    Evaluation(principal.arn, request.action, request.resource, decision.allowed)
                )
            if not decision.allowed:
                denied = AccessDenied(principal, request, decision)
                with self._lock:
                    self.denials.append(denied)
                log.warning("IAM denied: %s", denied)
                raise denied

    def check_call(
        self, principal: Principal, service: str, operation: str, params: Mapping[str, Any]
    ) -> None:
        """An API call as ``principal`` (also for calls the embedded stack only models,
        e.g. SageMaker invoking the recorder Lambda)."""
        try:
            requests = requests_for(service, operation, params, self.scope)
        except UnmodelledOperation:
            # Fail closed: an unmodelled call would otherwise pass unchecked.
            denied = AccessDenied(
                principal, Request(f"{service}:{operation}", "*"), Decision(False, "unmodelled")
            )
            log.error(
                "%s:%s has no IAM mapping in trainyard/local/iam/actions.py; denied",
                service,
                operation,
            )
            with self._lock:
                self.denials.append(denied)
            raise denied from None
        self.check(principal, requests)

    def assume(
        self,
        role_arn: str,
        service: str,
        session: str,
        context: Mapping[str, str] | None = None,
    ) -> Principal:
        """A service assumes a role: its trust policy must allow the service, with the
        condition keys that service is documented to set."""
        trust = self.store.trust_policy(role_arn)
        if trust is None:
            raise AssumeRoleDenied(f"role {role_arn} does not exist")
        request = Request("sts:AssumeRole", role_arn, dict(context or {}))
        decision = evaluate_resource_policy(trust, request, RequestPrincipal(service=service))
        if not decision.allowed:
            raise AssumeRoleDenied(
                f"{service} is not authorized to perform: sts:AssumeRole on resource: {role_arn}"
            )
        return Principal(role_arn, session)

    # ------------------------------------------------------------ boto3 hooks

    def attach(self, session: Any) -> None:
        """Evaluate every call of clients created from ``session`` from now on (a
        boto3 Session; clients copy the session's hooks when they are created)."""
        events = session.events if hasattr(session, "events") else session.meta.events
        events.register("before-parameter-build", self._keep_params, unique_id=f"{_HOOK_ID}-p")
        events.register("before-call", self._before_call, unique_id=f"{_HOOK_ID}-c")
        self._sessions.append(events)
        _propagate_to_transfer_threads(True)
        disable_moto_bucket_policy_check()
        check_eventbridge_deliveries(self._delivery_denied)

    def detach(self) -> None:
        for events in self._sessions:
            events.unregister("before-parameter-build", unique_id=f"{_HOOK_ID}-p")
            events.unregister("before-call", unique_id=f"{_HOOK_ID}-c")
        self._sessions.clear()
        _propagate_to_transfer_threads(False)
        restore_moto_bucket_policy_check()
        uncheck_eventbridge_deliveries()

    @staticmethod
    def _keep_params(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        # Whoever calls (a thread's principal, an STS session's keys, nobody): the
        # STS limits apply to every AssumeRole.
        context[_API_PARAMS] = dict(params)

    def _before_call(
        self, model: Any, context: dict[str, Any], request_signer: Any = None, **_: Any
    ) -> Any:
        service = model.service_model.service_name
        credentials = getattr(request_signer, "_credentials", None)
        try:
            # A client signing with an STS session's keys acts as that session
            # (its role and session policy), whoever holds it; otherwise as the
            # principal of this thread.
            principal = session_of(getattr(credentials, "access_key", None)) or current_principal()
        except SessionExpired as expired:
            return _error(service, "ExpiredToken", 400, str(expired))
        if service == "sts" and model.name == "AssumeRole":
            refused = self._sts_refusal(principal, context.get(_API_PARAMS, {}))
            if refused is not None:
                return _error(service, VALIDATION_ERROR, 400, refused)
        if principal is None:
            return None
        try:
            self.check_call(principal, service, model.name, context.get(_API_PARAMS, {}))
        except AccessDenied as denied:
            code, status = _DENIED.get(service, ("AccessDenied", 403))
            return _error(service, code, status, str(denied))
        return None

    def _sts_refusal(self, principal: Principal | None, params: Mapping[str, Any]) -> str | None:
        """What AWS STS refuses that moto takes (``sts_limits.py``). A principal is a
        role session (a function's, a job's, a stack's role, or an STS session's
        keys): its AssumeRole is role chaining."""
        role_arn = str(params.get("RoleArn", ""))
        maximum = self.store.max_session_duration(role_arn)
        if maximum is None:
            return None  # no such role: moto and the trust check answer as AWS does
        return assume_role_refusal(
            params, max_session_duration=maximum, chained=principal is not None
        )


def _error(service: str, code: str, status: int, message: str) -> Any:
    response = AWSResponse(f"https://{service}.local/", status, {}, None)
    return response, {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
