"""What the functions that publish Trainyard's events and decide model approvals may
do: ``events:PutEvents`` on the default bus only, and the model package calls of
``trainyard_core.model_registry.SageMakerModelVersions`` on tenant packages only."""

from __future__ import annotations

from aws_cdk import Aws
from aws_cdk import aws_iam as iam
from trainyard_core import wiring

from infra.nag import acknowledge_findings


def default_bus_arn() -> str:
    return f"arn:{Aws.PARTITION}:events:{Aws.REGION}:{Aws.ACCOUNT_ID}:event-bus/default"


def grant_put_events(role: iam.IRole) -> None:
    """Trainyard's own events (source ``trainyard``) go to the default bus (event_bus.py)."""
    role.add_to_principal_policy(
        iam.PolicyStatement(
            sid="PublishTrainyardEvents",
            actions=["events:PutEvents"],
            resources=[default_bus_arn()],
        )
    )


def grant_model_versions(
    role: iam.IRole, names: wiring.Names, *, listed: bool, by_number: bool
) -> None:
    """Exactly the calls of ``SageMakerModelVersions`` the caller makes: describe and
    approve/reject tenant model versions (DescribeModelPackage, UpdateModelPackage);
    with ``by_number``, finding a version by its number (``get_version``:
    DescribeModelPackageGroup, for the group's ARN); with ``listed``, the
    ListModelPackages the caller does not already have."""
    sm = f"arn:{Aws.PARTITION}:sagemaker:{Aws.REGION}:{Aws.ACCOUNT_ID}"
    packages = f"{sm}:model-package/{names.prefix}-*/*"
    groups = f"{sm}:model-package-group/{names.prefix}-*"
    role.add_to_principal_policy(
        iam.PolicyStatement(
            sid="DecideTenantModels",
            actions=["sagemaker:DescribeModelPackage", "sagemaker:UpdateModelPackage"],
            resources=[packages],
        )
    )
    findings = {
        "Resource::arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>:"
        f"model-package/{names.prefix}-*/*": (
            "The versions of the tenant model package groups (<prefix>-<tenant>, created "
            "at onboarding); versions are numbered by SageMaker at registration."
        ),
    }
    if by_number:
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="FindTenantModelGroups",
                actions=["sagemaker:DescribeModelPackageGroup"],
                resources=[groups],
            )
        )
        findings[
            "Resource::arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>:"
            f"model-package-group/{names.prefix}-*"
        ] = "Tenant model package groups, named <prefix>-<tenant> at onboarding."
    if listed:
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ListTenantModelVersions",
                actions=["sagemaker:ListModelPackages"],
                resources=["*"],  # a list action without resource-level permissions
            )
        )
        findings["Resource::*"] = (
            "sagemaker:ListModelPackages supports no resource-level permissions; it only "
            "lists, and updates are scoped to tenant model packages."
        )
    acknowledge_findings(role, "IAM5", findings)
