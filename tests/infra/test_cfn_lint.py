"""cfn-lint on every synthesized template: no errors (warnings are CDK's own style)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.infra.synth_support import Synth

pytestmark = pytest.mark.infra

CFN_LINT = Path(sys.executable).with_name("cfn-lint")


def _lint(path: Path) -> list[dict]:
    result = subprocess.run(
        [str(CFN_LINT), "--format", "json", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    # Exit code bit 1 (value 2) = errors; output is JSON matches at any level.
    return json.loads(result.stdout or "[]")


@pytest.mark.parametrize("stack", ["platform", "tenant", "tenant-pool"])
def test_synthesized_template_has_no_cfn_lint_errors(synth: Synth, stack: str) -> None:
    name = {
        "platform": synth.settings.stack_name,
        "tenant": "TrainyardTenant",
        "tenant-pool": "TrainyardTenantPool",
    }[stack]
    path = synth.outdir / f"{name}.template.json"
    matches = _lint(path)
    errors = [
        f"{m['Rule']['Id']} {m['Message']} @ {m['Location']['Path']}"
        for m in matches
        if m["Level"] == "Error"
    ]
    assert errors == []


def test_cfn_lint_catches_an_error(tmp_path: Path) -> None:
    # The check above can fail: a template with an unknown resource type is an error.
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"Resources": {"X": {"Type": "AWS::S3::Buckett"}}}))
    assert any(m["Level"] == "Error" for m in _lint(bad))
