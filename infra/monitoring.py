"""Alarms and a dashboard: dead letters, intake backlog age, handler errors, and the
scheduler's own metrics (runs stuck, failure rate, throttled starts) per plan.

Every alarm has a runbook section in docs/runbook.md, named by the alarm's name
without the stack prefix (a test checks that each one exists)."""

from __future__ import annotations

from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from constructs import Construct
from trainyard_core import wiring

from infra.lambdas import TrainyardFunction
from infra.queues import Queues

# An upload waiting this long in an intake queue means the scheduler is not
# consuming (errors, throttling): the event-driven path should take seconds.
INTAKE_OLDEST_MESSAGE_ALARM = Duration.minutes(15)
PERIOD = Duration.minutes(1)
# Failure rate: share of runs ending FAILED per hour, judged only once enough
# runs ended that one bad upload (a tenant's problem, not ours) cannot page.
FAILURE_RATE_PERCENT = 50
FAILURE_RATE_MIN_RUNS = 5
# Throttled starts are retried with backoff, so one is harmless; throttling in
# three 5-minute periods in a row means the account quota is below the cap.
THROTTLED_PERIODS = 3
# An element the sweep keeps failing on (retried every minute), not a one-off.
SWEEP_ERROR_PERIODS = 3
CLOUDWATCH_PRINCIPAL = "cloudwatch.amazonaws.com"


class Monitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: wiring.Names,
        queues: Queues,
        functions: dict[str, TrainyardFunction],
    ) -> None:
        super().__init__(scope, construct_id)
        self.names = names
        # Alarm notifications are encrypted at rest with a key of our own: CloudWatch
        # cannot use the AWS-managed alias/aws/sns key (its policy cannot be changed to
        # let cloudwatch.amazonaws.com GenerateDataKey/Decrypt), so alarms on a topic
        # encrypted with it never notify anyone.
        self.key = kms.Key(
            self,
            "AlarmTopicKey",
            description="Trainyard alarm notifications (SNS topic encryption)",
            enable_key_rotation=True,
            # Holds no data at rest beyond in-flight notifications: not worth a retained key.
            removal_policy=RemovalPolicy.DESTROY,
            pending_window=Duration.days(7),
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsEncryptNotifications",
                principals=[iam.ServicePrincipal(CLOUDWATCH_PRINCIPAL)],
                actions=["kms:GenerateDataKey*", "kms:Decrypt"],
                resources=["*"],  # in a key policy, "*" is this key
            )
        )
        # Subscribe e-mail / chat / paging to this topic after deployment.
        self.topic = sns.Topic(
            self,
            "AlarmTopic",
            topic_name=f"{names.prefix}-alarms",
            display_name="Trainyard alarms",
            enforce_ssl=True,
            master_key=self.key,
        )
        # The TLS-only topic policy replaces SNS's default policy, so CloudWatch (a
        # service principal, not an IAM identity of the account) must be allowed
        # explicitly - only for this account's alarms.
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsPublish",
                principals=[iam.ServicePrincipal(CLOUDWATCH_PRINCIPAL)],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={
                    "ArnLike": {
                        # Every alarm below is named <prefix>-...
                        "aws:SourceArn": f"arn:{Aws.PARTITION}:cloudwatch:{Aws.REGION}:"
                        f"{Aws.ACCOUNT_ID}:alarm:{names.prefix}-*"
                    },
                    "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                },
            )
        )
        action = cw_actions.SnsAction(self.topic)
        self.alarms: list[cloudwatch.Alarm] = []

        def alarm(construct_id: str, **kwargs: object) -> cloudwatch.Alarm:
            kwargs.setdefault("evaluation_periods", 1)
            created = cloudwatch.Alarm(
                self,
                construct_id,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                **kwargs,  # type: ignore[arg-type]
            )
            created.add_alarm_action(action)
            self.alarms.append(created)
            return created

        dlq_names = {
            **{p: names.intake_dlq(p) for p in queues.intake},
            "status": names.status_dlq,
            "webhooks": names.webhook_dlq,
            "webhookEvents": names.webhook_rule_dlq,
        }
        dlqs = {
            **{p: pair.dlq for p, pair in queues.intake.items()},
            "status": queues.status.dlq,
            "webhooks": queues.webhooks.dlq,
            "webhookEvents": queues.webhook_events_dlq,
        }
        gave_up_on = {
            "webhooks": "webhook deliveries that failed every attempt",
            "webhookEvents": "Trainyard events EventBridge could not put on the webhook queue",
        }
        for key, dlq in dlqs.items():
            gave_up = gave_up_on.get(key, "events the scheduler gave up on")
            alarm(
                f"Dlq{key.capitalize()}NotEmpty",
                alarm_name=f"{dlq_names[key]}-not-empty",
                alarm_description=f"Messages in {dlq_names[key]}: {gave_up}",
                metric=dlq.metric_approximate_number_of_messages_visible(
                    period=PERIOD, statistic="Maximum"
                ),
                threshold=0,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            )
        for plan, pair in queues.intake.items():
            alarm(
                f"Intake{plan.capitalize()}OldestMessage",
                alarm_name=f"{names.intake_queue(plan)}-oldest-message",
                alarm_description=f"Uploads of plan {plan} wait unconsumed in the intake queue",
                metric=pair.queue.metric_approximate_age_of_oldest_message(
                    period=PERIOD, statistic="Maximum"
                ),
                threshold=INTAKE_OLDEST_MESSAGE_ALARM.to_seconds(),
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            )
        for key, fn in functions.items():
            alarm(
                f"{key.capitalize()}Errors",
                alarm_name=f"{names.function(key)}-errors",
                alarm_description=f"The {key} Lambda reports errors",
                metric=fn.function.metric_errors(period=Duration.minutes(5), statistic="Sum"),
                threshold=0,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            )

        for plan in queues.intake:
            alarm(
                f"RunsStuck{plan.capitalize()}",
                alarm_name=f"{names.prefix}-{plan}-runs-stuck",
                alarm_description=(
                    f"Runs of plan {plan} execute longer than stuck_run_hours or their "
                    "execution is unknown to SageMaker; the run's failureReason says which"
                ),
                metric=self.scheduler_metric("RunsStuck", plan, "Maximum", Duration.minutes(5)),
                threshold=0,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            )
            failed = self.scheduler_metric("RunsFailed", plan, "Sum", Duration.hours(1))
            succeeded = self.scheduler_metric("RunsSucceeded", plan, "Sum", Duration.hours(1))
            alarm(
                f"FailureRate{plan.capitalize()}",
                alarm_name=f"{names.prefix}-{plan}-failure-rate",
                alarm_description=(
                    f"Over {FAILURE_RATE_PERCENT}% of plan {plan}'s runs failed in the last "
                    f"hour (at least {FAILURE_RATE_MIN_RUNS} ended)"
                ),
                metric=cloudwatch.MathExpression(
                    expression=(
                        f"IF((FILL(f, 0) + FILL(s, 0)) >= {FAILURE_RATE_MIN_RUNS}, "
                        "100 * FILL(f, 0) / (FILL(f, 0) + FILL(s, 0)), 0)"
                    ),
                    using_metrics={"f": failed, "s": succeeded},
                    label=f"{plan} failure rate (%)",
                    period=Duration.hours(1),
                ),
                threshold=FAILURE_RATE_PERCENT,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            )
            alarm(
                f"StartsThrottled{plan.capitalize()}",
                alarm_name=f"{names.prefix}-{plan}-starts-throttled",
                alarm_description=(
                    f"StartPipelineExecution for plan {plan} was throttled in "
                    f"{THROTTLED_PERIODS} consecutive 5-minute periods"
                ),
                metric=self.scheduler_metric("StartsThrottled", plan, "Sum", Duration.minutes(5)),
                threshold=0,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=THROTTLED_PERIODS,
                datapoints_to_alarm=THROTTLED_PERIODS,
            )

        # Failures a handler isolates and goes on from (it never errors for them):
        # alarmed when they persist, on the function's own service-wide metric.
        persistent = (
            (
                "SweepErrors",
                "scheduler",
                f"{names.prefix}-scheduler-sweep-errors",
                "Reconcile or dispatch isolated a failing run, counter or plan",
                "the sweep goes on; the scheduler's log says which element and why",
            ),
            (
                "TenantStackUpdateFailures",
                "onboarding",
                f"{names.prefix}-tenant-stack-update-failures",
                "Tenant stacks failed to update to the deployed tenant template",
                "those tenants keep working on their old stack; the onboarding log says why",
            ),
        )
        for metric_name, handler, alarm_name, what, effect in persistent:
            alarm(
                metric_name,
                alarm_name=alarm_name,
                alarm_description=(
                    f"{what} in {SWEEP_ERROR_PERIODS} consecutive 5-minute periods ({effect})"
                ),
                metric=cloudwatch.Metric(
                    namespace=wiring.METRICS_NAMESPACE,
                    metric_name=metric_name,
                    dimensions_map={"service": wiring.service_name(names.prefix, handler)},
                    statistic="Sum",
                    period=Duration.minutes(5),
                ),
                threshold=0,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=SWEEP_ERROR_PERIODS,
                datapoints_to_alarm=SWEEP_ERROR_PERIODS,
            )

        self.dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=f"{names.prefix}-overview",
            default_interval=Duration.hours(3),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Intake backlog (messages visible)",
                left=[
                    pair.queue.metric_approximate_number_of_messages_visible(
                        period=PERIOD, statistic="Maximum", label=plan
                    )
                    for plan, pair in queues.intake.items()
                ],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="Intake oldest message age (s)",
                left=[
                    pair.queue.metric_approximate_age_of_oldest_message(
                        period=PERIOD, statistic="Maximum", label=plan
                    )
                    for plan, pair in queues.intake.items()
                ],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="Handler invocations / errors",
                left=[
                    fn.function.metric_invocations(period=PERIOD, label=f"{key} invocations")
                    for key, fn in functions.items()
                ],
                right=[
                    fn.function.metric_errors(period=PERIOD, label=f"{key} errors")
                    for key, fn in functions.items()
                ],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="Running runs / queued runs per plan",
                left=[
                    self.scheduler_metric("RunningRuns", plan, "Maximum", PERIOD)
                    for plan in queues.intake
                ],
                right=[
                    self.scheduler_metric("QueueDepth", plan, "Maximum", PERIOD)
                    for plan in queues.intake
                ],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="Dispatch delay p99 (s)",
                left=[
                    self.scheduler_metric("DispatchDelay", plan, "p99", Duration.minutes(5))
                    for plan in queues.intake
                ],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="Runs started / failed / stuck, starts throttled",
                left=[
                    self.scheduler_metric(name, plan, stat, Duration.minutes(5))
                    for name, stat in (
                        ("RunsStarted", "Sum"),
                        ("RunsFailed", "Sum"),
                        ("RunsStuck", "Maximum"),
                        ("StartsThrottled", "Sum"),
                    )
                    for plan in queues.intake
                ],
                width=12,
            ),
            cloudwatch.AlarmStatusWidget(title="Alarms", alarms=self.alarms, width=12),
        )

    def scheduler_metric(
        self, name: str, plan: str, statistic: str, period: Duration
    ) -> cloudwatch.Metric:
        """A per-plan metric the scheduler emits (dimensions exactly as Powertools writes them)."""
        return cloudwatch.Metric(
            namespace=wiring.METRICS_NAMESPACE,
            metric_name=name,
            dimensions_map={
                "plan": plan,
                "service": wiring.service_name(self.names.prefix, "scheduler"),
            },
            statistic=statistic,
            period=period,
            label=f"{plan} {name}",
        )
