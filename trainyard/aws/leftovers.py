"""What a Trainyard deployment leaves in an account, and how to remove it.

`cdk destroy` keeps, on purpose, what holds data or evidence (tables, the platform
and pool buckets, log groups: DeletionPolicy RetainExceptOnCreate), and tenant
stacks keep their bucket and model package group. ``find_leftovers`` lists what
belongs to one deployment — by the exact names ``wiring.Names`` gives its platform
resources, and for tenant resources (``<prefix>-<tenant>...``) only where the
resource's own ``trainyard:tenant-id`` tag names that tenant, so another deployment
whose prefix extends this one (``trainyard-dev`` beside ``trainyard``) is never
matched. ``delete_leftovers`` removes them in dependency order: tenant stacks first
(they need the platform's CloudFormation service role), then the platform stack,
then what they retained (buckets emptied of every version first). Used by
``make destroy`` / ``trainyard aws ...`` and the real-account end-to-end suite;
tested against moto.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError
from trainyard_core import wiring
from trainyard_core.config import Settings

ClientFactory = Callable[[str], Any]

# Deletion order: what others depend on goes last.
ORDER = (
    "tenant-stack",
    "platform-stack",
    "model-package-group",
    "pipeline",
    "rule",
    "queue",
    "topic",
    "secret",
    "bucket",
    "table",
    "log-group",
    "role",
)
_GONE_STACK_STATUSES = {"DELETE_COMPLETE"}


@dataclass(frozen=True)
class Leftover:
    kind: str
    name: str
    # Why it must stay even when asked to delete everything (reported, never deleted).
    protected: str = ""

    def __str__(self) -> str:
        return f"{self.kind} {self.name}" + (f" (kept: {self.protected})" if self.protected else "")


@dataclass(frozen=True)
class Deployment:
    """How to recognise one deployment's resources."""

    names: wiring.Names
    stack_name: str
    account: str

    @classmethod
    def of(cls, settings: Settings, account: str) -> Deployment:
        return cls(wiring.Names.from_settings(settings), settings.stack_name, account)

    @property
    def prefix(self) -> str:
        return self.names.prefix

    def tenant_of(self, name: str, suffix: str = "") -> str | None:
        """The tenant id a ``<prefix>-<id><suffix>`` name would carry, if any."""
        head = f"{self.prefix}-"
        if not name.startswith(head) or not name.endswith(suffix):
            return None
        rest = name[len(head) : len(name) - len(suffix) if suffix else None]
        return rest or None


def _pages(client: Any, operation: str, key: str, **kwargs: Any) -> Iterable[Any]:
    for page in client.get_paginator(operation).paginate(**kwargs):
        yield from page.get(key, [])


def _tag(tags: Iterable[dict[str, str]]) -> str | None:
    for tag in tags:
        if tag.get("Key") == wiring.TENANT_TAG_KEY:
            return tag.get("Value")
    return None


