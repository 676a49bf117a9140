"""The one case table of the silo and pool isolation proofs (docs/isolation.md §4, §7.4).

What tenant A's role must and must not reach, written once for both models: the
resources, contexts and probes are templates over `Pair.values()`, which each model
lays out (A's and B's data bucket and key root, the platform bucket, B's rule and
queue, ...). `models`/`only_because` mark a case of one model only, `ids` a model
that names a case differently; `cases(model)` is a model's table by test id.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from typing import Any

from tests.infra.isolation_cases import (
    MODEL,
    MOTO_IGNORES_CONDITIONS,
    MOTO_LAMBDA_ACTION,
    MOTO_RESOURCE_STAR,
    NOT_AN_API,
    STEP_CODE_KEY,
    UPLOAD,
    Case,
    Model,
    Pair,
    Probe,
)
from tests.infra.isolation_support import Decision

# An AWS-owned account that hosts the built-in SageMaker images (us-east-1 XGBoost).
SAGEMAKER_IMAGES_ACCOUNT = "683313688378"


def _formatted(value: Any, values: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**values)
    if isinstance(value, dict):
        return {k: _formatted(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_formatted(v, values) for v in value]
    return value


def _call(service: str, method: str, **kwargs: Any) -> Probe:
    """An API call with A's credentials; its strings are templates like resources."""
    return lambda p: getattr(p.client(service), method)(**_formatted(kwargs, p.values()))


def _s3(method: str, **kwargs: Any) -> Probe:
    return _call("s3", method, **kwargs)


_OBJECT_CALLS = {
    "s3:GetObject": "get_object",
    "s3:PutObject": "put_object",
    "s3:DeleteObject": "delete_object",
}


def _object(
    behaviour: str, action: str, bucket: str, key: str, expected: Decision, **more: Any
) -> Case:
    """A case on the object bucket/key, probed with the call `action` authorizes."""
    body = {"Body": "1"} if action == "s3:PutObject" else {}
    probe = _s3(_OBJECT_CALLS[action], Bucket=bucket, Key=key, **body)
    return Case(behaviour, action, f"arn:aws:s3:::{bucket}/{key}", expected, probe, **more)


def _listing(
    behaviour: str, bucket: str, prefix: str | None, expected: Decision, **more: Any
) -> Case:
    """s3:ListBucket with `prefix` (None: no Prefix, so AWS sends no s3:prefix); probed
    with ListObjectsV2 unless `offline_because` says moto cannot decide it."""
    prefixed = {} if prefix is None else {"Prefix": prefix}
    offline = more.get("offline_because")
    probe = None if offline else _s3("list_objects_v2", Bucket=bucket, **prefixed)
    context = {} if prefix is None else {"s3:prefix": prefix}
    return Case(
        behaviour, "s3:ListBucket", f"arn:aws:s3:::{bucket}", expected, probe, context, **more
    )


def _data_bucket(
    behaviour: str,
    action: str,
    expected: Decision,
    method: str,
    args: Mapping[str, Any] | None = None,
    **more: Any,
) -> Case:
    """A case on A's data bucket itself (in pool, the shared one), probed with S3
    `method` and its other arguments `args`."""
    probe = _s3(method, Bucket="{a_bucket}", **(args or {}))
    return Case(behaviour, action, "arn:aws:s3:::{a_bucket}", expected, probe, **more)


def _put_role_policy(who: str, name: str, action: str) -> Probe:
    """PutRolePolicy on A's or B's role (`who`), granting `action` on everything."""
    statement = {"Effect": "Allow", "Action": action, "Resource": "*"}
    document = json.dumps({"Version": "2012-10-17", "Statement": [statement]})
    return lambda p: p.client("iam").put_role_policy(
        RoleName=getattr(p, who).role_name, PolicyName=name, PolicyDocument=document
    )


def _authorized_if_unimplemented(call: Probe) -> Probe:
    """moto authorizes before dispatching, then raises NotImplementedError for an
    API it lacks (DeleteModelPackageGroup): reaching that point means "allowed"."""

    def probe(p: Pair) -> None:
        with contextlib.suppress(NotImplementedError):
            call(p)

    return probe


A_DATA, B_DATA = "{a_bucket}", "{b_bucket}"
A, B, PLATFORM = "{a_root}", "{b_root}", "{platform}"
RULE = "arn:aws:events:{region}:{account}:rule/{b_rule}"
ECR = "arn:aws:ecr:{region}:{account}:repository/"
LOGS = "arn:aws:logs:{region}:{account}:log-group:"

