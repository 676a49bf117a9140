"""CreateStack, UpdateStack and DeleteStack of tenant stacks, intercepted in moto's
CloudFormation API and validated as CloudFormation validates them before it starts.

Only stacks whose name starts with the engine's prefix (and stack ids of stacks it
made) go to the engine; every other stack stays moto's. DescribeStacks,
DescribeStackEvents, DescribeStackResources, ListStacks and GetTemplate are moto's
own: the engine's stacks live in moto's backend as ``EngineStack`` objects.
"""

from __future__ import annotations

import contextlib
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from moto.cloudformation.exceptions import (
    AlreadyExistsException,
    CloudFormationError,
    ValidationError,
)
from moto.cloudformation.utils import generate_stack_id, get_stack_from_s3_url
from moto.core.responses import ActionResult, EmptyResult

from .engine import Engine
from .handlers import HANDLERS
from .model import EngineStack, Operation
from .template import (
    MAX_BODY_BYTES,
    MAX_URL_BYTES,
    Template,
    TemplateError,
    parse,
    resolve_parameters,
    validate,
)

_ENGINE_ATTR = "_trainyard_tenant_engine"
_patch_lock = threading.Lock()
_originals: dict[str, Any] = {}

_STACK_NAME = re.compile(r"[a-zA-Z][-a-zA-Z0-9]{0,127}")
_CAPABILITIES = {"CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"}
_IAM_NAMES = {"AWS::IAM::Role": "RoleName"}
_ON_FAILURE = ("ROLLBACK", "DELETE", "DO_NOTHING")
_UPDATABLE = ("CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE")


class InsufficientCapabilitiesException(CloudFormationError):
    code = "InsufficientCapabilitiesException"


class _Capabilities(Exception):
    pass


class _Exists(Exception):
    pass


@dataclass
class StackRequest:
    """The CreateStack/UpdateStack/DeleteStack parameters the engine acts on."""

    name: str
    body: str | None = None
    url: str | None = None
    use_previous_template: bool = False
    parameters: dict[str, str] = field(default_factory=dict)
    use_previous: set[str] = field(default_factory=set)
    tags: dict[str, str] | None = None
    capabilities: list[str] = field(default_factory=list)
    role_arn: str | None = None
    on_failure: str | None = None
    disable_rollback: bool | None = None
    retain_except_on_create: bool = False
    notification_arns: list[str] = field(default_factory=list)
    termination_protection: bool = False
    timeout: int | None = None
    token: str | None = None
    retain: list[str] = field(default_factory=list)

    @classmethod
    def read(cls, response: Any) -> StackRequest:
        get = response._get_param
        parameters: dict[str, str] = {}
        previous: set[str] = set()
        for entry in get("Parameters") or []:
            if str(entry.get("UsePreviousValue", "")).lower() == "true":
                if entry.get("ParameterValue"):
                    raise ValidationError(
                        message=f"Invalid input for parameter key {entry['ParameterKey']}. Cannot "
                        "specify usePreviousValue as true and non empty value for a parameter"
                    )
                previous.add(entry["ParameterKey"])
            else:
                parameters[entry["ParameterKey"]] = entry.get("ParameterValue", "")
        tags = get("Tags")
        disable = get("DisableRollback")
        return cls(
            name=get("StackName") or "",
            body=get("TemplateBody"),
            url=get("TemplateURL"),
            use_previous_template=str(get("UsePreviousTemplate", "")).lower() == "true",
            parameters=parameters,
            use_previous=previous,
            tags={t["Key"]: t["Value"] for t in tags} if tags else None,
            capabilities=list(get("Capabilities") or []),
            role_arn=get("RoleARN") or None,
            on_failure=get("OnFailure") or None,
            disable_rollback=None if disable is None else str(disable).lower() == "true",
            retain_except_on_create=str(get("RetainExceptOnCreate", "")).lower() == "true",
            notification_arns=list(get("NotificationARNs") or []),
            termination_protection=str(get("EnableTerminationProtection", "")).lower() == "true",
            timeout=int(get("TimeoutInMinutes")) if get("TimeoutInMinutes") else None,
            token=get("ClientRequestToken") or None,
            retain=list(get("RetainResources") or []),
        )


# ---------------------------------------------------------------- validation


def _template(engine: Engine, request: StackRequest, account: str, partition: str) -> Template:
    if bool(request.body) == bool(request.url):
        raise TemplateError("Either Template URL or Template Body must be specified.")
    if request.body:
        if len(request.body.encode()) > MAX_BODY_BYTES:
            raise TemplateError(
                "1 validation error detected: Value at 'templateBody' failed to satisfy "
                f"constraint: Member must have length less than or equal to {MAX_BODY_BYTES}"
            )
        text = request.body
    else:
        try:
            text = get_stack_from_s3_url(str(request.url), account_id=account, partition=partition)
        except Exception as exc:  # a missing bucket or key, or an unreadable URL
            raise TemplateError(
                f"S3 error: the template at {request.url} cannot be read: {exc}"
            ) from None
        if len(text.encode()) > MAX_URL_BYTES:
            raise TemplateError(f"Template may not exceed {MAX_URL_BYTES} bytes in size.")
    template = Template(text, parse(text))
    pseudo = set(engine.pseudo_names)
    validate(template, HANDLERS, lambda t: HANDLERS[t].attributes, pseudo)
    supported_properties(template)
    return template


