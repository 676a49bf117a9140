"""Settings drive the stack: a `trainyard` context override changes what is built."""

from __future__ import annotations

import json

import pytest
from aws_cdk import App
from trainyard_core.config import DEPLOYED_SETTINGS_FILE

from infra.app import build_app, context_override, nag_enabled
from infra.nag import NAG_CONTEXT_KEY
from tests.infra.synth_support import resources, synthesize

pytestmark = pytest.mark.infra

OVERRIDE = {
    "plans": {
        "basic": {"maxConcurrentRuns": 2},
        "enterprise": {
            "maxConcurrentRuns": 16,
            "maxConcurrentRunsPerTenant": 8,
            "weight": 8,
            "isolation": "silo",
            "trainingInstanceType": "ml.m5.4xlarge",
        },
    },
    "reconcileIntervalMinutes": 5,
    # Opt in to the account-wide API Gateway logging role.
    "apiLogging": "createAccountRole",
}


def test_context_given_as_json_string_is_parsed() -> None:
    app = App(context={"trainyard": json.dumps({"globalMaxConcurrentRuns": 5})})
    assert context_override(app) == {"globalMaxConcurrentRuns": 5}
    assert context_override(App(context={"trainyard": {"region": "eu-west-1"}})) == {
        "region": "eu-west-1"
    }
    with pytest.raises(ValueError):
        context_override(App(context={"trainyard": "[1, 2]"}))


def test_nag_is_on_by_default_and_can_be_switched_off(monkeypatch) -> None:
    monkeypatch.delenv("TRAINYARD_NAG", raising=False)
    assert nag_enabled(App()) is True
    assert nag_enabled(App(context={NAG_CONTEXT_KEY: "false"})) is False
    monkeypatch.setenv("TRAINYARD_NAG", "0")
    assert nag_enabled(App()) is False


def test_context_override_adds_a_plan_queue_and_changes_caps(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("TRAINYARD_CONFIG", raising=False)
    # Settings resolved from the context, as `npx cdk synth -c trainyard='{...}'` does.
    app = build_app(context={"trainyard": json.dumps(OVERRIDE)}, nag=False)
    stack = app.node.find_child("TrainyardPlatform")
    settings = stack.settings
    assert settings.plans["basic"].max_concurrent_runs == 2
    assert "enterprise" in settings.plans

    result = synthesize(settings, tmp_path, nag=False)
    assert result.error is None
    names = result.names
    queues = {
        r["Properties"]["QueueName"]
        for r in resources(result.platform_json, "AWS::SQS::Queue").values()
    }
    assert {names.intake_queue("enterprise"), names.intake_dlq("enterprise")} <= queues
    # An intake queue and DLQ per plan, the status and webhook queues with theirs, and
    # the webhook rule target's DLQ.
    assert len(queues) == 2 * 4 + 2 + 2 + 1
    mappings = resources(result.platform_json, "AWS::Lambda::EventSourceMapping")
    assert len(mappings) == 4 + 1 + 1

    # The handlers' code carries the resolved settings (not their environment).
    shipped = {
        json.loads(
            (
                result.outdir
                / f"asset.{r['Properties']['Code']['S3Key'].removesuffix('.zip')}"
                / DEPLOYED_SETTINGS_FILE
            ).read_text()
        )["plans"]["basic"]["maxConcurrentRuns"]
        for r in resources(result.platform_json, "AWS::Lambda::Function").values()
        if str(r["Properties"].get("FunctionName", "")).startswith(names.prefix)
    }
    assert shipped == {2}
    # apiLogging=createAccountRole: the stack sets the account's API Gateway role and logs.
    assert len(resources(result.platform_json, "AWS::ApiGateway::Account")) == 1
    (stage,) = resources(result.platform_json, "AWS::ApiGateway::Stage").values()
    assert "AccessLogSetting" in stage["Properties"]
    assert {m["LoggingLevel"] for m in stage["Properties"]["MethodSettings"]} == {"ERROR"}
    rules = resources(result.platform_json, "AWS::Events::Rule").values()
    assert "rate(5 minutes)" in {r["Properties"].get("ScheduleExpression") for r in rules}
    assert "enterprise" in result.tenant_json["Parameters"]["PlanName"]["AllowedValues"]


def test_cdk_app_and_local_runtime_resolve_the_same_settings_from_every_source(
    tmp_path, monkeypatch
) -> None:
    from trainyard_core.config import load_project_settings

    import infra.app as cdk_app
    from infra.cdk_context import cdk_json_context
    from pipeline.images import with_image_uris

    # A project whose cdk.json sets the cap (30) and a config file that sets it again (7).
    (tmp_path / "cdk.json").write_text(
        json.dumps({"app": "x", "context": {"trainyard": {"globalMaxConcurrentRuns": 30}}})
    )
    monkeypatch.setattr(cdk_app, "PROJECT_ROOT", tmp_path)
    monkeypatch.setattr(cdk_app, "cdk_json_context", lambda: cdk_json_context(tmp_path))
    config = tmp_path / "trainyard.json"
    config.write_text(json.dumps({"globalMaxConcurrentRuns": 7}))
    monkeypatch.setenv("TRAINYARD_CONFIG", str(config))
    # No -c: cdk.json, then the file (later wins), in both.
    cdk = build_app(nag=False).node.find_child("TrainyardPlatform").settings
    # Both then resolve the catalog's image URIs (EmbeddedStack does it for the local one).
    local = with_image_uris(load_project_settings(tmp_path))
    assert cdk.global_max_concurrent_runs == local.global_max_concurrent_runs == 7
    assert cdk == local
    assert all(a.image.uri for a in cdk.algorithms.values())
    # -c wins over both.
    app = build_app(context={"trainyard": json.dumps({"globalMaxConcurrentRuns": 9})}, nag=False)
    assert app.node.find_child("TrainyardPlatform").settings.global_max_concurrent_runs == 9
