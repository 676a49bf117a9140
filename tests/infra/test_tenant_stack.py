"""The tenant stack template: its interface, isolation and retention promises."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Match
from trainyard_core import wiring

from infra.tenant_template import synth_tenant_template, write_tenant_template
from tests.infra.synth_support import Synth, resources

pytestmark = pytest.mark.infra


def test_parameters_and_outputs_are_exactly_the_wiring_interface(synth: Synth) -> None:
    template = synth.tenant_json
    assert tuple(template["Parameters"]) == wiring.TENANT_STACK_PARAMETERS
    assert tuple(template["Outputs"]) == wiring.TENANT_STACK_OUTPUTS


def test_tenant_id_parameter_enforces_the_tenant_id_rules(synth: Synth) -> None:
    params = synth.tenant_json["Parameters"]
    assert params["TenantId"]["AllowedPattern"] == "^[a-z0-9][a-z0-9-]*[a-z0-9]$"
    assert (params["TenantId"]["MinLength"], params["TenantId"]["MaxLength"]) == (3, 32)
    assert params["PlanName"]["AllowedValues"] == list(synth.settings.plans)


def test_template_needs_no_bootstrap_and_no_assets(synth: Synth) -> None:
    template = synth_tenant_template(synth.settings)
    assert "BootstrapVersion" not in template.get("Parameters", {})
    assert "Rules" not in template
    text = json.dumps(template)
    assert "cdk-hnb659fds" not in text and "AssetParameters" not in text


def test_bucket_uses_native_eventbridge_notifications_and_survives_deletion(
    synth: Synth,
) -> None:
    synth.tenant.has_resource(
        "AWS::S3::Bucket",
        {
            "Properties": Match.object_like(
                {
                    "BucketName": {
                        "Fn::Sub": synth.names.silo_bucket("${TenantId}", "${AWS::AccountId}")
                    },
                    "NotificationConfiguration": {
                        "EventBridgeConfiguration": {"EventBridgeEnabled": True}
                    },
                    "VersioningConfiguration": {"Status": "Enabled"},
                    "BucketEncryption": Match.any_value(),
                    "PublicAccessBlockConfiguration": {
                        "BlockPublicAcls": True,
                        "BlockPublicPolicy": True,
                        "IgnorePublicAcls": True,
                        "RestrictPublicBuckets": True,
                    },
                }
            ),
            # Retained on offboarding and replacement, not after the failed create that
            # made it (a kept bucket would make every retry fail on its fixed name).
            "DeletionPolicy": "RetainExceptOnCreate",
            "UpdateReplacePolicy": "Retain",
        },
    )
    types = {r["Type"] for r in synth.tenant_json["Resources"].values()}
    # CDK's event_bridge_enabled would have added a custom resource and a Lambda.
    assert "Custom::S3BucketNotifications" not in types
    assert "AWS::Lambda::Function" not in types


def test_bucket_policy_denies_non_tls_access(synth: Synth) -> None:
    synth.tenant.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Deny",
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        )
                    ]
                )
            }
        },
    )


def test_upload_rule_sends_every_upload_under_data_to_the_intake_queue(synth: Synth) -> None:
    # Intake decides what trains (*.csv, any case) and shows the rest on the tenant.
    (rule,) = resources(synth.tenant_json, "AWS::Events::Rule").values()
    props = rule["Properties"]
    assert props["Name"] == {"Fn::Sub": synth.names.tenant_rule("${TenantId}")}
    pattern = props["EventPattern"]
    assert pattern["source"] == [wiring.S3_SOURCE]
    assert pattern["detail-type"] == [wiring.S3_OBJECT_CREATED]
    assert pattern["detail"]["bucket"]["name"] == [{"Ref": "DataBucket"}]
    assert pattern["detail"]["object"]["key"] == [{"prefix": synth.names.silo_data_prefix}]
    assert [t["Arn"] for t in props["Targets"]] == [{"Ref": "IntakeQueueArn"}]


def test_job_role_is_trusted_by_sagemaker_of_this_account_only(synth: Synth) -> None:
    (role,) = resources(synth.tenant_json, "AWS::IAM::Role").values()
    props = role["Properties"]
    assert props["RoleName"] == {"Fn::Sub": synth.names.tenant_role("${TenantId}")}
    assert props["Path"] == synth.names.tenant_role_path
    (statement,) = props["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    assert statement["Action"] == "sts:AssumeRole"
    assert statement["Condition"] == {
        "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    }
    assert "ManagedPolicyArns" not in props


def test_job_role_reaches_only_its_own_prefixes(synth: Synth) -> None:
    (role,) = resources(synth.tenant_json, "AWS::IAM::Role").values()
    policies = role["Properties"]["Policies"]
    statements = [s for p in policies for s in p["PolicyDocument"]["Statement"]]
    by_sid = {s["Sid"]: s for s in statements}
    puts = [s for s in statements if "s3:PutObject" in json.dumps(s["Action"])]
    assert [json.dumps(s["Resource"]) for s in puts] == [
        json.dumps(by_sid["WriteOwnArtifacts"]["Resource"])
    ]
    assert f"/{synth.names.silo_output_prefix}*" in json.dumps(puts[0]["Resource"])
    listing = by_sid["ListOwnPrefixes"]
    assert listing["Condition"]["StringLike"]["s3:prefix"] == [
        f"{synth.names.silo_data_prefix}*",
        f"{synth.names.silo_output_prefix}*",
    ]
    assert by_sid["JobMetrics"]["Condition"] == {
        "StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}
    }
    # No statement grants s3 on arbitrary buckets or any IAM action.
    for statement in statements:
        actions = json.dumps(statement["Action"])
        assert "iam:" not in actions
        if "s3:" in actions:
            assert statement["Resource"] != "*"


def test_model_package_group_is_named_per_tenant_and_kept(synth: Synth) -> None:
    name = {"Fn::Sub": synth.names.model_package_group("${TenantId}")}
    synth.tenant.has_resource(
        "AWS::SageMaker::ModelPackageGroup",
        {
            "Properties": Match.object_like({"ModelPackageGroupName": name}),
            "DeletionPolicy": "RetainExceptOnCreate",
            "UpdateReplacePolicy": "Retain",
        },
    )


def test_every_taggable_resource_carries_the_tenant_tag(synth: Synth) -> None:
    tag = {"Key": wiring.TENANT_TAG_KEY, "Value": {"Ref": "TenantId"}}
    for logical_id, resource in synth.tenant_json["Resources"].items():
        if resource["Type"] == "AWS::S3::BucketPolicy":
            continue  # not taggable
        assert tag in resource["Properties"].get("Tags", []), logical_id


def test_outputs_report_the_data_prefix_and_the_output_uri(synth: Synth) -> None:
    outputs = synth.tenant_json["Outputs"]
    assert outputs["DataPrefix"]["Value"] == synth.names.silo_data_prefix
    assert outputs["OutputUri"]["Value"] == {
        "Fn::Join": ["", ["s3://", {"Ref": "DataBucket"}, f"/{synth.names.silo_output_prefix}"]]
    }


def test_tenant_template_synthesis_is_deterministic(synth: Synth, tmp_path) -> None:
    first = write_tenant_template(synth.settings, tmp_path / "a.json").read_text()
    second = write_tenant_template(synth.settings, tmp_path / "b.json").read_text()
    assert first == second
    assert json.loads(first)["Resources"].keys() == synth.tenant_json["Resources"].keys()


def test_tenant_template_is_the_same_under_the_cdk_cli(synth: Synth, tmp_path) -> None:
    # The CLI hands the app its context (path metadata on, feature flags) through
    # CDK_CONTEXT_JSON; the shipped template must not depend on that.
    import os
    import subprocess
    import sys

    from infra.cdk_context import PROJECT_ROOT, cdk_json_context

    cli_context = {**cdk_json_context(), "aws:cdk:enable-path-metadata": True}
    out = tmp_path / "cli.json"
    code = (
        "import sys; from pathlib import Path\n"
        "from trainyard_core.config import load_project_settings\n"
        "from infra.tenant_template import write_tenant_template\n"
        f"write_tenant_template(load_project_settings(Path({str(PROJECT_ROOT)!r})), "
        f"Path({str(out)!r}))\n"
    )
    env = {**os.environ, "CDK_CONTEXT_JSON": json.dumps(cli_context)}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=PROJECT_ROOT)
    local = write_tenant_template(synth.settings, tmp_path / "local.json").read_text()
    assert out.read_text() == local
