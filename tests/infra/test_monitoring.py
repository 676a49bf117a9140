"""Alarms watch what the code really emits, and each has a runbook section."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from trainyard_core import wiring
from trainyard_core.clock import VirtualClock
from trainyard_core.scheduling.service import SchedulerService
from trainyard_core.store.runs_memory import InMemoryRunRepository
from trainyard_core.store.tenants import InMemoryTenantRepository
from trainyard_handlers import scheduler as scheduler_handler

from tests.infra.synth_support import Synth, resources
from trainyard.testing.scheduling import FakePipeline, make_tenant

pytestmark = pytest.mark.infra

RUNBOOK = Path(__file__).resolve().parents[2] / "docs" / "runbook.md"

MetricKey = tuple[str, str, frozenset[tuple[str, str]]]


def _emf_records(out: str) -> list[dict[str, Any]]:
    """Every EMF object printed, wherever it starts on its line: another thread's
    output (a log line without its newline yet) can land in front of one."""
    decoder = json.JSONDecoder()
    records = []
    for line in out.splitlines():
        start = line.find('{"_aws"')
        while start >= 0:
            record, end = decoder.raw_decode(line, start)
            records.append(record)
            start = line.find('{"_aws"', end)
    return records


def _alarms(synth: Synth) -> list[dict[str, Any]]:
    return [
        r["Properties"] for r in resources(synth.platform_json, "AWS::CloudWatch::Alarm").values()
    ]


def _custom_metrics_watched(synth: Synth) -> set[MetricKey]:
    watched: set[MetricKey] = set()
    for alarm in _alarms(synth):
        # An alarm names its metric in MetricStat queries, or (without a label or math)
        # at its top level.
        metrics = [q.get("MetricStat", {}).get("Metric") for q in alarm.get("Metrics", [])]
        if "MetricName" in alarm:
            metrics.append({k: alarm.get(k, []) for k in ("Namespace", "MetricName", "Dimensions")})
        for metric in metrics:
            if metric and metric["Namespace"] == wiring.METRICS_NAMESPACE:
                dims = frozenset((d["Name"], d["Value"]) for d in metric["Dimensions"])
                watched.add((metric["Namespace"], metric["MetricName"], dims))
    return watched


def _function_env(synth: Synth, key: str) -> dict[str, Any]:
    for fn in resources(synth.platform_json, "AWS::Lambda::Function").values():
        if fn["Properties"].get("FunctionName") == synth.names.function(key):
            return fn["Properties"]["Environment"]["Variables"]
    raise AssertionError(f"no function {key}")


def test_alarms_cover_runs_stuck_failure_rate_and_throttled_starts_per_plan(
    synth: Synth,
) -> None:
    names = {a["AlarmName"] for a in _alarms(synth)}
    for plan in synth.settings.plans:
        for kind in ("runs-stuck", "failure-rate", "starts-throttled"):
            assert f"{synth.names.prefix}-{plan}-{kind}" in names
    failure_rate = next(a for a in _alarms(synth) if a["AlarmName"].endswith("-failure-rate"))
    [expression] = [q["Expression"] for q in failure_rate["Metrics"] if "Expression" in q]
    # A rate over few runs would page for one tenant's bad upload.
    assert re.search(r">= *\d+", expression)
    throttled = next(a for a in _alarms(synth) if a["AlarmName"].endswith("-starts-throttled"))
    assert throttled["EvaluationPeriods"] == throttled["DatapointsToAlarm"] > 1


def test_every_alarmed_custom_metric_is_emitted_by_the_scheduler_as_named(
    synth: Synth, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Run the real scheduler service with the real Powertools sink under the
    # synthesized function's environment, through a scenario that produces every
    # per-plan signal, and read back the EMF records it prints.
    env = _function_env(synth, "scheduler")
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", env["POWERTOOLS_SERVICE_NAME"])
    monkeypatch.setattr(scheduler_handler.metrics, "namespace", env["POWERTOOLS_METRICS_NAMESPACE"])
    # Read at import in Lambda (the environment is there first); set here the same way.
    monkeypatch.setattr(scheduler_handler.metrics, "service", env["POWERTOOLS_SERVICE_NAME"])
    settings = synth.settings
    clock = VirtualClock(datetime(2026, 3, 10, 12, 0, tzinfo=UTC))
    runs, tenants, pipeline = InMemoryRunRepository(), InMemoryTenantRepository(), FakePipeline()
    service = SchedulerService(
        settings,
        runs,
        tenants,
        pipeline,
        clock=clock,
        metrics=scheduler_handler.PowertoolsMetricsSink(),
    )
    # The handlers share one Metrics object per process: start from an empty one, as
    # a Lambda invocation does (earlier tests may leave metrics or dimension sets).
    scheduler_handler.metrics.clear_metrics()
    capsys.readouterr()
    for plan in settings.plans:
        for name in ("ok", "bad", "slow"):
            tenant = make_tenant(f"{plan}-{name}", plan)
            tenants.create(tenant)
            assert tenant.data_bucket
            service.handle_upload(tenant.data_bucket, "data/a.csv", "e", 1, None)
        pipeline.throttle_next = 1  # one throttled start in each plan
        service.dispatch()
    clock.advance(10)
    service.dispatch()  # the retries
    for run in runs.all_runs():
        assert run.execution_arn, run
        status = {"ok": "Succeeded", "bad": "Failed", "slow": None}[run.tenant_id.split("-")[1]]
        if status:
            pipeline.set_status(run.execution_arn, status, "boom" if status == "Failed" else None)
            service.handle_status(run.execution_arn, status, display_name=run.display_name)
    clock.advance(settings.stuck_run_hours * 3600 + 60)
    service.reconcile()
    # A sweep element that fails (isolated, counted): what the sweep-errors alarm watches.
    broken = next(iter(runs.all_runs()))
    with service.isolated("reconcile", broken):
        raise RuntimeError("a write the table refuses")
    scheduler_handler.metrics.flush_metrics()  # what log_metrics does as the handler ends

    emitted: set[MetricKey] = set()
    for record in _emf_records(capsys.readouterr().out):
        for directive in record["_aws"]["CloudWatchMetrics"]:
            for dim_set in directive["Dimensions"]:
                dims = frozenset((d, record[d]) for d in dim_set)
                for metric in directive["Metrics"]:
                    emitted.add((directive["Namespace"], metric["Name"], dims))
    service = ("service", env["POWERTOOLS_SERVICE_NAME"])
    watched = {w for w in _custom_metrics_watched(synth) if service in w[2]}
    assert {name for _, name, _ in watched} >= {
        "RunsStuck",
        "RunsFailed",
        "RunsSucceeded",
        "StartsThrottled",
        "SweepErrors",
    }
    assert watched <= emitted, watched - emitted


def _runbook_patterns() -> list[re.Pattern[str]]:
    headings = re.findall(r"^## `([^`]+)`$", RUNBOOK.read_text(), flags=re.MULTILINE)
    patterns = []
    for heading in headings:
        regex = re.escape(heading)
        for placeholder in ("<prefix>", "<plan>", "<handler>"):
            regex = regex.replace(re.escape(placeholder), "[a-z0-9]+")
        patterns.append(re.compile(regex))
    return patterns


def test_every_alarm_has_exactly_one_runbook_section(synth: Synth) -> None:
    patterns = _runbook_patterns()
    assert patterns
    for alarm in _alarms(synth):
        name = alarm["AlarmName"]
        matching = [p.pattern for p in patterns if p.fullmatch(name)]
        assert len(matching) == 1, (name, matching)
    # ...and no section describes an alarm that does not exist.
    names = [a["AlarmName"] for a in _alarms(synth)]
    for pattern in patterns:
        assert any(pattern.fullmatch(n) for n in names), pattern.pattern


def test_every_alarm_can_notify_through_its_encrypted_topic(synth: Synth) -> None:
    """CloudWatch publishes as the service principal cloudwatch.amazonaws.com: the topic
    policy (which replaced SNS's default one) must let it publish for this alarm, and
    the topic's key policy must let it GenerateDataKey/Decrypt; an AWS-managed key
    (alias/aws/sns) cannot, so an alarm on such a topic never notifies."""
    from trainyard.local.iam.policy import Request, RequestPrincipal, evaluate_resource_policy
    from trainyard.local.platform_template import Pseudo, TemplateRenderer

    template = synth.platform_json
    renderer = TemplateRenderer(template, Pseudo(account="123456789012", region="us-east-1"))
    cloudwatch = RequestPrincipal(service="cloudwatch.amazonaws.com")
    topics = resources(template, "AWS::SNS::Topic")
    policies = resources(template, "AWS::SNS::TopicPolicy").values()
    for alarm in _alarms(synth):
        assert alarm.get("AlarmActions"), alarm["AlarmName"]
        for action in alarm["AlarmActions"]:
            topic_id = action["Ref"]
            topic_arn = renderer.render(action)
            alarm_arn = f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{alarm['AlarmName']}"
            policy = next(
                renderer.render(p["Properties"]["PolicyDocument"])
                for p in policies
                if {"Ref": topic_id} in p["Properties"]["Topics"]
            )
            publish = Request(
                "sns:Publish",
                topic_arn,
                {
                    "aws:SourceArn": alarm_arn,
                    "aws:SourceAccount": "123456789012",
                    "aws:SecureTransport": "true",
                },
            )
            assert evaluate_resource_policy(policy, publish, cloudwatch), alarm["AlarmName"]
            key_ref = topics[topic_id]["Properties"]["KmsMasterKeyId"]
            assert isinstance(key_ref, dict), f"{topic_id} uses {key_ref}, not a key of its own"
            key_id = key_ref["Fn::GetAtt"][0]
            key = template["Resources"][key_id]["Properties"]
            assert key["EnableKeyRotation"] is True
            key_policy = renderer.render(key["KeyPolicy"])
            for kms_action in ("kms:GenerateDataKey", "kms:Decrypt"):
                request = Request(kms_action, renderer.arn(key_id))
                assert evaluate_resource_policy(key_policy, request, cloudwatch), kms_action


def test_nothing_but_this_accounts_alarms_may_publish_to_the_alarm_topic(synth: Synth) -> None:
    from trainyard.local.iam.policy import Request, RequestPrincipal, evaluate_resource_policy
    from trainyard.local.platform_template import Pseudo, TemplateRenderer

    template = synth.platform_json
    renderer = TemplateRenderer(template, Pseudo(account="123456789012", region="us-east-1"))
    (policy,) = resources(template, "AWS::SNS::TopicPolicy").values()
    document = renderer.render(policy["Properties"]["PolicyDocument"])
    topic = renderer.render(policy["Properties"]["Topics"][0])
    cases = {
        "another account's alarm": (
            "111111111111",
            "arn:aws:cloudwatch:us-east-1:111111111111:alarm:x",
        ),
        "an alarm outside the prefix": (
            "123456789012",
            "arn:aws:cloudwatch:us-east-1:123456789012:alarm:x",
        ),
    }
    for what, (account, source) in cases.items():
        request = Request(
            "sns:Publish",
            topic,
            {"aws:SourceArn": source, "aws:SourceAccount": account, "aws:SecureTransport": "true"},
        )
        assert not evaluate_resource_policy(
            document, request, RequestPrincipal(service="cloudwatch.amazonaws.com")
        ), what
    plain_http = Request("sns:Publish", topic, {"aws:SecureTransport": "false"})
    assert not evaluate_resource_policy(
        document,
        plain_http,
        RequestPrincipal(arn="arn:aws:iam::123456789012:role/x", account="123456789012"),
    )


def test_every_alarmed_lifecycle_metric_is_emitted_by_the_onboarding_function_as_named(
    synth: Synth, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The lifecycle schedule's report, as a rollout with one failed update makes it,
    # through the real handler code and Powertools sink under the synthesized env.
    from trainyard_handlers import dependencies, lifecycle

    env = _function_env(synth, "onboarding")
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.setattr(lifecycle.metrics, "namespace", env["POWERTOOLS_METRICS_NAMESPACE"])
    monkeypatch.setattr(lifecycle.metrics, "service", env["POWERTOOLS_SERVICE_NAME"])

    class _Service:
        def advance_pending(self, time_left: Any = None) -> dict[str, list[str]]:
            report: dict[str, list[str]] = {
                k: []
                for k in (
                    "advanced",
                    "waiting",
                    "errors",
                    "deferred",
                    "stacks_updating",
                    "stacks_updated",
                    "stacks_outdated",
                )
            }
            report["stack_update_failures"] = ["acme: UPDATE_ROLLBACK_COMPLETE"]
            return report

    class _Context:
        def get_remaining_time_in_millis(self) -> int:
            return 60_000

    class _NoRetraining:
        def run_due(self, time_left: Any = None, reserve_seconds: float = 5.0) -> Any:
            from trainyard_core.tenants.retraining import RetrainReport

            return RetrainReport()

    monkeypatch.setattr(dependencies, "tenant_service", _Service)
    monkeypatch.setattr(dependencies, "retraining", _NoRetraining)
    lifecycle.metrics.clear_metrics()  # as above: one Metrics object per process
    capsys.readouterr()
    lifecycle.advance_tenants(_Context())  # type: ignore[arg-type]
    lifecycle.metrics.flush_metrics()
    emitted: set[MetricKey] = set()
    for record in _emf_records(capsys.readouterr().out):
        for directive in record["_aws"]["CloudWatchMetrics"]:
            for dim_set in directive["Dimensions"]:
                dims = frozenset((d, record[d]) for d in dim_set)
                for metric in directive["Metrics"]:
                    emitted.add((directive["Namespace"], metric["Name"], dims))
    service = ("service", env["POWERTOOLS_SERVICE_NAME"])
    watched = {w for w in _custom_metrics_watched(synth) if service in w[2]}
    assert {name for _, name, _ in watched} >= {"TenantStackUpdateFailures"}
    assert watched <= emitted, watched - emitted
    # Every alarmed custom metric is one of the two functions' (tested above and here).
    scheduler = ("service", _function_env(synth, "scheduler")["POWERTOOLS_SERVICE_NAME"])
    assert all(service in w[2] or scheduler in w[2] for w in _custom_metrics_watched(synth))
