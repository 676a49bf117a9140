"""Runs and scheduler state on DynamoDB (layout: ``run_items.py``).

Every transition is one conditional write or one transaction, so duplicate or
concurrent callers can never double-apply one.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from trainyard_core import limits
from trainyard_core.lineage import RunLineage
from trainyard_core.models import Run, RunRetry, RunStatus, WaitingFor
from trainyard_core.ports.runs import (
    GLOBAL,
    TENANT_PREFIX,
    AdmitOutcome,
    Caps,
    Counters,
    Rejection,
    RetryQueuedError,
    RunNotFoundError,
    RunNotRetryableError,
    plan_counter,
    tenant_counter,
)
from trainyard_core.store.run_items import (
    COUNTER_PK,
    REJECTION_PK,
    bounded_data_report,
    bounded_metrics,
    bounded_waiting,
    counter_key,
    counters_from,
    drift_key,
    duration_slot,
    durations_from,
    durations_key,
    heal_cursor_key,
    is_due,
    item_to_run,
    pointer_key,
    rejection_from,
    retry_pointer_key,
    retry_value,
    run_token,
    schema_baseline_key,
    state_item,
    usage_from,
    usage_key,
    wrote_schema,
)
from trainyard_core.store.runs_dynamodb_intake import QueuedRunWrites
from trainyard_core.store.tokens import encode_token
from trainyard_core.training import RunTraining, TrainingChoice


class DynamoRunRepository(QueuedRunWrites):
    """Runs and scheduler state: reads, dispatch, completion and counters here;
    intake's writes in ``runs_dynamodb_intake``, keys in ``runs_dynamodb_base``."""

    # --- reads
    def get_run(self, tenant_id: str, run_id: str) -> Run | None:
        item = self._get(self.runs_table, self._run_key(tenant_id, run_id))
        return item_to_run(item) if item else None

    def list_runs(
        self,
        tenant_id: str,
        limit: int = 50,
        next_token: str | None = None,
        *,
        consistent: bool = False,
    ) -> tuple[list[Run], str | None]:
        kwargs: dict[str, Any] = {
            "TableName": self.runs_table,
            "KeyConditionExpression": "tenantId = :t",
            "ExpressionAttributeValues": self._s({":t": tenant_id}),
            "ScanIndexForward": False,  # run ids are time-ordered: newest first
            "Limit": limit,
            "ConsistentRead": consistent,
        }
        if next_token:
            kwargs["ExclusiveStartKey"] = self._s(run_token(tenant_id, next_token))
        page = self.client.query(**kwargs)
        runs = [item_to_run(self._d(i)) for i in page.get("Items", [])]
        last = page.get("LastEvaluatedKey")
        token = encode_token(self._d(last)) if last else None
        return runs, token

    def find_by_execution(self, execution_arn: str) -> Run | None:
        items = list(
            self._query_all(**self._index_query("byExecution", "executionArn", execution_arn))
        )
        if not items:
            return None
        # The GSI is eventually consistent; read the base item for the truth.
        return self.get_run(items[0]["tenantId"], items[0]["runId"])

    def queued_runs(self, plan: str, limit: int | None = None) -> list[Run]:
        kwargs = self._index_query("byQueue", "queuePlan", plan)
        if limit is not None:
            kwargs["Limit"] = limit  # only the head of the queue is read (and paid for)
        runs: list[Run] = []
        for item in self._query_all(**kwargs):
            runs.append(item_to_run(item))
            if limit is not None and len(runs) >= limit:
                break
        return runs

    def queue_depth(self, plan: str) -> int:
        kwargs = {**self._index_query("byQueue", "queuePlan", plan), "Select": "COUNT"}
        total = 0
        while True:
            page = self.client.query(**kwargs)
            total += int(page.get("Count", 0))
            if not page.get("LastEvaluatedKey"):
                return total
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _active_items(self, plan: str) -> list[dict[str, Any]]:
        return list(self._query_all(**self._index_query("byActive", "activePlan", plan)))

    def active_runs(self, plan: str) -> list[Run]:
        return [item_to_run(i) for i in self._active_items(plan)]

    def due_starts(self, plan: str, now_iso: str) -> list[Run]:
        return [item_to_run(i) for i in self._active_items(plan) if is_due(i, now_iso)]

    def queued_run_id(self, tenant_id: str) -> str | None:
        item = self._get_state(pointer_key(tenant_id))
        return item.get("runId") if item else None

    def counters(self, tenant_ids: Collection[str] | None = None) -> Counters:
        if tenant_ids is None:
            items = list(
                self._query_all(
                    TableName=self.state_table,
                    KeyConditionExpression="pk = :pk",
                    ExpressionAttributeValues=self._s({":pk": COUNTER_PK}),
                    ConsistentRead=True,
                )
            )
            return counters_from(items)
        # "global" and "plan#..." sort before "tenant#": one small query, and the
        # tenants asked for by key, so the read does not grow with the tenant count.
        items = list(
            self._query_all(
                TableName=self.state_table,
                KeyConditionExpression="pk = :pk AND sk < :tenants",
                ExpressionAttributeValues=self._s({":pk": COUNTER_PK, ":tenants": TENANT_PREFIX}),
                ConsistentRead=True,
            )
        )
        keys = [state_item(counter_key(tenant_counter(t))) for t in set(tenant_ids)]
        items.extend(self._get_many(self.state_table, keys))
        return counters_from(items)

    def usage(self, tenant_id: str, month: str) -> dict[str, float]:
        return usage_from(self._get_state(usage_key(tenant_id, month)) or {})

    def usage_many(self, tenant_ids: Collection[str], month: str) -> dict[str, dict[str, float]]:
        wanted = sorted(set(tenant_ids))
        keys = [state_item(usage_key(t, month)) for t in wanted]
        found = {str(i["pk"]).split("#", 1)[1]: i for i in self._get_many(self.state_table, keys)}
        return {t: usage_from(found.get(t, {})) for t in wanted}

    def duration_samples(self, plans: Collection[str]) -> dict[str, list[float]]:
        keys = [state_item(durations_key(p)) for p in sorted(set(plans))]
        found = {str(i["sk"]): i for i in self._get_many(self.state_table, keys)} if keys else {}
        return {p: durations_from(found.get(p)) for p in sorted(set(plans))}

    def list_rejections(self, limit: int = 50) -> list[Rejection]:
        resp = self.client.query(
            TableName=self.state_table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues=self._s({":pk": REJECTION_PK}),
            ScanIndexForward=False,
            Limit=limit,
        )
        return [rejection_from(self._d(i)) for i in resp.get("Items", [])]

    # --- dispatch
    def admit(self, run: Run, caps: Caps, now_iso: str, next_attempt_at: str) -> AdmitOutcome:
        run_update = self._run_update(
            run,
            "SET #status = :starting, updatedAt = :now, nextAttemptAt = :next, "
            "activePlan = :plan, activeKey = :akey "
            "REMOVE queuePlan, queueKey, failureReason, waitingFor",
            "#status = :queued",
            {
                ":now": now_iso,
                ":next": next_attempt_at,
                ":plan": run.plan,
                ":akey": f"{run.tenant_id}#{run.run_id}",
            },
        )
        items = [
            {"Update": run_update},
            self._counter_update(GLOBAL, 1, caps.global_cap),
            self._counter_update(plan_counter(run.plan), 1, caps.plan_cap),
            self._counter_update(tenant_counter(run.tenant_id), 1, caps.tenant_cap, now_iso),
            *self._pointer_delete_if(run.tenant_id, run.run_id),
            *self._retry_pointer_delete_if(run),
        ]
        codes = self._transact(items)
        if codes is None:
            return AdmitOutcome.ADMITTED
        if codes[0] == "ConditionalCheckFailed":
            return AdmitOutcome.NOT_QUEUED
        if any(c == "ConditionalCheckFailed" for c in codes[1:4]):
            return AdmitOutcome.CAP_REACHED
        return AdmitOutcome.NOT_QUEUED

    def set_waiting_reason(self, run: Run, reason: WaitingFor | None) -> None:
        if reason is None:
            self._update_run(run, "REMOVE waitingFor", "#status = :queued", {})
        else:
            self._update_run(
                run, "SET waitingFor = :w", "#status = :queued", {":w": _waiting_value(reason)}
            )

    def move_queued_run(self, run: Run, plan: str) -> bool:
        # queueKey (queued time) stays: the run keeps its seniority in the new queue.
        return self._update_run(
            run, "SET #plan = :plan, queuePlan = :plan", "#status = :queued", {":plan": plan}
        )

    def set_stuck_reason(self, run: Run, reason: str) -> None:
        # updatedAt is left alone: it dates the last state change, not this note.
        self._update_run(
            run,
            "SET failureReason = :r",
            "#status IN (:starting, :running)",
            {":r": limits.failure_reason(reason)},
        )

    def cancel_queued(self, run: Run, reason: str, now_iso: str) -> bool:
        cancel = self._run_update(
            run,
            "SET #status = :failed, failureReason = :r, endedAt = :now, "
            "updatedAt = :now REMOVE queuePlan, queueKey, waitingFor",
            "#status = :queued",
            {":r": limits.failure_reason(reason), ":now": now_iso},
        )
        items = [
            {"Update": cancel},
            *self._pointer_delete_if(run.tenant_id, run.run_id),
            *self._retry_pointer_delete_if(run),
        ]
        return self._transact(items) is None

    def mark_started(
        self,
        run: Run,
        execution_arn: str,
        started_at: str,
        instance_type: str,
        instance_count: int,
        training: RunTraining | None = None,
        lineage: RunLineage | None = None,
        retry: RunRetry | None = None,
    ) -> bool:
        values: dict[str, Any] = {
            ":arn": execution_arn,
            ":at": started_at,
            ":it": instance_type,
            ":ic": instance_count,
        }
        record = ""
        if training is not None:
            record = ", #training = :tr"
            values[":tr"] = training.model_dump(by_alias=True, mode="json", exclude_none=True)
        if lineage is not None:
            record += ", lineage = :ln"
            values[":ln"] = lineage.model_dump(by_alias=True, mode="json", exclude_none=True)
        if retry is not None and run.retries:
            # The latest entry, by its index: the run's own list (bounded).
            record += f", retries[{len(run.retries) - 1}] = :rt"
            values[":rt"] = retry_value(retry)
        if self._update_run(
            run,
            "SET #status = :running, executionArn = :arn, startedAt = :at, "
            f"instanceType = :it, instanceCount = :ic, updatedAt = :at{record} "
            "REMOVE nextAttemptAt, failureReason, waitingFor",
            "#status = :starting",
            values,
        ):
            return True
        # It moved on already (an Executing event beat us): still record what this
        # execution trains with, its instances (the cost) and its retry entry, unless
        # the run belongs to another execution by now.
        values.pop(":at")
        self._update_run(
            run,
            f"SET executionArn = :arn, instanceType = :it, instanceCount = :ic{record}",
            "attribute_exists(runId) AND "
            "(attribute_not_exists(executionArn) OR executionArn = :arn)",
            values,
        )
        return False

    def set_training_request(
        self, tenant_id: str, run_id: str, choice: TrainingChoice, now_iso: str
    ) -> bool:
        request = self._update_request(
            self.runs_table,
            self._run_key(tenant_id, run_id),
            "SET trainingRequest = :tr, updatedAt = :now",
            "#status = :queued",
            {
                ":queued": RunStatus.QUEUED.value,
                ":tr": choice.model_dump(by_alias=True, mode="json", exclude_none=True),
                ":now": now_iso,
            },
        )
        return self._update(**request) is not None

    def record_start_failure(
        self, run: Run, attempts: int, next_attempt_at: str, reason: WaitingFor, now_iso: str
    ) -> bool:
        return self._update_run(
            run,
            "SET startAttempts = :n, nextAttemptAt = :next, waitingFor = :w, updatedAt = :now",
            "#status = :starting AND attribute_not_exists(executionArn)",
            {
                ":n": attempts,
                ":next": next_attempt_at,
                ":w": _waiting_value(reason),
                ":now": now_iso,
            },
        )

    # --- retry
    def requeue_for_retry(self, run: Run, retry: RunRetry, now_iso: str, plan: str) -> None:
        # The failed attempt's results go (a restart may register nothing); its
        # time and cost stay, to add the next execution's to.
        requeue = self._run_update(
            run,
            "SET #status = :queued, queuedAt = :now, updatedAt = :now, queuePlan = :plan, "
            "#plan = :plan, queueKey = :qkey, "
            "retries = list_append(if_not_exists(retries, :none), :rt), startAttempts = :zero, "
            "#metrics = :nometrics "
            "REMOVE failureReason, endedAt, executionArn, startedAt, waitingFor, nextAttemptAt, "
            "modelPackageArn, dataReport",
            # Every retry checks the count it read: two concurrent retries, one wins.
            "#status = :failed AND (attribute_not_exists(retries) OR size(retries) = :n)",
            {
                ":now": now_iso,
                ":plan": plan,
                ":nometrics": {},
                ":qkey": f"{now_iso}#{run.run_id}",
                ":none": [],
                ":rt": [retry_value(retry)],
                ":zero": 0,
                ":n": len(run.retries),
            },
        )
        pointer = state_item(retry_pointer_key(run.tenant_id), runId=run.run_id)
        held = self._get_state(retry_pointer_key(run.tenant_id))
        condition, values = "attribute_not_exists(pk)", {}
        if held is not None and not self._queued_elsewhere(run.tenant_id, held["runId"]):
            # The pointer names a run that has left QUEUED: take it over.
            condition, values = (
                "attribute_not_exists(pk) OR runId = :stale",
                {":stale": held["runId"]},
            )
        items = [
            {"Update": requeue},
            self._put_request(self.state_table, pointer, condition, values),
        ]
        codes = self._transact(items)
        if codes is None:
            return
        if codes[0] == "ConditionalCheckFailed":
            raise RunNotRetryableError(run.run_id)
        raise RetryQueuedError(run.tenant_id)

    def _queued_elsewhere(self, tenant_id: str, run_id: str) -> bool:
        item = self._get(self.runs_table, self._run_key(tenant_id, run_id))
        return bool(item) and (item or {}).get("status") == RunStatus.QUEUED.value

    def _retry_pointer_delete_if(self, run: Run) -> list[dict[str, Any]]:
        if not run.retries:  # never retried: no pointer to read
            return []
        return self._pointer_delete_if(run.tenant_id, run.run_id, retry_pointer_key(run.tenant_id))

    # --- status
    def mark_running(self, run: Run, execution_arn: str, now_iso: str) -> bool:
        return self._update_run(
            run,
            "SET #status = :running, executionArn = if_not_exists(executionArn, :arn), "
            "startedAt = if_not_exists(startedAt, :now), updatedAt = :now "
            "REMOVE failureReason, waitingFor",
            "#status = :starting",
            {":arn": execution_arn, ":now": now_iso},
        )

    def finish(
        self,
        run: Run,
        status: RunStatus,
        *,
        ended_at: str,
        month: str,
        training_seconds: float,
        cost_usd: float,
        failure_reason: str | None,
        execution_arn: str | None = None,
        duration_sample: float | None = None,
        totals: tuple[float, float] | None = None,
    ) -> bool:
        total_seconds, total_cost = totals or (training_seconds, cost_usd)
        values: dict[str, Any] = {
            ":status": status.value,
            ":ended": ended_at,
            ":secs": total_seconds,
            ":cost": total_cost,
        }
        expression = (
            "SET #status = :status, endedAt = :ended, updatedAt = :ended, "
            "trainingSeconds = :secs, costEstimateUsd = :cost"
        )
        if failure_reason:
            expression += ", failureReason = :reason"
            values[":reason"] = limits.failure_reason(failure_reason)
        if execution_arn:
            expression += ", executionArn = if_not_exists(executionArn, :arn)"
            values[":arn"] = execution_arn
        expression += " REMOVE activePlan, activeKey, nextAttemptAt, waitingFor"
        if not failure_reason:
            expression += ", failureReason"
        # Only a slot holder may finish: duplicates and late events are no-ops.
        finish = self._run_update(run, expression, "#status IN (:starting, :running)", values)
        usage = self._update_request(
            self.state_table,
            state_item(usage_key(run.tenant_id, month)),
            "ADD runs :one, trainingSeconds :secs, costEstimateUsd :cost",
            None,
            # A retried run was counted when it first ended.
            {":one": 0 if run.retries else 1, ":secs": training_seconds, ":cost": cost_usd},
        )
        items = [
            {"Update": finish},
            self._counter_update(GLOBAL, -1, None),
            self._counter_update(plan_counter(run.plan), -1, None),
            self._counter_update(tenant_counter(run.tenant_id), -1, None),
            {"Update": usage},
        ]
        if duration_sample is not None:
            # Same transaction, so the estimate costs the completion no extra request.
            sample = self._update_request(
                self.state_table,
                state_item(durations_key(run.plan)),
                f"SET #{duration_slot(run.run_id)} = :d",
                None,
                {":d": round(duration_sample, 3)},
            )
            items.append({"Update": sample})
        if status == RunStatus.SUCCEEDED and wrote_schema(run):
            # The tenant's schema-drift baseline from now on, in the same transaction.
            pointer = state_item(schema_baseline_key(run.tenant_id), runId=run.run_id)
            items.append({"Put": {"TableName": self.state_table, "Item": self._s(pointer)}})
        return self._transact(items) is None

    def schema_baseline(self, tenant_id: str) -> str | None:
        # Strongly consistent: the tenant's previous run may have ended just now
        # (dispatch follows each completion batch).
        item = self._get(self.state_table, state_item(schema_baseline_key(tenant_id)))
        run_id = (item or {}).get("runId")
        return run_id if isinstance(run_id, str) else None

    # --- recorder
    def record_results(
        self,
        tenant_id: str,
        run_id: str,
        metrics: dict[str, float],
        model_package_arn: str | None,
        now_iso: str,
        data_report: dict[str, Any] | None = None,
    ) -> Run:
        values: dict[str, Any] = {":m": bounded_metrics(metrics), ":now": now_iso}
        expression = "SET #metrics = :m, updatedAt = :now"  # metrics: a reserved word
        if model_package_arn:
            expression += ", modelPackageArn = :arn"
            values[":arn"] = limits.bounded(model_package_arn, limits.ARN_MAX_CHARS)
        if data_report is not None:
            expression += ", dataReport = :report"
            values[":report"] = bounded_data_report(data_report)
        key = self._run_key(tenant_id, run_id)
        resp = self._update(
            **self._update_request(
                self.runs_table, key, expression, "attribute_exists(runId)", values
            ),
            ReturnValues="ALL_NEW",
        )
        if resp is None:
            raise RunNotFoundError(f"run {tenant_id}/{run_id} does not exist")
        return item_to_run(self._d(resp["Attributes"]))

    # --- reconcile
    def set_counter(self, name: str, value: int, expected: int | None) -> bool:
        condition = None
        values: dict[str, Any] = {":v": value}
        if expected is not None:
            condition = (
                "running = :e" if expected else ("attribute_not_exists(running) OR running = :e")
            )
            values[":e"] = expected
        key = state_item(counter_key(name))
        request = self._update_request(self.state_table, key, "SET running = :v", condition, values)
        return self._update(**request) is not None

    def tenant_counters(self, after: str | None, limit: int) -> tuple[dict[str, int], str | None]:
        # The counter partition from the cursor on: "global" and "plan#..." sort
        # before "tenant#", so every key after it is a tenant counter; Limit bounds
        # the items read (and paid for).
        start = tenant_counter(after) if after is not None else TENANT_PREFIX
        kwargs: dict[str, Any] = {
            "TableName": self.state_table,
            "KeyConditionExpression": "pk = :pk AND sk > :from",
            "ExpressionAttributeValues": self._s({":pk": COUNTER_PK, ":from": start}),
            "ConsistentRead": True,
            "Limit": limit,
        }
        items: list[dict[str, Any]] = []
        more = False
        while len(items) < limit:
            page = self.client.query(**kwargs)
            items.extend(self._d(i) for i in page.get("Items", []))
            more = bool(page.get("LastEvaluatedKey"))
            if not more:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
            kwargs["Limit"] = limit - len(items)
        values = counters_from(items[:limit]).tenants
        return values, (max(values) if more and values else None)

    def heal_cursor(self) -> str | None:
        item = self._get_state(heal_cursor_key())
        return str(item["after"]) if item else None

    def set_heal_cursor(self, after: str | None) -> None:
        if after is None:
            self.client.delete_item(
                TableName=self.state_table, Key=self._state_key(heal_cursor_key())
            )
            return
        self.client.put_item(
            TableName=self.state_table, Item=self._s(state_item(heal_cursor_key(), after=after))
        )

    def drift_marker(self, name: str) -> tuple[int, int] | None:
        item = self._get_state(drift_key(name))
        return (int(item["observed"]), int(item["actual"])) if item else None

    def put_drift_marker(self, name: str, observed: int | None, actual: int | None) -> None:
        if observed is None or actual is None:
            self.client.delete_item(
                TableName=self.state_table, Key=self._state_key(drift_key(name))
            )
            return
        self.client.put_item(
            TableName=self.state_table,
            Item=self._s(state_item(drift_key(name), observed=observed, actual=actual)),
        )


def _waiting_value(reason: WaitingFor) -> dict[str, str]:
    bounded = bounded_waiting(reason)
    assert bounded is not None
    return bounded.model_dump(mode="json")
