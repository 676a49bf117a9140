"""Tenant webhooks in the platform template: the rule on Trainyard's own events feeds
the webhook queue (DLQ after the attempts setting), and each function may make
exactly the calls it makes."""

from __future__ import annotations

from typing import Any

import pytest
from trainyard_core import events as catalogue
from trainyard_core import wiring

from infra.app import build_app
from tests.infra.synth_support import Synth, resolve_ref

pytestmark = pytest.mark.infra


def _of_type(template: dict[str, Any], kind: str) -> dict[str, Any]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def _logical_id(synth: Synth, kind: str, key: str, name: str) -> str:
    found = _of_type(synth.platform_json, kind)
    return next(lid for lid, r in found.items() if r["Properties"].get(key) == name)


def test_every_trainyard_event_on_the_default_bus_goes_to_the_webhook_queue(
    synth: Synth,
) -> None:
    rules = _of_type(synth.platform_json, "AWS::Events::Rule")
    (rule,) = [r for r in rules.values() if r["Properties"]["Name"] == synth.names.webhook_rule]
    props = rule["Properties"]
    assert props["EventPattern"] == {"source": [catalogue.SOURCE]}
    assert "EventBusName" not in props  # the default bus
    (target,) = props["Targets"]
    queue = _logical_id(synth, "AWS::SQS::Queue", "QueueName", synth.names.webhook_queue)
    assert resolve_ref(synth.platform_json, target["Arn"]) == queue
    redrive = synth.platform_json["Resources"][queue]["Properties"]["RedrivePolicy"]
    assert redrive["maxReceiveCount"] == synth.settings.webhooks.max_attempts
    dlq = _logical_id(synth, "AWS::SQS::Queue", "QueueName", synth.names.webhook_dlq)
    assert resolve_ref(synth.platform_json, redrive["deadLetterTargetArn"]) == dlq


def test_events_the_webhook_queue_refuses_go_to_the_rules_own_dead_letter_queue(
    synth: Synth,
) -> None:
    from trainyard.local.iam.policy import Request, RequestPrincipal, evaluate_resource_policy
    from trainyard.local.platform_template import Pseudo, TemplateRenderer

    template = synth.platform_json
    rules = _of_type(template, "AWS::Events::Rule")
    (rule_id,) = [
        k for k, r in rules.items() if r["Properties"]["Name"] == synth.names.webhook_rule
    ]
    (target,) = rules[rule_id]["Properties"]["Targets"]
    dlq = _logical_id(synth, "AWS::SQS::Queue", "QueueName", synth.names.webhook_rule_dlq)
    assert resolve_ref(template, target["DeadLetterConfig"]["Arn"]) == dlq
    assert target["RetryPolicy"] == {
        "MaximumRetryAttempts": wiring.WEBHOOK_RULE_MAX_RETRY_ATTEMPTS,
        "MaximumEventAgeInSeconds": wiring.WEBHOOK_RULE_MAX_EVENT_AGE_SECONDS,
    }
    # EventBridge's limits on a target's retry policy (PutTargets).
    assert 0 <= wiring.WEBHOOK_RULE_MAX_RETRY_ATTEMPTS <= 185
    assert 60 <= wiring.WEBHOOK_RULE_MAX_EVENT_AGE_SECONDS <= 86400
    props = template["Resources"][dlq]["Properties"]
    assert props["SqsManagedSseEnabled"] is True  # encrypted; EventBridge needs no key grant
    assert props["MessageRetentionPeriod"] == 14 * 24 * 3600

    renderer = TemplateRenderer(template, Pseudo(account="123456789012", region="us-east-1"))
    (policy,) = [
        p
        for p in _of_type(template, "AWS::SQS::QueuePolicy").values()
        if any(resolve_ref(template, q) == dlq for q in p["Properties"]["Queues"])
    ]
    document = renderer.render(policy["Properties"]["PolicyDocument"])
    dlq_arn = renderer.arn(dlq)
    events = RequestPrincipal(service="events.amazonaws.com")

    def send(source: str, secure: bool = True) -> bool:
        context = {
            "aws:SourceArn": source,
            "aws:SourceAccount": "123456789012",
            "aws:SecureTransport": "true" if secure else "false",
        }
        request = Request("sqs:SendMessage", dlq_arn, context)
        return bool(evaluate_resource_policy(document, request, events))

    rule_arn = renderer.arn(rule_id)
    assert rule_arn.endswith(f":rule/{synth.names.webhook_rule}")
    assert send(rule_arn)
    assert not send(rule_arn.replace(synth.names.webhook_rule, synth.names.status_rule))
    assert not send(rule_arn, secure=False)  # enforceSSL


def _statements(synth: Synth, function_key: str) -> list[dict[str, Any]]:
    template = synth.platform_json
    function = _logical_id(
        synth, "AWS::Lambda::Function", "FunctionName", synth.names.function(function_key)
    )
    role = resolve_ref(template, template["Resources"][function]["Properties"]["Role"])
    out: list[dict[str, Any]] = []
    for policy in _of_type(template, "AWS::IAM::Policy").values():
        if any(r.get("Ref") == role for r in policy["Properties"]["Roles"]):
            out.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    return out


