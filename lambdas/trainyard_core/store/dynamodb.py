"""DynamoDB on the low-level client: (de)serialization, and writes a condition may refuse.

One path for every conditional write, so "the condition refused it" reads the
same everywhere: ``_update`` answers None, ``_transact`` the per-item codes,
``condition_failed`` tells a refused write from any other error.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

CONDITION_FAILED = "ConditionalCheckFailedException"
# BatchGetItem: at most 100 keys a call (and 16 MB a response: what does not fit
# comes back in UnprocessedKeys, like what throttling leaves).
BATCH_GET_MAX_KEYS = 100
BATCH_GET_ATTEMPTS = 8
_PLACEHOLDER = re.compile(r"#(\w+)")


# Numbers are Decimals in DynamoDB (floats are refused); the in-memory twin keeps
# items the same way, so both backends hand back the same values.
def to_dynamo(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {k: to_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_dynamo(v) for v in value]
    return value


def from_dynamo(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_dynamo(v) for v in value]
    return value


def error_code(exc: Exception) -> str:
    return getattr(exc, "response", {}).get("Error", {}).get("Code", "")


def condition_failed(exc: Exception) -> bool:
    return error_code(exc) == CONDITION_FAILED


def batch_get(
    call: Callable[..., dict[str, Any]],
    table: str,
    keys: list[dict[str, Any]],
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> list[dict[str, Any]]:
    """Consistent reads of ``keys`` from ``table`` with BatchGetItem, 100 keys a
    call; UnprocessedKeys (throttling, or the 16 MB response limit) are asked
    again with exponential backoff. ``call`` is a client's or a resource's
    ``batch_get_item``: keys and items stay in its (de)serialization."""
    found: list[dict[str, Any]] = []
    unique = list({repr(sorted(k.items())): k for k in keys}.values())  # no duplicate keys
    for start in range(0, len(unique), BATCH_GET_MAX_KEYS):
        request: dict[str, Any] = {
            table: {"Keys": unique[start : start + BATCH_GET_MAX_KEYS], "ConsistentRead": True}
        }
        for attempt in range(BATCH_GET_ATTEMPTS):
            resp = call(RequestItems=request)
            found.extend(resp.get("Responses", {}).get(table, []))
            unprocessed = resp.get("UnprocessedKeys") or {}
            # Asked again as consistent reads, whatever the answer echoes.
            request = {t: {**v, "ConsistentRead": True} for t, v in unprocessed.items()}
            if not request:
                break
            sleep(min(1.0, 0.05 * 2**attempt))
        else:
            raise RuntimeError("BatchGetItem left keys unprocessed after retries")
    return found


class DynamoClient:
    """Low-level client + (de)serializer so transactions and plain calls share one path."""

    def __init__(self, client: Any | None = None) -> None:
        from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

        self._client = client
        self._ser = TypeSerializer()
        self._de = TypeDeserializer()

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            # Plain boto3 honours AWS_ENDPOINT_URL (moto locally).
            self._client = boto3.client("dynamodb")
        return self._client

    def _s(self, values: dict[str, Any]) -> dict[str, Any]:
        return {k: self._ser.serialize(to_dynamo(v)) for k, v in values.items()}

    def _d(self, item: dict[str, Any]) -> dict[str, Any]:
        return {k: self._de.deserialize(v) for k, v in item.items()}

    def _update_request(
        self,
        table: str,
        key: dict[str, Any],
        expression: str,
        condition: str | None = None,
        values: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """An UpdateItem request (alone or in a transaction). Each ``#name`` stands
        for the attribute ``name``: needed where it is a reserved word, and
        DynamoDB refuses names the expressions do not use."""
        request: dict[str, Any] = {
            "TableName": table,
            "Key": self._s(key),
            "UpdateExpression": expression,
        }
        if condition is not None:
            request["ConditionExpression"] = condition
        names = _PLACEHOLDER.findall(f"{expression} {condition or ''}")
        if names:
            request["ExpressionAttributeNames"] = {f"#{n}": n for n in dict.fromkeys(names)}
        if values:
            request["ExpressionAttributeValues"] = self._s(values)
        return request

    def _put_request(
        self,
        table: str,
        item: dict[str, Any],
        condition: str,
        values: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A conditional PutItem request, for a transaction."""
        request: dict[str, Any] = {
            "TableName": table,
            "Item": self._s(item),
            "ConditionExpression": condition,
        }
        if values:
            request["ExpressionAttributeValues"] = self._s(values)
        return {"Put": request}

    def _get(self, table: str, key: dict[str, Any]) -> dict[str, Any] | None:
        """A consistent GetItem; None if there is no such item."""
        resp = self.client.get_item(TableName=table, Key=self._s(key), ConsistentRead=True)
        return self._d(resp["Item"]) if "Item" in resp else None

    def _update(self, **kwargs: Any) -> dict[str, Any] | None:
        """UpdateItem; None when its condition failed."""
        from botocore.exceptions import ClientError

        try:
            return self.client.update_item(**kwargs)
        except ClientError as exc:
            if condition_failed(exc):
                return None
            raise

    def _transact(self, items: list[dict[str, Any]]) -> list[str] | None:
        """Run a transaction; None on success, the per-item cancellation codes if
        a condition refused it. Other errors propagate."""
        from botocore.exceptions import ClientError

        try:
            self.client.transact_write_items(TransactItems=items)
            return None
        except ClientError as exc:
            if error_code(exc) != "TransactionCanceledException":
                raise
            reasons = getattr(exc, "response", {}).get("CancellationReasons") or []
            codes = [r.get("Code", "None") for r in reasons]
            if any(c not in ("None", "ConditionalCheckFailed") for c in codes):
                raise  # e.g. TransactionConflict / throttling: let the caller retry
            return codes or ["ConditionalCheckFailed"] * len(items)

    def _query_all(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        while True:
            page = self.client.query(**kwargs)
            for item in page.get("Items", []):
                yield self._d(item)
            if not page.get("LastEvaluatedKey"):
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _get_many(self, table: str, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Consistent BatchGetItem of any number of keys (see ``batch_get``)."""
        raw = batch_get(self.client.batch_get_item, table, [self._s(key) for key in keys])
        return [self._d(item) for item in raw]
