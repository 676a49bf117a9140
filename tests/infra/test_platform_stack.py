"""The platform stack keeps the promises of docs/architecture.md §1-3 (template assertions)."""

from __future__ import annotations

import json
import re

import pytest
from aws_cdk.assertions import Match
from trainyard_core import wiring

from infra.lambdas import powertools_layer_arn
from tests.infra.isolation_support import ACCOUNT, render
from tests.infra.synth_support import Synth, resolve_ref, resources

pytestmark = pytest.mark.infra


def _queue_by_name(synth: Synth) -> dict[str, tuple[str, dict]]:
    return {
        r["Properties"]["QueueName"]: (lid, r)
        for lid, r in resources(synth.platform_json, "AWS::SQS::Queue").items()
    }


def test_one_intake_queue_with_its_own_dlq_per_plan(synth: Synth) -> None:
    queues = _queue_by_name(synth)
    for plan in synth.settings.plans:
        _, queue = queues[synth.names.intake_queue(plan)]
        dlq_lid, dlq = queues[synth.names.intake_dlq(plan)]
        redrive = queue["Properties"]["RedrivePolicy"]
        assert resolve_ref(synth.platform_json, redrive["deadLetterTargetArn"]) == dlq_lid
        assert 3 <= redrive["maxReceiveCount"] <= 10
        assert dlq["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600
        for props in (queue["Properties"], dlq["Properties"]):
            assert props["SqsManagedSseEnabled"] is True
    intake = [n for n in queues if n.startswith(f"{synth.names.prefix}-intake-")]
    assert len(intake) == 2 * len(synth.settings.plans)


def test_every_queue_denies_non_tls_access(synth: Synth) -> None:
    policies = resources(synth.platform_json, "AWS::SQS::QueuePolicy").values()
    secured = set()
    for policy in policies:
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        tls_only = {"Bool": {"aws:SecureTransport": "false"}}
        if any(s["Effect"] == "Deny" and s.get("Condition") == tls_only for s in statements):
            queues = policy["Properties"]["Queues"]
            secured.update(resolve_ref(synth.platform_json, q) for q in queues)
    assert secured == set(resources(synth.platform_json, "AWS::SQS::Queue"))


def test_intake_queues_accept_only_this_accounts_tenant_rules(synth: Synth) -> None:
    queues = _queue_by_name(synth)
    intake_ids = {queues[synth.names.intake_queue(p)][0] for p in synth.settings.plans}
    allowed = set()
    for policy in resources(synth.platform_json, "AWS::SQS::QueuePolicy").values():
        targets = {resolve_ref(synth.platform_json, q) for q in policy["Properties"]["Queues"]}
        if not targets <= intake_ids:
            continue
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if (
                statement.get("Principal") == {"Service": "events.amazonaws.com"}
                and statement["Effect"] == "Allow"
            ):
                source = json.dumps(statement["Condition"]["ArnLike"]["aws:SourceArn"])
                assert f":rule/{synth.names.tenant_rule_prefix}*" in source
                assert "AWS::AccountId" in source
                assert statement["Condition"]["StringEquals"]["aws:SourceAccount"] == {
                    "Ref": "AWS::AccountId"
                }
                assert statement["Action"] == "sqs:SendMessage"
                allowed |= targets
    assert intake_ids <= allowed


def test_status_rule_matches_only_this_pipelines_status_changes(synth: Synth) -> None:
    synth.platform.has_resource_properties(
        "AWS::Events::Rule",
        {
            "Name": synth.names.status_rule,
            "EventPattern": {
                "source": [wiring.SAGEMAKER_STATUS_SOURCE],
                "detail-type": [wiring.SAGEMAKER_STATUS_DETAIL_TYPE],
                "detail": {"pipelineArn": [Match.any_value()]},
            },
        },
    )
    rule = next(
        r
        for r in resources(synth.platform_json, "AWS::Events::Rule").values()
        if r["Properties"]["Name"] == synth.names.status_rule
    )
    arn = json.dumps(rule["Properties"]["EventPattern"]["detail"]["pipelineArn"][0])
    assert f":pipeline/{synth.names.pipeline_name}" in arn
    status_id = _queue_by_name(synth)[synth.names.status_queue][0]
    targets = rule["Properties"]["Targets"]
    assert [resolve_ref(synth.platform_json, t["Arn"]) for t in targets] == [status_id]


@pytest.mark.parametrize(
    ("rule", "function", "logical_id"),
    [
        ("reconcile_rule", "scheduler", "SchedulingReconcileRule"),
        ("lifecycle_rule", "onboarding", "OnboardingLifecycleRule"),
    ],
    ids=["reconcile-runs-the-scheduler", "lifecycle-advances-tenants"],
)
def test_schedules_run_their_handler_at_the_configured_rate(
    synth: Synth, rule: str, function: str, logical_id: str
) -> None:
    minutes = synth.settings.reconcile_interval_minutes
    rule_id, found = next(
        (lid, r)
        for lid, r in resources(synth.platform_json, "AWS::Events::Rule").items()
        if r["Properties"]["Name"] == getattr(synth.names, rule)
    )
    # A rule with a fixed name cannot be replaced in place: its logical id must not move.
    assert rule_id.startswith(logical_id)
    unit = "minute" if minutes == 1 else "minutes"
    assert found["Properties"]["ScheduleExpression"] == f"rate({minutes} {unit})"
    (target,) = found["Properties"]["Targets"]
    fn = synth.platform_json["Resources"][resolve_ref(synth.platform_json, target["Arn"])]
    assert fn["Properties"]["FunctionName"] == synth.names.function(function)
    # EventBridge may invoke it: without the permission the rule fires into nothing.
    permissions = resources(synth.platform_json, "AWS::Lambda::Permission").values()
    assert any(
        p["Properties"]["Principal"] == "events.amazonaws.com"
        and resolve_ref(synth.platform_json, p["Properties"]["FunctionName"])
        == resolve_ref(synth.platform_json, target["Arn"])
        for p in permissions
    )
    # The next tick is the retry: no async retries that would overlap it.
    configs = resources(synth.platform_json, "AWS::Lambda::EventInvokeConfig").values()
    assert any(
        resolve_ref(synth.platform_json, c["Properties"]["FunctionName"])
        == resolve_ref(synth.platform_json, target["Arn"])
        and c["Properties"]["MaximumRetryAttempts"] == 0
        for c in configs
    )


def test_every_handler_has_powertools_layer_tracing_and_retained_logs(synth: Synth) -> None:
    layer = powertools_layer_arn(synth.settings.region, synth.settings)
    functions = {
        r["Properties"].get("FunctionName"): r
        for r in resources(synth.platform_json, "AWS::Lambda::Function").values()
    }
    log_groups = {
        r["Properties"].get("LogGroupName"): r
        for r in resources(synth.platform_json, "AWS::Logs::LogGroup").values()
    }
    for key, spec in wiring.handlers(synth.names).items():
        props = functions[synth.names.function(key)]["Properties"]
        assert props["Layers"] == [layer]
        assert props["Runtime"] == "python3.12"
        version = synth.settings.powertools_layer_version
        assert layer.endswith(f"-{props['Architectures'][0]}:{version}")
        assert props["TracingConfig"] == {"Mode": "Active"}
        assert props["Handler"] == spec.handler
        log_group = log_groups[f"/aws/lambda/{synth.names.function(key)}"]
        assert log_group["Properties"]["RetentionInDays"] == synth.settings.log_retention_days


def test_handlers_receive_the_resolved_settings_in_their_code_not_their_environment(
    synth: Synth,
) -> None:
    """The settings (1.4 KB and growing with the plan table) would eat most of Lambda's
    4 KB environment: they ship as a file in the code asset, named by the env."""
    from trainyard_core.config import DEPLOYED_SETTINGS_FILE

    handlers = [
        r
        for r in resources(synth.platform_json, "AWS::Lambda::Function").values()
        if r["Properties"].get("FunctionName", "").startswith(synth.names.prefix)
    ]
    assert handlers
    for r in handlers:
        env = r["Properties"]["Environment"]["Variables"]
        assert wiring.ENV_SETTINGS not in env
        assert env[wiring.ENV_SETTINGS_FILE] == DEPLOYED_SETTINGS_FILE
        asset_hash = r["Properties"]["Code"]["S3Key"].removesuffix(".zip")
        shipped = synth.outdir / f"asset.{asset_hash}" / DEPLOYED_SETTINGS_FILE
        assert shipped.read_text() == synth.settings.to_json()


def test_every_handler_environment_fits_lambdas_4_kb_limit(synth: Synth) -> None:
    from trainyard.local.platform_template import Pseudo, TemplateRenderer

    # The longest region name and a real account id length: a safe upper bound.
    renderer = TemplateRenderer(
        synth.platform_json, Pseudo(account="123456789012", region="ap-southeast-2")
    )
    for r in resources(synth.platform_json, "AWS::Lambda::Function").values():
        env = renderer.render(r["Properties"].get("Environment", {}).get("Variables", {}))
        size = wiring.environment_bytes(env)
        assert size <= wiring.LAMBDA_ENVIRONMENT_LIMIT_BYTES // 2, (r["Properties"], size)


def test_onboarding_gets_https_template_urls_per_isolation_and_the_stack_role(
    synth: Synth,
) -> None:
    onboarding = next(
        r
        for r in resources(synth.platform_json, "AWS::Lambda::Function").values()
        if r["Properties"].get("FunctionName") == synth.names.function("onboarding")
    )
    env = onboarding["Properties"]["Environment"]["Variables"]
    # JSON {"silo": url, "pool": url}: virtual-hosted URLs of the platform bucket's
    # templates/<version>/ objects (PlatformFiles), not of the CDK asset bucket.
    rendered = render(env[wiring.ENV_TENANT_TEMPLATE_URLS], region=synth.settings.region)
    urls = json.loads(rendered)
    assert set(urls) == {"silo", "pool"}
    bucket = synth.names.platform_bucket(ACCOUNT)
    for isolation, url in urls.items():
        match = re.fullmatch(
            rf"https://\$\{{PlatformBucket\}}\.s3\.{synth.settings.region}\.amazonaws\.com/"
            rf"(templates/[0-9a-f]{{16}}/tenant-stack-{isolation}\.template\.json)",
            url,
        )
        assert match, url
    assert bucket.startswith(synth.names.prefix)
    role_id = resolve_ref(synth.platform_json, env[wiring.ENV_TENANT_STACK_ROLE_ARN])
    trust = synth.platform_json["Resources"][role_id]["Properties"]["AssumeRolePolicyDocument"]
    assert [s["Principal"] for s in trust["Statement"]] == [
        {"Service": "cloudformation.amazonaws.com"}
    ]


def test_every_api_method_requires_iam_auth(synth: Synth) -> None:
    methods = resources(synth.platform_json, "AWS::ApiGateway::Method")
    assert len(methods) >= 10
    for method in methods.values():
        props = method["Properties"]
        assert props["AuthorizationType"] == "AWS_IAM"
        assert "RequestValidatorId" in props
        assert props["Integration"]["Type"] == "AWS_PROXY"


def test_api_stage_is_throttled_and_traced_and_touches_no_account_wide_setting(
    synth: Synth,
) -> None:
    """AWS::ApiGateway::Account is one per account and region: deploying it would replace
    a platform team's own API Gateway logging role, so it is opt-in (apiLogging), and
    without it the stage must not ask for logging (API Gateway refuses: "CloudWatch Logs
    role ARN must be set in account settings to enable logging")."""
    assert synth.settings.api_logging == "off"
    assert resources(synth.platform_json, "AWS::ApiGateway::Account") == {}
    (stage,) = resources(synth.platform_json, "AWS::ApiGateway::Stage").values()
    props = stage["Properties"]
    assert props["TracingEnabled"] is True
    assert "AccessLogSetting" not in props
    for method in props["MethodSettings"]:
        assert method["LoggingLevel"] == "OFF"
        assert method["ThrottlingRateLimit"] and method["ThrottlingBurstLimit"]


def test_tables_are_on_demand_point_in_time_recovered_encrypted_and_retained(
    synth: Synth,
) -> None:
    tables = resources(synth.platform_json, "AWS::DynamoDB::Table")
    assert len(tables) == len(wiring.tables(synth.names))
    for table in tables.values():
        props = table["Properties"]
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert props["SSESpecification"] == {"SSEEnabled": True}
        assert table["DeletionPolicy"] == "RetainExceptOnCreate"
        assert table["UpdateReplacePolicy"] == "Retain"


def test_platform_bucket_is_named_per_account_private_and_tls_only(synth: Synth) -> None:
    synth.platform.has_resource(
        "AWS::S3::Bucket",
        {
            "Properties": Match.object_like(
                {
                    "BucketName": {
                        "Fn::Join": [
                            "",
                            [synth.names.platform_bucket(""), {"Ref": "AWS::AccountId"}],
                        ]
                    },
                    "PublicAccessBlockConfiguration": {
                        "BlockPublicAcls": True,
                        "BlockPublicPolicy": True,
                        "IgnorePublicAcls": True,
                        "RestrictPublicBuckets": True,
                    },
                    "BucketEncryption": Match.any_value(),
                }
            ),
            "DeletionPolicy": "RetainExceptOnCreate",
        },
    )
    synth.platform.has_resource_properties(
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


def test_pipeline_definition_has_every_placeholder_substituted(synth: Synth) -> None:
    from pipeline.contract import PLACEHOLDERS

    (pipeline,) = resources(synth.platform_json, "AWS::SageMaker::Pipeline").values()
    props = pipeline["Properties"]
    assert props["PipelineName"] == synth.names.pipeline_name
    body, values = props["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"]
    referenced = set(re.findall(r"\$\{([^}]+)\}", body))
    # Fn::Sub resolves every ${...}: all come from the variable map, none is left over.
    assert referenced == set(PLACEHOLDERS) == set(values)
    json.loads(body)  # the body is the SDK's JSON, placeholders inside strings
    for placeholder in ("PreprocessScriptUri", "EvaluateScriptUri", "TrainScriptUri"):
        joined = json.dumps(values[placeholder])
        assert '"s3://"' in joined and "PlatformBucket" in joined
        assert joined.endswith('.py"]]}')
    recorder = resolve_ref(synth.platform_json, values["RecorderFunctionArn"])
    assert synth.platform_json["Resources"][recorder]["Properties"][
        "FunctionName"
    ] == synth.names.function("recorder")


def _role_statements(synth: Synth, role_id: str) -> list[dict]:
    out = []
    role = synth.platform_json["Resources"][role_id]["Properties"]
    for policy in role.get("Policies", []):
        out += policy["PolicyDocument"]["Statement"]
    for policy in resources(synth.platform_json, "AWS::IAM::Policy").values():
        roles = [resolve_ref(synth.platform_json, r) for r in policy["Properties"]["Roles"]]
        if role_id in roles:
            out += policy["Properties"]["PolicyDocument"]["Statement"]
    return out


def _actions(statement: dict) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else actions


def test_pass_role_is_limited_to_tenant_roles_and_to_sagemaker(synth: Synth) -> None:
    (pipeline,) = resources(synth.platform_json, "AWS::SageMaker::Pipeline").values()
    role_id = resolve_ref(synth.platform_json, pipeline["Properties"]["RoleArn"])
    passes = [s for s in _role_statements(synth, role_id) if "iam:PassRole" in _actions(s)]
    assert passes
    for statement in passes:
        assert statement["Condition"] == {
            "StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}
        }
        assert f":role{synth.names.tenant_role_path}*" in json.dumps(statement["Resource"])
    # And nobody in the platform may pass roles without a PassedToService condition.
    for role_id in resources(synth.platform_json, "AWS::IAM::Role"):
        for statement in _role_statements(synth, role_id):
            if "iam:PassRole" in _actions(statement):
                assert "iam:PassedToService" in statement["Condition"]["StringEquals"]


def test_pipeline_role_reads_the_step_code_and_the_two_property_files_only(synth: Synth) -> None:
    """SageMaker reads a PropertyFile (JsonGet) as the pipeline role: the evaluation
    report and the data report; the training code is a job input (the tenant role's)."""
    (pipeline,) = resources(synth.platform_json, "AWS::SageMaker::Pipeline").values()
    role_id = resolve_ref(synth.platform_json, pipeline["Properties"]["RoleArn"])
    reads = {
        s.get("Sid"): s["Resource"]
        for s in _role_statements(synth, role_id)
        if "s3:GetObject" in _actions(s)
    }
    assert set(reads) == {"ReadStepCode", "ReadEvaluationReports", "ReadDataReports"}
    for sid, file in (
        ("ReadEvaluationReports", "/evaluation/evaluation.json"),
        ("ReadDataReports", "/data-report/data-report.json"),
    ):
        silo, pool = reads[sid]  # the silo buckets' and the pool bucket's run outputs
        assert json.dumps(silo).endswith(f'{file}"]]}}') and json.dumps(pool).endswith(
            f'{file}"]]}}'
        ), reads[sid]


def test_scheduler_may_drive_only_this_pipeline(synth: Synth) -> None:
    scheduler = next(
        r
        for r in resources(synth.platform_json, "AWS::Lambda::Function").values()
        if r["Properties"].get("FunctionName") == synth.names.function("scheduler")
    )
    role_id = resolve_ref(synth.platform_json, scheduler["Properties"]["Role"])
    sagemaker = [
        s
        for s in _role_statements(synth, role_id)
        if any(a.startswith("sagemaker:") for a in _actions(s))
    ]
    assert {a for s in sagemaker for a in _actions(s)} >= {
        "sagemaker:StartPipelineExecution",
        "sagemaker:DescribePipelineExecution",
        "sagemaker:ListPipelineExecutions",
        "sagemaker:StopPipelineExecution",
        "sagemaker:RetryPipelineExecution",
    }
    for statement in sagemaker:
        assert f":pipeline/{synth.names.pipeline_name}" in json.dumps(statement["Resource"])


def test_lambda_roles_carry_no_aws_managed_policies(synth: Synth) -> None:
    for role_id, role in resources(synth.platform_json, "AWS::IAM::Role").items():
        trust = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        if {"Service": "lambda.amazonaws.com"} in [s["Principal"] for s in trust]:
            assert "ManagedPolicyArns" not in role["Properties"], role_id


def test_alarms_cover_every_dlq_and_intake_backlog_age(synth: Synth) -> None:
    found = resources(synth.platform_json, "AWS::CloudWatch::Alarm")
    alarms = [r["Properties"] for r in found.values()]

    def watched(metric: str) -> set[str]:
        out = set()
        for alarm in alarms:
            if alarm.get("MetricName") == metric:
                (dim,) = alarm["Dimensions"]
                out.add(json.dumps(dim["Value"]))
        return out

    queues = _queue_by_name(synth)
    dlqs = [synth.names.intake_dlq(p) for p in synth.settings.plans] + [synth.names.status_dlq]
    for name in dlqs:
        lid = queues[name][0]
        assert any(lid in v for v in watched("ApproximateNumberOfMessagesVisible")), name
    for plan in synth.settings.plans:
        lid = queues[synth.names.intake_queue(plan)][0]
        assert any(lid in v for v in watched("ApproximateAgeOfOldestMessage")), plan
    synth.platform.resource_count_is("AWS::CloudWatch::Dashboard", 1)


def test_platform_ships_exactly_the_synthesized_tenant_templates(synth: Synth) -> None:
    """The PlatformFiles deployment carries both rendered templates at the keys the
    onboarding Lambda is given (and the step scripts beside them)."""
    from infra.tenant_template import ISOLATIONS, render_tenant_template, templates_version

    rendered = {iso: render_tenant_template(synth.settings, iso) for iso in ISOLATIONS}
    version = templates_version(rendered)
    staged = [
        path
        for path in synth.outdir.glob("asset.*")
        if path.is_dir() and (path / "templates" / version).is_dir()
    ]
    assert len(staged) == 1, "one deployment asset holds the templates"
    for isolation, text in rendered.items():
        key = synth.names.tenant_template_key(isolation, version)
        assert (staged[0] / key).read_text() == text
    assert (staged[0] / "code" / "pipeline").is_dir()


def test_stack_environment_has_region_from_settings_and_no_account(synth: Synth) -> None:
    manifest = json.loads((synth.outdir / "manifest.json").read_text())
    artifact = manifest["artifacts"][synth.settings.stack_name]
    assert artifact["environment"] == f"aws://unknown-account/{synth.settings.region}"
