"""The embedded CloudFormation on in-process moto: an account with a service role,
the engine installed for stacks named ``trainyard-tenant-*``, and small helpers."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from infra.cfn_permissions import resource_permissions
from trainyard.local.cloudformation import Engine, install
from trainyard.local.iam.actions import Scope
from trainyard.local.iam.enforcer import Enforcer, MotoPolicyStore

ACCOUNT = "123456789012"
REGION = "us-east-1"
PREFIX = "trainyard-tenant-"
TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "cloudformation.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}


_clients: dict[str, Any] = {}


def client(service: str) -> Any:
    # Creating a boto3 client costs tens of milliseconds; one per service per test.
    if service not in _clients:
        _clients[service] = boto3.client(service, region_name=REGION)
    return _clients[service]


@dataclass
class Account:
    engine: Engine
    role_arn: str

    @property
    def cfn(self) -> Any:
        return client("cloudformation")

    def allow(self, actions: Iterable[str], role: str = "stacks") -> None:
        """The service role may make exactly these calls (on any resource)."""
        document = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": sorted(set(actions)), "Resource": "*"}],
        }
        client("iam").put_role_policy(
            RoleName=role, PolicyName="handlers", PolicyDocument=json.dumps(document)
        )

    def allow_handlers_of(self, template: Mapping[str, Any], *, but: str | None = None) -> None:
        actions = {
            action
            for resource in template["Resources"].values()
            for granted in resource_permissions(resource).values()
            for action in granted
        }
        self.allow(actions - {but} if but else actions)

    def create(self, name: str, template: Mapping[str, Any], **kwargs: Any) -> dict[str, Any]:
        params = kwargs.pop("params", {})
        self.cfn.create_stack(
            StackName=name,
            TemplateBody=json.dumps(template),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
            Capabilities=kwargs.pop("Capabilities", ["CAPABILITY_NAMED_IAM"]),
            RoleARN=kwargs.pop("RoleARN", self.role_arn),
            **kwargs,
        )
        return self.stack(name)

    def update(self, name: str, template: Mapping[str, Any], **kwargs: Any) -> dict[str, Any]:
        params = kwargs.pop("params", {})
        self.cfn.update_stack(
            StackName=name,
            TemplateBody=json.dumps(template),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
            Capabilities=["CAPABILITY_NAMED_IAM"],
            RoleARN=self.role_arn,
            **kwargs,
        )
        return self.stack(name)

    def stack(self, name_or_id: str) -> dict[str, Any]:
        return dict(self.cfn.describe_stacks(StackName=name_or_id)["Stacks"][0])

    def events(self, name_or_id: str) -> list[tuple[str, str, str]]:
        """(logical id, status, reason), oldest first."""
        events = self.cfn.describe_stack_events(StackName=name_or_id)["StackEvents"]
        return [
            (e["LogicalResourceId"], e["ResourceStatus"], e.get("ResourceStatusReason") or "")
            for e in reversed(events)
        ]


def embedded_account(monkeypatch: pytest.MonkeyPatch) -> Iterator[Account]:
    """In-process moto with the engine installed and a service role allowed the five
    services (tests narrow it with ``allow``)."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    for key in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    _clients.clear()
    with mock_aws():
        iam = client("iam")
        role = iam.create_role(RoleName="stacks", AssumeRolePolicyDocument=json.dumps(TRUST))
        enforcer = Enforcer(MotoPolicyStore(ACCOUNT), Scope(region=REGION, account=ACCOUNT))
        engine = install(client, PREFIX, enforcer, account=ACCOUNT, region=REGION)
        found = Account(engine, role["Role"]["Arn"])
        found.allow(["s3:*", "iam:*", "events:*", "sagemaker:*"])
        yield found


def error_of(call: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as caught:
        call()
    error = caught.value.response["Error"]
    return str(error["Code"]), str(error["Message"])


def bucket_exists(name: str) -> bool:
    try:
        client("s3").head_bucket(Bucket=name)
    except ClientError:
        return False
    return True


def role_exists(name: str) -> bool:
    try:
        client("iam").get_role(RoleName=name)
    except ClientError:
        return False
    return True


def group_exists(name: str) -> bool:
    groups = client("sagemaker").list_model_package_groups()["ModelPackageGroupSummaryList"]
    return name in [g["ModelPackageGroupName"] for g in groups]


def rule_exists(name: str) -> bool:
    return name in [r["Name"] for r in client("events").list_rules()["Rules"]]


# --- template pieces -------------------------------------------------------------


def bucket(name: Any, policy: str | None = None, **props: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "Type": "AWS::S3::Bucket",
        "Properties": {"BucketName": name, **props},
    }
    if policy:
        resource["DeletionPolicy"] = policy
    return resource


def group(name: Any, description: str = "models", **extra: Any) -> dict[str, Any]:
    return {
        "Type": "AWS::SageMaker::ModelPackageGroup",
        "Properties": {"ModelPackageGroupName": name, "ModelPackageGroupDescription": description},
        **extra,
    }


def role(name: Any, description: str = "jobs") -> dict[str, Any]:
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "sagemaker.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    return {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "RoleName": name,
            "Path": "/trainyard/tenants/",
            "Description": description,
            "AssumeRolePolicyDocument": trust,
        },
    }


def rule(name: Any, bucket_ref: Any, target: str) -> dict[str, Any]:
    return {
        "Type": "AWS::Events::Rule",
        "Properties": {
            "Name": name,
            "State": "ENABLED",
            "EventPattern": {"source": ["aws.s3"], "detail": {"bucket": {"name": [bucket_ref]}}},
            "Targets": [{"Arn": target, "Id": "Intake"}],
        },
    }
