"""A tenant stack left on an older tenant template (the platform was redeployed
with a changed one) is updated to the current template by the lifecycle schedule,
on the embedded stack: UpdateStack as the onboarding role with the current
TemplateURL, the resources updated as the tenant-stack service role, the version
recorded once the update is COMPLETE (docs/deploy.md#upgrading)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
from trainyard_core.provisioning import template_version

from trainyard.local.stack import EmbeddedStack

from .conftest import wait_for

pytestmark = pytest.mark.integration

OLD = "0123456789abcdef"
# The upload rule of the templates before this change: only *.csv keys.
OLD_KEY_PATTERN = [{"wildcard": "data/*.csv"}]


def _rule_key_pattern(stack: EmbeddedStack, tenant_id: str) -> Any:
    rule = stack.client("events").describe_rule(Name=stack.names.tenant_rule(tenant_id))
    return json.loads(rule["EventPattern"])["detail"]["object"]["key"]


def _ship_old_template(stack: EmbeddedStack, isolation: str, current: str) -> str:
    """The current template with the old upload rule, where an earlier deploy put it."""
    assert stack.platform is not None
    s3 = stack.client("s3")
    bucket = stack.platform.platform_bucket
    body = json.loads(
        s3.get_object(Bucket=bucket, Key=stack.names.tenant_template_key(isolation, current))[
            "Body"
        ].read()
    )
    rules = [r for r in body["Resources"].values() if r["Type"] == "AWS::Events::Rule"]
    assert len(rules) == 1
    rules[0]["Properties"]["EventPattern"]["detail"]["object"]["key"] = OLD_KEY_PATTERN
    key = stack.names.tenant_template_key(isolation, OLD)
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(body).encode())
    host = urlsplit(stack.platform.template_urls[isolation]).netloc
    return f"https://{host}/{key}"


def _stack_status(stack: EmbeddedStack, stack_name: str) -> str:
    described = stack.client("cloudformation").describe_stacks(StackName=stack_name)
    return str(described["Stacks"][0]["StackStatus"])


def test_an_outdated_tenant_stack_is_updated_to_the_current_template_by_the_schedule(
    stack: EmbeddedStack, onboard: Callable[[str, str], dict[str, Any]]
) -> None:
    from trainyard_handlers import dependencies

    assert stack.platform is not None
    current = template_version(stack.platform.template_urls, stack.names)
    assert current is not None and current != OLD
    tenants = dependencies.tenant_service().tenants
    cfn = stack.client("cloudformation")

    ids = {"silo": "rollout-silo", "pool": "rollout-pool"}
    plans = {"silo": "premium", "pool": "basic"}
    for isolation, tenant_id in ids.items():
        onboard(tenant_id, plans[isolation])
        created = tenants.get(tenant_id)
        assert created is not None and created.template_version == current
        assert _rule_key_pattern(stack, tenant_id)[0].get("prefix", "").endswith("data/")

        # Before the redeploy: the stack on the old template, recorded as such.
        stack_name = stack.names.tenant_stack(tenant_id)
        parameters = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]["Parameters"]
        cfn.update_stack(
            StackName=stack_name,
            TemplateURL=_ship_old_template(stack, isolation, current),
            Parameters=[
                {"ParameterKey": p["ParameterKey"], "UsePreviousValue": True} for p in parameters
            ],
            Capabilities=["CAPABILITY_NAMED_IAM"],
        )
        wait_for(
            lambda name=stack_name: _stack_status(stack, name) == "UPDATE_COMPLETE",
            timeout=30,
            what=f"{stack_name} on the old template",
        )
        wildcard = _rule_key_pattern(stack, tenant_id)
        assert wildcard[0]["wildcard"].endswith("data/*.csv")
        tenant = tenants.get(tenant_id)
        assert tenant is not None
        outdated = tenant.model_copy(
            update={"template_version": OLD if isolation == "silo" else None}
        )
        tenants.save(outdated)

    # What a deploy does: new containers, which look for outdated stacks at once (a
    # warm one that found none rescans only after a while).
    from trainyard_handlers import onboarding

    onboarding.reset_dependencies()

    # The lifecycle schedule: the first run starts the updates, a later one sees
    # them COMPLETE and records the version.
    def rolled_out() -> bool:
        stack.advance_tenants_now()
        return all((tenants.get(t) or outdated).template_version == current for t in ids.values())

    wait_for(rolled_out, timeout=60, interval=0.2, what="the tenant stacks on the current template")

    for isolation, tenant_id in ids.items():
        stack_name = stack.names.tenant_stack(tenant_id)
        assert _stack_status(stack, stack_name) == "UPDATE_COMPLETE"
        # The current template's upload rule: every object under the data prefix.
        key_pattern = _rule_key_pattern(stack, tenant_id)
        assert list(key_pattern[0]) == ["prefix"] and key_pattern[0]["prefix"].endswith("data/")
        assert cfn.get_template(StackName=stack_name)["TemplateBody"] == json.loads(
            stack.client("s3")
            .get_object(
                Bucket=stack.platform.platform_bucket,
                Key=stack.names.tenant_template_key(isolation, current),
            )["Body"]
            .read()
        )
        tenant = tenants.get(tenant_id)
        assert tenant is not None and tenant.status.value == "ACTIVE"
        assert tenant.template_requested is None
