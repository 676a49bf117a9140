"""A tenant's model versions on SageMaker (moto + the local shims): listing newest
first with the API's page tokens, approval and rejection with who and why recorded
on the package and announced, and the per-plan auto-approval rule."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws
from trainyard_core import limits
from trainyard_core.clock import VirtualClock
from trainyard_core.config import resolve_settings
from trainyard_core.errors import InvalidRequest
from trainyard_core.model_registry import SageMakerModelVersions
from trainyard_core.model_versions import (
    AUTO_APPROVER,
    METADATA_METRICS_MAX,
    ModelNotFoundError,
    ModelOfAnotherTenantError,
    ModelVersionService,
    metadata_value,
    metric_metadata,
)
from trainyard_core.ports.events import MemoryEvents
from trainyard_core.store.tokens import InvalidTokenError

from trainyard.local.shims import install_sagemaker_registry_shims
from trainyard.testing.scheduling import make_tenant

SETTINGS = resolve_settings({"plans": {"standard": {"autoApprove": {"metric": "auc", "min": 0.8}}}})
ADMIN = "arn:aws:sts::123456789012:assumed-role/Reviewers/alice,bob"


@pytest.fixture
def sm(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for key, value in (
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ):
        monkeypatch.setenv(key, value)
    with mock_aws():
        install_sagemaker_registry_shims()
        client = boto3.client("sagemaker", region_name="us-east-1")
        for tenant in ("acme", "globex"):
            client.create_model_package_group(ModelPackageGroupName=f"trainyard-{tenant}")
        yield client


def register(sm: Any, tenant: str, run: str, auc: float, *, claims: str | None = None) -> str:
    """What the pipeline's register step creates (its customer metadata included)."""
    return sm.create_model_package(
        ModelPackageGroupName=f"trainyard-{tenant}",
        ModelApprovalStatus="PendingManualApproval",
        CustomerMetadataProperties={
            "trainyard:tenantId": claims or tenant,
            "trainyard:runId": run,
            "trainyard:metric:auc": str(auc),
        },
    )["ModelPackageArn"]


def service(sm: Any) -> tuple[ModelVersionService, MemoryEvents]:
    events = MemoryEvents()
    clock = VirtualClock(datetime(2026, 3, 10, 12, 0, tzinfo=UTC))
    return ModelVersionService(SETTINGS, SageMakerModelVersions(sm), events, clock=clock), events


def test_versions_are_listed_newest_first_with_their_run_and_metrics_in_pages(sm: Any) -> None:
    for i in range(3):
        register(sm, "acme", f"run{i}", (7 + i) / 10)
    models, events = service(sm)
    acme = make_tenant("acme")
    first, token = models.list(acme, 2, None)
    assert [m.version for m in first] == [3, 2]
    assert first[0].run_id == "run2" and first[0].metrics == {"auc": 0.9}
    assert first[0].status == "PendingManualApproval" and first[0].created_at.endswith("Z")
    wire = first[0].api_dict()
    assert {"version", "modelPackageArn", "status", "metrics", "runId", "createdAt"} <= set(wire)
    assert "modelPackageGroupName" not in wire and "tenantId" not in wire
    assert token
    rest, last = models.list(acme, 2, token)
    assert [m.version for m in rest] == [1] and last is None
    # A token pages only the listing it came from.
    with pytest.raises(InvalidTokenError):
        models.list(make_tenant("globex"), 2, token)
    with pytest.raises(InvalidTokenError):
        models.list(acme, 2, "forged.token")
    assert events.published == []


