"""Where the domain's events go (``trainyard_core/events.py``).

Implemented on boto3 (EventBridge ``PutEvents`` on the default bus); tests and the
benchmark collect them in memory. Publishing is best effort after the state change
it reports has been written: a lost event must never undo or block that change, so
an implementation logs and counts a failure instead of raising.
"""

from __future__ import annotations

from typing import Protocol

from trainyard_core.events import Event


class EventPublisher(Protocol):
    def publish(self, events: list[Event]) -> None: ...


class NullEvents:
    def publish(self, events: list[Event]) -> None:
        return None


class MemoryEvents:
    def __init__(self) -> None:
        self.published: list[Event] = []

    def publish(self, events: list[Event]) -> None:
        self.published.extend(events)
