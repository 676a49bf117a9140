"""cdk-nag AwsSolutions: both stacks synthesize with no unacknowledged finding."""

from __future__ import annotations

import pytest

from tests.infra.synth_support import Synth

pytestmark = pytest.mark.infra


def _violations(synth: Synth) -> list[str]:
    out = []
    for report in synth.validation_report().get("pluginReports", []):
        for violation in report.get("violations", []):
            for construct in violation.get("violatingConstructs", []):
                out.append(
                    f"{violation['ruleName']} ({violation.get('severity')}): "
                    f"{construct['constructPath']}"
                )
    return out


def test_aws_solutions_reports_no_unacknowledged_findings(synth: Synth) -> None:
    assert _violations(synth) == []
    assert synth.error is None


def test_aws_solutions_checked_the_platform_and_both_tenant_templates(synth: Synth) -> None:
    # Every stack was part of the validated synthesis (not silently skipped).
    assert set(synth.templates) == {
        synth.settings.stack_name,
        "TrainyardTenant",
        "TrainyardTenantPool",
    }
