"""The model registry's grants are exactly the SageMaker calls each principal's code
makes: the calls are recorded by running that code (``trainyard_core.model_registry``
on a recording client), mapped to IAM actions by the embedded stack's enforcement
table (``trainyard/local/iam/actions.py``), and compared with the synthesized roles.
No grant is missing, none is unneeded and none is granted twice."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import botocore.session
import pytest
from botocore import xform_name
from trainyard_core.config import AutoApprove, Settings
from trainyard_core.model_registry import SageMakerModelRegistry, SageMakerModelVersions
from trainyard_core.model_versions import (
    META_METRIC_PREFIX,
    META_RUN,
    META_TENANT,
    ModelVersionService,
)
from trainyard_core.models import Tenant, TenantStatus

from tests.infra.synth_support import Synth
from tests.infra.test_least_privilege import as_list, render, statements
from trainyard.local.iam.actions import Scope, requests_for

pytestmark = pytest.mark.infra

REGION, ACCOUNT = "us-east-1", "123456789012"
GROUP = "trainyard-acme"
SM = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}"
PACKAGE = f"{SM}:model-package/{GROUP}/1"
# The registry's actions (the pipeline role's RegisterModels is SageMaker's, not code's).
REGISTRY_ACTION = "ModelPackage"


class RecordingSageMaker:
    """A SageMaker client answering what the registry code reads, recording each call."""

    _operations = {
        xform_name(name): name
        for name in botocore.session.get_session().get_service_model("sagemaker").operation_names
    }

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def _answer(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((operation, params))
        if operation == "DescribeModelPackage":
            return {
                "ModelPackageArn": PACKAGE,
                "ModelPackageGroupName": GROUP,
                "ModelPackageVersion": 1,
                "ModelApprovalStatus": "PendingManualApproval",
                "ModelPackageStatus": "Completed",
                "CreationTime": datetime(2026, 1, 1, tzinfo=UTC),
                "CustomerMetadataProperties": {
                    META_TENANT: "acme",
                    META_RUN: "r-1",
                    f"{META_METRIC_PREFIX}auc": "0.9",
                },
            }
        if operation == "ListModelPackages":
            return {"ModelPackageSummaryList": [{"ModelPackageArn": PACKAGE}]}
        if operation == "DescribeModelPackageGroup":
            return {"ModelPackageGroupArn": f"{SM}:model-package-group/{GROUP}"}
        return {}

    def __getattr__(self, method: str) -> Any:
        operation = self._operations[method]
        return lambda **params: self._answer(operation, params)

    def get_paginator(self, method: str) -> Any:
        client = self

        class Paginator:
            def paginate(self, **params: Any) -> Iterator[dict[str, Any]]:
                yield client._answer(client._operations[method], params)

        return Paginator()


class NoEvents:
    def publish(self, events: list[Any]) -> None:
        pass


def _actions(client: RecordingSageMaker) -> set[str]:
    scope = Scope(REGION, ACCOUNT)
    return {
        request.action
        for operation, params in client.calls
        for request in requests_for("sagemaker", operation, params, scope)
    }


def recorder_calls() -> set[str]:
    """What the recorder's code calls: ``ModelVersionService.registered`` with a plan
    that auto-approves (every call that path can make)."""
    client = RecordingSageMaker()
    settings = Settings()
    plan = settings.plans["basic"].model_copy(update={"auto_approve": AutoApprove(min=0.5)})
    settings = settings.model_copy(update={"plans": {**settings.plans, "basic": plan}})
    service = ModelVersionService(settings, SageMakerModelVersions(client), NoEvents())
    assert service.registered("acme", "basic", PACKAGE, "r-1", {"auc": 0.9}) is not None
    return _actions(client)


def onboarding_calls() -> set[str]:
    """What the onboarding function's code calls: the models API (list, get, approve,
    reject) and the registry checks and purges of onboarding and offboarding."""
    client = RecordingSageMaker()
    service = ModelVersionService(Settings(), SageMakerModelVersions(client), NoEvents())
    tenant = Tenant(
        tenant_id="acme",
        plan="basic",
        status=TenantStatus.ACTIVE,
        isolation="pool",
        model_package_group_name=GROUP,
        created_at="2026-01-01T00:00:00.000Z",
        updated_at="2026-01-01T00:00:00.000Z",
    )
    service.list(tenant, 10, None)
    service.approve(tenant, 1, "someone", None)
    service.reject(tenant, 1, "someone", None)
    registry = SageMakerModelRegistry(client)
    registry.exists(GROUP)
    registry.package_count(GROUP)
    registry.purge(GROUP)
    return _actions(client)


def _granted(synth: Synth, role_prefix: str) -> Counter[tuple[str, str]]:
    """(action, resource) of the registry actions the role's Allow statements grant,
    counted: a pair granted in two statements counts twice."""
    template = synth.platform_json
    roles = {
        lid
        for lid, r in template["Resources"].items()
        if r["Type"] == "AWS::IAM::Role" and lid.startswith(role_prefix)
    }
    assert len(roles) == 1, roles
    granted: Counter[tuple[str, str]] = Counter()
    for lid, statement in statements({"p": template}):
        resource = template["Resources"][lid.split("/", 1)[1]]
        attached = {r.get("Ref") for r in resource["Properties"].get("Roles", [])}
        if not attached & roles or statement["Effect"] != "Allow":
            continue
        for action in as_list(statement["Action"]):
            if action.startswith("sagemaker:") and REGISTRY_ACTION in action:
                for target in as_list(statement["Resource"]):
                    granted[(action, render(target))] += 1
    return granted


@pytest.mark.parametrize(
    ("role_prefix", "calls"),
    [("RecorderHandlerRole", recorder_calls), ("OnboardingHandlerRole", onboarding_calls)],
)
def test_each_function_is_granted_exactly_the_model_registry_calls_its_code_makes(
    synth: Synth, role_prefix: str, calls: Any
) -> None:
    granted = _granted(synth, role_prefix)
    assert {action for action, _ in granted} == calls()


@pytest.mark.parametrize("role_prefix", ["RecorderHandlerRole", "OnboardingHandlerRole"])
def test_no_model_registry_action_is_granted_twice_on_one_resource(
    synth: Synth, role_prefix: str
) -> None:
    twice = {pair: n for pair, n in _granted(synth, role_prefix).items() if n > 1}
    assert twice == {}


def test_the_recorder_never_looks_up_a_model_group() -> None:
    # It reaches its model by the ARN the pipeline registered, never by number.
    assert "sagemaker:DescribeModelPackageGroup" not in recorder_calls()
    assert "sagemaker:DescribeModelPackageGroup" in onboarding_calls()
