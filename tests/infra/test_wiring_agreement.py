"""CDK and the local runtime build from the same wiring: prove the synthesized
platform template says exactly what `wiring.tables()`, `wiring.handlers()` and
`Names` say (table schemas, queue names, which queue feeds which function, env)."""

from __future__ import annotations

import pytest
from trainyard_core import wiring

from tests.infra.synth_support import Synth, resolve_ref, resources

pytestmark = pytest.mark.infra


def _key_schema(partition: str, sort: str | None) -> list[dict[str, str]]:
    schema = [{"AttributeName": partition, "KeyType": "HASH"}]
    if sort:
        schema.append({"AttributeName": sort, "KeyType": "RANGE"})
    return schema


def _functions(synth: Synth) -> dict[str, tuple[str, dict]]:
    return {
        r["Properties"]["FunctionName"]: (lid, r["Properties"])
        for lid, r in resources(synth.platform_json, "AWS::Lambda::Function").items()
        if "FunctionName" in r["Properties"]
    }


def test_tables_match_wiring_names_keys_indexes_and_ttl(synth: Synth) -> None:
    found = {
        r["Properties"]["TableName"]: (lid, r["Properties"])
        for lid, r in resources(synth.platform_json, "AWS::DynamoDB::Table").items()
    }
    specs = wiring.tables(synth.names)
    assert set(found) == set(specs)
    for name, spec in specs.items():
        logical_id, props = found[name]
        assert logical_id == spec.logical_id
        assert props["KeySchema"] == _key_schema(spec.partition_key, spec.sort_key)
        indexes = {
            gsi["IndexName"]: gsi["KeySchema"] for gsi in props.get("GlobalSecondaryIndexes", [])
        }
        assert indexes == {
            index.name: _key_schema(index.partition_key, index.sort_key) for index in spec.indexes
        }
        key_attrs = {spec.partition_key, spec.sort_key} | {
            a for i in spec.indexes for a in (i.partition_key, i.sort_key)
        }
        key_attrs.discard(None)
        assert {d["AttributeName"]: d["AttributeType"] for d in props["AttributeDefinitions"]} == {
            a: "S" for a in key_attrs
        }
        if spec.ttl_attribute:
            assert props["TimeToLiveSpecification"] == {
                "AttributeName": spec.ttl_attribute,
                "Enabled": True,
            }
        else:
            assert "TimeToLiveSpecification" not in props


def test_queue_names_match_wiring(synth: Synth) -> None:
    names = synth.names
    expected = {
        names.status_queue,
        names.status_dlq,
        names.webhook_queue,
        names.webhook_dlq,
        names.webhook_rule_dlq,
    }
    for plan in names.plans:
        expected |= {names.intake_queue(plan), names.intake_dlq(plan)}
    found = {
        r["Properties"]["QueueName"]
        for r in resources(synth.platform_json, "AWS::SQS::Queue").values()
    }
    assert found == expected


def test_event_source_mappings_feed_each_function_exactly_its_wiring_queues(
    synth: Synth,
) -> None:
    queue_names = {
        lid: r["Properties"]["QueueName"]
        for lid, r in resources(synth.platform_json, "AWS::SQS::Queue").items()
    }
    function_names = {lid: name for name, (lid, _) in _functions(synth).items()}
    fed: dict[str, list[str]] = {}
    for mapping in resources(synth.platform_json, "AWS::Lambda::EventSourceMapping").values():
        props = mapping["Properties"]
        function = function_names[resolve_ref(synth.platform_json, props["FunctionName"])]
        queue = queue_names[resolve_ref(synth.platform_json, props["EventSourceArn"])]
        fed.setdefault(function, []).append(queue)
        assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert props["BatchSize"] == wiring.QUEUE_BATCH_SIZE
        # The window the local pollers and the benchmark use too (absent = 0 in AWS).
        window = props.get("MaximumBatchingWindowInSeconds", 0)
        assert window == wiring.batching_window_seconds(synth.names, queue)
    expected = {
        synth.names.function(key): sorted(spec.queues)
        for key, spec in wiring.handlers(synth.names).items()
        if spec.queues
    }
    assert {k: sorted(v) for k, v in fed.items()} == expected


