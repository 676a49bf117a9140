"""Counted, timed AWS requests: the same accounting for every policy.

Every DynamoDB and SageMaker request a policy makes is counted in a ``Ledger``
and charges a per-call latency to the invocation that makes it (the virtual
clock advances; other invocations may run meanwhile, see ``bench.strands``).

Trainyard's side goes through the ports (``RunRepository``, ``TenantRepository``,
``PipelinePort``), so ``CountingProxy`` wraps the in-memory stores and the
modelled SageMaker account and translates each port call into the DynamoDB
requests that ``store/runs_dynamodb*.py`` / ``store/tenants_dynamodb.py`` make
for it (``RUN_COSTS`` / ``TENANT_COSTS``: GetItem, Query pages, BatchGetItem
per 100 keys, TransactWriteItems...). A method missing from the tables is
charged one request and reported in ``Ledger.unmapped`` so the table can be
fixed, never silently free. The baselines (``bench.policies``) charge the same
ledger for the requests their design needs.

Latencies (assumptions, the same for everyone; ``Latencies``): DynamoDB 5 ms a
request (single-digit milliseconds), SageMaker 100 ms a call, a Lambda
invocation 20 ms of overhead before the handler runs.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

# A DynamoDB Query/Scan page holds at most 1 MB: ~500 run items (~2 KB each with
# their trigger objects) or ~8,000 counter items (~120 B).
RUN_ITEMS_PER_PAGE = 500
COUNTER_ITEMS_PER_PAGE = 8_000
BATCH_GET_KEYS = 100


# The SDK's own retries of a throttled call before the error reaches the code
# (boto3 retries ThrottlingException with exponential backoff in every retry
# mode): modelled as two retries, after 1 s and 2 s, for every policy alike.
SDK_THROTTLE_RETRIES_S = (1.0, 2.0)


@dataclass(frozen=True)
class Latencies:
    dynamodb_s: float = 0.005
    sagemaker_s: float = 0.1
    lambda_invoke_s: float = 0.02


@dataclass
class Ledger:
    """Requests by service and operation; also what each invocation made."""

    ops: Counter[str] = field(default_factory=Counter)  # "dynamodb:GetItem" -> n
    unmapped: Counter[str] = field(default_factory=Counter)
    invocations: int = 0
    # (kind, dynamodb requests, sagemaker requests) per invocation
    per_invocation: list[tuple[str, int, int]] = field(default_factory=list)
    _open: list[tuple[str, int, int]] = field(default_factory=list)

    @property
    def dynamodb(self) -> int:
        return sum(n for op, n in self.ops.items() if op.startswith("dynamodb:"))

    @property
    def sagemaker(self) -> int:
        return sum(n for op, n in self.ops.items() if op.startswith("sagemaker:"))

    @property
    def total(self) -> int:
        return self.dynamodb + self.sagemaker

    def add(self, service: str, op: str, n: int = 1) -> None:
        if n:
            self.ops[f"{service}:{op}"] += n

    def begin(self, kind: str) -> tuple[str, int, int]:
        self.invocations += 1
        return (kind, self.dynamodb, self.sagemaker)

    def end(self, mark: tuple[str, int, int]) -> None:
        kind, ddb, sm = mark
        self.per_invocation.append((kind, self.dynamodb - ddb, self.sagemaker - sm))


Cost = Callable[[tuple[Any, ...], dict[str, Any], Any], list[tuple[str, int]]]


def _pages(n: int, per_page: int) -> int:
    return max(1, math.ceil(n / per_page))


def _len(result: Any) -> int:
    return len(result) if isinstance(result, Collection) else 0


def _one(op: str) -> Cost:
    return lambda a, k, r: [(op, 1)]


def _query_runs(a: tuple[Any, ...], k: dict[str, Any], r: Any) -> list[tuple[str, int]]:
    return [("Query", _pages(_len(r), RUN_ITEMS_PER_PAGE))]


def _queue_depth(a: tuple[Any, ...], k: dict[str, Any], r: Any) -> list[tuple[str, int]]:
    return [("Query", _pages(int(r or 0), RUN_ITEMS_PER_PAGE))]  # Select COUNT, 1 MB pages


def _counters(a: tuple[Any, ...], k: dict[str, Any], r: Any) -> list[tuple[str, int]]:
    tenant_ids = a[0] if a else k.get("tenant_ids")
    if tenant_ids is None:
        # Every counter item (global, plans, every tenant ever admitted): one query.
        items = 1 + len(r.plans) + len(r.tenants)
        return [("Query", _pages(items, COUNTER_ITEMS_PER_PAGE))]
    keys = len(set(tenant_ids))
    return [("Query", 1), ("BatchGetItem", math.ceil(keys / BATCH_GET_KEYS))]


def _batch_get(a: tuple[Any, ...], k: dict[str, Any], r: Any) -> list[tuple[str, int]]:
    # store/dynamodb.batch_get: one BatchGetItem per 100 distinct keys (none for none).
    keys = a[0] if a else k.get("tenant_ids", ())
    return [("BatchGetItem", math.ceil(len(set(keys)) / BATCH_GET_KEYS))]


def _tenant_counters(a: tuple[Any, ...], k: dict[str, Any], r: Any) -> list[tuple[str, int]]:
    return [("Query", _pages(_len(r[0]), COUNTER_ITEMS_PER_PAGE))]  # Limit = the slice


def _set_cursor(a: tuple[Any, ...], k: dict[str, Any], r: Any) -> list[tuple[str, int]]:
    return [("DeleteItem" if (a[0] if a else k.get("after")) is None else "PutItem", 1)]


def _find_by_execution(a: tuple[Any, ...], k: dict[str, Any], r: Any) -> list[tuple[str, int]]:
    return [("Query", 1), ("GetItem", 1 if r is not None else 0)]


def _mark_started(a: tuple[Any, ...], k: dict[str, Any], r: Any) -> list[tuple[str, int]]:
    return [("UpdateItem", 2)]  # the run, then its execution index attributes


def _put_drift(a: tuple[Any, ...], k: dict[str, Any], r: Any) -> list[tuple[str, int]]:
    return [("DeleteItem" if a[1:] == (None, None) else "PutItem", 1)]


# What store/runs_dynamodb*.py sends for each RunRepository method.
RUN_COSTS: dict[str, Cost] = {
    "get_run": _one("GetItem"),
    "list_runs": _one("Query"),
    "find_by_execution": _find_by_execution,
    "queued_runs": _query_runs,
    "queue_depth": _queue_depth,
    "active_runs": _query_runs,
    "due_starts": _query_runs,  # the active index, filtered client-side
    "queued_run_id": _one("GetItem"),
    "schema_baseline": _one("GetItem"),  # the schema-drift baseline pointer, at each start
    "counters": _counters,
    "usage": _one("GetItem"),
    "usage_many": _batch_get,
    "duration_samples": _batch_get,
    "list_rejections": _one("Query"),
    "create_queued_run": _one("TransactWriteItems"),
    "add_to_queued_run": _one("TransactWriteItems"),
    "record_rejection": _one("PutItem"),
    "admit": _one("TransactWriteItems"),
    "set_waiting_reason": _one("UpdateItem"),
    "move_queued_run": _one("UpdateItem"),
    "set_stuck_reason": _one("UpdateItem"),
    "cancel_queued": _one("TransactWriteItems"),
    "mark_started": _mark_started,
    "record_start_failure": _one("UpdateItem"),
    "mark_running": _one("UpdateItem"),
    "finish": _one("TransactWriteItems"),
    "record_results": _one("UpdateItem"),
    "set_counter": _one("UpdateItem"),
    "tenant_counters": _tenant_counters,
    "heal_cursor": _one("GetItem"),
    "set_heal_cursor": _set_cursor,
    "drift_marker": _one("GetItem"),
    "put_drift_marker": _put_drift,
}

# store/tenants_dynamodb.py
TENANT_COSTS: dict[str, Cost] = {
    "get": _one("GetItem"),
    "get_many": _batch_get,
    "find_by_location": _one("Query"),
    "create": _one("PutItem"),
    "save": _one("UpdateItem"),
    "record_ignored_upload": lambda a, k, r: [("GetItem", 1), ("UpdateItem", 1)],
    "list": _one("Scan"),
    "delete": _one("DeleteItem"),
    "pending": _one("Query"),
    "outdated": _one("Scan"),
}


def _list_statuses_cost(a: tuple[Any, ...], k: dict[str, Any], r: Any) -> list[tuple[str, int]]:
    return [("ListPipelineExecutions", _pages(_len(r), 100))]


PIPELINE_COSTS: dict[str, Cost] = {
    "start": _one("StartPipelineExecution"),
    "describe": _one("DescribePipelineExecution"),
    "list_statuses": _list_statuses_cost,
}


class CountingProxy:
    """Forwards every call to ``target``, counts the AWS requests it stands for
    and pauses the calling invocation for their latency (``pause``)."""

    def __init__(
        self,
        target: Any,
        ledger: Ledger,
        service: str,
        costs: dict[str, Cost],
        latency_s: float,
        pause: Callable[[float], None],
    ) -> None:
        self._target = target
        self._ledger = ledger
        self._service = service
        self._costs = costs
        self._latency = latency_s
        self._pause = pause

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if name.startswith("_") or not callable(attr):
            return attr
        cost = self._costs.get(name)

        def call(*args: Any, **kwargs: Any) -> Any:
            error: BaseException | None = None
            result: Any = None
            try:
                result = attr(*args, **kwargs)
            except BaseException as exc:  # a refused request is still a request
                error = exc
            if cost is None:
                self._ledger.unmapped[name] += 1
                spent = [(name, 1)]
            else:
                spent = cost(args, kwargs, result)
            n = 0
            for op, count in spent:
                self._ledger.add(self._service, op, count)
                n += count
            self._pause(n * self._latency)
            if error is not None:
                raise error
            return result

        return call