def supported_properties(template: Template) -> None:
    for logical_id, resource in template.resources.items():
        handler = HANDLERS[str(resource["Type"])]
        extra = sorted(set(resource.get("Properties") or {}) - handler.supported())
        if extra:
            raise TemplateError(
                f"Template error: properties {extra} of {logical_id} ({resource['Type']}) are "
                "not supported by the embedded CloudFormation"
            )


def _check_capabilities(template: Template, capabilities: list[str]) -> None:
    unknown = sorted(set(capabilities) - _CAPABILITIES)
    if unknown:
        raise TemplateError(f"Invalid capabilities: {unknown}")
    needed = ""
    for resource in template.resources.values():
        name_key = _IAM_NAMES.get(str(resource["Type"]))
        if name_key is None:
            continue
        if (resource.get("Properties") or {}).get(name_key):
            needed = "CAPABILITY_NAMED_IAM"
        elif not needed:
            needed = "CAPABILITY_IAM"
    granted = set(capabilities)
    if needed == "CAPABILITY_NAMED_IAM" and needed not in granted:
        raise _Capabilities(f"Requires capabilities : [{needed}]")
    if needed == "CAPABILITY_IAM" and not granted & {"CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"}:
        raise _Capabilities(f"Requires capabilities : [{needed}]")


def _find(backend: Any, name_or_id: str) -> EngineStack | None:
    for stack in backend.stacks.values():
        if stack.name == name_or_id or stack.stack_id == name_or_id:
            return stack if isinstance(stack, EngineStack) else None
    return None


# -------------------------------------------------------------- operations


def create_stack(engine: Engine, backend: Any, request: StackRequest, partition: str) -> str:
    if not _STACK_NAME.fullmatch(request.name):
        raise TemplateError(
            f"1 validation error detected: Value '{request.name}' at 'stackName' failed to "
            "satisfy constraint: Member must satisfy regular expression pattern: "
            "[a-zA-Z][-a-zA-Z0-9]*"
        )
    template = _template(engine, request, engine.account, partition)
    parameters = resolve_parameters(template.parameters, request.parameters)
    _check_capabilities(template, request.capabilities)
    if request.on_failure is not None and request.disable_rollback is not None:
        raise TemplateError("You can specify either DisableRollback or OnFailure, but not both.")
    on_failure = request.on_failure or ("DO_NOTHING" if request.disable_rollback else "ROLLBACK")
    if on_failure not in _ON_FAILURE:
        raise TemplateError(f"OnFailure must be one of {list(_ON_FAILURE)}")
    principal = engine.assume(request.role_arn)
    with engine.lock:
        if any(s.name == request.name for s in backend.stacks.values()):
            raise _Exists(f"Stack [{request.name}] already exists")
        stack = EngineStack(
            stack_id=generate_stack_id(request.name, engine.region, engine.account),
            name=request.name,
            account_id=engine.account,
            region_name=engine.region,
            template=template,
            parameters=parameters,
            tags=dict(request.tags or {}),
            role_arn=request.role_arn,
            notification_arns=request.notification_arns,
            capabilities=request.capabilities,
            disable_rollback=on_failure == "DO_NOTHING",
            termination_protection=request.termination_protection,
            timeout_in_minutes=request.timeout,
        )
        backend.stacks[stack.stack_id] = stack
        op = Operation(
            stack,
            template,
            parameters,
            stack.tags,
            principal,
            token=request.token or str(uuid.uuid4()),
            retain_except_on_create=request.retain_except_on_create,
        )
        engine.run_create(op, on_failure)
        return stack.stack_id


def update_stack(engine: Engine, backend: Any, request: StackRequest, partition: str) -> str:
    with engine.lock:
        stack = _find(backend, request.name)
        if stack is None:
            raise TemplateError(f"Stack [{request.name}] does not exist")
        if stack.status not in _UPDATABLE:
            raise TemplateError(
                f"Stack:{stack.stack_id} is in {stack.status} state and can not be updated."
            )
        if request.use_previous_template:
            if request.body or request.url:
                raise TemplateError(
                    "You cannot specify both usePreviousTemplate and Template Body/Template URL."
                )
            template = stack.parsed
        else:
            template = _template(engine, request, engine.account, partition)
        parameters = resolve_parameters(
            template.parameters, request.parameters, stack.parameters, request.use_previous
        )
        _check_capabilities(template, request.capabilities)
        tags = request.tags if request.tags is not None else dict(stack.tags)
        role_arn = request.role_arn or stack.role_arn
        principal = engine.assume(role_arn)
        if (
            template.body == stack.parsed.body
            and parameters == stack.parameters
            and tags == stack.tags
        ):
            raise TemplateError("No updates are to be performed.")
        op = Operation(
            stack,
            template,
            parameters,
            tags,
            principal,
            token=request.token or str(uuid.uuid4()),
            retain_except_on_create=request.retain_except_on_create,
        )
        engine.run_update(op)
        stack.role_arn = role_arn
        return stack.stack_id