def test_functions_and_their_env_keys_match_wiring(synth: Synth) -> None:
    functions = _functions(synth)
    specs = wiring.handlers(synth.names)
    platform_functions = {n for n in functions if n.startswith(f"{synth.names.prefix}-")}
    assert platform_functions == {synth.names.function(key) for key in specs}
    for key, spec in specs.items():
        _, props = functions[synth.names.function(key)]
        assert props["Handler"] == spec.handler
        assert props["Timeout"] == spec.timeout_seconds
        assert props["MemorySize"] == spec.memory_mb
        # Same builder as the local runtime, with placeholder values.
        local_env = wiring.handler_environment(
            spec, synth.settings, {k: "x" for k in spec.env_keys}
        )
        env = props["Environment"]["Variables"]
        assert set(env) == set(local_env)
        # Literal (non-resource) values are identical in both worlds.
        literals = ("POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE")
        for literal in literals:
            assert env[literal] == local_env[literal]
        if wiring.ENV_PIPELINE_NAME in env:
            assert env[wiring.ENV_PIPELINE_NAME] == synth.names.pipeline_name


def test_env_table_values_point_at_the_wiring_tables(synth: Synth) -> None:
    tables = {
        lid: r["Properties"]["TableName"]
        for lid, r in resources(synth.platform_json, "AWS::DynamoDB::Table").items()
    }
    expected = {
        wiring.ENV_TENANTS_TABLE: synth.names.tenants_table,
        wiring.ENV_RUNS_TABLE: synth.names.runs_table,
        wiring.ENV_STATE_TABLE: synth.names.state_table,
    }
    for _, props in _functions(synth).values():
        env = props.get("Environment", {}).get("Variables", {})
        for key, table_name in expected.items():
            if key in env:
                assert tables[resolve_ref(synth.platform_json, env[key])] == table_name


def test_rule_and_pipeline_names_match_wiring(synth: Synth) -> None:
    found = resources(synth.platform_json, "AWS::Events::Rule")
    rules = {r["Properties"]["Name"] for r in found.values()}
    scheduled = {
        spec.schedule_rule
        for spec in wiring.handlers(synth.names).values()
        if wiring.Source.SCHEDULE in spec.sources
    }
    assert scheduled == {synth.names.reconcile_rule, synth.names.lifecycle_rule}
    assert rules == {synth.names.status_rule, synth.names.webhook_rule} | scheduled
    (pipeline,) = resources(synth.platform_json, "AWS::SageMaker::Pipeline").values()
    assert pipeline["Properties"]["PipelineName"] == synth.names.pipeline_name


def test_the_local_webhook_rule_target_is_the_templates(synth: Synth) -> None:
    """The embedded stack's webhook rule target (trainyard/local/bootstrap.py): the same
    queue, target DLQ and retry policy as the synthesized rule's."""
    from trainyard.local.bootstrap import webhook_rule_target

    queues = {
        lid: r["Properties"]["QueueName"]
        for lid, r in resources(synth.platform_json, "AWS::SQS::Queue").items()
    }
    (rule,) = [
        r["Properties"]
        for r in resources(synth.platform_json, "AWS::Events::Rule").values()
        if r["Properties"]["Name"] == synth.names.webhook_rule
    ]
    (target,) = rule["Targets"]
    local = webhook_rule_target({name: f"arn:{name}" for name in queues.values()}, synth.names)
    template = synth.platform_json
    assert local["Arn"] == f"arn:{queues[resolve_ref(template, target['Arn'])]}"
    dlq = queues[resolve_ref(template, target["DeadLetterConfig"]["Arn"])]
    assert local["DeadLetterConfig"] == {"Arn": f"arn:{dlq}"}
    assert dlq == synth.names.webhook_rule_dlq
    assert local["RetryPolicy"] == target["RetryPolicy"]
