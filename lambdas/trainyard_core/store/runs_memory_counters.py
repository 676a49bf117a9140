"""The in-memory run repository's reconcile side: slot counters as reconcile
heals them, the drift markers and the healing cursor (``run_items.py`` layout)."""

from __future__ import annotations

import threading
from typing import Any

from trainyard_core.ports.runs import TENANT_PREFIX, tenant_counter
from trainyard_core.store.run_items import counter_key, drift_key, heal_cursor_key


class InMemoryCounterState:
    """Mixed into ``InMemoryRunRepository`` (its lock, state and counter index)."""

    _lock: threading.RLock
    _state: dict[tuple[str, str], dict[str, Any]]
    _counter_names: set[str]
    _slot_counter_names: set[str]

    def _note_counter(self, name: str) -> None:
        self._counter_names.add(name)
        if not name.startswith(TENANT_PREFIX):
            self._slot_counter_names.add(name)

    def _counter(self, name: str) -> int:
        return int(self._state.get(counter_key(name), {}).get("running", 0))

    def set_counter(self, name: str, value: int, expected: int | None) -> bool:
        with self._lock:
            if expected is not None and self._counter(name) != expected:
                return False
            self._state.setdefault(counter_key(name), {})["running"] = value
            self._note_counter(name)
            return True

    def tenant_counters(self, after: str | None, limit: int) -> tuple[dict[str, int], str | None]:
        with self._lock:
            start = tenant_counter(after) if after is not None else TENANT_PREFIX
            names = sorted(n for n in self._counter_names if n.startswith(TENANT_PREFIX))
            page = [n for n in names if n > start][: limit + 1]
            values = {n[len(TENANT_PREFIX) :]: self._counter(n) for n in page[:limit]}
        more = len(page) > limit
        return values, (max(values) if more and values else None)

    def heal_cursor(self) -> str | None:
        with self._lock:
            item = self._state.get(heal_cursor_key())
        return str(item["after"]) if item else None

    def set_heal_cursor(self, after: str | None) -> None:
        with self._lock:
            if after is None:
                self._state.pop(heal_cursor_key(), None)
            else:
                self._state[heal_cursor_key()] = {"after": after}

    def drift_marker(self, name: str) -> tuple[int, int] | None:
        with self._lock:
            item = self._state.get(drift_key(name))
        return (int(item["observed"]), int(item["actual"])) if item else None

    def put_drift_marker(self, name: str, observed: int | None, actual: int | None) -> None:
        with self._lock:
            if observed is None or actual is None:
                self._state.pop(drift_key(name), None)
            else:
                self._state[drift_key(name)] = {"observed": observed, "actual": actual}
