"""What every resource handler of the embedded CloudFormation shares: the resource
record, the handler interface and CloudFormation's HandlerErrorCode errors."""

from __future__ import annotations

import secrets
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from botocore.exceptions import ClientError

from infra import cfn_permissions as perms

Properties = dict[str, Any]


class HandlerError(Exception):
    """A handler's failure, with CloudFormation's HandlerErrorCode."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Context:
    clients: Callable[[str], Any]
    region: str
    account: str
    partition: str
    stack_name: str
    stack_id: str


@dataclass
class Live:
    """A resource of a stack as CloudFormation tracks it."""

    logical_id: str
    resource_type: str
    name: str  # the physical name, planned before the create call
    properties: Properties
    created_by: str  # the operation (token) that created it
    deletion_policy: str = "Delete"
    replace_policy: str = "Delete"
    physical_id: str | None = None  # set once the resource exists
    attributes: dict[str, Any] = field(default_factory=dict)
    status: str = "CREATE_IN_PROGRESS"
    status_reason: str | None = None

    # What moto's DescribeStackResources serializer reads.
    @property
    def logical_resource_id(self) -> str:
        return self.logical_id

    @property
    def physical_resource_id(self) -> str | None:
        return self.physical_id

    @property
    def cf_resource_type(self) -> str:
        return self.resource_type

    @property
    def resource_status(self) -> str:
        return self.status


def generated_name(ctx: Context, logical_id: str, limit: int, *, lower: bool = False) -> str:
    """CloudFormation's name for an unnamed resource: stack-logical-RANDOM."""
    alphabet = (
        string.ascii_lowercase + string.digits if lower else string.ascii_uppercase + string.digits
    )
    suffix = "".join(secrets.choice(alphabet) for _ in range(12))
    head = f"{ctx.stack_name}-{logical_id}"[: limit - 13]
    name = f"{head}-{suffix}"
    return name.lower() if lower else name


def tags_of(props: Mapping[str, Any]) -> dict[str, str]:
    return {str(t["Key"]): str(t["Value"]) for t in props.get("Tags", [])}


def tag_list(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def unsupported(resource_type: str, what: str) -> HandlerError:
    return HandlerError(
        "InvalidRequest",
        f"{what} of {resource_type} is not supported by the embedded CloudFormation",
    )


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class Handler:
    type_name: ClassVar[str]
    attributes: ClassVar[frozenset[str]] = frozenset()
    taggable: ClassVar[bool] = True
    name_property: ClassVar[str | None] = None
    name_limit: ClassVar[int] = 64
    lower_names: ClassVar[bool] = False

    @classmethod
    def supported(cls) -> frozenset[str]:
        return frozenset(perms.PROPERTY_ACTIONS[cls.type_name]["create"])

    def physical_name(self, ctx: Context, logical_id: str, props: Properties) -> str:
        given = props.get(self.name_property) if self.name_property else None
        if given:
            return str(given)
        return generated_name(ctx, logical_id, self.name_limit, lower=self.lower_names)

    def arn(self, ctx: Context, name: str, props: Properties) -> str:
        raise NotImplementedError

    def ref(self, live: Live) -> str:
        return str(live.physical_id)

    def create(self, ctx: Context, live: Live) -> None:
        raise NotImplementedError

    def update(self, ctx: Context, live: Live, old: Properties, new: Properties) -> None:
        raise NotImplementedError

    def delete(self, ctx: Context, live: Live) -> None:
        raise NotImplementedError
