"""Local shims for measured moto gaps (DESIGN §4), kept in one place.

moto's CloudFormation ignores a bucket's ``NotificationConfiguration`` and has
no ``AWS::SageMaker::ModelPackageGroup``. In AWS the tenant stack creates both;
locally we complete the stack the moment moto creates or updates it (a plan
change across isolation models swaps the template and may add a bucket), by
wrapping moto's in-process ``create_stack``/``update_stack`` so that a stack is
never seen complete without them.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("trainyard.local.shims")

_lock = threading.Lock()
_installed: list[tuple[Any, str, Any]] = []


def _resources(stack: Any) -> dict[str, Any]:
    return (getattr(stack, "template_dict", None) or {}).get("Resources", {})


def complete_tenant_stack(stack: Any, clients: Callable[[str], Any]) -> None:
    """Apply what moto skipped, using the stack's own outputs and template."""
    outputs = {o["OutputKey"]: o["OutputValue"] for o in (stack.outputs or [])}
    resources = _resources(stack)
    for resource in resources.values():
        props = resource.get("Properties", {})
        if resource.get("Type") == "AWS::S3::Bucket":
            eventbridge = props.get("NotificationConfiguration", {}).get("EventBridgeConfiguration")
            bucket = outputs.get("DataBucketName")
            if eventbridge and bucket:
                clients("s3").put_bucket_notification_configuration(
                    Bucket=bucket,
                    NotificationConfiguration={"EventBridgeConfiguration": {}},
                )
        if resource.get("Type") == "AWS::SageMaker::ModelPackageGroup":
            group = outputs.get("ModelPackageGroupName")
            if group:
                sm = clients("sagemaker")
                try:
                    sm.create_model_package_group(ModelPackageGroupName=group)
                except sm.exceptions.ClientError as exc:
                    if "already exists" not in str(exc).lower():
                        raise


def keep_retained_resources(stack: Any, new_template: Any) -> None:
    """moto deletes a resource an update removes even with ``DeletionPolicy: Retain``
    (a silo bucket when a tenant moves to pool); CloudFormation keeps it. Forget
    such resources before moto's update, so moto leaves them alone."""
    try:
        new = json.loads(new_template) if isinstance(new_template, str) else new_template
        new_ids = set((new or {}).get("Resources", {}))
    except ValueError:
        return
    parsed = getattr(getattr(stack, "resource_map", None), "_parsed_resources", None)
    if parsed is None:
        return
    for logical_id, resource in _resources(stack).items():
        if logical_id not in new_ids and resource.get("DeletionPolicy") == "Retain":
            parsed.pop(logical_id, None)


def install_cloudformation_shim(clients: Callable[[str], Any], stack_prefix: str) -> None:
    """Wrap moto's CloudFormationBackend.create_stack (idempotent per process)."""
    from moto.cloudformation.models import CloudFormationBackend

    with _lock:
        if _installed:
            _installed[0][2]["clients"] = clients
            _installed[0][2]["prefix"] = stack_prefix
            return
        state: dict[str, Any] = {"clients": clients, "prefix": stack_prefix}

        def completing(original: Any) -> Any:
            def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
                if original.__name__ == "update_stack":
                    name = kwargs.get("name", args[0] if args else "")
                    template = kwargs.get("template", args[1] if len(args) > 1 else None)
                    if str(name).startswith(state["prefix"]):
                        keep_retained_resources(self.get_stack(name), template)
                stack = original(self, *args, **kwargs)
                if getattr(stack, "name", "").startswith(state["prefix"]):
                    try:
                        complete_tenant_stack(stack, state["clients"])
                    except Exception:
                        log.exception("local tenant-stack shim failed for %s", stack.name)
                        raise
                return stack

            return wrapper

        for method in ("create_stack", "update_stack"):
            original = getattr(CloudFormationBackend, method)
            setattr(CloudFormationBackend, method, completing(original))
        _installed.append((CloudFormationBackend, "create_stack", state))


# DynamoDB operations that must see and leave a consistent table. moto's
# transact_write_items snapshots whole tables for its rollback, so a write or a
# transaction running beside it in another server thread can be lost or half
# seen; DynamoDB itself makes transactions and conditional writes atomic.
_DYNAMODB_OPS = (
    "put_item",
    "update_item",
    "delete_item",
    "transact_write_items",
    "get_item",
    "query",
    "scan",
    "transact_get_items",
)
_dynamodb_lock = threading.RLock()


def install_dynamodb_serializer() -> None:
    """Serialize moto's DynamoDB item operations in this process (idempotent)."""
    from moto.dynamodb.models import DynamoDBBackend

    with _lock:
        for name in _DYNAMODB_OPS:
            original = getattr(DynamoDBBackend, name, None)
            if original is None or getattr(original, "_trainyard_serialized", False):
                continue

            def serialized(original: Any = original) -> Any:
                def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
                    with _dynamodb_lock:
                        return original(self, *args, **kwargs)

                wrapper._trainyard_serialized = True  # type: ignore[attr-defined]
                wrapper.__name__ = original.__name__
                return wrapper

            setattr(DynamoDBBackend, name, serialized())
