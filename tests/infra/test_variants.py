"""The stack in the settings a platform team may choose, not just the defaults:
another partition, a deployment that knows its account, the opt-in account-wide
API logging role, a larger plan table. One synthesis, with cdk-nag on."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from trainyard_core import wiring
from trainyard_core.config import resolve_settings

from infra.lambdas import powertools_layer_arn
from tests.infra.synth_support import Synth, resources, synthesize

pytestmark = pytest.mark.infra

ACCOUNT = "111111111111"
LAYER = (
    "arn:aws-cn:lambda:cn-north-1:498634801083:layer:AWSLambdaPowertoolsPythonV3-python312-arm64:18"
)
EXTRA_PLANS = {
    f"tier{i}": {
        "maxConcurrentRuns": 2,
        "maxConcurrentRunsPerTenant": 1,
        "weight": 1,
        "isolation": "pool" if i % 2 else "silo",
        "trainingInstanceType": "ml.m5.large",
    }
    for i in range(1, 4)
}
# Name property of each resource type that CloudFormation can import by name.
NAME_PROPERTY = {
    "AWS::DynamoDB::Table": "TableName",
    "AWS::S3::Bucket": "BucketName",
    "AWS::Logs::LogGroup": "LogGroupName",
}


@pytest.fixture(scope="module")
def variant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synth]:
    settings = resolve_settings(
        {
            "region": "cn-north-1",
            "powertoolsLayerArn": LAYER,
            "apiLogging": "createAccountRole",
            "plans": EXTRA_PLANS,
        }
    )
    patch = pytest.MonkeyPatch()
    patch.setenv("CDK_DEFAULT_ACCOUNT", ACCOUNT)  # as `cdk deploy` with credentials sets it
    try:
        yield synthesize(settings, tmp_path_factory.mktemp("variant"), nag=True)
    finally:
        patch.undo()


def _templates(synth: Synth) -> dict[str, dict[str, Any]]:
    return synth.templates


def test_the_variant_synthesizes_with_every_nag_finding_acknowledged(variant: Synth) -> None:
    assert variant.error is None, variant.error
    assert len(resources(variant.platform_json, "AWS::ApiGateway::Account")) == 1


def test_no_arn_in_any_template_assumes_the_aws_partition(variant: Synth) -> None:
    for name, template in _templates(variant).items():
        text = json.dumps(template)
        assert "arn:aws:" not in text, name
        assert "arn:aws-cn:" in text or "AWS::Partition" in text, name


def test_fixed_name_resources_that_outlive_the_stack_can_be_adopted_again(variant: Synth) -> None:
    """After a failed first create they go (RetainExceptOnCreate); after a destroy they
    stay, and `cdk deploy --import-existing-resources` adopts them: that needs a
    DeletionPolicy of Retain/RetainExceptOnCreate and a static custom name."""
    kept = 0
    for lid, resource in variant.platform_json["Resources"].items():
        policy = resource.get("DeletionPolicy")
        key = NAME_PROPERTY.get(resource["Type"])
        name = resource.get("Properties", {}).get(key) if key else None
        if name is None:
            continue
        assert policy == "RetainExceptOnCreate", (lid, policy)
        assert isinstance(name, str), f"{lid}: {key} {name!r} is not a static name"
        kept += 1
    # The tables, two buckets, one log group per handler.
    assert kept == len(wiring.tables(variant.names)) + 2 + len(wiring.handlers(variant.names))


def test_handlers_use_the_layer_the_settings_name_outside_the_aws_partition(
    variant: Synth,
) -> None:
    for r in resources(variant.platform_json, "AWS::Lambda::Function").values():
        if str(r["Properties"].get("FunctionName", "")).startswith(variant.names.prefix):
            assert r["Properties"]["Layers"] == [LAYER]
    default = resolve_settings({"region": "cn-north-1"})
    with pytest.raises(ValueError, match="powertoolsLayerArn"):
        powertools_layer_arn("cn-north-1", default)


def test_a_larger_plan_table_fits_every_handler_environment(variant: Synth) -> None:
    from trainyard.local.platform_template import Pseudo, TemplateRenderer

    assert len(variant.settings.plans) == 6
    renderer = TemplateRenderer(
        variant.platform_json, Pseudo(account=ACCOUNT, region="cn-north-1", partition="aws-cn")
    )
    for r in resources(variant.platform_json, "AWS::Lambda::Function").values():
        env = renderer.render(r["Properties"].get("Environment", {}).get("Variables", {}))
        assert wiring.environment_bytes(env) <= wiring.LAMBDA_ENVIRONMENT_LIMIT_BYTES // 2
