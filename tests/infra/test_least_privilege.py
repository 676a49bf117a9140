"""Least privilege, checked on every IAM policy of every synthesized stack.

An Allow whose resource is "*" (or a whole resource type, like ``table/*``), whose
action is a whole service (``s3:*``) or that uses NotAction/NotResource fails the
test unless it is listed in JUSTIFIED with the reason it cannot be narrower.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from typing import Any

import pytest

from tests.infra.synth_support import Synth

pytestmark = pytest.mark.infra

IAM_TYPES = ("AWS::IAM::Policy", "AWS::IAM::Role", "AWS::IAM::ManagedPolicy")


@dataclass(frozen=True)
class Justified:
    actions: frozenset[str]
    resource: str  # regex on the rendered resource
    reason: str
    condition_key: str | None = None  # the grant is acceptable only with this condition


JUSTIFIED = (
    Justified(
        frozenset({"xray:PutTraceSegments", "xray:PutTelemetryRecords"}),
        r"\*",
        "X-Ray has no resource-level permissions; Lambda active tracing needs these two.",
    ),
    Justified(
        frozenset({"ecr:GetAuthorizationToken"}),
        r"\*",
        "ECR login has no resource-level permissions; images are pulled only from "
        "sagemaker-* repositories (a separate, scoped statement).",
    ),
    Justified(
        frozenset({"cloudwatch:PutMetricData"}),
        r"\*",
        "PutMetricData has no resource-level permissions; the cloudwatch:namespace "
        "condition limits it to SageMaker's job metrics.",
        condition_key="cloudwatch:namespace",
    ),
    Justified(
        frozenset({"sagemaker:ListModelPackages"}),
        r"\*",
        "ListModelPackages has no resource-level permissions; a purge lists a tenant's "
        "packages before deleting them (deletes are scoped to tenant groups).",
    ),
    Justified(
        frozenset({"kms:Decrypt"}),
        r"\*",
        "The bootstrap asset key's id is the account's bootstrap choice, unknown at synth; "
        "the deployment role may decrypt only through S3 and only objects of the CDK asset "
        "bucket (kms:ViaService and kms:EncryptionContext:aws:s3:arn conditions).",
        condition_key="kms:ViaService",
    ),
    Justified(
        frozenset(
            {
                "sagemaker:AddTags",
                "sagemaker:CreateProcessingJob",
                "sagemaker:CreateTrainingJob",
                "sagemaker:DescribeProcessingJob",
                "sagemaker:DescribeTrainingJob",
                "sagemaker:ListTags",
                "sagemaker:StopProcessingJob",
                "sagemaker:StopTrainingJob",
            }
        ),
        r"arn:aws:sagemaker:\{Region\}:\{Account\}:(processing|training)-job/\*",
        "SageMaker Pipelines names the jobs it creates itself (pipelines-<execution>-...), "
        "so the pipeline role cannot name them in advance; what a job may touch is the "
        "tenant role it runs as, and PassRole admits tenant roles only.",
    ),
)


PSEUDO = {"AWS::Partition": "aws", "AWS::Region": "{Region}", "AWS::AccountId": "{Account}"}


def render(value: Any) -> str:
    """A resource as text: pseudo parameters as colon-free stand-ins (so ARNs keep
    their six fields), other intrinsics in braces."""
    text = _render(value)
    for name, stand_in in PSEUDO.items():
        text = text.replace("${" + name + "}", stand_in).replace("{" + name + "}", stand_in)
    return text


def _render(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        if "Fn::Join" in value:
            return "".join(_render(part) for part in value["Fn::Join"][1])
        if "Fn::Sub" in value:
            text = value["Fn::Sub"] if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"][0]
            return str(text)
        if "Ref" in value:
            return "{" + value["Ref"] + "}"
        if "Fn::GetAtt" in value:
            return "{" + ".".join(value["Fn::GetAtt"]) + "}"
    return json.dumps(value)


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# A whole resource type of a service: "*", "arn:...:s3:::*", "arn:...:table/*"
# (S3 object ARNs have no type: "bucket/*" is one bucket's objects, not a type).
WHOLE_TYPE = re.compile(
    r"\*|arn:[^:]+:[^:]+:[^:]*:[^:]*:\*(/\*)?|arn:[^:]+:(?!s3:)[^:]+:[^:]*:[^:]*:[A-Za-z-]+/\*"
)


def statements(templates: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for stack, template in templates.items():
        for logical_id, resource in template["Resources"].items():
            if resource["Type"] not in IAM_TYPES:
                continue
            props = resource["Properties"]
            docs = [props["PolicyDocument"]] if "PolicyDocument" in props else []
            docs += [p["PolicyDocument"] for p in props.get("Policies", [])]
            for doc in docs:
                for statement in doc["Statement"]:
                    found.append((f"{stack}/{logical_id}", statement))
    return found


def unjustified(templates: dict[str, dict[str, Any]]) -> list[str]:
    problems = []
    for where, statement in statements(templates):
        if statement["Effect"] != "Allow":
            continue
        if "NotAction" in statement or "NotResource" in statement:
            problems.append(f"{where}: Allow with NotAction/NotResource")
            continue
        actions = {str(a) for a in as_list(statement["Action"])}
        for action in actions:
            if action == "*" or action.endswith(":*"):
                problems.append(f"{where}: Allow {action} (a whole service)")
        for resource in (render(r) for r in as_list(statement["Resource"])):
            if not WHOLE_TYPE.fullmatch(resource):
                continue
            conditions = json.dumps(statement.get("Condition", {}))
            if not any(
                actions <= j.actions
                and re.fullmatch(j.resource, resource)
                and (j.condition_key is None or j.condition_key in conditions)
                for j in JUSTIFIED
            ):
                problems.append(f"{where}: {sorted(actions)} on {resource}")
    return problems


def test_every_policy_in_every_stack_names_its_resources_or_says_why_not(synth: Synth) -> None:
    assert set(synth.templates) >= {synth.settings.stack_name, "TrainyardTenant"}
    assert len(statements(synth.templates)) > 30  # the check sees the real policies
    assert unjustified(synth.templates) == []


def test_every_justification_is_still_needed(synth: Synth) -> None:
    # A stale entry would silently allow a future broad grant: each must match one.
    used = set()
    for _, statement in statements(synth.templates):
        actions = {str(a) for a in as_list(statement.get("Action", []))}
        for resource in (render(r) for r in as_list(statement.get("Resource", []))):
            if statement["Effect"] == "Allow" and WHOLE_TYPE.fullmatch(resource):
                used |= {
                    j.reason
                    for j in JUSTIFIED
                    if actions <= j.actions and re.fullmatch(j.resource, resource)
                }
    assert used == {j.reason for j in JUSTIFIED}


@pytest.mark.parametrize(
    "statement",
    [
        {"Effect": "Allow", "Action": "dynamodb:GetItem", "Resource": "*"},
        {"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::trainyard-x/*"},
        {
            "Effect": "Allow",
            "Action": "dynamodb:Query",
            "Resource": {"Fn::Sub": "arn:${AWS::Partition}:dynamodb:us-east-1:1:table/*"},
        },
        {"Effect": "Allow", "NotAction": "iam:*", "Resource": "arn:aws:s3:::b/*"},
        # Justified only with its namespace condition:
        {"Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*"},
        # Justified actions may not ride along with others:
        {
            "Effect": "Allow",
            "Action": ["xray:PutTraceSegments", "sqs:SendMessage"],
            "Resource": "*",
        },
    ],
    ids=["star", "service-wildcard", "whole-type", "not-action", "no-condition", "smuggled"],
)
def test_an_unjustified_broad_grant_fails_the_check(
    synth: Synth, statement: dict[str, Any]
) -> None:
    templates = copy.deepcopy(synth.templates)
    platform = templates[synth.settings.stack_name]["Resources"]
    scheduler_policy = next(
        r
        for lid, r in platform.items()
        if lid.startswith("SchedulerHandlerRoleDefaultPolicy") and r["Type"] == "AWS::IAM::Policy"
    )
    scheduler_policy["Properties"]["PolicyDocument"]["Statement"].append(statement)
    [problem] = unjustified(templates)
    assert "SchedulerHandlerRoleDefaultPolicy" in problem


def test_the_recorder_may_only_read_and_update_runs(synth: Synth) -> None:
    # The pipeline's Lambda step writes results into an existing run, nothing else
    # (it reads the run first: a retried step announces its model only once).
    roles = {
        lid
        for lid, r in synth.platform_json["Resources"].items()
        if r["Type"] == "AWS::IAM::Role" and lid.startswith("RecorderHandlerRole")
    }
    granted: set[str] = set()
    for lid, statement in statements({"p": synth.platform_json}):
        resource = synth.platform_json["Resources"][lid.split("/", 1)[1]]
        attached = {r.get("Ref") for r in resource["Properties"].get("Roles", [])}
        if attached & roles and statement["Effect"] == "Allow":
            granted |= {a for a in as_list(statement["Action"]) if a.startswith("dynamodb:")}
            if "dynamodb:UpdateItem" in as_list(statement["Action"]):
                [target] = as_list(statement["Resource"])
                assert target == {"Fn::GetAtt": ["RunsTable", "Arn"]}
    assert granted == {"dynamodb:GetItem", "dynamodb:UpdateItem"}