def _actions(statement: dict[str, Any]) -> set[str]:
    actions = statement["Action"]
    return {actions} if isinstance(actions, str) else set(actions)


def test_secrets_manager_calls_are_granted_only_on_the_webhook_secrets_path(
    synth: Synth,
) -> None:
    expected = {
        "webhooks": {"secretsmanager:GetSecretValue"},
        # A new secret per PUT: never updated (PutSecretValue) nor restored.
        "onboarding": {"secretsmanager:CreateSecret", "secretsmanager:DeleteSecret"},
        "scheduler": set(),
        "recorder": set(),
    }
    for key, actions in expected.items():
        granted: set[str] = set()
        for statement in _statements(synth, key):
            secret_actions = {a for a in _actions(statement) if a.startswith("secretsmanager:")}
            if secret_actions:
                assert "webhooks/*" in str(statement["Resource"]), statement
                granted |= secret_actions
        assert granted == actions, key


def test_only_the_api_and_the_deliverer_touch_the_webhooks_table(synth: Synth) -> None:
    table = _logical_id(synth, "AWS::DynamoDB::Table", "TableName", synth.names.webhooks_table)
    expected = {
        "webhooks": {"dynamodb:GetItem", "dynamodb:PutItem"},
        "onboarding": {
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:DeleteItem",
            "dynamodb:Query",
        },
        "scheduler": set(),
        "recorder": set(),
    }
    for key, actions in expected.items():
        granted = {
            a for s in _statements(synth, key) if table in str(s["Resource"]) for a in _actions(s)
        }
        assert granted == actions, key


def test_the_embedded_stacks_loopback_webhooks_cannot_be_deployed(
    synth: Synth, tmp_path: Any
) -> None:
    local = synth.settings.model_copy(
        update={
            "webhooks": synth.settings.webhooks.model_copy(update={"allow_loopback_http": True})
        }
    )
    with pytest.raises(ValueError, match="embedded stack only"):
        build_app(local, outdir=str(tmp_path), nag=False)


ACCOUNT = "123456789012"


def _deliverer_policies(synth: Synth) -> list[dict[str, Any]]:
    """The deliverer role's policies as the embedded stack installs them (rendered)."""
    from trainyard.local.platform_template import Pseudo, TemplateRenderer, platform_roles

    template = synth.platform_json
    function = _logical_id(
        synth, "AWS::Lambda::Function", "FunctionName", synth.names.function("webhooks")
    )
    role = resolve_ref(template, template["Resources"][function]["Properties"]["Role"])
    renderer = TemplateRenderer(
        template, Pseudo(ACCOUNT, synth.settings.region, stack_name=synth.settings.stack_name)
    )
    return list(platform_roles(template, renderer)[role].policies.values())


def _package(synth: Synth, group: str, account: str = ACCOUNT) -> str:
    return f"arn:aws:sagemaker:{synth.settings.region}:{account}:model-package/{group}/3"


def test_the_deliverer_may_read_exactly_the_records_it_verifies_events_against(
    synth: Synth,
) -> None:
    """A run by its key and a tenant's model package: allowed, as the embedded stack
    evaluates the calls (its IAM enforcement maps each to its IAM request); anything
    more is refused."""
    from trainyard.local.iam.actions import Scope, requests_for
    from trainyard.local.iam.policy import evaluate

    policies = _deliverer_policies(synth)
    scope = Scope(synth.settings.region, ACCOUNT)
    names = synth.names
    group = names.model_package_group("acme")
    calls = [
        ("dynamodb", "GetItem", {"TableName": names.runs_table}, True),
        ("sagemaker", "DescribeModelPackage", {"ModelPackageName": _package(synth, group)}, True),
        ("dynamodb", "UpdateItem", {"TableName": names.runs_table}, False),
        ("dynamodb", "PutItem", {"TableName": names.runs_table}, False),
        (
            "dynamodb",
            "Query",
            {"TableName": names.runs_table, "KeyConditionExpression": "x"},
            False,
        ),
        ("dynamodb", "GetItem", {"TableName": names.tenants_table}, False),
        ("dynamodb", "GetItem", {"TableName": names.state_table}, False),
        ("sagemaker", "UpdateModelPackage", {"ModelPackageName": _package(synth, group)}, False),
        (
            "sagemaker",
            "DescribeModelPackage",
            {"ModelPackageName": _package(synth, "someone-elses")},
            False,
        ),
        (
            "sagemaker",
            "DescribeModelPackage",
            {"ModelPackageName": _package(synth, group, account="999999999999")},
            False,
        ),
    ]
    for service, operation, params, allowed in calls:
        for request in requests_for(service, operation, params, scope):
            decision = evaluate(policies, request)
            assert decision.allowed is allowed, (operation, params, decision)
