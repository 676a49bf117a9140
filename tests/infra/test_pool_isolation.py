"""The pool variant: the platform's shared pool bucket and the pool tenant template."""

from __future__ import annotations

import json
from typing import Any

import pytest
from trainyard_core import wiring

from tests.infra.synth_support import Synth, resources

pytestmark = pytest.mark.infra

POOL_STACK = "TrainyardTenantPool"


def _pool(synth: Synth) -> dict[str, Any]:
    return synth.templates[POOL_STACK]


def test_pool_template_has_the_same_interface_as_the_silo_template(synth: Synth) -> None:
    template = _pool(synth)
    assert tuple(template["Parameters"]) == wiring.TENANT_STACK_PARAMETERS
    assert tuple(template["Outputs"]) == wiring.TENANT_STACK_OUTPUTS


def test_role_rule_and_model_group_keep_their_logical_ids_across_isolation_models(
    synth: Synth,
) -> None:
    # UpdateStack between the templates then updates them in place: same role ARN,
    # same rule, and the model package group (the model history) is untouched.
    shared = ("JobRole", "UploadRule", "ModelPackageGroup")
    for template in (synth.tenant_json, _pool(synth)):
        assert set(shared) <= set(template["Resources"])
    group = _pool(synth)["Resources"]["ModelPackageGroup"]
    assert group == synth.tenant_json["Resources"]["ModelPackageGroup"]


def test_pool_tenants_get_no_bucket_of_their_own(synth: Synth) -> None:
    assert resources(_pool(synth), "AWS::S3::Bucket") == {}


def test_pool_rule_matches_only_the_tenants_data_prefix_of_the_pool_bucket(synth: Synth) -> None:
    # Every object under the prefix: intake decides what trains (any-case .csv) and
    # shows the rest on the tenant (ignoredUploads).
    pattern = _pool(synth)["Resources"]["UploadRule"]["Properties"]["EventPattern"]
    assert pattern["source"] == ["aws.s3"] and pattern["detail-type"] == ["Object Created"]
    assert pattern["detail"]["bucket"]["name"] == [{"Fn::Sub": "trainyard-pool-${AWS::AccountId}"}]
    assert pattern["detail"]["object"]["key"] == [
        {"prefix": {"Fn::Sub": "tenants/${TenantId}/data/"}}
    ]


def test_pool_role_reaches_only_its_own_prefix_of_the_pool_bucket(synth: Synth) -> None:
    role = _pool(synth)["Resources"]["JobRole"]["Properties"]
    statements = {s["Sid"]: s for s in role["Policies"][0]["PolicyDocument"]["Statement"]}
    text = json.dumps(statements)
    assert "trainyard-pool-${AWS::AccountId}" in text
    listing = statements["ListOwnPrefixes"]["Condition"]["StringLike"]["s3:prefix"]
    assert all("tenants/${TenantId}/" in json.dumps(p) for p in listing)
    reads = json.dumps(statements["ReadOwnData"]["Resource"])
    assert "tenants/${TenantId}/data/" in reads and "tenants/${TenantId}/artifacts/" in reads
    writes = json.dumps(statements["WriteOwnArtifacts"]["Resource"])
    assert "tenants/${TenantId}/artifacts/" in writes and "/data/" not in writes
    # Object-level grants on the pool bucket always carry the tenant's prefix.
    for statement in statements.values():
        targets = statement["Resource"]
        for target in targets if isinstance(targets, list) else [targets]:
            text = json.dumps(target)
            if "trainyard-pool-" in text and '"/"' in text:
                assert "tenants/${TenantId}/" in text, statement["Sid"]


def test_pool_outputs_point_into_the_tenant_prefix(synth: Synth) -> None:
    outputs = _pool(synth)["Outputs"]
    assert outputs["DataBucketName"]["Value"] == {"Fn::Sub": "trainyard-pool-${AWS::AccountId}"}
    assert outputs["DataPrefix"]["Value"] == {"Fn::Sub": "tenants/${TenantId}/data/"}
    assert "tenants/${TenantId}/artifacts/" in json.dumps(outputs["OutputUri"]["Value"])


def test_platform_creates_a_retained_encrypted_versioned_pool_bucket_with_eventbridge(
    synth: Synth,
) -> None:
    bucket = synth.platform_json["Resources"]["PoolBucket"]
    props = bucket["Properties"]
    assert bucket["DeletionPolicy"] == "RetainExceptOnCreate"
    assert props["BucketName"] == {"Fn::Join": ["", ["trainyard-pool-", {"Ref": "AWS::AccountId"}]]}
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert props["NotificationConfiguration"] == {
        "EventBridgeConfiguration": {"EventBridgeEnabled": True}
    }
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert all(props["PublicAccessBlockConfiguration"].values())
    policies = resources(synth.platform_json, "AWS::S3::BucketPolicy").values()
    pool_policy = next(p for p in policies if p["Properties"]["Bucket"] == {"Ref": "PoolBucket"})
    denies = [
        s for s in pool_policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"
    ]
    assert any(s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in denies)


def test_the_onboarding_role_can_never_delete_the_pool_bucket(synth: Synth) -> None:
    text = json.dumps(synth.platform_json)
    assert '"Sid": "NeverDeletePoolBucket"' in text