def delete_stack(engine: Engine, backend: Any, request: StackRequest) -> None:
    with engine.lock:
        stack = _find(backend, request.name)
        if stack is None:
            return  # CloudFormation: deleting a stack that does not exist succeeds
        if stack.enable_termination_protection:
            raise TemplateError(
                f"Stack [{stack.name}] cannot be deleted while TerminationProtection is enabled"
            )
        if request.retain and stack.status != "DELETE_FAILED":
            raise TemplateError(
                f"Invalid operation on stack [{stack.stack_id}]. RetainResources can only be "
                "specified when the stack is in the DELETE_FAILED state"
            )
        principal = engine.assume(request.role_arn or stack.role_arn)
        op = Operation(
            stack,
            stack.parsed,
            stack.parameters,
            stack.tags,
            principal,
            token=request.token or str(uuid.uuid4()),
        )
        engine.run_delete(op, request.retain)


# ----------------------------------------------------------------- in moto


def engine_of(response: Any, name_or_id: str | None) -> Engine | None:
    """The engine for this request's stack, or None (moto's own stack)."""
    backend = response.cloudformation_backend
    engine = getattr(backend, _ENGINE_ATTR, None)
    if engine is None or not name_or_id:
        return None
    for stack in list(backend.stacks.values()):
        if stack.name == name_or_id or stack.stack_id == name_or_id:
            return engine if isinstance(stack, EngineStack) else None
    return engine if name_or_id.startswith(engine.prefix) else None


@contextlib.contextmanager
def _as_api_errors() -> Iterator[None]:
    try:
        yield
    except TemplateError as exc:
        raise ValidationError(message=str(exc)) from None
    except _Capabilities as exc:
        raise InsufficientCapabilitiesException(str(exc)) from None
    except _Exists as exc:
        raise AlreadyExistsException(str(exc)) from None


def _create(self: Any) -> Any:
    engine = engine_of(self, self._get_param("StackName"))
    if engine is None:
        return _originals["create_stack"](self)
    with _as_api_errors():
        stack_id = create_stack(
            engine, self.cloudformation_backend, StackRequest.read(self), self.partition
        )
    return ActionResult({"StackId": stack_id})


def _update(self: Any) -> Any:
    engine = engine_of(self, self._get_param("StackName"))
    if engine is None:
        return _originals["update_stack"](self)
    with _as_api_errors():
        stack_id = update_stack(
            engine, self.cloudformation_backend, StackRequest.read(self), self.partition
        )
    return ActionResult({"StackId": stack_id})


def _delete(self: Any) -> Any:
    engine = engine_of(self, self._get_param("StackName"))
    if engine is None:
        return _originals["delete_stack"](self)
    with _as_api_errors():
        delete_stack(engine, self.cloudformation_backend, StackRequest.read(self))
    return EmptyResult()


def _patch_responses() -> None:
    from moto.cloudformation import responses

    with _patch_lock:
        if _originals:
            return
        for name, replacement in (
            ("create_stack", _create),
            ("update_stack", _update),
            ("delete_stack", _delete),
        ):
            _originals[name] = getattr(responses.CloudFormationResponse, name)
            replacement.__name__ = name
            setattr(responses.CloudFormationResponse, name, replacement)

        class ResourceDTO(responses.StackResourceDTO):
            # moto reports every resource with its stack's status; the engine's
            # resources have their own.
            def __init__(self, stack: Any, resource: Any) -> None:
                super().__init__(stack, resource)
                self.resource_status = getattr(resource, "resource_status", stack.status)
                self.resource_status_reason = getattr(resource, "status_reason", None)

        responses.StackResourceDTO = ResourceDTO  # type: ignore[misc]


def attach(engine: Engine) -> None:
    """Route tenant stacks of the engine's account and region to it. The mark lives on
    moto's backend object, which moto resets (a new __dict__) when its state is reset,
    so a stopped stack's engine never handles the next one's requests."""
    from moto.cloudformation.models import cloudformation_backends

    _patch_responses()
    setattr(cloudformation_backends[engine.account][engine.region], _ENGINE_ATTR, engine)


def detach(engine: Engine) -> None:
    from moto.cloudformation.models import cloudformation_backends

    backend = cloudformation_backends[engine.account][engine.region]
    if getattr(backend, _ENGINE_ATTR, None) is engine:
        delattr(backend, _ENGINE_ATTR)
