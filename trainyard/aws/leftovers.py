"""What Trainyard leaves in an account, and how to remove it.

`cdk destroy` keeps, on purpose, what holds data or evidence (tables, the platform
and pool buckets, log groups: DeletionPolicy RetainExceptOnCreate), and tenant
stacks keep their bucket and model package group. ``find_leftovers`` lists
everything named for a deployment (its resource prefix and stack name);
``delete_leftovers`` removes them in dependency order (stacks first, buckets
emptied of every version first). Used by ``make destroy`` / ``trainyard aws
leftovers`` and by the real-account end-to-end suite, and tested against moto.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

ClientFactory = Callable[[str], Any]

# Deletion order: what others depend on goes last.
ORDER = (
    "stack",
    "model-package-group",
    "pipeline",
    "rule",
    "queue",
    "topic",
    "bucket",
    "table",
    "log-group",
    "role",
)
_LIVE_STACK_STATUSES = [
    "CREATE_IN_PROGRESS",
    "CREATE_FAILED",
    "CREATE_COMPLETE",
    "ROLLBACK_IN_PROGRESS",
    "ROLLBACK_FAILED",
    "ROLLBACK_COMPLETE",
    "DELETE_IN_PROGRESS",
    "DELETE_FAILED",
    "UPDATE_IN_PROGRESS",
    "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS",
    "UPDATE_COMPLETE",
    "UPDATE_FAILED",
    "UPDATE_ROLLBACK_IN_PROGRESS",
    "UPDATE_ROLLBACK_FAILED",
    "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS",
    "UPDATE_ROLLBACK_COMPLETE",
]


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
    """How to recognise a deployment's resources."""

    prefix: str  # settings.resource_prefix
    stack_name: str  # settings.stack_name
    account: str

    def owns_bucket(self, name: str) -> bool:
        return name.startswith(f"{self.prefix}-") and name.endswith(f"-{self.account}")


def _pages(client: Any, operation: str, key: str, **kwargs: Any) -> Iterable[Any]:
    for page in client.get_paginator(operation).paginate(**kwargs):
        yield from page.get(key, [])


def find_leftovers(clients: ClientFactory, deployment: Deployment) -> list[Leftover]:
    d, found = deployment, []
    cfn = clients("cloudformation")
    for stack in _pages(
        cfn, "list_stacks", "StackSummaries", StackStatusFilter=_LIVE_STACK_STATUSES
    ):
        name = stack["StackName"]
        if name == d.stack_name or name.startswith(f"{d.prefix}-tenant-"):
            found.append(Leftover("stack", name))
    for bucket in clients("s3").list_buckets().get("Buckets", []):
        if d.owns_bucket(bucket["Name"]):
            found.append(Leftover("bucket", bucket["Name"]))
    for table in _pages(clients("dynamodb"), "list_tables", "TableNames"):
        if table.startswith(f"{d.prefix}-"):
            found.append(Leftover("table", table))
    logs = clients("logs")
    for prefix in (f"/aws/lambda/{d.prefix}-", f"{d.stack_name}-"):
        for group in _pages(logs, "describe_log_groups", "logGroups", logGroupNamePrefix=prefix):
            found.append(Leftover("log-group", group["logGroupName"]))
    iam = clients("iam")
    account_role = _api_gateway_logging_role(clients)
    for role in _pages(iam, "list_roles", "Roles"):
        if role["Path"].startswith(f"/{d.prefix}/") or role["RoleName"].startswith(
            f"{d.stack_name}-"
        ):
            # apiLogging=createAccountRole sets it account-wide: other APIs log with it.
            keep = "the account's API Gateway logging role" if role["Arn"] == account_role else ""
            found.append(Leftover("role", role["RoleName"], keep))
    sm = clients("sagemaker")
    for group in _pages(sm, "list_model_package_groups", "ModelPackageGroupSummaryList"):
        if group["ModelPackageGroupName"].startswith(f"{d.prefix}-"):
            found.append(Leftover("model-package-group", group["ModelPackageGroupName"]))
    for pipeline in _pages(sm, "list_pipelines", "PipelineSummaries"):
        if pipeline["PipelineName"].startswith(f"{d.prefix}-"):
            found.append(Leftover("pipeline", pipeline["PipelineName"]))
    events = clients("events")
    for rule in events.list_rules(NamePrefix=f"{d.prefix}-").get("Rules", []):
        found.append(Leftover("rule", rule["Name"]))
    for url in clients("sqs").list_queues(QueueNamePrefix=f"{d.prefix}-").get("QueueUrls", []):
        found.append(Leftover("queue", url))
    for topic in _pages(clients("sns"), "list_topics", "Topics"):
        if topic["TopicArn"].rsplit(":", 1)[-1].startswith(f"{d.prefix}-"):
            found.append(Leftover("topic", topic["TopicArn"]))
    return sorted(found, key=lambda item: (ORDER.index(item.kind), item.name))


def _api_gateway_logging_role(clients: ClientFactory) -> str:
    try:
        return str(clients("apigateway").get_account().get("cloudwatchRoleArn") or "")
    except ClientError:
        return ""


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


def delete_one(clients: ClientFactory, item: Leftover) -> None:
    kind, name = item.kind, item.name
    if kind == "stack":
        cfn = clients("cloudformation")
        cfn.delete_stack(StackName=name)
        cfn.get_waiter("stack_delete_complete").wait(
            StackName=name, WaiterConfig={"Delay": 5, "MaxAttempts": 360}
        )
    elif kind == "bucket":
        s3 = clients("s3")
        _empty_bucket(s3, name)
        s3.delete_bucket(Bucket=name)
    elif kind == "table":
        clients("dynamodb").delete_table(TableName=name)
    elif kind == "log-group":
        clients("logs").delete_log_group(logGroupName=name)
    elif kind == "role":
        _delete_role(clients("iam"), name)
    elif kind == "model-package-group":
        _delete_group(clients("sagemaker"), name)
    elif kind == "pipeline":
        clients("sagemaker").delete_pipeline(PipelineName=name)
    elif kind == "rule":
        _delete_rule(clients("events"), name)
    elif kind == "queue":
        clients("sqs").delete_queue(QueueUrl=name)
    elif kind == "topic":
        clients("sns").delete_topic(TopicArn=name)
    else:
        raise ValueError(f"unknown leftover kind {kind!r}")


def delete_leftovers(
    clients: ClientFactory,
    items: Iterable[Leftover],
    on_done: Callable[[Leftover, str | None], None] | None = None,
) -> list[tuple[Leftover, str]]:
    """Delete in dependency order; returns what could not be deleted, with why."""
    failed: list[tuple[Leftover, str]] = []
    for item in sorted(items, key=lambda i: (ORDER.index(i.kind), i.name)):
        if item.protected:
            continue
        error: str | None = None
        try:
            delete_one(clients, item)
        except ClientError as exc:
            error = f"{exc.response.get('Error', {}).get('Code')}: {exc}"
        except Exception as exc:  # a waiter timing out, a stack DELETE_FAILED
            error = f"{type(exc).__name__}: {exc}"
        if error is not None:
            failed.append((item, error))
        if on_done is not None:
            on_done(item, error)
    return failed
