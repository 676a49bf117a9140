"""The deliverer sends only events Trainyard's own records confirm (anyone allowed
PutEvents can put source ``trainyard``), with the body built from the record; a
refused event is recorded, counted and never retried. A fault on the last
attempt still settles the delivery as failed."""

from __future__ import annotations

import json
from typing import Any

import pytest
from trainyard_core import events as catalogue
from trainyard_core.config import WebhookSettings
from trainyard_core.model_versions import ModelVersion
from trainyard_core.models import RunStatus

from tests.unit.test_webhooks import PACKAGES, RUN_ID, _world, ended_run
from trainyard.testing.webhooks import MemoryModels, MemoryRuns

URL = "https://hooks.example.com/in"


class Counted:
    def __init__(self) -> None:
        self.counts: dict[str, float] = {}

    def record(
        self, name: str, value: float, unit: str = "Count", dimensions: dict[str, str] | None = None
    ) -> None:
        self.counts[name] = self.counts.get(name, 0) + value


def _message(
    kind: catalogue.EventType, detail: dict[str, Any], tenant: str = "acme", event_id: str = "e-1"
) -> str:
    return json.dumps(
        {
            "id": event_id,
            "source": "trainyard",
            "detail-type": kind.detail_type,
            "detail": {
                **detail,
                "version": "1",
                "event": kind.name,
                "tenantId": tenant,
                "occurredAt": "2026-01-01T00:10:00.000Z",
            },
        }
    )


def _package(version: int = 3, status: str = "Approved", group: str = "trainyard-acme") -> Any:
    return ModelVersion(
        version=version,
        model_package_arn=f"{PACKAGES}{group}/{version}",
        model_package_group_name=group,
        status=status,  # type: ignore[arg-type]
        metrics={"auc": 0.93},
        run_id=RUN_ID,
        tenant_id="acme",
        created_at="2026-01-01T00:09:00.000Z",
        decided_by="arn:aws:sts::123456789012:assumed-role/Reviewers/alice",
        reason="beats production",
    )


def _deliverer(runs: MemoryRuns, models: MemoryModels | None = None) -> Any:
    service, deliverer, sender, store = _world(runs=runs, models=models)
    deliverer.metrics = Counted()
    service.put("acme", URL, None)
    return deliverer, sender, store


FORGERIES = [
    # A run the tenant never had.
    (catalogue.RUN_SUCCEEDED, {"runId": "f" * 32, "status": "SUCCEEDED"}, "has no run"),
    # A real run, a status it does not have (SUCCEEDED, claimed FAILED).
    (catalogue.RUN_FAILED, {"runId": RUN_ID, "status": "FAILED"}, "is SUCCEEDED"),
    (catalogue.RUN_STARTED, {"runId": "../x"}, "without a valid runId"),
    # Its refused record stays small whatever the forger put in.
    (catalogue.RUN_QUEUED, {"runId": "a" * 200_000}, "without a valid runId"),
    # A model package: not in the tenant's group, missing, not approved.
    (
        catalogue.MODEL_APPROVED,
        {"modelPackageArn": f"{PACKAGES}trainyard-other/3"},
        "not a version in group trainyard-acme",
    ),
    (
        catalogue.MODEL_APPROVED,
        {"modelPackageArn": PACKAGES.replace("123456789012", "999999999999") + "trainyard-acme/3"},
        "not a version in group",
    ),
    (catalogue.MODEL_REGISTERED, {"modelPackageArn": f"{PACKAGES}trainyard-acme/9"}, "no model"),
    (catalogue.MODEL_APPROVED, {"modelPackageArn": f"{PACKAGES}trainyard-acme/4"}, "is Rejected"),
    (catalogue.MODEL_REJECTED, {"modelPackageArn": f"{PACKAGES}trainyard-acme/3"}, "is Approved"),
]


@pytest.mark.parametrize(("kind", "detail", "why"), FORGERIES)
def test_an_event_trainyards_records_do_not_confirm_is_refused_recorded_and_never_sent(
    kind: catalogue.EventType, detail: dict[str, Any], why: str
) -> None:
    runs = MemoryRuns()
    runs.add(ended_run(status=RunStatus.SUCCEEDED))
    models = MemoryModels()
    models.add(_package(3, "Approved"))
    models.add(_package(4, "Rejected"))
    deliverer, sender, store = _deliverer(runs, models)

    outcome = deliverer.deliver(_message(kind, detail), 1)

    assert outcome.done  # deleted from the queue: never retried
    assert sender.sent == []
    (delivery,) = store.deliveries.values()
    assert delivery.status == "refused" and delivery.attempts == 0
    assert why in (delivery.last_error or "")
    assert len(delivery.run_id or "") <= 256
    assert delivery.api_dict()["status"] == "refused"
    assert deliverer.metrics.counts == {"WebhookEventsRefused": 1}
    # The same event again (at-least-once) is not sent either, nor recorded twice.
    assert deliverer.deliver(_message(kind, detail), 2).done
    assert sender.sent == [] and len(store.deliveries) == 1


