"""Creates the platform's resources in moto from the same wiring the CDK app uses.

CDK deploys the platform stack in AWS; locally, the resources it would create
(tables, queues with their dead-letter queues, the platform bucket with code and
both tenant templates, the shared pool bucket, the pipeline, the status-change
rule) are created here
from ``trainyard_core.wiring`` so both worlds share names, keys and routing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainyard_core import events as catalogue
from trainyard_core import wiring
from trainyard_core.config import Isolation, Settings
from trainyard_core.wiring import Names

from .cloudformation.s3 import lifecycle_rules
from .platform_template import (
    Pseudo,
    RoleSpec,
    TemplateRenderer,
    bucket_policies,
    platform_roles,
    principals_of,
    queue_policies,
    synthesize_platform,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Local visibility timeout: short, so a failed message is retried (and dead-lettered)
# within a demo's time frame rather than after six Lambda timeouts, but no shorter
# than the slowest consumer's timeout (the scheduler's 60 s), which Lambda's
# CreateEventSourceMapping requires (the stack checks it as Lambda does).
LOCAL_VISIBILITY_TIMEOUT = 60
MAX_RECEIVE_COUNT = 5


@dataclass
class Platform:
    queue_urls: dict[str, str]  # physical name -> url
    queue_arns: dict[str, str]
    pipeline_arn: str
    platform_bucket: str
    template_url: str  # the silo template (kept for callers that predate pool)
    tenant_stack_role_arn: str
    pipeline_role_arn: str
    template_urls: dict[str, str] = field(default_factory=dict)  # isolation -> url
    pool_bucket: str = ""
    # Handler key -> its execution role (the synthesized template's role).
    function_role_arns: dict[str, str] = field(default_factory=dict)
    definition_version: str = ""  # infra.pipeline.deployed_definition_version


def _sha(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return h.hexdigest()[:16]


def tenant_template(
    settings: Settings, cache_dir: Path, isolation: Isolation = "silo"
) -> dict[str, Any]:
    """A tenant stack template, synthesized by the CDK code (cached: synth takes seconds)."""
    source = b"".join(
        (PROJECT_ROOT / "infra" / name).read_bytes()
        for name in ("tenant_stack.py", "tenant_template.py")
    )
    key = _sha(settings.to_json().encode(), source, isolation.encode())
    cached = cache_dir / f"tenant-template-{isolation}-{key}.json"
    if cached.exists():
        return json.loads(cached.read_text())
    import os

    # jsii's "Node 20 is end-of-life" banner is harmless; keep the demo's output readable.
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
    from infra.tenant_template import synth_tenant_template

    template = synth_tenant_template(settings, isolation)
    cache_dir.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps(template, indent=1, sort_keys=True))
    return template


def create_tables(ddb: Any, names: Names) -> None:
    for table_name, spec in wiring.tables(names).items():
        attrs = {spec.partition_key}
        keys = [{"AttributeName": spec.partition_key, "KeyType": "HASH"}]
        if spec.sort_key:
            attrs.add(spec.sort_key)
            keys.append({"AttributeName": spec.sort_key, "KeyType": "RANGE"})
        gsis = []
        for index in spec.indexes:
            attrs.add(index.partition_key)
            schema = [{"AttributeName": index.partition_key, "KeyType": "HASH"}]
            if index.sort_key:
                attrs.add(index.sort_key)
                schema.append({"AttributeName": index.sort_key, "KeyType": "RANGE"})
            gsis.append(
                {
                    "IndexName": index.name,
                    "KeySchema": schema,
                    "Projection": {"ProjectionType": "ALL"},
                }
            )
        kwargs: dict[str, Any] = {
            "TableName": table_name,
            "KeySchema": keys,
            "AttributeDefinitions": [
                {"AttributeName": a, "AttributeType": "S"} for a in sorted(attrs)
            ],
            "BillingMode": "PAY_PER_REQUEST",
        }
        if gsis:
            kwargs["GlobalSecondaryIndexes"] = gsis
        ddb.create_table(**kwargs)
        if spec.ttl_attribute:
            ddb.update_time_to_live(
                TableName=table_name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": spec.ttl_attribute},
            )


def create_queues(
    sqs: Any, names: Names, webhook_attempts: int = MAX_RECEIVE_COUNT
) -> tuple[dict[str, str], dict[str, str]]:
    urls: dict[str, str] = {}
    arns: dict[str, str] = {}
    visibility = LOCAL_VISIBILITY_TIMEOUT
    pairs = [
        (names.intake_queue(p), names.intake_dlq(p), MAX_RECEIVE_COUNT, visibility)
        for p in names.plans
    ]
    pairs.append((names.status_queue, names.status_dlq, MAX_RECEIVE_COUNT, visibility))
    # As infra/queues.py: the webhook queue's maxReceiveCount is the attempts setting,
    # and its visibility timeout no shorter than its consumer's timeout (Lambda's
    # CreateEventSourceMapping refuses a shorter one). Retries are paced by the
    # deliverer's ChangeMessageVisibility, not by this.
    deliverer_timeout = wiring.handlers(names)["webhooks"].timeout_seconds
    pairs.append(
        (
            names.webhook_queue,
            names.webhook_dlq,
            webhook_attempts,
            max(visibility, deliverer_timeout),
        )
    )
    for queue, dlq, max_receives, queue_visibility in pairs:
        dlq_url = sqs.create_queue(
            QueueName=dlq, Attributes={"MessageRetentionPeriod": str(14 * 24 * 3600)}
        )["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        url = sqs.create_queue(
            QueueName=queue,
            Attributes={
                "VisibilityTimeout": str(queue_visibility),
                "RedrivePolicy": json.dumps(
                    {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receives)}
                ),
            },
        )["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        urls[queue], arns[queue] = url, arn
        urls[dlq], arns[dlq] = dlq_url, dlq_arn
    # The webhook rule's target DLQ (infra/queues.py): no consumer, no redrive policy.
    url = sqs.create_queue(
        QueueName=names.webhook_rule_dlq,
        Attributes={"MessageRetentionPeriod": str(14 * 24 * 3600)},
    )["QueueUrl"]
    urls[names.webhook_rule_dlq] = url
    arns[names.webhook_rule_dlq] = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    return urls, arns


def webhook_rule_target(arns: dict[str, str], names: Names) -> dict[str, Any]:
    """The webhook rule's target as infra/webhooks.py declares it: the queue, the
    target's DLQ and the retry policy (the same values, from wiring)."""
    return {
        "Id": "webhook-queue",
        "Arn": arns[names.webhook_queue],
        "DeadLetterConfig": {"Arn": arns[names.webhook_rule_dlq]},
        "RetryPolicy": {
            "MaximumRetryAttempts": wiring.WEBHOOK_RULE_MAX_RETRY_ATTEMPTS,
            "MaximumEventAgeInSeconds": wiring.WEBHOOK_RULE_MAX_EVENT_AGE_SECONDS,
        },
    }


