"""The real-account end-to-end scenario (trainyard/aws/e2e.py, `make e2e-aws`), driven
against the embedded stack: the same code, so the suite a platform team runs in
its sandbox account is itself tested here."""

from __future__ import annotations

import pytest

from trainyard.aws.e2e import run_e2e
from trainyard.aws.targets import EmbeddedTarget
from trainyard.local.stack import EmbeddedStack

pytestmark = pytest.mark.integration


def test_the_end_to_end_scenario_passes_on_the_embedded_stack(stack: EmbeddedStack) -> None:
    # The package's stack, borrowed: "deploy" and "destroy" leave it running.
    report = run_e2e(EmbeddedTarget(stack=stack), log=lambda line: None)
    assert report.ok, "\n".join(f"{c.name}: {c.detail}" for c in report.failures())
    names = [c.name for c in report.checks]
    assert any(n.startswith("onboard e2e-silo-") for n in names)
    assert any(n.startswith("onboard e2e-pool-") for n in names)
    assert sum("every job ran as its role" in n for n in names) == 2
    assert sum(n.startswith("offboard") for n in names) == 2
    # Before the (embedded) destroy, the platform's own resources were still listed,
    # and nothing of either tenant.
    kinds = {item.kind for item in report.leftovers}
    assert {"table", "bucket", "queue", "pipeline"} <= kinds
    # Only the scenario's own tenants (other tests of the package's stack onboard
    # e2e-acme and friends and leave them).
    assert not [i for i in report.leftovers if "e2e-silo-" in i.name or "e2e-pool-" in i.name]
