"""Alarms and a small dashboard: dead letters, intake backlog age, handler errors."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
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
        # Subscribe e-mail / chat / paging to this topic after deployment.
        self.topic = sns.Topic(
            self,
            "AlarmTopic",
            topic_name=f"{names.prefix}-alarms",
            display_name="Trainyard alarms",
            enforce_ssl=True,
            master_key=kms.Alias.from_alias_name(self, "SnsKey", "alias/aws/sns"),
        )
        action = cw_actions.SnsAction(self.topic)
        self.alarms: list[cloudwatch.Alarm] = []

        def alarm(construct_id: str, **kwargs: object) -> cloudwatch.Alarm:
            created = cloudwatch.Alarm(
                self,
                construct_id,
                evaluation_periods=1,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                **kwargs,  # type: ignore[arg-type]
            )
            created.add_alarm_action(action)
            self.alarms.append(created)
            return created

        dlq_names = {**{p: names.intake_dlq(p) for p in queues.intake}, "status": names.status_dlq}
        dlqs = {**{p: pair.dlq for p, pair in queues.intake.items()}, "status": queues.status.dlq}
        for key, dlq in dlqs.items():
            alarm(
                f"Dlq{key.capitalize()}NotEmpty",
                alarm_name=f"{dlq_names[key]}-not-empty",
                alarm_description=f"Messages in {dlq_names[key]}: events the scheduler gave up on",
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
            cloudwatch.AlarmStatusWidget(title="Alarms", alarms=self.alarms, width=12),
        )
