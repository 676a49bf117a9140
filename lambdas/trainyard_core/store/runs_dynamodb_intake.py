"""Intake's writes on DynamoDB: the QUEUED run created or joined by an upload, its
de-duplication record, rejections. Every write is one transaction or conditional put."""

from __future__ import annotations

from typing import Any

from trainyard_core import limits
from trainyard_core.models import Run, RunStatus, TriggerObject
from trainyard_core.ports.runs import (
    DuplicateUploadError,
    QueuedRunExistsError,
    Rejection,
    RunNotQueuedError,
)
from trainyard_core.store.run_items import (
    bounded_object,
    pointer_key,
    rejection_item,
    rejection_key,
    run_to_item,
    state_item,
)
from trainyard_core.store.runs_dynamodb_base import DynamoRunBase


class QueuedRunWrites(DynamoRunBase):
    # --- intake
    def create_queued_run(
        self,
        run: Run,
        dedupe_key: str | None,
        dedupe_ttl: int,
        replace_pointer: str | None = None,
    ) -> None:
        items: list[dict[str, Any]] = []
        if dedupe_key is not None:
            items.append(self._dedupe_put(dedupe_key, dedupe_ttl, run.queued_at))
        pointer = state_item(pointer_key(run.tenant_id), runId=run.run_id)
        if replace_pointer is None:
            items.append(self._put_request(self.state_table, pointer, "attribute_not_exists(pk)"))
        else:
            # The pointer names a run that is no longer QUEUED: take it over.
            items.append(
                self._put_request(
                    self.state_table,
                    pointer,
                    "attribute_not_exists(pk) OR runId = :stale",
                    {":stale": replace_pointer},
                )
            )
        items.append(
            self._put_request(self.runs_table, run_to_item(run), "attribute_not_exists(runId)")
        )
        codes = self._transact(items)
        if codes is None:
            return
        if dedupe_key is not None and codes[0] == "ConditionalCheckFailed":
            raise DuplicateUploadError(dedupe_key)
        raise QueuedRunExistsError(run.tenant_id)

    def add_to_queued_run(
        self,
        tenant_id: str,
        run_id: str,
        obj: TriggerObject | None,
        dedupe_key: str | None,
        dedupe_ttl: int,
        now_iso: str,
    ) -> None:
        # A run lists its first TRIGGER_OBJECTS_MAX uploads and counts the rest, so
        # no number of uploads can grow its item past 400 KB. Which of the two
        # writes applies is read first and guarded by the condition; losing that
        # race (the list just filled up) costs one more lap.
        full = obj is not None and self._trigger_full(tenant_id, run_id)
        for _ in range(3):
            codes = self._transact(
                self._add_to_queued_items(
                    tenant_id, run_id, obj, dedupe_key, dedupe_ttl, now_iso, full
                )
            )
            if codes is None:
                return
            if dedupe_key is not None and codes[0] == "ConditionalCheckFailed":
                raise DuplicateUploadError(dedupe_key)
            if full or obj is None or not self._trigger_full(tenant_id, run_id):
                break
            full = True
        raise RunNotQueuedError(run_id)

    def _trigger_full(self, tenant_id: str, run_id: str) -> bool:
        item = self._get(self.runs_table, self._run_key(tenant_id, run_id))
        objects = ((item or {}).get("trigger") or {}).get("objects") or []
        return (item or {}).get("status") == RunStatus.QUEUED.value and (
            len(objects) >= limits.TRIGGER_OBJECTS_MAX
        )

    def _add_to_queued_items(
        self,
        tenant_id: str,
        run_id: str,
        obj: TriggerObject | None,
        dedupe_key: str | None,
        dedupe_ttl: int,
        now_iso: str,
        full: bool,
    ) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        if dedupe_key is not None:
            items.append(self._dedupe_put(dedupe_key, dedupe_ttl, now_iso))
        values: dict[str, Any] = {":queued": RunStatus.QUEUED.value, ":now": now_iso}
        expression = "SET updatedAt = :now"
        condition = "#status = :queued"
        if obj is not None and full:
            expression += (
                ", #trigger.objectsOmitted = if_not_exists(#trigger.objectsOmitted, :zero) + :one"
            )
            values.update({":zero": 0, ":one": 1})
        elif obj is not None:
            expression += ", #trigger.objects = list_append(#trigger.objects, :obj)"
            condition += " AND size(#trigger.objects) < :max"
            values[":obj"] = [
                bounded_object(obj).model_dump(by_alias=True, mode="json", exclude_none=True)
            ]
            values[":max"] = limits.TRIGGER_OBJECTS_MAX
        key = self._run_key(tenant_id, run_id)
        update = self._update_request(self.runs_table, key, expression, condition, values)
        items.append({"Update": update})
        return items

    def record_rejection(self, rejection: Rejection, ttl: int) -> None:
        item = state_item(rejection_key(rejection.at), expiresAt=ttl, **rejection_item(rejection))
        self.client.put_item(TableName=self.state_table, Item=self._s(item))