def _safe(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except ClientError:
        return None


def tenant_stacks(clients: ClientFactory, deployment: Deployment) -> list[str]:
    """This deployment's tenant stacks that still exist (named and tagged so)."""
    found = []
    head = deployment.names.tenant_stack("")
    for stack in _pages(clients("cloudformation"), "describe_stacks", "Stacks"):
        name = stack["StackName"]
        if stack["StackStatus"] in _GONE_STACK_STATUSES or not name.startswith(head):
            continue
        if _tag(stack.get("Tags", [])) == name[len(head) :]:
            found.append(name)
    return sorted(found)


def _platform(clients: ClientFactory, d: Deployment) -> list[Leftover]:
    names, found = d.names, []
    stack = _safe(lambda: clients("cloudformation").describe_stacks(StackName=d.stack_name))
    if stack and stack["Stacks"][0]["StackStatus"] not in _GONE_STACK_STATUSES:
        found.append(Leftover("platform-stack", d.stack_name))
    existing_tables = set(_pages(clients("dynamodb"), "list_tables", "TableNames"))
    found += [Leftover("table", t) for t in wiring.tables(names) if t in existing_tables]
    for bucket in (names.platform_bucket(d.account), names.pool_bucket(d.account)):
        if _safe(lambda b=bucket: clients("s3").head_bucket(Bucket=b)) is not None:
            found.append(Leftover("bucket", bucket))
    logs = clients("logs")
    groups = [f"/aws/lambda/{names.function(key)}" for key in wiring.handlers(names)]
    for group in _pages(
        logs, "describe_log_groups", "logGroups", logGroupNamePrefix="/aws/lambda/"
    ):
        if group["logGroupName"] in groups:
            found.append(Leftover("log-group", group["logGroupName"]))
    # Log groups CloudFormation named after the stack (API access, file deployment).
    for group in _pages(
        logs, "describe_log_groups", "logGroups", logGroupNamePrefix=f"{d.stack_name}-"
    ):
        found.append(Leftover("log-group", group["logGroupName"]))
    sm = clients("sagemaker")
    if _safe(lambda: sm.describe_pipeline(PipelineName=names.pipeline_name)):
        found.append(Leftover("pipeline", names.pipeline_name))
    events = clients("events")
    for rule in (names.status_rule, names.reconcile_rule, names.lifecycle_rule, names.webhook_rule):
        if _safe(lambda r=rule: events.describe_rule(Name=r)):
            found.append(Leftover("rule", rule))
    sqs = clients("sqs")
    queues = [*names.intake_queues.values(), names.status_queue, names.status_dlq]
    queues += [names.intake_dlq(plan) for plan in names.plans]
    queues += [names.webhook_queue, names.webhook_dlq, names.webhook_rule_dlq]
    for queue in queues:
        url = _safe(lambda q=queue: sqs.get_queue_url(QueueName=q))
        if url:
            found.append(Leftover("queue", url["QueueUrl"]))
    # Tenant webhook signing secrets (made by the API at run time, not by the stack).
    for secret in _pages(
        clients("secretsmanager"),
        "list_secrets",
        "SecretList",
        Filters=[{"Key": "name", "Values": [names.webhook_secret_prefix]}],
    ):
        if secret["Name"].startswith(names.webhook_secret_prefix):
            found.append(Leftover("secret", secret["Name"]))
    topic = f"{names.prefix}-alarms"
    for arn in (t["TopicArn"] for t in _pages(clients("sns"), "list_topics", "Topics")):
        if arn.rsplit(":", 1)[-1] == topic:
            found.append(Leftover("topic", arn))
    account_role = _api_gateway_logging_role(clients)
    iam = clients("iam")
    for role in _pages(iam, "list_roles", "Roles"):
        if role["RoleName"].startswith(f"{d.stack_name}-"):
            # apiLogging=createAccountRole sets it account-wide: other APIs log with it.
            keep = "the account's API Gateway logging role" if role["Arn"] == account_role else ""
            found.append(Leftover("role", role["RoleName"], keep))
    return found


def _tenants(clients: ClientFactory, d: Deployment) -> list[Leftover]:
    names, found = d.names, []
    found += [Leftover("tenant-stack", s) for s in tenant_stacks(clients, d)]
    s3 = clients("s3")
    for bucket in _pages(s3, "list_buckets", "Buckets"):
        tenant = d.tenant_of(bucket["Name"], f"-{d.account}")
        if not tenant or bucket["Name"] in (
            names.platform_bucket(d.account),
            names.pool_bucket(d.account),
        ):
            continue
        tags = _safe(lambda b=bucket["Name"]: s3.get_bucket_tagging(Bucket=b)) or {}
        if _tag(tags.get("TagSet", [])) == tenant:
            found.append(Leftover("bucket", bucket["Name"]))
    iam = clients("iam")
    # The tenant role path carries the exact prefix: no tag needed.
    for role in _pages(iam, "list_roles", "Roles", PathPrefix=names.tenant_role_path):
        found.append(Leftover("role", role["RoleName"]))
    sm = clients("sagemaker")
    for group in _pages(sm, "list_model_package_groups", "ModelPackageGroupSummaryList"):
        tenant = d.tenant_of(group["ModelPackageGroupName"])
        if not tenant:
            continue
        tags = _safe(lambda g=group: sm.list_tags(ResourceArn=g["ModelPackageGroupArn"])) or {}
        if _tag(tags.get("Tags", [])) == tenant:
            found.append(Leftover("model-package-group", group["ModelPackageGroupName"]))
    events = clients("events")
    for rule in _pages(events, "list_rules", "Rules", NamePrefix=names.tenant_rule_prefix):
        tenant = rule["Name"].removeprefix(names.tenant_rule_prefix).removesuffix("-uploads")
        if rule["Name"] != names.tenant_rule(tenant):
            continue
        tags = _safe(lambda r=rule: events.list_tags_for_resource(ResourceARN=r["Arn"])) or {}
        if _tag(tags.get("Tags", [])) == tenant:
            found.append(Leftover("rule", rule["Name"]))
    return found


def find_leftovers(clients: ClientFactory, deployment: Deployment) -> list[Leftover]:
    found = {(i.kind, i.name): i for i in _platform(clients, deployment)}
    for item in _tenants(clients, deployment):
        found.setdefault((item.kind, item.name), item)
    return sorted(found.values(), key=lambda item: (ORDER.index(item.kind), item.name))


def _api_gateway_logging_role(clients: ClientFactory) -> str:
    account = _safe(lambda: clients("apigateway").get_account()) or {}
    return str(account.get("cloudwatchRoleArn") or "")


def _empty_bucket(s3: Any, bucket: str) -> None:
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        doomed = [
            {"Key": v["Key"], "VersionId": v["VersionId"]}
            for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
        ]
        for i in range(0, len(doomed), 1000):
            s3.delete_objects(Bucket=bucket, Delete={"Objects": doomed[i : i + 1000]})


def _delete_role(iam: Any, name: str) -> None:
    for policy in iam.list_role_policies(RoleName=name).get("PolicyNames", []):
        iam.delete_role_policy(RoleName=name, PolicyName=policy)
    for attached in iam.list_attached_role_policies(RoleName=name).get("AttachedPolicies", []):
        iam.detach_role_policy(RoleName=name, PolicyArn=attached["PolicyArn"])
    iam.delete_role(RoleName=name)


def _delete_group(sm: Any, name: str) -> None:
    for package in _pages(
        sm, "list_model_packages", "ModelPackageSummaryList", ModelPackageGroupName=name
    ):
        sm.delete_model_package(ModelPackageName=package["ModelPackageArn"])
    sm.delete_model_package_group(ModelPackageGroupName=name)


def _delete_rule(events: Any, name: str) -> None:
    targets = events.list_targets_by_rule(Rule=name).get("Targets", [])
    if targets:
        events.remove_targets(Rule=name, Ids=[t["Id"] for t in targets])
    events.delete_rule(Name=name)


def _delete_stack(cfn: Any, name: str) -> None:
    cfn.delete_stack(StackName=name)
    cfn.get_waiter("stack_delete_complete").wait(
        StackName=name, WaiterConfig={"Delay": 5, "MaxAttempts": 360}
    )


_DELETERS: dict[str, Callable[[ClientFactory, str], None]] = {
    "tenant-stack": lambda c, n: _delete_stack(c("cloudformation"), n),
    "platform-stack": lambda c, n: _delete_stack(c("cloudformation"), n),
    "bucket": lambda c, n: (_empty_bucket(c("s3"), n), c("s3").delete_bucket(Bucket=n)),
    "table": lambda c, n: c("dynamodb").delete_table(TableName=n),
    "log-group": lambda c, n: c("logs").delete_log_group(logGroupName=n),
    "role": lambda c, n: _delete_role(c("iam"), n),
    "model-package-group": lambda c, n: _delete_group(c("sagemaker"), n),
    "pipeline": lambda c, n: c("sagemaker").delete_pipeline(PipelineName=n),
    "rule": lambda c, n: _delete_rule(c("events"), n),
    "queue": lambda c, n: c("sqs").delete_queue(QueueUrl=n),
    "topic": lambda c, n: c("sns").delete_topic(TopicArn=n),
    "secret": lambda c, n: c("secretsmanager").delete_secret(
        SecretId=n, ForceDeleteWithoutRecovery=True
    ),
}


def delete_leftovers(
    clients: ClientFactory,
    items: Iterable[Leftover],
    on_done: Callable[[Leftover, str | None], None] | None = None,
) -> list[tuple[Leftover, str]]:
    """Delete in dependency order; returns what could not be deleted, with why. A
    tenant stack that cannot be deleted stops the rest: the platform stack holds the
    service role it needs."""
    failed: list[tuple[Leftover, str]] = []
    for item in sorted(items, key=lambda i: (ORDER.index(i.kind), i.name)):
        if item.protected:
            continue
        if item.kind != "tenant-stack" and any(f.kind == "tenant-stack" for f, _ in failed):
            failed.append((item, "skipped: a tenant stack could not be deleted first"))
            continue
        error: str | None = None
        try:
            _DELETERS[item.kind](clients, item.name)
        except ClientError as exc:
            error = f"{exc.response.get('Error', {}).get('Code')}: {exc}"
        except Exception as exc:  # a waiter timing out, a stack DELETE_FAILED
            error = f"{type(exc).__name__}: {exc}"
        if error is not None:
            failed.append((item, error))
        if on_done is not None:
            on_done(item, error)
    return failed