CASES: tuple[Case, ...] = (
    # --- A's own location: read data and artifacts, list them, write artifacts only
    _object("reads_own_uploads", "s3:GetObject", A_DATA, A + UPLOAD, "allow"),
    _object("reads_own_artifacts", "s3:GetObject", A_DATA, A + MODEL, "allow"),
    _listing("lists_own_upload_prefix", A_DATA, A + "data/", "allow"),
    _listing("lists_own_artifacts_prefix", A_DATA, A + "artifacts/run-1/", "allow"),
    _object(
        "writes_own_artifacts",
        "s3:PutObject",
        A_DATA,
        A + "artifacts/run-1/evaluation/evaluation.json",
        "allow",
    ),
    _object("cannot_write_own_uploads", "s3:PutObject", A_DATA, A + "data/injected.csv", "deny"),
    _object("cannot_delete_own_uploads", "s3:DeleteObject", A_DATA, A + UPLOAD, "deny"),
    # Listing the bucket root (no Prefix: AWS sends no s3:prefix).
    _listing(
        "cannot_list_own_bucket_outside_its_prefixes",
        A_DATA,
        None,
        "deny",
        offline_because=MOTO_IGNORES_CONDITIONS,
        ids={"pool": "cannot_list_pool_bucket_root"},
    ),
    # Like the root of a silo bucket: no job lists its whole prefix (inputs and
    # outputs are data/... and artifacts/...), so the role does not allow it.
    _listing(
        "cannot_list_own_tenant_root",
        A_DATA,
        A,
        "deny",
        offline_because=MOTO_IGNORES_CONDITIONS,
        models=("pool",),
        only_because="silo: A's root is its bucket's (cannot_list_own_bucket_outside_its_prefixes)",
    ),
    # --- B's data: nothing
    _object("cannot_read_other_tenant_uploads", "s3:GetObject", B_DATA, B + UPLOAD, "deny"),
    _object("cannot_read_other_tenant_artifacts", "s3:GetObject", B_DATA, B + MODEL, "deny"),
    # B's rule would start a run of B's on the injected data.
    _object(
        "cannot_write_other_tenant_uploads", "s3:PutObject", B_DATA, B + "data/poison.csv", "deny"
    ),
    _object("cannot_write_other_tenant_artifacts", "s3:PutObject", B_DATA, B + MODEL, "deny"),
    _object("cannot_delete_other_tenant_data", "s3:DeleteObject", B_DATA, B + UPLOAD, "deny"),
    # In pool, A and B share the bucket: only the s3:prefix condition tells them apart.
    _listing(
        "cannot_list_other_tenant_bucket",
        B_DATA,
        B + "data/",
        "deny",
        offline_in={"pool": MOTO_IGNORES_CONDITIONS},
        ids={"pool": "cannot_list_other_tenant_prefix"},
    ),
    # --- what sharing a bucket adds (pool only)
    _listing(
        "cannot_list_all_tenants",
        A_DATA,
        "tenants/",
        "deny",
        offline_because=MOTO_IGNORES_CONDITIONS,
        models=("pool",),
        only_because="silo: B's keys are in B's bucket (cannot_list_other_tenant_bucket)",
    ),
    # `tenants/acme` (no slash) would list tenants/acme-corp/ as well.
    _listing(
        "cannot_list_by_partial_tenant_id",
        A_DATA,
        "{a_partial}",
        "deny",
        offline_because=MOTO_IGNORES_CONDITIONS,
        models=("pool",),
        only_because="silo: the keys of A's own bucket carry no tenant id",
    ),
    _object(
        "cannot_read_tenant_whose_id_extends_own",
        "s3:GetObject",
        A_DATA,
        "{a_sibling}" + UPLOAD,
        "deny",
        models=("pool",),
        only_because="silo: A's grants name its whole bucket, <prefix>-<id>-<account>",
    ),
    _object(
        "cannot_write_outside_tenant_prefixes",
        "s3:PutObject",
        A_DATA,
        "shared.csv",
        "deny",
        models=("pool",),
        only_because="silo: the whole bucket is A's; none of its keys is another tenant's",
    ),
    # --- A's data bucket itself (in pool: the platform's, every pool tenant's). After
    # the object cases: where a mutation allows these calls, they change the bucket.
    _data_bucket(
        "gets_own_bucket_location",
        "s3:GetBucketLocation",
        "allow",
        "get_bucket_location",
        ids={"pool": "gets_pool_bucket_location"},
    ),
    _data_bucket(
        "cannot_change_own_bucket_policy",
        "s3:PutBucketPolicy",
        "deny",
        "put_bucket_policy",
        args={"Policy": "{{}}"},
        ids={"pool": "cannot_change_pool_bucket_policy"},
    ),
    # Turning EventBridge delivery off would stop every pool tenant's runs.
    _data_bucket(
        "cannot_change_pool_bucket_notifications",
        "s3:PutBucketNotification",
        "deny",
        "put_bucket_notification_configuration",
        args={"NotificationConfiguration": {}},
        models=("pool",),
        only_because="silo: the bucket is A's own; its notifications start A's runs only",
    ),
    _data_bucket(
        "cannot_delete_own_bucket",
        "s3:DeleteBucket",
        "deny",
        "delete_bucket",
        ids={"pool": "cannot_delete_pool_bucket"},
    ),
    Case("cannot_enumerate_buckets", "s3:ListAllMyBuckets", "*", "deny", _s3("list_buckets")),
    # --- the platform bucket: the step code under code/, read-only; nothing else
    _object("reads_pipeline_step_code", "s3:GetObject", PLATFORM, STEP_CODE_KEY, "allow"),
    _listing("lists_pipeline_step_code", PLATFORM, STEP_CODE_KEY, "allow"),
    _listing(
        "cannot_list_platform_bucket_outside_code",
        PLATFORM,
        "access-logs/",
        "deny",
        offline_because=MOTO_IGNORES_CONDITIONS,
    ),
    _object("cannot_overwrite_pipeline_step_code", "s3:PutObject", PLATFORM, STEP_CODE_KEY, "deny"),
    _object("cannot_read_tenant_templates", "s3:GetObject", PLATFORM, "{template_key}", "deny"),
    _object(
        "cannot_read_other_tenant_access_logs",
        "s3:GetObject",
        PLATFORM,
        "{b_access_log}",
        "deny",
        ids={"pool": "cannot_read_pool_access_logs"},
    ),
    # --- B's role, rule, model package group and stack; the control plane
    Case(
        "cannot_assume_other_tenant_role",
        "sts:AssumeRole",
        "{b_role_arn}",
        "deny",
        _call("sts", "assume_role", RoleArn="{b_role_arn}", RoleSessionName="steal"),
    ),
    # The uploader role signs every tenant's presigned uploads: a job that could
    # assume it could mint upload URLs into B's data prefix (docs/isolation.md §1).
    Case(
        "cannot_assume_uploader_role",
        "sts:AssumeRole",
        "{uploader_role_arn}",
        "deny",
        _call("sts", "assume_role", RoleArn="{uploader_role_arn}", RoleSessionName="mint"),
    ),
    Case(
        "cannot_pass_other_tenant_role",
        "iam:PassRole",
        "{b_role_arn}",
        "deny",
        context={"iam:PassedToService": "sagemaker.amazonaws.com"},
        offline_because=NOT_AN_API,
    ),
    Case(
        "cannot_change_other_tenant_role",
        "iam:PutRolePolicy",
        "{b_role_arn}",
        "deny",
        _put_role_policy("b", "open", "s3:*"),
    ),
    Case(
        "cannot_change_own_permissions",
        "iam:PutRolePolicy",
        "{a_role_arn}",
        "deny",
        _put_role_policy("a", "escalate", "*"),
    ),
    # A rule matching tenants/* would deliver B's uploads into runs of A.
    Case(
        "cannot_change_upload_rules",
        "events:PutRule",
        RULE,
        "deny",
        _call("events", "put_rule", Name="{b_rule}", EventPattern='{{"source": ["aws.s3"]}}'),
        ids={"pool": "cannot_change_other_tenant_rule"},
    ),
    Case(
        "cannot_retarget_other_tenant_rule",
        "events:PutTargets",
        RULE,
        "deny",
        _call(
            "events",
            "put_targets",
            Rule="{b_rule}",
            Targets=[{"Id": "steal", "Arn": "{a_rule_arn}"}],
        ),
    ),
    Case(
        "cannot_delete_other_tenant_rule",
        "events:DeleteRule",
        RULE,
        "deny",
        _call("events", "delete_rule", Name="{b_rule}"),
    ),
    Case(
        "cannot_register_models_in_other_tenant_group",
        "sagemaker:CreateModelPackage",
        "arn:aws:sagemaker:{region}:{account}:model-package/{b_group}/1",
        "deny",
        _call("sagemaker", "create_model_package", ModelPackageGroupName="{b_group}"),
    ),
    Case(
        "cannot_delete_other_tenant_model_group",
        "sagemaker:DeleteModelPackageGroup",
        "arn:aws:sagemaker:{region}:{account}:model-package-group/{b_group}",
        "deny",
        _authorized_if_unimplemented(
            _call("sagemaker", "delete_model_package_group", ModelPackageGroupName="{b_group}")
        ),
    ),
    Case(
        "cannot_start_pipeline_executions",
        "sagemaker:StartPipelineExecution",
        "arn:aws:sagemaker:{region}:{account}:pipeline/{pipeline}",
        "deny",
        _call("sagemaker", "start_pipeline_execution", PipelineName="{pipeline}"),
    ),
    Case(
        "cannot_delete_tenant_stacks",
        "cloudformation:DeleteStack",
        "arn:aws:cloudformation:{region}:{account}:stack/{b_stack}/*",
        "deny",
        _call("cloudformation", "delete_stack", StackName="{b_stack}"),
    ),
    Case(
        "cannot_read_tenant_registry",
        "dynamodb:GetItem",
        "arn:aws:dynamodb:{region}:{account}:table/{tenants_table}",
        "deny",
        _call(
            "dynamodb", "get_item", TableName="{tenants_table}", Key={"tenantId": {"S": "{b_id}"}}
        ),
    ),
    Case(
        "cannot_forge_upload_events",
        "sqs:SendMessage",
        "arn:aws:sqs:{region}:{account}:{b_queue}",
        "deny",
        _call("sqs", "send_message", QueueUrl="{b_queue_url}", MessageBody="{{}}"),
    ),
    Case(
        "cannot_invoke_run_recorder",
        "lambda:InvokeFunction",
        "arn:aws:lambda:{region}:{account}:function:{recorder}",
        "deny",
        offline_because=MOTO_LAMBDA_ACTION,
    ),
    # --- what SageMaker jobs need outside S3
    Case(
        "gets_ecr_login_token",
        "ecr:GetAuthorizationToken",
        "*",
        "allow",
        _call("ecr", "get_authorization_token"),
    ),
    Case(
        "pulls_builtin_sagemaker_images",
        "ecr:BatchGetImage",
        ECR.replace("{account}", SAGEMAKER_IMAGES_ACCOUNT) + "sagemaker-xgboost",
        "allow",
        offline_because=MOTO_RESOURCE_STAR,
    ),
    Case(
        "cannot_pull_other_repositories",
        "ecr:BatchGetImage",
        ECR + "private-models",
        "deny",
        offline_because=MOTO_RESOURCE_STAR,
    ),
    Case(
        "writes_job_logs",
        "logs:PutLogEvents",
        LOGS + "/aws/sagemaker/TrainingJobs:log-stream:job-1/algo-1",
        "allow",
        offline_because=MOTO_RESOURCE_STAR,
    ),
    Case(
        "cannot_write_platform_logs",
        "logs:PutLogEvents",
        LOGS + "/aws/lambda/{recorder}:log-stream:x",
        "deny",
        offline_because=MOTO_RESOURCE_STAR,
    ),
    Case(
        "publishes_job_metrics",
        "cloudwatch:PutMetricData",
        "*",
        "allow",
        context={"cloudwatch:namespace": "/aws/sagemaker/TrainingJobs"},
        offline_because=MOTO_IGNORES_CONDITIONS,
    ),
    Case(
        "cannot_publish_platform_metrics",
        "cloudwatch:PutMetricData",
        "*",
        "deny",
        context={"cloudwatch:namespace": "Trainyard"},
        offline_because=MOTO_IGNORES_CONDITIONS,
    ),
)


def cases(model: Model) -> dict[str, Case]:
    """The cases of `model` by test id, in table order."""
    found = {case.id(model): case for case in CASES if model in case.models}
    assert len(found) == sum(model in case.models for case in CASES), "duplicate test ids"
    return found