def create_platform_roles(
    iam: Any, template: dict[str, Any], renderer: TemplateRenderer
) -> dict[str, RoleSpec]:
    """The synthesized template's roles, with their policies, in the embedded IAM:
    what each principal may do locally is exactly what CDK deploys."""
    roles = platform_roles(template, renderer)
    for spec in roles.values():
        iam.create_role(
            RoleName=spec.name,
            Path=spec.path,
            AssumeRolePolicyDocument=json.dumps(spec.trust),
        )
        for name, document in spec.policies.items():
            # PutRolePolicy validates the document, as IAM does at deploy time.
            iam.put_role_policy(
                RoleName=spec.name, PolicyName=name, PolicyDocument=json.dumps(document)
            )
    return roles


def bootstrap_platform(
    clients: Any,
    *,
    settings: Settings,
    account_id: str,
    recorder_arn: str,
    cache_dir: Path,
) -> Platform:
    """``clients(service)`` returns a boto3 client for the embedded endpoint."""
    from pipeline.contract import RECORDER_PLACEHOLDER
    from pipeline.definition import render_definition

    names = Names.from_settings(settings)
    platform_template = synthesize_platform(settings, cache_dir, account_id)
    renderer = TemplateRenderer(
        platform_template,
        Pseudo(account=account_id, region=settings.region, stack_name=settings.stack_name),
    )
    create_tables(clients("dynamodb"), names)
    urls, arns = create_queues(clients("sqs"), names, settings.webhooks.max_attempts)

    s3 = clients("s3")
    bucket = names.platform_bucket(account_id)
    s3.create_bucket(Bucket=bucket)
    # The same keys as the platform stack's PlatformFiles deployment.
    from infra.pipeline import (
        definition_json,
        deployed_definition_version,
        step_script_files,
        step_script_uris,
    )
    from infra.tenant_template import ISOLATIONS, template_text, templates_version

    for key, path in step_script_files().items():
        s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
    rendered = {
        isolation: template_text(tenant_template(settings, cache_dir, isolation))
        for isolation in ISOLATIONS
    }
    version = templates_version(rendered)
    template_urls: dict[str, str] = {}
    for isolation, text in rendered.items():
        key = names.tenant_template_key(isolation, version)
        s3.put_object(Bucket=bucket, Key=key, Body=text.encode())
        template_urls[isolation] = f"https://{bucket}.s3.{settings.region}.amazonaws.com/{key}"

    # The shared pool bucket (the platform stack's PoolBucket): versioned, with
    # native EventBridge notifications so each pool tenant's rule sees its uploads.
    pool = names.pool_bucket(account_id)
    s3.create_bucket(Bucket=pool)
    s3.put_bucket_versioning(Bucket=pool, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_notification_configuration(
        Bucket=pool, NotificationConfiguration={"EventBridgeConfiguration": {}}
    )
    # Its lifecycle rules as the platform template has them (storage.tenant_data_bucket).
    pool_props = platform_template["Resources"]["PoolBucket"]["Properties"]
    lifecycle = pool_props["LifecycleConfiguration"]
    s3.put_bucket_lifecycle_configuration(
        Bucket=pool, LifecycleConfiguration={"Rules": lifecycle_rules(renderer.render(lifecycle))}
    )

    for bucket_name, policy in bucket_policies(platform_template, renderer).items():
        s3.put_bucket_policy(Bucket=bucket_name, Policy=json.dumps(policy))
    # EventBridge delivers to a queue only as its policy allows (the embedded IAM
    # checks it, moto would not).
    for queue_name, policy in queue_policies(platform_template, renderer).items():
        clients("sqs").set_queue_attributes(
            QueueUrl=urls[queue_name], Attributes={"Policy": json.dumps(policy)}
        )

    roles = create_platform_roles(clients("iam"), platform_template, renderer)
    principals = principals_of(platform_template, wiring.ENV_TENANT_STACK_ROLE_ARN)
    pipeline_role = roles[principals.pipeline].arn
    stack_role = roles[principals.tenant_stacks].arn
    function_roles = {
        key: roles[principals.functions[names.function(key)]].arn for key in wiring.handlers(names)
    }

    definition = render_definition(
        definition_json(settings),  # memoized: deployed_definition_version hashes it
        {**step_script_uris(bucket), RECORDER_PLACEHOLDER: recorder_arn},
    )
    pipeline_arn = clients("sagemaker").create_pipeline(
        PipelineName=names.pipeline_name,
        PipelineDefinition=definition,
        RoleArn=pipeline_role,
    )["PipelineArn"]

    events = clients("events")
    events.put_rule(
        Name=names.status_rule,
        EventPattern=json.dumps(
            {
                "source": [wiring.SAGEMAKER_STATUS_SOURCE],
                "detail-type": [wiring.SAGEMAKER_STATUS_DETAIL_TYPE],
                "detail": {"pipelineArn": [pipeline_arn]},
            }
        ),
    )
    events.put_targets(
        Rule=names.status_rule,
        Targets=[{"Id": "status-queue", "Arn": arns[names.status_queue]}],
    )
    # Trainyard's own events to the webhook queue (infra/webhooks.py); the queue policies
    # set above from the template are what let this rule deliver (to the queue, or to
    # the target's DLQ when the queue refuses).
    events.put_rule(
        Name=names.webhook_rule,
        EventPattern=json.dumps({"source": [catalogue.SOURCE]}),
    )
    answer = events.put_targets(Rule=names.webhook_rule, Targets=[webhook_rule_target(arns, names)])
    if answer.get("FailedEntryCount"):
        raise RuntimeError(f"PutTargets on {names.webhook_rule}: {answer['FailedEntries']}")
    return Platform(
        queue_urls=urls,
        queue_arns=arns,
        pipeline_arn=pipeline_arn,
        platform_bucket=bucket,
        template_url=template_urls["silo"],
        template_urls=template_urls,
        pool_bucket=pool,
        tenant_stack_role_arn=stack_role,
        pipeline_role_arn=pipeline_role,
        function_role_arns=function_roles,
        definition_version=deployed_definition_version(settings),
    )
