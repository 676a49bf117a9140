"""The embedded CloudFormation's records: a stack as moto's API reads it, and one
stack operation."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from moto.cloudformation.models import Event
from moto.cloudformation.models import Stack as MotoStack

from ..iam.enforcer import Principal
from .handlers import Live
from .template import Template


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)  # moto keeps naive UTC times


class EngineStack(MotoStack):
    """A tenant stack, shaped as moto's Stack so moto's API describes and lists it."""

    def __init__(
        self,
        *,
        stack_id: str,
        name: str,
        account_id: str,
        region_name: str,
        template: Template,
        parameters: dict[str, str],
        tags: dict[str, str],
        role_arn: str | None,
        notification_arns: list[str],
        capabilities: list[str],
        disable_rollback: bool,
        termination_protection: bool,
        timeout_in_minutes: int | None,
    ) -> None:
        # Not moto's __init__: that would parse and "create" the template with moto's
        # own resource models. Only the attributes moto's API reads are set here.
        self.stack_id = stack_id
        self.name = name
        self.account_id = account_id
        self.region_name = region_name
        self.use(template)
        self.parameters = parameters
        self.tags = tags
        self.role_arn = role_arn
        self.notification_arns = notification_arns
        self.capabilities = capabilities
        self.disable_rollback = disable_rollback
        self.enable_termination_protection = termination_protection
        self.timeout_in_minutes = timeout_in_minutes
        self.policy = ""
        self.cross_stack_resources: dict[str, Any] = {}
        self.custom_resources: dict[str, Any] = {}
        self.events: list[Event] = []
        self.live: dict[str, Live] = {}
        self.creation_time = now()
        self.last_updated_time: datetime | None = None
        self.deletion_time: datetime | None = None
        self.status = "CREATE_IN_PROGRESS"
        self.stack_status_reason: str | None = None
        self.resolved_outputs: list[dict[str, Any]] = []

    def use(self, template: Template) -> None:
        self.parsed = template
        self.template = template.text
        self.template_dict = template.body
        self.description = template.description

    # --- what moto's serializers read
    @property
    def stack_name(self) -> str:
        return self.name

    @property
    def stack_status(self) -> str:
        return self.status

    @property
    def outputs(self) -> list[dict[str, Any]] | None:  # type: ignore[override]
        return self.resolved_outputs or None

    @property
    def exports(self) -> list[Any]:  # type: ignore[override]
        return []

    @property
    def parameter_list(self) -> list[dict[str, Any]]:  # type: ignore[override]
        declared = self.parsed.parameters
        return [
            {
                "ParameterKey": k,
                "ParameterValue": "****" if declared.get(k, {}).get("NoEcho") else v,
            }
            for k, v in self.parameters.items()
        ]

    @property
    def stack_parameters(self) -> dict[str, Any]:  # type: ignore[override]
        return dict(self.parameters)

    @property
    def stack_resources(self) -> list[Live]:  # type: ignore[override]
        return list(self.live.values())

    def delete(self) -> None:
        raise RuntimeError("tenant stacks are deleted by the embedded CloudFormation engine")


@dataclass
class Operation:
    """One stack operation: the template and values it applies, and who it runs as."""

    stack: EngineStack
    template: Template
    parameters: dict[str, str]
    tags: dict[str, str]
    principal: Principal | None
    token: str = field(default_factory=lambda: str(uuid.uuid4()))
    retain_except_on_create: bool = False


class StackFailure(Exception):
    """A resource operation failed; CloudFormation names the resource."""

    def __init__(self, logical_id: str, verb: str) -> None:
        super().__init__(logical_id)
        self.logical_id = logical_id
        self.verb = verb  # "create" / "update"