def test_an_approval_is_recorded_on_the_package_and_announced_once(sm: Any) -> None:
    arn = register(sm, "acme", "run1", 0.88)
    models, events = service(sm)
    acme = make_tenant("acme")
    approved = models.approve(acme, 1, ADMIN, "AUC beats production")
    described = sm.describe_model_package(ModelPackageName=arn)
    assert described["ModelApprovalStatus"] == "Approved"
    assert described["ApprovalDescription"] == "AUC beats production"
    metadata = described["CustomerMetadataProperties"]
    # Who is kept as metadata takes it (no ','), and the pipeline's metadata stays.
    assert metadata["trainyard:decidedBy"] == ADMIN.replace(",", "_")
    assert metadata["trainyard:runId"] == "run1"
    assert approved.status == "Approved" and approved.reason == "AUC beats production"
    [event] = events.published
    detail = event.envelope()
    assert detail["event"] == "model.approved" and detail["tenantId"] == "acme"
    assert detail["approvedBy"] == approved.decided_by and detail["reason"] == approved.reason
    assert detail["modelPackageArn"] == arn and detail["modelVersion"] == 1
    assert detail["version"] == "1"  # the envelope's schema version, never shadowed
    assert detail["metrics"] == {"auc": 0.88} and detail["runId"] == "run1"

    models.approve(acme, 1, "someone-else", "again")  # a retried request
    assert len(events.published) == 1
    assert sm.describe_model_package(ModelPackageName=arn)["ApprovalDescription"] == (
        "AUC beats production"
    )
    rejected = models.reject(acme, 1, ADMIN, None)  # revoking an approval
    assert rejected.status == "Rejected" and rejected.reason is None
    assert [e.type.name for e in events.published] == ["model.approved", "model.rejected"]
    assert events.published[-1].detail["rejectedBy"] == rejected.decided_by


def test_unknown_versions_other_tenants_models_and_bad_reasons_are_refused(sm: Any) -> None:
    register(sm, "acme", "run1", 0.9)
    register(sm, "acme", "run2", 0.9, claims="globex")  # in acme's group, claims globex
    models, events = service(sm)
    acme = make_tenant("acme")
    with pytest.raises(ModelNotFoundError):
        models.approve(acme, 7, ADMIN, None)
    with pytest.raises(ModelNotFoundError):
        models.approve(make_tenant("nogroup"), 1, ADMIN, None)
    with pytest.raises(ModelOfAnotherTenantError):
        models.reject(acme, 2, ADMIN, None)
    for reason in ("x" * (limits.MODEL_REASON_MAX_CHARS + 1), "two\nlines", "tab\there"):
        with pytest.raises(InvalidRequest) as refused:
            models.approve(acme, 1, ADMIN, reason)
        assert refused.value.code == "InvalidReason"
    models.approve(acme, 1, ADMIN, "y" * limits.MODEL_REASON_MAX_CHARS)  # the limit itself
    assert [e.type.name for e in events.published] == ["model.approved"]


def test_auto_approval_takes_a_model_over_the_threshold_that_beats_the_approved_one(
    sm: Any,
) -> None:
    models, events = service(sm)
    outcomes = []
    for run, auc in (("r1", 0.85), ("r2", 0.83), ("r3", 0.7), ("r4", 0.9)):
        arn = register(sm, "acme", run, auc)
        model = models.registered("acme", "standard", arn, run, {})
        outcomes.append(sm.describe_model_package(ModelPackageName=arn)["ModelApprovalStatus"])
        assert model is not None
    # r2 is over the threshold but worse than r1 (approved); r3 is under it.
    assert outcomes == ["Approved", "PendingManualApproval", "PendingManualApproval", "Approved"]
    names = [e.type.name for e in events.published]
    assert names.count("model.registered") == 4 and names.count("model.approved") == 2
    approvals = [e.detail for e in events.published if e.type.name == "model.approved"]
    assert {a["approvedBy"] for a in approvals} == {AUTO_APPROVER}
    assert "better than approved version 1" in approvals[1]["reason"]


def test_a_plan_without_the_rule_leaves_every_model_for_a_person(sm: Any) -> None:
    models, events = service(sm)
    arn = register(sm, "acme", "r1", 0.99)
    models.registered("acme", "basic", arn, "r1", {})
    assert sm.describe_model_package(ModelPackageName=arn)["ModelApprovalStatus"] == (
        "PendingManualApproval"
    )
    assert [e.type.name for e in events.published] == ["model.registered"]


def test_metadata_values_keep_to_their_shape() -> None:
    assert metadata_value("arn:aws:iam::1:user/a.b@c") == "arn:aws:iam::1:user/a.b@c"
    assert metadata_value("a,b;c\nd") == "a_b_c_d"
    assert len(metadata_value("x" * 1000)) == limits.METADATA_VALUE_MAX_CHARS


