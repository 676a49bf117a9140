"""Local shims for measured moto gaps (DESIGN §4), kept in one place.

moto's CloudFormation ignores a bucket's ``NotificationConfiguration`` and has
no ``AWS::SageMaker::ModelPackageGroup``. In AWS the tenant stack creates both;
locally we complete the stack the moment moto creates it, by wrapping moto's
in-process ``create_stack`` so that a stack is never seen complete without them.
"""

from __future__ import annotations

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


def install_cloudformation_shim(clients: Callable[[str], Any], stack_prefix: str) -> None:
    """Wrap moto's CloudFormationBackend.create_stack (idempotent per process)."""
    from moto.cloudformation.models import CloudFormationBackend

    with _lock:
        if _installed:
            _installed[0][2]["clients"] = clients
            _installed[0][2]["prefix"] = stack_prefix
            return
        original = CloudFormationBackend.create_stack
        state: dict[str, Any] = {"clients": clients, "prefix": stack_prefix}

        def create_stack(self: Any, *args: Any, **kwargs: Any) -> Any:
            stack = original(self, *args, **kwargs)
            if getattr(stack, "name", "").startswith(state["prefix"]):
                try:
                    complete_tenant_stack(stack, state["clients"])
                except Exception:
                    log.exception("local tenant-stack shim failed for %s", stack.name)
                    raise
            return stack

        CloudFormationBackend.create_stack = create_stack  # type: ignore[method-assign]
        _installed.append((CloudFormationBackend, "create_stack", state))
