"""One embedded stack per test session: moto server + local runtime + pipeline runner."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from trainyard_core.config import load_project_settings

from trainyard.local.bootstrap import PROJECT_ROOT
from trainyard.local.stack import EmbeddedStack

# Webhook retries within seconds, not minutes (the webhook tests wait for them):
# attempts 1 s, 2 s, 4 s apart, a 1 s receiver timeout, four attempts in all.
# The training tests (test_training_choices_http.py): the standard plan trains runs of
# 1 MiB of input or more on a larger instance (the other tests' data is far smaller),
# and random-forest is for premium tenants only.
SIZING_MIN_BYTES = 1024**2
TEST_SETTINGS = {
    "webhooks": {"retryBaseSeconds": 1, "timeoutSeconds": 1, "maxAttempts": 4},
    "plans": {
        "standard": {
            "sizing": [
                {
                    "minBytes": SIZING_MIN_BYTES,
                    "instanceType": "ml.m5.2xlarge",
                    "volumeSizeGb": 50,
                }
            ]
        }
    },
    "algorithms": {"random-forest": {"plans": ["premium"]}},
    # Retrain schedules of seconds (the retraining test waits for them to fall due).
    "retraining": {"minIntervalSeconds": 1},
}


# Package scope: the stack (and its pipeline engine, which watches moto's in-process
# backends) must be gone before other test packages use moto in this process.
@pytest.fixture(scope="package")
def stack() -> Iterator[EmbeddedStack]:
    settings = load_project_settings(PROJECT_ROOT, TEST_SETTINGS)
    with EmbeddedStack(aws_port=0, api_port=0, settings=settings) as running:
        yield running


class Api:
    """Plain HTTP against the local onboarding API (what any client would do)."""

    def __init__(self, base: str) -> None:
        self.base = base

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return requests.request(method, f"{self.base}{path}", timeout=30, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.call("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.call("POST", path, **kwargs)


@pytest.fixture(scope="package")
def api(stack: EmbeddedStack) -> Api:
    return Api(stack.api_url)


@pytest.fixture(autouse=True)
def no_500s_from_the_api(request: pytest.FixtureRequest) -> Iterator[None]:
    """No answer of the API in any integration test is a 500 (or a 502: the handler
    raised): bad input is a 4xx, a dependency's error is mapped (docs/faults.md)."""
    if "stack" not in request.fixturenames:
        yield
        return
    stack: EmbeddedStack = request.getfixturevalue("stack")
    before = len(stack.api_server_errors)
    yield
    assert stack.api_server_errors[before:] == [], "the API answered 500/502"


def wait_for(
    predicate: Callable[[], Any], *, timeout: float, interval: float = 0.5, what: str = ""
) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last={last!r}")


@pytest.fixture(scope="package")
def onboard(api: Api) -> Callable[[str, str], dict[str, Any]]:
    def _onboard(tenant_id: str, plan: str) -> dict[str, Any]:
        resp = api.post("/tenants", json={"tenantId": tenant_id, "plan": plan})
        assert resp.status_code in (200, 201, 202), resp.text

        def active() -> dict[str, Any] | None:
            body = api.get(f"/tenants/{tenant_id}").json()
            return body if body["status"] == "ACTIVE" else None

        return wait_for(active, timeout=30, what=f"{tenant_id} ACTIVE")

    return _onboard


def bus_probe(stack: EmbeddedStack, name: str, pattern: dict[str, Any]) -> str:
    """A queue (its URL) fed by a rule of the test's own on the default bus. EventBridge
    delivers only as the queue's policy allows (checked locally too)."""
    sqs, events = stack.client("sqs"), stack.client("events")
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    rule_arn = events.put_rule(Name=name, EventPattern=json.dumps(pattern))["RuleArn"]
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}},
            }
        ],
    }
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(policy)})
    events.put_targets(Rule=name, Targets=[{"Id": "probe", "Arn": queue_arn}])
    return str(url)
