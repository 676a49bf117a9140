"""The DynamoDB run repository's keys and request builders (shared by its parts)."""

from __future__ import annotations

import re
from typing import Any

from trainyard_core.models import Run, RunStatus
from trainyard_core.store.dynamodb import DynamoClient
from trainyard_core.store.run_items import (
    StateKey,
    counter_key,
    epoch,
    item_to_run,
    pointer_key,
    state_item,
    upload_key,
)

# A run update may name a status as a placeholder (":queued", ":running", ...)
# without passing its value.
_STATUS_VALUES = {f":{status.value.lower()}": status.value for status in RunStatus}
_VALUE_PLACEHOLDER = re.compile(r":\w+")


class DynamoRunBase(DynamoClient):
    """The tables, keys and request builders every part of the repository uses."""

    def __init__(self, runs_table: str, state_table: str, client: Any | None = None) -> None:
        super().__init__(client)
        self.runs_table = runs_table
        self.state_table = state_table

    # --- keys and requests
    @staticmethod
    def _run_key(tenant_id: str, run_id: str) -> dict[str, Any]:
        return {"tenantId": tenant_id, "runId": run_id}

    def _state_key(self, key: StateKey) -> dict[str, Any]:
        return self._s(state_item(key))

    def _run_update(
        self, run: Run, expression: str, condition: str | None, values: dict[str, Any]
    ) -> dict[str, Any]:
        """A conditional update of the run's item."""
        used = _VALUE_PLACEHOLDER.findall(f"{expression} {condition or ''}")
        statuses = {p: _STATUS_VALUES[p] for p in used if p in _STATUS_VALUES}
        key = self._run_key(run.tenant_id, run.run_id)
        return self._update_request(
            self.runs_table, key, expression, condition, {**statuses, **values}
        )

    def _update_run(
        self, run: Run, expression: str, condition: str, values: dict[str, Any]
    ) -> bool:
        """The update alone; False when its condition refused it."""
        return self._update(**self._run_update(run, expression, condition, values)) is not None

    def _index_query(self, index: str, attribute: str, value: str) -> dict[str, Any]:
        """Query arguments for the runs of one key of a runs table index."""
        return {
            "TableName": self.runs_table,
            "IndexName": index,
            "KeyConditionExpression": f"{attribute} = :v",
            "ExpressionAttributeValues": self._s({":v": value}),
        }

    def _get_state(self, key: StateKey) -> dict[str, Any] | None:
        return self._get(self.state_table, state_item(key))

    def _dedupe_put(self, key: str, ttl: int, now_iso: str) -> dict[str, Any]:
        return self._put_request(
            self.state_table,
            state_item(upload_key(key), expiresAt=ttl),
            # An expired-but-not-yet-deleted marker (TTL is lazy) no longer counts.
            "attribute_not_exists(pk) OR expiresAt <= :now",
            {":now": epoch(now_iso)},
        )

    def _counter_update(
        self, name: str, delta: int, cap: int | None, stamp: str | None = None
    ) -> dict[str, Any]:
        expression = "ADD running :delta"
        values: dict[str, Any] = {":delta": delta}
        if stamp is not None:  # same write, so the fair order costs no extra request
            expression += " SET lastAdmittedAt = :stamp"
            values[":stamp"] = stamp
        condition = None
        if cap is not None:
            condition = "attribute_not_exists(running) OR running < :cap"
            values[":cap"] = cap
        key = state_item(counter_key(name))
        return {
            "Update": self._update_request(self.state_table, key, expression, condition, values)
        }

    def _pointer_delete_if(
        self, tenant_id: str, run_id: str, key: StateKey | None = None
    ) -> list[dict[str, Any]]:
        # Only clear a pointer (the queued run's, or ``key``: the retried run's) if it
        # points at this run. Nobody can move it away from a QUEUED run, so this read
        # cannot go stale before the transaction.
        key = key or pointer_key(tenant_id)
        held = self._get_state(key)
        if held is None or held.get("runId") != run_id:
            return []
        return [
            {
                "Delete": {
                    "TableName": self.state_table,
                    "Key": self._state_key(key),
                    "ConditionExpression": "runId = :rid",
                    "ExpressionAttributeValues": self._s({":rid": run_id}),
                }
            }
        ]


class DynamoRunReader(DynamoClient):
    """One run by its key, and nothing else: what the webhook deliverer may read
    (``dynamodb:GetItem`` on the runs table) to verify a run event."""

    def __init__(self, runs_table: str, client: Any | None = None) -> None:
        import boto3

        # Made now, in one thread: the deliverer's worker threads share it (clients
        # are thread-safe, the session making them is not).
        super().__init__(client or boto3.client("dynamodb"))
        self.runs_table = runs_table

    def get_run(self, tenant_id: str, run_id: str) -> Run | None:
        item = self._get(self.runs_table, {"tenantId": tenant_id, "runId": run_id})
        return item_to_run(item) if item else None