def test_the_update_request_keeps_to_botocores_shape_for_the_longest_reason() -> None:
    """What AWS checks and botocore does not (max lengths; the metadata pattern, which
    Python cannot compile as written: \\p{L}\\p{Z}\\p{N} is approximated by \\w and \\s)."""
    import re

    import botocore.session

    from trainyard.local.api_model import violations

    class Recorder:
        def __init__(self) -> None:
            self.requests: list[dict[str, Any]] = []

        def update_model_package(self, **request: Any) -> dict[str, Any]:
            self.requests.append(request)
            return {}

        def describe_model_package_group(self, ModelPackageGroupName: str) -> dict[str, Any]:
            return {
                "ModelPackageGroupArn": "arn:aws:sagemaker:us-east-1:123456789012:"
                f"model-package-group/{ModelPackageGroupName}"
            }

        def describe_model_package(self, ModelPackageName: str) -> dict[str, Any]:
            return {
                "ModelPackageArn": ModelPackageName,
                "ModelPackageVersion": 1,
                "ModelPackageGroupName": "trainyard-acme",
                "ModelApprovalStatus": "PendingManualApproval",
                "CreationTime": datetime(2026, 3, 10, tzinfo=UTC),
            }

    client = Recorder()
    models = ModelVersionService(SETTINGS, SageMakerModelVersions(client), MemoryEvents())
    arn = "arn:aws:sagemaker:us-east-1:123456789012:model-package/trainyard-acme/1"
    who = "arn:aws:sts::123456789012:assumed-role/" + "R" * 64 + "/" + "s,e=s@x" * 20
    models.approve(make_tenant("acme"), 1, who, "é" * limits.MODEL_REASON_MAX_CHARS)
    models.reject(make_tenant("acme"), 1, who, None)
    shape = (
        botocore.session.get_session()
        .get_service_model("sagemaker")
        .operation_model("UpdateModelPackage")
        .input_shape
    )
    value_shape = re.compile(r"[\w\s.:/=+\-@]{1,256}")
    assert len(client.requests) == 2
    for request in client.requests:
        assert request["ModelPackageArn"] == arn
        assert violations(request, shape, "") == []
        for key, value in request["CustomerMetadataProperties"].items():
            assert value_shape.fullmatch(key[:128]) and value_shape.fullmatch(value), (key, value)


def test_a_version_shows_its_problem_types_metric_by_name(sm: Any) -> None:
    """The register step writes the primary metric as name + value (metadata keys are
    literals in the definition): a regression model shows r2, a binary one auc."""
    sm.create_model_package(
        ModelPackageGroupName="trainyard-acme",
        ModelApprovalStatus="PendingManualApproval",
        CustomerMetadataProperties={
            "trainyard:tenantId": "acme",
            "trainyard:runId": "run-r",
            "trainyard:primaryMetric": "r2",
            "trainyard:primaryMetricValue": "0.8125",
            "trainyard:problemType": "regression",
        },
    )
    models, _ = service(sm)
    [version], _ = models.list(make_tenant("acme"), 10, None)
    assert version.run_id == "run-r" and version.metrics == {"r2": 0.8125}


def test_a_registered_model_carries_every_metric_of_its_run_as_metadata(sm: Any) -> None:
    models, _ = service(sm)
    arn = register(sm, "acme", "r1", 0.7)
    models.registered("acme", "basic", arn, "r1", {"auc": 0.75, "accuracy": 0.5, "bad,name": 1.0})
    metadata = sm.describe_model_package(ModelPackageName=arn)["CustomerMetadataProperties"]
    assert metadata["trainyard:metric:auc"] == "0.75"
    assert metadata["trainyard:metric:accuracy"] == "0.5"
    assert "trainyard:metric:bad,name" not in metadata  # not a valid metadata key
    assert metadata["trainyard:tenantId"] == "acme" and metadata["trainyard:runId"] == "r1"
    version = models.get(make_tenant("acme"), 1)
    assert version.metrics == {"auc": 0.75, "accuracy": 0.5}


def test_metric_metadata_stays_within_the_packages_key_limit() -> None:
    chosen = metric_metadata({f"m{i:03d}": float(i) for i in range(limits.METRICS_MAX)})
    assert len(chosen) == METADATA_METRICS_MAX
    assert next(iter(chosen)) == "trainyard:metric:m000"
