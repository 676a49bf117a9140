"""The embedded stack's CloudFormation for tenant stacks.

moto's CloudFormation accepts what AWS rejects: it never checks the service role's
permissions, never rolls back a failed create, ignores deletion policies and lacks
resource types the tenant templates use. Tenant stacks (names starting with the
tenant-stack prefix) therefore run on this engine instead, inside moto's own API, so
DescribeStacks, DescribeStackEvents, DescribeStackResources and ListStacks answer as
usual:

- ``template``: parsing, validation, parameters, intrinsics, dependency order;
- ``handlers``: the five resource types, as boto3 calls against the embedded AWS;
- ``engine``: create (with rollback and OnFailure), delete, events, permission checks
  as the service role (``infra/cfn_permissions.py``);
- ``update``: UpdateStack with replacement, cleanup and update rollback;
- ``api``: the interception of moto's CreateStack/UpdateStack/DeleteStack.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..iam.enforcer import Enforcer
from .api import attach, detach
from .engine import Engine
from .model import EngineStack

__all__ = ["Engine", "EngineStack", "detach", "install"]


def install(
    clients: Callable[[str], Any],
    stack_prefix: str,
    enforcer: Enforcer | None,
    *,
    account: str,
    region: str,
) -> Engine:
    """Run tenant stacks of this account and region on the engine from now on (until
    moto's state is reset), with the moto shims its handlers need."""
    from ..shims import install_s3_logging_policy_check, install_sagemaker_registry_shims

    install_sagemaker_registry_shims()
    install_s3_logging_policy_check()
    engine = Engine(clients, prefix=stack_prefix, enforcer=enforcer, account=account, region=region)
    attach(engine)
    return engine
