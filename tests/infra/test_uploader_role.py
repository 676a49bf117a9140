"""The uploader role as CDK synthesizes it (docs/isolation.md): what a presigned
upload can reach in AWS, decided by the IAM evaluator on the rendered template.

Its sessions are narrowed to one key by a session policy; these cases show that
even without that policy the role reaches only tenants' data prefixes, and that
with it one tenant's session reaches no other tenant's key."""

from __future__ import annotations

import json
from typing import Any

import pytest
from trainyard_core.ports.uploads import UploadTarget
from trainyard_core.upload_signer import session_policy

from tests.infra.synth_support import Synth
from trainyard.local.iam.policy import Request, RequestPrincipal, evaluate, trust_names
from trainyard.local.platform_template import Pseudo, TemplateRenderer, platform_roles

ACCOUNT = "123456789012"


@pytest.fixture(scope="module")
def roles(synth: Synth) -> dict[str, Any]:
    renderer = TemplateRenderer(
        synth.platform_json, Pseudo(ACCOUNT, "us-east-1", stack_name=synth.settings.stack_name)
    )
    found = platform_roles(synth.platform_json, renderer)
    return {spec.name: spec for spec in found.values()}


def _uploader(synth: Synth, roles: dict[str, Any]) -> Any:
    return roles[synth.names.uploader_role]


SILO = "trainyard-acme-123456789012"
POOL = "trainyard-pool-123456789012"
PLATFORM = "trainyard-platform-123456789012"


@pytest.mark.parametrize(
    ("action", "resource", "context", "allowed"),
    [
        ("s3:PutObject", f"{SILO}/data/part-1.csv", None, True),
        ("s3:PutObject", f"{POOL}/tenants/acme/data/part-1.csv", None, True),
        ("s3:AbortMultipartUpload", f"{POOL}/tenants/acme/data/big.csv", None, True),
        # Never a tenant's artifacts (the models its runs register), nor outside tenants.
        ("s3:PutObject", f"{SILO}/artifacts/run-1/model.tar.gz", None, False),
        ("s3:PutObject", f"{POOL}/tenants/acme/artifacts/x", None, False),
        ("s3:PutObject", f"{POOL}/data/x.csv", None, False),
        ("s3:PutObject", f"{POOL}/shared.csv", None, False),
        ("s3:PutObject", f"{PLATFORM}/code/preprocess.py", None, False),
        ("s3:PutObject", f"{PLATFORM}/data/x.csv", None, False),
        ("s3:GetObject", f"{SILO}/data/part-1.csv", None, False),
        ("s3:DeleteObject", f"{SILO}/data/part-1.csv", None, False),
        # The quota lists object versions (noncurrent ones count), only of data prefixes.
        ("s3:ListBucketVersions", POOL, {"s3:prefix": "tenants/acme/data/"}, True),
        ("s3:ListBucketVersions", SILO, {"s3:prefix": "data/"}, True),
        ("s3:ListBucketVersions", POOL, {"s3:prefix": "tenants/"}, False),
        ("s3:ListBucketVersions", SILO, {}, False),
        ("s3:ListBucketVersions", PLATFORM, {"s3:prefix": "data/"}, False),
        ("s3:ListBucket", POOL, {"s3:prefix": "tenants/acme/data/"}, False),
        ("sts:AssumeRole", f"arn:aws:iam::{ACCOUNT}:role/trainyard-tenant-acme", None, False),
    ],
)
def test_the_uploader_role_reaches_only_tenants_data_prefixes(
    synth: Synth,
    roles: dict[str, Any],
    action: str,
    resource: str,
    context: dict[str, str] | None,
    allowed: bool,
) -> None:
    role = _uploader(synth, roles)
    arn = resource if resource.startswith("arn:") else f"arn:aws:s3:::{resource}"
    decision = evaluate(role.policies.values(), Request(action, arn, context or {}))
    assert decision.allowed is allowed


def test_one_tenants_session_reaches_no_other_tenants_key(
    synth: Synth, roles: dict[str, Any]
) -> None:
    role = _uploader(synth, roles)
    target = UploadTarget("acme", POOL, "tenants/acme/data/", "tenants/acme/data/part-1.csv")
    session = [json.loads(session_policy(target, "aws", ["s3:PutObject"]))]
    for key, allowed in (
        ("tenants/acme/data/part-1.csv", True),
        ("tenants/acme/data/part-2.csv", False),
        ("tenants/globex/data/part-1.csv", False),
    ):
        request = Request("s3:PutObject", f"arn:aws:s3:::{POOL}/{key}")
        both = (
            evaluate(role.policies.values(), request).allowed and evaluate(session, request).allowed
        )
        assert both is allowed, key


def test_only_the_onboarding_function_may_assume_the_uploader_role(
    synth: Synth, roles: dict[str, Any]
) -> None:
    role = _uploader(synth, roles)
    request = Request("sts:AssumeRole", role.arn)
    onboarding = next(spec for spec in roles.values() if "OnboardingHandler" in spec.logical_id)
    assert trust_names(role.trust, request, RequestPrincipal(arn=onboarding.arn, account=ACCOUNT))
    for other in roles.values():
        if other is not onboarding:
            who = RequestPrincipal(arn=other.arn, account=ACCOUNT)
            assert not trust_names(role.trust, request, who), other.name
    assert not trust_names(role.trust, request, RequestPrincipal(service="s3.amazonaws.com"))
    # The onboarding role itself may assume it (its identity policy) ...
    assert evaluate(onboarding.policies.values(), request).allowed
    # ... and the uploader's sessions last at most an hour.
    resource = synth.platform_json["Resources"][role.logical_id]["Properties"]
    assert resource["MaxSessionDuration"] == 3600
