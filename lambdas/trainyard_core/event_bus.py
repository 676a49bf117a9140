"""Data access for Trainyard's own events: EventBridge ``PutEvents`` on the default bus.

At most 10 entries a call and 256 KiB a call (PutEvents' limits, counted as
AWS counts them: source + detail-type + detail + resources). ``PutEvents`` can
succeed as a call and still refuse entries (``FailedEntryCount``): those are
retried once, then logged and counted (``EventsNotPublished``). Publishing never
raises: the state change an event reports is already written (ports/events.py).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import boto3

from trainyard_core import events as catalogue
from trainyard_core import limits
from trainyard_core.events import Event
from trainyard_core.ports.metrics import MetricsSink, NullMetrics

ENTRIES_PER_CALL = 10
BUS = "default"


def entry(event: Event, bus: str = BUS) -> dict[str, Any]:
    return {
        "Source": catalogue.SOURCE,
        "DetailType": event.type.detail_type,
        "Detail": json.dumps(event.envelope(), separators=(",", ":"), default=str),
        "EventBusName": bus,
    }


def entry_size(item: dict[str, Any]) -> int:
    # AWS's own rule for an entry's size (EventBridge user guide, "Calculating
    # PutEvents event entry size"); Time and Resources are not set here.
    return sum(len(str(item.get(k, "")).encode()) for k in ("Source", "DetailType", "Detail"))


class EventBridgePublisher:
    def __init__(
        self,
        client: Any | None = None,
        *,
        bus: str = BUS,
        metrics: MetricsSink | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self._events = client or boto3.client("events")
        self._bus = bus
        self._metrics = metrics or NullMetrics()
        self._log = logger or logging.getLogger("trainyard.events")

    def publish(self, events: list[Event]) -> None:
        entries = []
        for event in events:
            item = entry(event, self._bus)
            if entry_size(item) > limits.MESSAGE_MAX_BYTES:
                self._dropped([item], "entry over 256 KiB")
                continue
            entries.append(item)
        for batch in _batches(entries):
            self._put(batch, retry=True)

    def _put(self, batch: list[dict[str, Any]], *, retry: bool) -> None:
        try:
            answer = self._events.put_events(Entries=batch)
        except Exception as exc:  # the state change is written; do not undo it
            self._dropped(batch, f"{type(exc).__name__}: {exc}")
            return
        if not answer.get("FailedEntryCount"):
            return
        failed = [
            item
            for item, result in zip(batch, answer.get("Entries", []), strict=False)
            if result.get("ErrorCode")
        ]
        if retry and failed:
            self._put(failed, retry=False)
        elif failed:
            self._dropped(failed, "PutEvents refused the entries")

    def _dropped(self, batch: list[dict[str, Any]], reason: str) -> None:
        self._log.error(
            "events not published",
            extra={
                "reason": limits.bounded(reason, limits.REASON_MAX_CHARS),
                "detail_types": [item["DetailType"] for item in batch],
            },
        )
        self._metrics.record("EventsNotPublished", len(batch))


def _batches(entries: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    batches: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    size = 0
    for item in entries:
        item_size = entry_size(item)
        if current and (
            len(current) == ENTRIES_PER_CALL or size + item_size > limits.MESSAGE_MAX_BYTES
        ):
            batches.append(current)
            current, size = [], 0
        current.append(item)
        size += item_size
    if current:
        batches.append(current)
    return batches
