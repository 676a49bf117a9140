"""moto gaps that IAM enforcement depends on (kept beside the enforcer).

- moto's S3 mis-applies bucket policies (below); the enforcer applies them.
- moto's EventBridge delivers to an SQS target whatever the queue policy says, and
  ignores a target's DeadLetterConfig.

moto's S3 applies a bucket policy to object requests by itself, ignoring every
condition: the standard TLS-only statement (Deny s3:* when aws:SecureTransport is
false) then denies *every* request, although no SDK call to AWS is plain HTTP.
The embedded stack's IAM enforcement (``enforcer.py``) evaluates bucket policies
with their conditions instead, so moto's own check is switched off while the
embedded stack runs; the policies stay stored (GetBucketPolicy still answers).
"""

from __future__ import annotations

import json
import threading
from typing import Any

_lock = threading.Lock()
_original: list[Any] = []


def disable_moto_bucket_policy_check() -> None:
    from moto.iam.access_control import PermissionResult
    from moto.s3.models import FakeBucket

    with _lock:
        if _original:
            return
        _original.append(FakeBucket.get_permission)

        def get_permission(self: Any, action: str, resource: str) -> Any:
            return PermissionResult.NEUTRAL  # decided by the embedded IAM enforcement

        FakeBucket.get_permission = get_permission  # type: ignore[method-assign]


def restore_moto_bucket_policy_check() -> None:
    from moto.s3.models import FakeBucket

    with _lock:
        if _original:
            FakeBucket.get_permission = _original.pop()  # type: ignore[method-assign]


_delivery_original: list[Any] = []


_attributes_original: list[Any] = []


def keep_queue_policies() -> None:
    """moto's SetQueueAttributes clears a queue's Policy unless the call sets it again
    (SQS changes only the attributes given); with queue policies enforced that would
    silently cut a queue off from EventBridge."""
    from moto.sqs.models import Queue

    with _lock:
        if _attributes_original:
            return
        original = Queue._set_attributes
        _attributes_original.append(original)

        def set_attributes(self: Any, attributes: dict[str, Any], now: Any = None) -> None:
            policy = getattr(self, "policy", None)
            original(self, attributes, now)
            if "Policy" not in attributes:
                self.policy = policy

        Queue._set_attributes = set_attributes  # type: ignore[method-assign]


def _sqs_allows(queue: Any, rule_arn: str, account_id: str) -> tuple[bool, str]:
    """Whether ``queue``'s policy lets this rule's events SendMessage (and why not)."""
    from .policy import Request, RequestPrincipal, evaluate_resource_policy

    raw = getattr(queue, "policy", None)
    document = json.loads(raw) if isinstance(raw, str) and raw else None
    if document is None:
        return False, "no queue policy"
    request = Request(
        "sqs:SendMessage",
        queue.queue_arn,
        {
            "aws:SourceArn": rule_arn,
            "aws:SourceAccount": account_id,
            "aws:SecureTransport": "true",
        },
    )
    events = RequestPrincipal(service="events.amazonaws.com")
    if not evaluate_resource_policy(document, request, events):
        return False, "the queue policy does not allow it"
    return True, ""


def _dead_letter(rule: Any, queue: Any, event: Any, why: str, on_denied: Any) -> None:
    """As EventBridge does with an event its SQS target refused (a permission error is
    not retried): into the target's DeadLetterConfig queue, if that queue's policy
    lets the rule send, with the attributes EventBridge sets; otherwise dropped."""
    from moto.sqs import sqs_backends

    target = next((t for t in rule.targets if t.get("Arn") == queue.queue_arn), {})
    dlq_arn = target.get("DeadLetterConfig", {}).get("Arn")
    if not dlq_arn:
        return
    backend = sqs_backends[rule.account_id][rule.region_name]
    dlq = backend.get_queue(dlq_arn.rsplit(":", 1)[-1])
    allowed, dlq_why = _sqs_allows(dlq, rule.arn, rule.account_id)
    if not allowed:
        on_denied(rule.arn, dlq.queue_arn, f"dead-letter queue: {dlq_why}")
        return

    def text(value: str) -> dict[str, str]:
        return {"DataType": "String", "StringValue": value}

    backend.send_message(
        queue_name=dlq.name,
        message_body=json.dumps(event),
        message_attributes={
            "RULE_ARN": text(rule.arn),
            "TARGET_ARN": text(queue.queue_arn),
            "ERROR_CODE": text("NO_PERMISSIONS"),
            "ERROR_MESSAGE": text(f"SendMessage refused: {why}"),
        },
    )


def check_eventbridge_deliveries(on_denied: Any) -> None:
    """EventBridge delivers to an SQS target only if the queue's policy lets
    events.amazonaws.com SendMessage for that rule (aws:SourceArn); moto delivers
    regardless. A denied delivery goes to the target's dead-letter queue if it has one
    (whose policy must allow the rule too), else it is dropped, as AWS drops it (the
    rule's FailedInvocations metric); either way it is reported to
    ``on_denied(rule_arn, queue, why)``."""
    from moto.events.models import Rule
    from moto.sqs import sqs_backends

    keep_queue_policies()
    with _lock:
        if _delivery_original:
            return
        original = Rule._send_to_sqs_queue
        _delivery_original.append(original)

        def send(self: Any, resource_id: str, event: Any, group_id: Any = None) -> None:
            queue = sqs_backends[self.account_id][self.region_name].get_queue(resource_id)
            allowed, why = _sqs_allows(queue, self.arn, self.account_id)
            if not allowed:
                on_denied(self.arn, queue.queue_arn, why)
                _dead_letter(self, queue, event, why, on_denied)
                return
            original(self, resource_id, event, group_id)

        Rule._send_to_sqs_queue = send  # type: ignore[method-assign]


def uncheck_eventbridge_deliveries() -> None:
    from moto.events.models import Rule
    from moto.sqs.models import Queue

    with _lock:
        if _delivery_original:
            Rule._send_to_sqs_queue = _delivery_original.pop()  # type: ignore[method-assign]
        if _attributes_original:
            Queue._set_attributes = _attributes_original.pop()  # type: ignore[method-assign]
