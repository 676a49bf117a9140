"""Trainyard's events on EventBridge's default bus (event_bus.py), against moto: what
PutEvents accepts reaches a rule's target, in batches AWS accepts, and what it
refuses is retried once, then counted; publishing never raises."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from trainyard_core import events as catalogue
from trainyard_core import limits
from trainyard_core.event_bus import ENTRIES_PER_CALL, EventBridgePublisher, entry, entry_size
from trainyard_core.events import Event

from trainyard.testing.scheduling import RecordingMetrics

REGION = "us-east-1"


class Spy:
    """The events client, with each PutEvents call's entries kept; ``refuse`` names
    detail-types PutEvents answers as refused (FailedEntryCount) ``times`` times."""

    def __init__(self, client: Any, refuse: set[str] | None = None, times: int = 1) -> None:
        self.client = client
        self.calls: list[list[dict[str, Any]]] = []
        self.refuse = refuse or set()
        self.times = times

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append(list(Entries))
        if self.refuse and self.times > 0:
            self.times -= 1
            accepted = [e for e in Entries if e["DetailType"] not in self.refuse]
            answer = self.client.put_events(Entries=accepted) if accepted else {"Entries": []}
            results = iter(answer["Entries"])
            entries = [
                {"ErrorCode": "InternalFailure", "ErrorMessage": "refused"}
                if e["DetailType"] in self.refuse
                else next(results)
                for e in Entries
            ]
            return {"FailedEntryCount": len(Entries) - len(accepted), "Entries": entries}
        return self.client.put_events(Entries=Entries)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, str]]:
    """An events client and the URL of a queue a rule (source trainyard) delivers to."""
    for key, value in (
        ("AWS_DEFAULT_REGION", REGION),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ):
        monkeypatch.setenv(key, value)
    with mock_aws():
        events = boto3.client("events", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        url = sqs.create_queue(QueueName="trainyard-events")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        events.put_rule(Name="all-trainyard", EventPattern=json.dumps({"source": ["trainyard"]}))
        events.put_targets(Rule="all-trainyard", Targets=[{"Id": "q", "Arn": arn}])
        yield events, url


def received(url: str) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs", region_name=REGION)
    out: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not batch:
            return out
        for message in batch:
            out.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def event(i: int, kind: catalogue.EventType = catalogue.RUN_QUEUED, pad: int = 0) -> Event:
    detail = {"runId": f"{i:032x}", "status": "QUEUED", "padding": "x" * pad}
    return Event(kind, "acme", "2026-03-10T12:00:00.000Z", detail)


def test_every_event_reaches_a_rule_on_the_default_bus_with_its_versioned_detail(aws) -> None:
    client, url = aws
    spy = Spy(client)
    EventBridgePublisher(spy).publish([event(i) for i in range(25)])

    assert [len(call) for call in spy.calls] == [10, 10, 5]  # PutEvents takes 10 a call
    got = received(url)
    assert sorted(e["detail"]["runId"] for e in got) == [f"{i:032x}" for i in range(25)]
    first = got[0]
    assert first["source"] == "trainyard"
    assert first["detail-type"] == "Trainyard Run Queued"
    assert first["detail"]["version"] == catalogue.DETAIL_VERSION
    assert first["detail"]["event"] == "run.queued"
    assert first["detail"]["tenantId"] == "acme"


def test_calls_stay_under_256_kib_however_few_entries(aws) -> None:
    client, url = aws
    spy = Spy(client)
    big = [event(i, pad=100 * 1024) for i in range(5)]  # ~100 KiB each
    EventBridgePublisher(spy).publish(big)
    sizes = [sum(entry_size(e) for e in call) for call in spy.calls]
    assert all(size <= limits.MESSAGE_MAX_BYTES for size in sizes), sizes
    assert [len(call) for call in spy.calls] == [2, 2, 1]
    assert len(received(url)) == 5


def test_refused_entries_are_retried_once_and_then_delivered(aws) -> None:
    client, url = aws
    spy = Spy(client, refuse={catalogue.RUN_FAILED.detail_type}, times=1)
    metrics = RecordingMetrics()
    batch = [event(0), event(1, catalogue.RUN_FAILED), event(2)]
    EventBridgePublisher(spy, metrics=metrics).publish(batch)
    assert [len(call) for call in spy.calls] == [3, 1]  # only the refused one again
    assert spy.calls[1][0]["DetailType"] == catalogue.RUN_FAILED.detail_type
    assert sorted(e["detail"]["runId"] for e in received(url)) == [f"{i:032x}" for i in range(3)]
    assert metrics.values("EventsNotPublished") == []


def test_entries_refused_twice_are_counted_and_nothing_raises(aws) -> None:
    client, url = aws
    spy = Spy(client, refuse={catalogue.RUN_FAILED.detail_type}, times=2)
    metrics = RecordingMetrics()
    EventBridgePublisher(spy, metrics=metrics).publish([event(0), event(1, catalogue.RUN_FAILED)])
    assert len(spy.calls) == 2  # one retry, no more
    assert [e["detail"]["runId"] for e in received(url)] == [f"{0:032x}"]
    assert metrics.values("EventsNotPublished") == [1]


def test_an_unavailable_bus_or_an_oversized_event_is_counted_not_raised(aws) -> None:
    class Down:
        def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
            raise ConnectionError("endpoint unreachable")

    metrics = RecordingMetrics()
    EventBridgePublisher(Down(), metrics=metrics).publish([event(0), event(1)])
    assert metrics.values("EventsNotPublished") == [2]

    client, url = aws
    spy = Spy(client)
    huge = event(9, pad=limits.MESSAGE_MAX_BYTES)
    assert entry_size(entry(huge)) > limits.MESSAGE_MAX_BYTES
    metrics = RecordingMetrics()
    EventBridgePublisher(spy, metrics=metrics).publish([huge, event(1)])
    assert [len(call) for call in spy.calls] == [1]  # AWS would refuse the whole call
    assert metrics.values("EventsNotPublished") == [1]
    assert [e["detail"]["runId"] for e in received(url)] == [f"{1:032x}"]


def test_the_default_bus_is_where_entries_go() -> None:
    item = entry(event(0))
    assert item["EventBusName"] == "default" and item["Source"] == catalogue.SOURCE
    assert ENTRIES_PER_CALL == 10
