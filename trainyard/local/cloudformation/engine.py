"""The stack operations of the embedded CloudFormation: create, update and delete,
with CloudFormation's events, rollback and deletion policies.

Every resource operation first checks its handler's permissions (infra/cfn_permissions)
as the stack's service role: create = create + read (the read after the create),
update = update + read, delete = delete. Then the handler makes the calls with plain
boto3 clients and no principal (CloudFormation's own internals). Operations are
synchronous: CreateStack returns once the stack is complete or rolled back.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from botocore.exceptions import ClientError
from moto.cloudformation.models import Event

from infra import cfn_permissions as perms

from ..iam.enforcer import AccessDenied, Enforcer, Principal, acting_as
from ..iam.policy import Request
from .handlers import HANDLERS, Context, HandlerError, Live, Properties
from .model import EngineStack, Operation, StackFailure, now
from .template import NO_VALUE, Resolver, Template, TemplateError

STACK_TYPE = "AWS::CloudFormation::Stack"
SESSION = "AWSCloudFormation"  # the session name CloudFormation uses for a service role
_ERROR_CODES = {
    "AccessDenied": "AccessDenied",
    "AccessDeniedException": "AccessDenied",
    "EntityAlreadyExists": "AlreadyExists",
    "BucketAlreadyExists": "AlreadyExists",
    "BucketAlreadyOwnedByYou": "AlreadyExists",
    "ResourceAlreadyExistsException": "AlreadyExists",
    "NoSuchEntity": "NotFound",
    "NoSuchBucket": "NotFound",
    "ResourceNotFoundException": "NotFound",
    "ConflictException": "ResourceConflict",
    "ConcurrentModificationException": "ResourceConflict",
    "DeleteConflict": "ResourceConflict",
    "ValidationError": "InvalidRequest",
    "ValidationException": "InvalidRequest",
    "MalformedPolicyDocument": "InvalidRequest",
    "InvalidRequest": "InvalidRequest",
    "InvalidArgument": "InvalidRequest",
    "MalformedXML": "InvalidRequest",
    "InvalidTargetBucketForLogging": "InvalidRequest",
    "Throttling": "Throttling",
    "ThrottlingException": "Throttling",
    "LimitExceeded": "ServiceLimitExceeded",
    "TooManyBuckets": "ServiceLimitExceeded",
}


def handler_reason(exc: BaseException) -> str:
    """A resource failure worded as CloudFormation's events word it."""
    token = uuid.uuid4()
    if isinstance(exc, AccessDenied):
        message, code = str(exc), "AccessDenied"
    elif isinstance(exc, HandlerError):
        message, code = exc.message, exc.code
    elif isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "")
        service = exc.operation_name
        message = f"{error.get('Message', exc)} (Service: {service}, Status Code: {status})"
        code = _ERROR_CODES.get(str(error.get("Code")), "GeneralServiceException")
    elif isinstance(exc, TemplateError):
        return str(exc)
    else:
        message, code = f"{type(exc).__name__}: {exc}", "InternalFailure"
    return (
        f'Resource handler returned message: "{message}" '
        f"(RequestToken: {token}, HandlerErrorCode: {code})"
    )


def _not_found(exc: BaseException) -> bool:
    if isinstance(exc, HandlerError):
        return exc.code == "NotFound"
    return (
        isinstance(exc, ClientError)
        and _ERROR_CODES.get(str(exc.response.get("Error", {}).get("Code"))) == "NotFound"
    )


