"""The end-to-end scenario in a real AWS account: opt-in, never part of `make test`.

    TRAINYARD_E2E_AWS=1 make e2e-aws        # credentials of a *sandbox* account

It deploys the platform with `npx cdk deploy`, onboards a silo and a pool tenant,
trains one model each, checks the jobs' roles and tags, offboards with purge,
destroys the platform and lists what is left (docs/deploy.md: what it does, what
it costs, how to clean up). TRAINYARD_E2E_CLEANUP=1 also deletes what the
destroy retained (tables, buckets, log groups) - only in a throwaway account.
"""

from __future__ import annotations

import os

import pytest

from trainyard.aws.e2e import run_e2e
from trainyard.aws.targets import AwsTarget

pytestmark = pytest.mark.skipif(
    os.environ.get("TRAINYARD_E2E_AWS") != "1",
    reason="real-account suite: set TRAINYARD_E2E_AWS=1 with sandbox credentials to run it",
)


def test_a_fresh_deployment_trains_isolated_tenants_and_cleans_up() -> None:
    report = run_e2e(
        AwsTarget(), delete_leftovers_after=os.environ.get("TRAINYARD_E2E_CLEANUP") == "1"
    )
    for check in report.checks:
        print(
            f"{'ok  ' if check.ok else 'FAIL'} {check.seconds:7.1f}s {check.name}: {check.detail}"
        )
    assert report.ok, [f"{c.name}: {c.detail}" for c in report.failures()]
