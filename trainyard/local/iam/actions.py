"""Which IAM requests an AWS API call makes: (service, operation, params) -> requests.

One entry per operation Trainyard's code (handlers, the pipeline runner, the
local CloudFormation) calls as a principal, following the Service Authorization
Reference: the action, the resource ARN it is authorized on, the condition keys
the policies use (``s3:prefix``, ``iam:PassedToService``) and the dependent
actions (``iam:PassRole`` for a role in the request, tag-on-create permissions).
An operation without an entry is *denied* when a principal calls it
(``UnmodelledOperation``): a new call cannot slip past the enforcement; add it here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlparse

from .policy import Request


class UnmodelledOperation(LookupError):
    """No IAM mapping for an operation a principal called."""


@dataclass(frozen=True)
class Scope:
    region: str
    account: str
    partition: str = "aws"

    def arn(self, service: str, resource: str, *, region: bool = True, account: bool = True) -> str:
        return (
            f"arn:{self.partition}:{service}:{self.region if region else ''}:"
            f"{self.account if account else ''}:{resource}"
        )


Builder = Callable[[Mapping[str, Any], Scope], list[Request]]
OPERATIONS: dict[tuple[str, str], Builder] = {}


def _op(service: str, *operations: str) -> Callable[[Builder], Builder]:
    def register(builder: Builder) -> Builder:
        for operation in operations:
            OPERATIONS[(service, operation)] = builder
        return builder

    return register


def requests_for(
    service: str, operation: str, params: Mapping[str, Any], scope: Scope
) -> list[Request]:
    builder = OPERATIONS.get((service, operation))
    if builder is None:
        raise UnmodelledOperation(f"{service}:{operation}")
    return builder(params, scope)


def pass_role(role_arn: str, service_principal: str) -> Request:
    """iam:PassRole, checked whenever a request hands a role to a service."""
    return Request("iam:PassRole", role_arn, {"iam:PassedToService": service_principal})


# ------------------------------------------------------------------ DynamoDB


def _table(scope: Scope, name: str, index: str | None = None) -> str:
    arn = scope.arn("dynamodb", f"table/{name}")
    return f"{arn}/index/{index}" if index else arn


for _name in ("GetItem", "PutItem", "UpdateItem", "DeleteItem", "DescribeTable"):

    def _item(params: Mapping[str, Any], scope: Scope, _action: str = _name) -> list[Request]:
        return [Request(f"dynamodb:{_action}", _table(scope, params["TableName"]))]

    OPERATIONS[("dynamodb", _name)] = _item


@_op("dynamodb", "Query", "Scan")
def _query(params: Mapping[str, Any], scope: Scope) -> list[Request]:
    action = (
        "dynamodb:Query"
        if "KeyConditionExpression" in params or "KeyConditions" in params
        else "dynamodb:Scan"
    )
    return [Request(action, _table(scope, params["TableName"], params.get("IndexName")))]


@_op("dynamodb", "BatchGetItem")
def _batch_get(params: Mapping[str, Any], scope: Scope) -> list[Request]:
    return [Request("dynamodb:BatchGetItem", _table(scope, t)) for t in params["RequestItems"]]


@_op("dynamodb", "BatchWriteItem")
def _batch_write(params: Mapping[str, Any], scope: Scope) -> list[Request]:
    return [Request("dynamodb:BatchWriteItem", _table(scope, t)) for t in params["RequestItems"]]


_TRANSACT_ACTIONS = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
    "Get": "dynamodb:GetItem",
}


@_op("dynamodb", "TransactWriteItems", "TransactGetItems")
def _transact(params: Mapping[str, Any], scope: Scope) -> list[Request]:
    out = []
    for item in params["TransactItems"]:
        for kind, body in item.items():
            out.append(Request(_TRANSACT_ACTIONS[kind], _table(scope, body["TableName"])))
    return out


# ----------------------------------------------------------------------- SQS


def queue_arn(scope: Scope, queue_url: str) -> str:
    path = urlparse(queue_url).path.strip("/").split("/")
    account, name = (path[-2], path[-1]) if len(path) >= 2 else (scope.account, path[-1])
    return f"arn:{scope.partition}:sqs:{scope.region}:{account}:{name}"


_SQS_ACTIONS = {
    "SendMessage": "sqs:SendMessage",
    "SendMessageBatch": "sqs:SendMessage",
    "ReceiveMessage": "sqs:ReceiveMessage",
    "DeleteMessage": "sqs:DeleteMessage",
    "DeleteMessageBatch": "sqs:DeleteMessage",
    "ChangeMessageVisibility": "sqs:ChangeMessageVisibility",
    "ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
    "GetQueueAttributes": "sqs:GetQueueAttributes",
}


for _name, _action in _SQS_ACTIONS.items():

    def _sqs(params: Mapping[str, Any], scope: Scope, _a: str = _action) -> list[Request]:
        return [Request(_a, queue_arn(scope, params["QueueUrl"]))]

    OPERATIONS[("sqs", _name)] = _sqs


@_op("sqs", "GetQueueUrl")
def _queue_url(params: Mapping[str, Any], scope: Scope) -> list[Request]:
    account = params.get("QueueOwnerAWSAccountId") or scope.account
    return [
        Request(
            "sqs:GetQueueUrl",
            f"arn:{scope.partition}:sqs:{scope.region}:{account}:{params['QueueName']}",
        )
    ]


# ------------------------------------------------------------------------ S3


def bucket_arn(scope: Scope, bucket: str) -> str:
    return f"arn:{scope.partition}:s3:::{bucket}"


def object_arn(scope: Scope, bucket: str, key: str) -> str:
    return f"arn:{scope.partition}:s3:::{bucket}/{key}"


def _object(action: str, versioned_action: str | None = None) -> Builder:
    def build(params: Mapping[str, Any], scope: Scope) -> list[Request]:
        chosen = versioned_action if versioned_action and params.get("VersionId") else action
        return [Request(chosen, object_arn(scope, params["Bucket"], params["Key"]))]

    return build


for _name, _builder in {
    "GetObject": _object("s3:GetObject", "s3:GetObjectVersion"),
    "HeadObject": _object("s3:GetObject", "s3:GetObjectVersion"),
    "DeleteObject": _object("s3:DeleteObject", "s3:DeleteObjectVersion"),
    "CreateMultipartUpload": _object("s3:PutObject"),
    "UploadPart": _object("s3:PutObject"),
    "CompleteMultipartUpload": _object("s3:PutObject"),
    "AbortMultipartUpload": _object("s3:AbortMultipartUpload"),
    "ListParts": _object("s3:ListMultipartUploadParts"),
}.items():
    OPERATIONS[("s3", _name)] = _builder


@_op("s3", "PutObject")
def _put_object(params: Mapping[str, Any], scope: Scope) -> list[Request]:
    arn = object_arn(scope, params["Bucket"], params["Key"])
    out = [Request("s3:PutObject", arn)]
    if params.get("Tagging"):
        out.append(Request("s3:PutObjectTagging", arn))
    if params.get("ACL"):
        out.append(Request("s3:PutObjectAcl", arn))
    return out


@_op("s3", "CopyObject")
def _copy_object(params: Mapping[str, Any], scope: Scope) -> list[Request]:
    source = params["CopySource"]
    if isinstance(source, str):
        text, _, query = unquote(source).lstrip("/").partition("?versionId=")
        src_bucket, _, src_key = text.partition("/")
        src_version = query or None
    else:
        src_bucket, src_key, src_version = source["Bucket"], source["Key"], source.get("VersionId")
    read = "s3:GetObjectVersion" if src_version else "s3:GetObject"
    return [
        Request(read, object_arn(scope, src_bucket, src_key)),
        Request("s3:PutObject", object_arn(scope, params["Bucket"], params["Key"])),
    ]


@_op("s3", "DeleteObjects")
def _delete_objects(params: Mapping[str, Any], scope: Scope) -> list[Request]:
    return [
        Request(
            "s3:DeleteObjectVersion" if obj.get("VersionId") else "s3:DeleteObject",
            object_arn(scope, params["Bucket"], obj["Key"]),
        )
        for obj in params["Delete"]["Objects"]
    ]


def _listing(action: str) -> Builder:
    def build(params: Mapping[str, Any], scope: Scope) -> list[Request]:
        # s3:prefix is in the request context only when the request has a prefix.
        context = {"s3:prefix": params["Prefix"]} if "Prefix" in params else {}
        return [Request(action, bucket_arn(scope, params["Bucket"]), context)]

    return build


OPERATIONS[("s3", "ListObjectsV2")] = _listing("s3:ListBucket")
OPERATIONS[("s3", "ListObjects")] = _listing("s3:ListBucket")
OPERATIONS[("s3", "ListObjectVersions")] = _listing("s3:ListBucketVersions")
OPERATIONS[("s3", "HeadBucket")] = _listing("s3:ListBucket")
OPERATIONS[("s3", "DeleteBucket")] = _listing("s3:DeleteBucket")
OPERATIONS[("s3", "GetBucketLocation")] = _listing("s3:GetBucketLocation")


# ----------------------------------------------------------------- SageMaker


def _sm(scope: Scope, resource: str) -> str:
    return scope.arn("sagemaker", resource)


def _tags_on_create(params: Mapping[str, Any], arn: str) -> list[Request]:
    # "To tag on creation you need sagemaker:AddTags" (Create* maps to it).
    return [Request("sagemaker:AddTags", arn)] if params.get("Tags") else []


for _name in ("StartPipelineExecution", "ListPipelineExecutions", "DescribePipeline"):

    def _pipe(params: Mapping[str, Any], scope: Scope, _a: str = _name) -> list[Request]:
        name = str(params["PipelineName"]).rsplit("/", 1)[-1]
        return [Request(f"sagemaker:{_a}", _sm(scope, f"pipeline/{name.lower()}"))]

    OPERATIONS[("sagemaker", _name)] = _pipe


for _name in (
    "DescribePipelineExecution",
    "StopPipelineExecution",
    "ListPipelineExecutionSteps",
    "RetryPipelineExecution",
):

    def _execution(params: Mapping[str, Any], scope: Scope, _a: str = _name) -> list[Request]:
        return [Request(f"sagemaker:{_a}", str(params["PipelineExecutionArn"]))]

    OPERATIONS[("sagemaker", _name)] = _execution


def _group_name(value: str) -> str:
    return value.rsplit("/", 1)[-1] if value.startswith("arn:") else value


for _name in (
    "DescribeModelPackageGroup",
    "DeleteModelPackageGroup",
    "GetModelPackageGroupPolicy",
    "PutModelPackageGroupPolicy",
    "DeleteModelPackageGroupPolicy",
):

    def _group(params: Mapping[str, Any], scope: Scope, _a: str = _name) -> list[Request]:
        group = _group_name(str(params["ModelPackageGroupName"]))
        return [Request(f"sagemaker:{_a}", _sm(scope, f"model-package-group/{group}"))]

    OPERATIONS[("sagemaker", _name)] = _group


@_op("sagemaker", "CreateModelPackageGroup")
def _create_group(params: Mapping[str, Any], scope: Scope) -> list[Request]:
    arn = _sm(scope, f"model-package-group/{params['ModelPackageGroupName']}")
    return [Request("sagemaker:CreateModelPackageGroup", arn), *_tags_on_create(params, arn)]


@_op("sagemaker", "CreateModelPackage")
def _create_package(params: Mapping[str, Any], scope: Scope) -> list[Request]:
    group = params.get("ModelPackageGroupName")
    # A versioned package is model-package/<group>/<version>; the version is assigned
    # by SageMaker, and Trainyard's policies scope it as <group>/*.
    name = f"{_group_name(str(group))}/1" if group else params["ModelPackageName"]
    arn = _sm(scope, f"model-package/{name}")
    return [Request("sagemaker:CreateModelPackage", arn), *_tags_on_create(params, arn)]


for _name in ("DescribeModelPackage", "DeleteModelPackage", "UpdateModelPackage"):

    def _pkg(params: Mapping[str, Any], scope: Scope, _a: str = _name) -> list[Request]:
        value = str(params.get("ModelPackageName") or params.get("ModelPackageArn"))
        arn = value if value.startswith("arn:") else _sm(scope, f"model-package/{value}")
        return [Request(f"sagemaker:{_a}", arn)]

    OPERATIONS[("sagemaker", _name)] = _pkg


for _name in (
    "ListModelPackages",
    "ListModelPackageGroups",
    "ListTrainingJobs",
    "ListProcessingJobs",
):

    def _list(params: Mapping[str, Any], scope: Scope, _a: str = _name) -> list[Request]:
        # List actions support no resource-level permissions: resource "*".
        return [Request(f"sagemaker:{_a}", "*")]

    OPERATIONS[("sagemaker", _name)] = _list


def _instance_types(params: Mapping[str, Any]) -> dict[str, list[str]]:
    # sagemaker:InstanceTypes: the instance types a job asks for (ResourceConfig's, or
    # its heterogeneous InstanceGroups'); processing jobs under ProcessingResources.
    config = params.get("ResourceConfig") or (params.get("ProcessingResources") or {}).get(
        "ClusterConfig"
    )
    if not isinstance(config, Mapping):
        return {}
    types = [str(config["InstanceType"])] if config.get("InstanceType") else []
    types += [str(g["InstanceType"]) for g in config.get("InstanceGroups") or []]
    return {"sagemaker:InstanceTypes": types} if types else {}


def _job(kind: str, name_key: str, action: str) -> Builder:
    def build(params: Mapping[str, Any], scope: Scope) -> list[Request]:
        arn = _sm(scope, f"{kind}/{str(params[name_key]).lower()}")
        context = _instance_types(params) if action.startswith("sagemaker:Create") else {}
        out = [Request(action, arn, context)]
        if action.startswith("sagemaker:Create"):
            out.append(pass_role(str(params["RoleArn"]), "sagemaker.amazonaws.com"))
            out += _tags_on_create(params, arn)
        return out

    return build


OPERATIONS[("sagemaker", "CreateProcessingJob")] = _job(
    "processing-job", "ProcessingJobName", "sagemaker:CreateProcessingJob"
)
OPERATIONS[("sagemaker", "DescribeProcessingJob")] = _job(
    "processing-job", "ProcessingJobName", "sagemaker:DescribeProcessingJob"
)
OPERATIONS[("sagemaker", "CreateTrainingJob")] = _job(
    "training-job", "TrainingJobName", "sagemaker:CreateTrainingJob"
)
OPERATIONS[("sagemaker", "DescribeTrainingJob")] = _job(
    "training-job", "TrainingJobName", "sagemaker:DescribeTrainingJob"
)


@_op("sagemaker", "ListTags")
def _list_tags(params: Mapping[str, Any], scope: Scope) -> list[Request]:
    return [Request("sagemaker:ListTags", str(params["ResourceArn"]))]


@_op("sagemaker", "AddTags")
def _add_tags(params: Mapping[str, Any], scope: Scope) -> list[Request]:
    return [Request("sagemaker:AddTags", str(params["ResourceArn"]))]


# ------------------------------------------------------------ CloudFormation


def stack_arn(scope: Scope, name_or_id: str) -> str:
    if name_or_id.startswith("arn:"):
        return name_or_id
    # Authorized on arn:...:stack/<name>/<id>; the id is unknown before creation,
    # and Trainyard's policies end stack ARNs with /*.
    return scope.arn("cloudformation", f"stack/{name_or_id}/*")


def _template_object(scope: Scope, url: str) -> Request | None:
    parsed = urlparse(url)
    host = parsed.netloc.split(":")[0]
    path = parsed.path.lstrip("/")
    if host.startswith("s3.") or host.startswith("s3-") or host in ("localhost", "127.0.0.1"):
        bucket, _, key = path.partition("/")  # path-style URL
    else:
        bucket, key = host.split(".", 1)[0], path  # virtual-hosted-style URL
    # CloudFormation reads TemplateURL with the caller's credentials.
    return Request("s3:GetObject", object_arn(scope, bucket, unquote(key)))


def _stack_change(action: str) -> Builder:
    def build(params: Mapping[str, Any], scope: Scope) -> list[Request]:
        out = [Request(action, stack_arn(scope, str(params["StackName"])))]
        if params.get("RoleARN"):
            out.append(pass_role(str(params["RoleARN"]), "cloudformation.amazonaws.com"))
        if params.get("TemplateURL"):
            template = _template_object(scope, str(params["TemplateURL"]))
            if template is not None:
                out.append(template)
        if params.get("Tags") and action == "cloudformation:CreateStack":
            # The Service Authorization Reference maps CreateStack to TagResource too.
            out.append(Request("cloudformation:TagResource", out[0].resource))
        return out

    return build


OPERATIONS[("cloudformation", "CreateStack")] = _stack_change("cloudformation:CreateStack")
OPERATIONS[("cloudformation", "UpdateStack")] = _stack_change("cloudformation:UpdateStack")
OPERATIONS[("cloudformation", "DeleteStack")] = _stack_change("cloudformation:DeleteStack")

for _name in ("DescribeStacks", "DescribeStackEvents", "DescribeStackResources", "GetTemplate"):

    def _read_stack(params: Mapping[str, Any], scope: Scope, _a: str = _name) -> list[Request]:
        name = params.get("StackName")
        resource = stack_arn(scope, str(name)) if name else "*"
        return [Request(f"cloudformation:{_a}", resource)]

    OPERATIONS[("cloudformation", _name)] = _read_stack


# ---------------------------------------------------------------- the others


@_op("sts", "AssumeRole")
def _assume_role(params: Mapping[str, Any], scope: Scope) -> list[Request]:
    # The enforcer also requires the role's trust policy to name the caller.
    out = [Request("sts:AssumeRole", str(params["RoleArn"]))]
    if params.get("Tags") or params.get("TransitiveTagKeys"):
        out.append(Request("sts:TagSession", str(params["RoleArn"])))
    return out


@_op("sts", "GetCallerIdentity")
def _caller_identity(params: Mapping[str, Any], scope: Scope) -> list[Request]:
    return []  # "No permissions are required to perform this operation."


@_op("lambda", "Invoke")
def _invoke(params: Mapping[str, Any], scope: Scope) -> list[Request]:
    name = str(params["FunctionName"])
    arn = name if name.startswith("arn:") else scope.arn("lambda", f"function:{name}")
    return [Request("lambda:InvokeFunction", arn)]


@_op("events", "PutEvents")
def _put_events(params: Mapping[str, Any], scope: Scope) -> list[Request]:
    buses = {e.get("EventBusName") or "default" for e in params["Entries"]}
    return [Request("events:PutEvents", scope.arn("events", f"event-bus/{b}")) for b in buses]


@_op("cloudwatch", "PutMetricData")
def _metric_data(params: Mapping[str, Any], scope: Scope) -> list[Request]:
    return [Request("cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": params["Namespace"]})]


# ----------------------------------------------------------- Secrets Manager


def secret_arn(scope: Scope, secret_id: str) -> str:
    """The ARN a request on ``secret_id`` (a name or an ARN) is authorized on.

    A secret's ARN ends in "-" and six random characters Secrets Manager adds; a
    request by name is authorized on that ARN, so policies name secrets with a
    trailing wildcard (``secret:<path>/*``). A name is modelled with a placeholder
    suffix that only such a wildcard matches."""
    if secret_id.startswith("arn:"):
        return secret_id
    return scope.arn("secretsmanager", f"secret:{secret_id}-xxxxxx")


@_op("secretsmanager", "CreateSecret")
def _create_secret(params: Mapping[str, Any], scope: Scope) -> list[Request]:
    arn = secret_arn(scope, str(params["Name"]))
    out = [Request("secretsmanager:CreateSecret", arn)]
    if params.get("Tags"):
        out.append(Request("secretsmanager:TagResource", arn))
    if params.get("KmsKeyId"):
        # The caller needs the key too (GenerateDataKey/Decrypt): not modelled, refused.
        raise UnmodelledOperation("secretsmanager:CreateSecret with KmsKeyId")
    return out


for _name in (
    "GetSecretValue",
    "PutSecretValue",
    "DeleteSecret",
    "RestoreSecret",
    "DescribeSecret",
):

    def _secret(params: Mapping[str, Any], scope: Scope, _a: str = _name) -> list[Request]:
        return [Request(f"secretsmanager:{_a}", secret_arn(scope, str(params["SecretId"])))]

    OPERATIONS[("secretsmanager", _name)] = _secret
