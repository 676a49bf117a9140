"""AWS requests per dispatch do not grow with the waiting tenants or with the
tenants ever admitted (bench.cpu's counting proxies: each port call charged the
DynamoDB requests the DynamoDB repositories make for it)."""

from __future__ import annotations

from bench.cpu import measure


def test_requests_per_dispatch_stay_within_a_constant_from_10_to_1000_waiting_tenants() -> None:
    few, many = measure(10, repeats=1), measure(1_000, repeats=1)
    assert many.dispatch_requests <= few.dispatch_requests + 6  # 3 plans x 2 more batches
    assert many.dispatch_requests <= 40
    assert many.dispatch_get_items == few.dispatch_get_items  # no GetItem per tenant


def test_requests_per_dispatch_and_reconcile_reads_stay_bounded_as_tenants_ever_grow() -> None:
    small = measure(10, repeats=1, tenants_ever=100)
    large = measure(10, repeats=1, tenants_ever=10_000)
    assert large.dispatch_requests == small.dispatch_requests
    assert large.reconcile_requests <= small.reconcile_requests + 1
    assert large.reconcile_items_read <= 1_000 + 30  # a slice + the slot holders
