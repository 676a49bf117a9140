"""SQS: one intake queue per plan (fed by tenant rules), the pipeline-status queue,
the webhook delivery queue, each with its own dead-letter queue; and the dead-letter
queue of the webhook rule's target (events EventBridge could not queue)."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Aws, Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sqs as sqs
from constructs import Construct
from trainyard_core import wiring

from infra.nag import acknowledge

MAX_RECEIVE_COUNT = 5
RETENTION = Duration.days(14)  # the SQS maximum: a bad batch is kept as long as possible


@dataclass(frozen=True)
class QueuePair:
    queue: sqs.Queue
    dlq: sqs.Queue


def _pair(
    scope: Construct,
    construct_id: str,
    *,
    name: str,
    dlq_name: str,
    visibility: Duration,
    max_receive_count: int = MAX_RECEIVE_COUNT,
) -> QueuePair:
    dlq = sqs.Queue(
        scope,
        f"{construct_id}Dlq",
        queue_name=dlq_name,
        retention_period=RETENTION,
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
    )
    queue = sqs.Queue(
        scope,
        construct_id,
        queue_name=name,
        retention_period=RETENTION,
        # SSE-SQS (not KMS): EventBridge can deliver to it without key grants.
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        visibility_timeout=visibility,
        dead_letter_queue=sqs.DeadLetterQueue(queue=dlq, max_receive_count=max_receive_count),
    )
    return QueuePair(queue=queue, dlq=dlq)


class Queues(Construct):
    """`intake[plan]`, `status` and `webhooks`, named by `wiring.Names`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: wiring.Names,
        consumer_timeout: Duration,
        webhook_attempts: int = MAX_RECEIVE_COUNT,
    ) -> None:
        super().__init__(scope, construct_id)
        self._names = names
        # AWS guidance: visibility timeout >= 6x the consumer's timeout, so a
        # throttled/retried Lambda batch is not redelivered while still in flight.
        visibility = Duration.seconds(consumer_timeout.to_seconds() * 6)
        self.intake: dict[str, QueuePair] = {}
        for plan, queue_name in names.intake_queues.items():
            pair = _pair(
                self,
                f"Intake{plan.capitalize()}",
                name=queue_name,
                dlq_name=names.intake_dlq(plan),
                visibility=visibility,
            )
            # Tenant stacks create rules named <prefix>-tenant-*; only those rules,
            # in this account, may deliver uploads here.
            pair.queue.add_to_resource_policy(
                iam.PolicyStatement(
                    sid="TenantUploadRules",
                    principals=[iam.ServicePrincipal("events.amazonaws.com")],
                    actions=["sqs:SendMessage"],
                    resources=[pair.queue.queue_arn],
                    conditions={
                        "ArnLike": {
                            "aws:SourceArn": (
                                f"arn:{Aws.PARTITION}:events:{Aws.REGION}:{Aws.ACCOUNT_ID}:"
                                f"rule/{names.tenant_rule_prefix}*"
                            )
                        },
                        "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                    },
                )
            )
            self.intake[plan] = pair
        self.status = _pair(
            self,
            "PipelineStatus",
            name=names.status_queue,
            dlq_name=names.status_dlq,
            visibility=visibility,
        )
        # Trainyard's events for tenant webhooks (the rule is in infra/webhooks.py).
        # Its maxReceiveCount is the settings' webhook attempts: a delivery's last
        # attempt failing moves the event to the dead-letter queue.
        self.webhooks = _pair(
            self,
            "WebhookDeliveries",
            name=names.webhook_queue,
            dlq_name=names.webhook_dlq,
            visibility=visibility,
            max_receive_count=webhook_attempts,
        )
        # The webhook rule's target DLQ (infra/webhooks.py): events EventBridge could not
        # put on the webhook queue (its policy, or SQS failing past the retry policy).
        # SSE-SQS so EventBridge can write it without key grants; the target adds the
        # policy letting only that rule send.
        self.webhook_events_dlq = sqs.Queue(
            self,
            "WebhookEventsDlq",
            queue_name=names.webhook_rule_dlq,
            retention_period=RETENTION,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
        )
        acknowledge(
            self.webhook_events_dlq,
            "SQS3",
            "It is a dead-letter queue: the DeadLetterConfig of the webhook rule's target "
            "(EventBridge), which cdk-nag only recognises in an SQS redrive policy. It has "
            "no consumer to fail, so a DLQ of its own would only hide what its alarm reports.",
        )

    @property
    def by_name(self) -> dict[str, sqs.Queue]:
        """Physical name -> queue, for matching `HandlerSpec.queues`."""
        out = {self._names.intake_queue(p): pair.queue for p, pair in self.intake.items()}
        out[self._names.status_queue] = self.status.queue
        out[self._names.webhook_queue] = self.webhooks.queue
        return out

    @property
    def dlqs(self) -> list[sqs.Queue]:
        pairs = [*self.intake.values(), self.status, self.webhooks]
        return [pair.dlq for pair in pairs] + [self.webhook_events_dlq]