class Engine:
    pseudo_names = frozenset(
        {
            "AWS::AccountId",
            "AWS::Region",
            "AWS::Partition",
            "AWS::StackName",
            "AWS::StackId",
            "AWS::URLSuffix",
            "AWS::NotificationARNs",
            "AWS::NoValue",
        }
    )

    def __init__(
        self,
        clients: Callable[[str], Any],
        *,
        prefix: str,
        enforcer: Enforcer | None,
        account: str,
        region: str,
    ) -> None:
        self._clients = clients
        self.prefix = prefix
        self.enforcer = enforcer
        self.account = account
        self.region = region
        self.partition = (
            "aws-cn"
            if region.startswith("cn-")
            else ("aws-us-gov" if region.startswith("us-gov-") else "aws")
        )
        # One stack operation at a time: each runs to its end inside the API call.
        self.lock = threading.RLock()
        self._cache: dict[str, Any] = {}
        self._cache_lock = threading.Lock()

    def client(self, service: str) -> Any:
        with self._cache_lock:
            if service not in self._cache:
                self._cache[service] = self._clients(service)
            return self._cache[service]

    def pseudo(self, stack: EngineStack) -> dict[str, Any]:
        return {
            "AWS::AccountId": self.account,
            "AWS::Region": self.region,
            "AWS::Partition": self.partition,
            "AWS::StackName": stack.name,
            "AWS::StackId": stack.stack_id,
            "AWS::URLSuffix": "amazonaws.com.cn" if self.partition == "aws-cn" else "amazonaws.com",
            "AWS::NotificationARNs": list(stack.notification_arns),
        }

    def context(self, stack: EngineStack) -> Context:
        return Context(
            self.client, self.region, self.account, self.partition, stack.name, stack.stack_id
        )

    def assume(self, role_arn: str | None) -> Principal | None:
        """The service role CloudFormation acts as (None: the caller's credentials,
        which the embedded API does not carry, so those calls are not checked)."""
        if not role_arn or self.enforcer is None:
            return None
        from ..iam.enforcer import AssumeRoleDenied

        try:
            # CloudFormation documents no condition keys for this AssumeRole.
            return self.enforcer.assume(role_arn, "cloudformation.amazonaws.com", SESSION, {})
        except AssumeRoleDenied:
            raise TemplateError(f"Role {role_arn} is invalid or cannot be assumed") from None

    # ----------------------------------------------------------------- events

    def event(
        self,
        stack: EngineStack,
        status: str,
        reason: str | None = None,
        live: Live | None = None,
        properties: Properties | None = None,
        token: str | None = None,
    ) -> None:
        event = Event(
            stack_id=stack.stack_id,
            stack_name=stack.name,
            logical_resource_id=live.logical_id if live else stack.name,
            physical_resource_id=(live.physical_id or "") if live else stack.stack_id,
            resource_type=live.resource_type if live else STACK_TYPE,
            resource_status=status,
            resource_status_reason=reason,
            resource_properties=json.dumps(properties) if properties is not None else None,
        )
        event.client_request_token = token
        if live is not None:
            live.status, live.status_reason = status, reason
        else:
            stack.status, stack.stack_status_reason = status, reason
        if stack.notification_arns:
            event.sendToSns(self.account, self.region, stack.notification_arns)
        stack.events.append(event)

    # ---------------------------------------------------------------- resolving

    def resolver(self, op: Operation) -> Resolver:
        stack = op.stack

        def live(logical_id: str) -> Live:
            found = stack.live.get(logical_id)
            if found is None or found.physical_id is None:
                raise TemplateError(f"Template error: resource {logical_id} is not created yet")
            return found

        def getatt(logical_id: str, attr: str) -> Any:
            resource = live(logical_id)
            if attr not in resource.attributes:
                raise TemplateError(
                    f"Template error: resource {logical_id} does not support attribute type "
                    f"{attr} in Fn::GetAtt"
                )
            return resource.attributes[attr]

        lists = {
            k for k, v in op.template.parameters.items() if v.get("Type") == "CommaDelimitedList"
        }
        return Resolver(
            parameters=op.parameters,
            pseudo=self.pseudo(stack),
            ref=lambda logical_id: HANDLERS[live(logical_id).resource_type].ref(live(logical_id)),
            getatt=getatt,
            list_parameters=lists,
        )

    def properties(self, op: Operation, logical_id: str) -> Properties:
        """A resource's properties as applied: resolved, with the stack's tags."""
        resource = op.template.resources[logical_id]
        props = self.resolver(op).resolve(resource.get("Properties", {}))
        props = {} if props is NO_VALUE else dict(props)
        handler = HANDLERS[str(resource["Type"])]
        # CloudFormation propagates stack tags to taggable resources (a resource's own
        # tag of the same key wins). Its aws:cloudformation:* system tags are set with
        # internal APIs that moto's S3 and IAM reject for the reserved aws: prefix.
        if handler.taggable and (op.tags or props.get("Tags")):
            merged = {**op.tags, **{str(t["Key"]): str(t["Value"]) for t in props.get("Tags", [])}}
            props["Tags"] = [{"Key": k, "Value": merged[k]} for k in sorted(merged)]
        return props

    def outputs(self, op: Operation) -> list[dict[str, Any]]:
        resolver = self.resolver(op)
        out = []
        for key, output in op.template.outputs.items():
            entry = {"OutputKey": key, "OutputValue": str(resolver.resolve(output["Value"]))}
            if "Description" in output:
                entry["Description"] = output["Description"]
            out.append(entry)
        return out

    # ------------------------------------------------------------- permissions

    def check(self, op: Operation, live: Live, handlers: Iterable[str], props: Properties) -> None:
        if op.principal is None or self.enforcer is None:
            return
        handler = HANDLERS[live.resource_type]
        arn = handler.arn(self.context(op.stack), live.name, props)
        actions: list[str] = []
        for name in handlers:
            actions += perms.required_permissions(live.resource_type, name, props)
        self.enforcer.check(op.principal, [Request(a, arn) for a in dict.fromkeys(actions)])

    # ----------------------------------------------------- resource operations

    def blank(self, op: Operation, logical_id: str) -> Live:
        """A resource of the operation's template, before its values are resolved."""
        resource = op.template.resources[logical_id]
        return Live(
            logical_id=logical_id,
            resource_type=str(resource["Type"]),
            name="",
            properties={},
            created_by=op.token,
            deletion_policy=op.template.deletion_policy(logical_id),
            replace_policy=op.template.replace_policy(logical_id),
        )

    def resolve_into(self, op: Operation, live: Live) -> None:
        """Its properties and physical name (raises TemplateError)."""
        live.properties = self.properties(op, live.logical_id)
        handler = HANDLERS[live.resource_type]
        live.name = handler.physical_name(self.context(op.stack), live.logical_id, live.properties)

    def make(self, op: Operation, live: Live) -> None:
        """The create handler, after its permissions (create, and read for the read-back)."""
        self.check(op, live, ("create", "read"), live.properties)
        with acting_as(None):
            HANDLERS[live.resource_type].create(self.context(op.stack), live)

    def create_resource(self, op: Operation, logical_id: str) -> Live:
        """Create one resource (events included); raises StackFailure on failure."""
        stack = op.stack
        live = self.blank(op, logical_id)
        try:
            self.resolve_into(op, live)
        except TemplateError as exc:
            self.event(stack, "CREATE_FAILED", str(exc), live)
            raise StackFailure(logical_id, "create") from exc
        stack.live[logical_id] = live
        self.event(stack, "CREATE_IN_PROGRESS", None, live, live.properties, op.token)
        try:
            self.make(op, live)
        except Exception as exc:  # every failure is the resource's, as in CloudFormation
            self.event(stack, "CREATE_FAILED", handler_reason(exc), live)
            raise StackFailure(logical_id, "create") from exc
        self.event(stack, "CREATE_IN_PROGRESS", "Resource creation Initiated", live)
        self.event(stack, "CREATE_COMPLETE", None, live)
        return live

    def delete_resource(self, op: Operation, live: Live, *, retain: bool = False) -> bool:
        """Delete (or keep, per policy) one resource; False when the delete failed."""
        stack = op.stack
        created_here = live.created_by == op.token
        policy = live.deletion_policy
        keep = (
            retain
            or (policy == "Retain" and not (created_here and op.retain_except_on_create))
            or (policy == "RetainExceptOnCreate" and not created_here)
        )
        if keep or live.physical_id is None:
            self.event(stack, "DELETE_SKIPPED" if keep else "DELETE_COMPLETE", None, live)
            self._forget(stack, live)
            return True
        self.event(stack, "DELETE_IN_PROGRESS", None, live, token=op.token)
        try:
            self.check(op, live, ("delete",), live.properties)
            with acting_as(None):
                HANDLERS[live.resource_type].delete(self.context(stack), live)
        except Exception as exc:
            if not _not_found(exc):
                self.event(stack, "DELETE_FAILED", handler_reason(exc), live)
                return False
        self.event(stack, "DELETE_COMPLETE", None, live)
        self._forget(stack, live)
        return True

    @staticmethod
    def _forget(stack: EngineStack, live: Live) -> None:
        if stack.live.get(live.logical_id) is live:
            del stack.live[live.logical_id]

    def delete_all(
        self, op: Operation, lives: list[Live], *, retain: Iterable[str] = ()
    ) -> list[str]:
        """Delete in reverse dependency order; the logical ids whose delete failed."""
        keep = set(retain)
        failed = []
        for live in reversed(lives):
            if not self.delete_resource(op, live, retain=live.logical_id in keep):
                failed.append(live.logical_id)
        return failed

    def in_order(self, stack: EngineStack, template: Template) -> list[Live]:
        """A stack's live resources in dependency order (of the template that made them)."""
        order = [lid for lid in template.order() if lid in stack.live]
        rest = [lid for lid in stack.live if lid not in order]
        return [stack.live[lid] for lid in order + rest]

    # -------------------------------------------------------------- operations

    def run_create(self, op: Operation, on_failure: str) -> None:
        stack = op.stack
        self.event(stack, "CREATE_IN_PROGRESS", "User Initiated", token=op.token)
        try:
            for logical_id in op.template.order():
                self.create_resource(op, logical_id)
            stack.resolved_outputs = self.outputs(op)
        except StackFailure as failure:
            reason = f"The following resource(s) failed to create: [{failure.logical_id}]. "
            self._after_failed_create(op, on_failure, reason)
            return
        except TemplateError as exc:
            self._after_failed_create(op, on_failure, f"{exc}. ")
            return
        self.event(stack, "CREATE_COMPLETE", token=op.token)

    def _after_failed_create(self, op: Operation, on_failure: str, reason: str) -> None:
        stack = op.stack
        if on_failure == "DO_NOTHING":
            self.event(stack, "CREATE_FAILED", reason, token=op.token)
            return
        if on_failure == "DELETE":
            self.event(
                stack, "DELETE_IN_PROGRESS", reason + "Delete requested by user.", token=op.token
            )
            self.finish_delete(op, self.delete_all(op, self.in_order(stack, op.template)))
            return
        reason += "Rollback requested by user."
        self.event(stack, "ROLLBACK_IN_PROGRESS", reason, token=op.token)
        failed = self.delete_all(op, self.in_order(stack, op.template))
        if failed:
            self.event(
                stack,
                "ROLLBACK_FAILED",
                f"The following resource(s) failed to delete: {failed}. ",
                token=op.token,
            )
        else:
            self.event(stack, "ROLLBACK_COMPLETE", reason, token=op.token)

    def finish_delete(self, op: Operation, failed: list[str], backend: Any = None) -> None:
        stack = op.stack
        if failed:
            self.event(
                stack,
                "DELETE_FAILED",
                f"The following resource(s) failed to delete: {failed}. ",
                token=op.token,
            )
            return
        stack.deletion_time = now()
        self.event(stack, "DELETE_COMPLETE", token=op.token)
        from moto.cloudformation.models import cloudformation_backends

        backend = backend or cloudformation_backends[self.account][self.region]
        backend.stacks.pop(stack.stack_id, None)
        backend.deleted_stacks[stack.stack_id] = stack

    def run_delete(self, op: Operation, retain: Iterable[str]) -> None:
        self.event(op.stack, "DELETE_IN_PROGRESS", "User Initiated", token=op.token)
        lives = self.in_order(op.stack, op.stack.parsed)
        self.finish_delete(op, self.delete_all(op, lives, retain=retain))

    def run_update(self, op: Operation) -> None:
        from .update import Update

        Update(self, op).run()