def test_a_confirmed_run_event_is_sent_with_the_run_as_stored_not_the_events_claims() -> None:
    runs = MemoryRuns()
    run = runs.add(ended_run(status=RunStatus.FAILED))
    deliverer, sender, store = _deliverer(runs)
    forged = {"runId": RUN_ID, "status": "FAILED", "failureReason": "click https://evil", "x": 1}

    assert deliverer.deliver(_message(catalogue.RUN_FAILED, forged), 1).done

    (sent,) = sender.sent
    body = json.loads(sent.body)
    assert body == {
        "version": "1",
        "event": "run.failed",
        "tenantId": "acme",
        "occurredAt": "2026-01-01T00:10:00.000Z",
        "runId": RUN_ID,
        "plan": "basic",
        "status": "FAILED",
        "trigger": "s3",
        "queuedAt": run.queued_at,
        "startedAt": run.started_at,
        "endedAt": run.ended_at,
        "executionArn": run.execution_arn,
        "failureReason": "AUC too low",
        "metrics": {"auc": 0.91},
        "modelPackageArn": None,
    }
    (delivery,) = store.deliveries.values()
    assert delivery.status == "succeeded"


def test_an_earlier_run_event_delivered_late_shows_the_run_as_it_was_then() -> None:
    runs = MemoryRuns()
    runs.add(ended_run(status=RunStatus.SUCCEEDED))
    deliverer, sender, _ = _deliverer(runs)
    assert deliverer.deliver(_message(catalogue.RUN_QUEUED, {"runId": RUN_ID}), 1).done
    started = _message(catalogue.RUN_STARTED, {"runId": RUN_ID}, event_id="e-2")
    assert deliverer.deliver(started, 1).done
    queued, running = (json.loads(s.body) for s in sender.sent)
    assert (queued["status"], queued["startedAt"], queued["endedAt"]) == ("QUEUED", None, None)
    assert queued["metrics"] == {} and queued["executionArn"] is None
    assert (running["status"], running["endedAt"]) == ("RUNNING", None)
    assert running["startedAt"] == "2026-01-01T00:00:01.000Z"


def test_a_run_started_for_a_run_that_never_started_is_refused() -> None:
    runs = MemoryRuns()
    cancelled = ended_run(status=RunStatus.FAILED).model_copy(update={"started_at": None})
    runs.add(cancelled)
    deliverer, sender, store = _deliverer(runs)
    assert deliverer.deliver(_message(catalogue.RUN_STARTED, {"runId": RUN_ID}), 1).done
    assert sender.sent == []
    assert [d.status for d in store.deliveries.values()] == ["refused"]


def test_a_confirmed_model_approval_is_sent_as_sagemaker_describes_the_package() -> None:
    models = MemoryModels()
    package = models.add(_package(3, "Approved"))
    deliverer, sender, _ = _deliverer(MemoryRuns(), models)
    forged = {"modelPackageArn": package.model_package_arn, "approvedBy": "mallory", "x": 1}

    assert deliverer.deliver(_message(catalogue.MODEL_APPROVED, forged), 1).done

    (sent,) = sender.sent
    body = json.loads(sent.body)
    assert body["approvedBy"] == package.decided_by and "x" not in body
    assert (body["status"], body["modelVersion"], body["modelPackageGroupName"]) == (
        "Approved",
        3,
        "trainyard-acme",
    )


def test_a_pending_delivery_whose_record_changed_is_settled_as_refused() -> None:
    models = MemoryModels()
    package = models.add(_package(3, "Approved"))
    deliverer, sender, store = _deliverer(MemoryRuns(), models)
    deliverer.sender.script = [500]
    message = _message(catalogue.MODEL_APPROVED, {"modelPackageArn": package.model_package_arn})
    assert not deliverer.deliver(message, 1).done
    models.add(package.model_copy(update={"status": "Rejected"}))  # revoked meanwhile
    assert deliverer.deliver(message, 2).done
    assert len(sender.sent) == 1
    (delivery,) = store.deliveries.values()
    assert (delivery.status, delivery.attempts) == ("refused", 1)


class Broken:
    def current(self, tenant_id: str) -> str | None:
        raise RuntimeError("Secrets Manager is down")


@pytest.mark.parametrize(("receive", "status"), [(1, "pending"), (3, "failed")])
def test_a_fault_on_the_last_receive_marks_the_delivery_failed_and_still_raises(
    receive: int, status: str
) -> None:
    service, deliverer, sender, store = _world(WebhookSettings(max_attempts=3))
    service.put("acme", URL, None)
    deliverer.secrets = Broken()
    message = _message(catalogue.RUN_SUCCEEDED, {"runId": RUN_ID})
    with pytest.raises(RuntimeError):
        deliverer.deliver(message, receive)  # the handler keeps it on the queue (SQS DLQs it)
    assert sender.sent == []
    (delivery,) = store.deliveries.values()
    assert delivery.status == status
    if status == "failed":
        assert "Secrets Manager is down" in (delivery.last_error or "")
