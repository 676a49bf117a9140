"""cdk-nag (v3) helpers: applying the AwsSolutions pack and acknowledging findings.

cdk-nag v3 reports through CDK policy validation: an unacknowledged finding
fails synthesis and is listed in ``<outdir>/validation-report.json``. Every
acknowledgment names one rule (or one finding of a rule, e.g. an IAM5 resource)
and a reason specific to the resource.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Validations
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

NAG_CONTEXT_KEY = "trainyard:nag"
NAG_ENV = "TRAINYARD_NAG"
VALIDATION_REPORT = "validation-report.json"


def apply_aws_solutions(scope: IConstruct) -> None:
    # Acknowledgments stay in construct metadata (not template Metadata), so the
    # templates are identical with and without the checks.
    Validations.of(scope).add_plugins(AwsSolutionsChecks(scope))


def acknowledge(construct: IConstruct, rule: str, reason: str) -> None:
    """One whole rule on one construct (and its children)."""
    Validations.of(construct).acknowledge(Acknowledgment(id=f"AwsSolutions-{rule}", reason=reason))


def acknowledge_findings(
    construct: IConstruct, rule: str, findings: dict[str, str] | list[str], reason: str = ""
) -> None:
    """Specific findings of a rule (e.g. ``IAM5`` with ``Resource::arn:...:role/x/*``).

    ``findings`` maps each finding to its reason, or is a list sharing ``reason``.
    """
    items = findings.items() if isinstance(findings, dict) else ((f, reason) for f in findings)
    for finding, why in items:
        if not why:
            raise ValueError(f"acknowledgment of {rule}[{finding}] needs a reason")
        Validations.of(construct).acknowledge(
            Acknowledgment(id=f"AwsSolutions-{rule}[{finding}]", reason=why)
        )
