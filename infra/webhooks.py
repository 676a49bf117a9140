"""Tenant webhooks: Trainyard's events (default bus, source ``trainyard``) -> the
webhook queue -> the webhooks Lambda, and what the two functions involved may do.

The deliverer reads the tenant's webhook, writes its delivery records, reads the
secret its webhook names, reads the run or the model package an event is about (to
verify it) and sets a message's retry delay; the API (onboarding function) sets, shows
and deletes webhooks and creates and deletes the secrets (a new one per PUT, never
updated in place). Secrets live under one path (``wiring.Names.webhook_secret_prefix``),
so both grants are scoped to it.
"""

from __future__ import annotations

from aws_cdk import Aws, Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from constructs import Construct
from trainyard_core import events as catalogue
from trainyard_core import wiring

from infra.lambdas import TrainyardFunction
from infra.nag import acknowledge_findings
from infra.queues import Queues
from infra.storage import Storage

# What each function calls (trainyard_core/webhook_secrets.py, store/webhooks_dynamodb.py).
DELIVERER_SECRET_ACTIONS = ["secretsmanager:GetSecretValue"]
API_SECRET_ACTIONS = ["secretsmanager:CreateSecret", "secretsmanager:DeleteSecret"]
DELIVERER_TABLE_ACTIONS = ["GetItem", "PutItem"]
API_TABLE_ACTIONS = ["GetItem", "PutItem", "DeleteItem", "Query"]
# The deliverer verifies each event against Trainyard's records before sending it
# (trainyard_core/webhooks/verify.py): one run by its key, one model package.
DELIVERER_RUN_ACTIONS = ["dynamodb:GetItem"]
DELIVERER_MODEL_ACTIONS = ["sagemaker:DescribeModelPackage"]


def tenant_model_packages_arn(names: wiring.Names) -> str:
    # Versions of the tenant groups, model-package/<prefix>-<tenant>/<version>.
    return (
        f"arn:{Aws.PARTITION}:sagemaker:{Aws.REGION}:{Aws.ACCOUNT_ID}:"
        f"model-package/{names.prefix}-*/*"
    )


def secrets_arn(names: wiring.Names) -> str:
    # Secrets Manager appends "-" and six random characters to a secret's name.
    return (
        f"arn:{Aws.PARTITION}:secretsmanager:{Aws.REGION}:{Aws.ACCOUNT_ID}:"
        f"secret:{names.webhook_secret_prefix}*"
    )


class Webhooks(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: wiring.Names,
        deliverer: TrainyardFunction,
        api: TrainyardFunction,
        queues: Queues,
        storage: Storage,
    ) -> None:
        super().__init__(scope, construct_id)
        # Every Trainyard event; the deliverer picks each tenant's subscriptions.
        # The target adds the queue policies: only this rule may send to the queue and
        # to the target's DLQ (aws:SourceArn = the rule). An event SQS refuses (policy,
        # encryption) or keeps failing past the retry policy goes to that DLQ (alarmed)
        # instead of being dropped.
        self.rule = events.Rule(
            self,
            "EventsRule",
            rule_name=names.webhook_rule,
            description="Trainyard's own events to the webhook delivery queue",
            event_pattern=events.EventPattern(source=[catalogue.SOURCE]),
            targets=[
                targets.SqsQueue(
                    queues.webhooks.queue,
                    dead_letter_queue=queues.webhook_events_dlq,
                    retry_attempts=wiring.WEBHOOK_RULE_MAX_RETRY_ATTEMPTS,
                    max_event_age=Duration.seconds(wiring.WEBHOOK_RULE_MAX_EVENT_AGE_SECONDS),
                )
            ],
        )
        secrets = secrets_arn(names)
        deliverer.role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadWebhookSecrets", actions=DELIVERER_SECRET_ACTIONS, resources=[secrets]
            )
        )
        api.role.add_to_policy(
            iam.PolicyStatement(
                sid="ManageWebhookSecrets", actions=API_SECRET_ACTIONS, resources=[secrets]
            )
        )
        storage.grant_webhooks(deliverer.role, DELIVERER_TABLE_ACTIONS)
        storage.grant_webhooks(api.role, API_TABLE_ACTIONS)
        deliverer.role.add_to_policy(
            iam.PolicyStatement(
                sid="VerifyRunEvents",
                actions=DELIVERER_RUN_ACTIONS,
                resources=[storage.tables[names.runs_table].table_arn],
            )
        )
        deliverer.role.add_to_policy(
            iam.PolicyStatement(
                sid="VerifyModelEvents",
                actions=DELIVERER_MODEL_ACTIONS,
                resources=[tenant_model_packages_arn(names)],
            )
        )
        acknowledge_findings(
            deliverer.role,
            "IAM5",
            {
                "Resource::arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>:"
                f"model-package/{names.prefix}-*/*": (
                    "The versions of the tenant model package groups (<prefix>-<tenant>, "
                    "made at onboarding): described to verify a model event before it is "
                    "delivered."
                ),
            },
        )
        finding = (
            "Resource::arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>:"
            f"secret:{names.webhook_secret_prefix}*"
        )
        reason = (
            "One signing secret per tenant webhook (a new one per PUT), created at run "
            "time under this path; Secrets Manager adds a random suffix to every ARN."
        )
        for role in (deliverer.role, api.role):
            acknowledge_findings(role, "IAM5", {finding: reason})
