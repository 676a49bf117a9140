"""The pipeline role creates training jobs only on instance types a plan trains on.

The role's synthesized policy is rendered and evaluated (trainyard.local.iam.policy,
the embedded stack's evaluator) on the requests the embedded IAM mapping derives
from CreateTrainingJob calls (trainyard.local.iam.actions), as AWS authorizes them
with the sagemaker:InstanceTypes condition key.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra.isolation_support import ACCOUNT, render
from tests.infra.synth_support import Synth
from trainyard.local.iam.actions import Scope, requests_for
from trainyard.local.iam.policy import evaluate

pytestmark = pytest.mark.infra


def _pipeline_policy(synth: Synth) -> dict[str, Any]:
    for resource in synth.platform_json["Resources"].values():
        if resource["Type"] != "AWS::IAM::Policy":
            continue
        document = resource["Properties"]["PolicyDocument"]
        if any(s.get("Sid") == "TenantTrainingJobs" for s in document["Statement"]):
            return dict(render(document, region=synth.settings.region))
    raise AssertionError("no pipeline role policy with TenantTrainingJobs")


def _allowed(synth: Synth, policy: dict[str, Any], instance_type: str) -> bool:
    scope = Scope(region=synth.settings.region, account=ACCOUNT)
    params = {
        "TrainingJobName": "pipelines-abc-Train-xyz",
        "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/trainyard/tenants/trainyard-acme",
        "ResourceConfig": {"InstanceType": instance_type, "InstanceCount": 1},
    }
    [create, *_] = requests_for("sagemaker", "CreateTrainingJob", params, scope)
    return bool(evaluate([policy], create))


def test_training_jobs_are_allowed_on_every_plans_instance_type_and_no_other(
    synth: Synth,
) -> None:
    policy = _pipeline_policy(synth)
    types = synth.settings.training_instance_types()
    assert types == ["ml.m5.2xlarge", "ml.m5.large", "ml.m5.xlarge"]
    for instance_type in types:
        assert _allowed(synth, policy, instance_type), instance_type
    # Priced, but no plan (nor sizing rule) trains on it: a parameter cannot buy it.
    assert not _allowed(synth, policy, "ml.m5.4xlarge")
    assert not _allowed(synth, policy, "ml.p4d.24xlarge")
