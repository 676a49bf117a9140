"""Shared test configuration."""

from __future__ import annotations

import os

# Tests never reach AWS: no real credentials, a fixed region.
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "trainyard-test")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "TrainyardTest")
# jsii's "Node 20 is end-of-life" banner is harmless noise in test output.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")


# --- order: the embedded stack's tests first, the longest of them first -------------------
# `make test` runs `pytest -n 2 --dist loadfile --no-loadscope-reorder`: xdist hands whole
# files to whichever worker is free, in collection order. Integration files first keeps
# each worker's integration files contiguous, so the package-scoped embedded stack starts
# once per worker (xdist's default reorder, by tests per file, interleaved them with unit
# files and restarted the stack, ~10-25 s each); the longest first, so the end of the run
# is short unit files on both workers instead of one long file on one of them.
_LONGEST_FIRST = (
    "test_when_and_why.py",
    "test_scheduled_retraining.py",
    "test_noisy_neighbour.py",
    "test_iam_enforced.py",
    "test_faults.py",
    "test_webhooks.py",
    "test_demo_scenario.py",
    "test_migration_in_flight.py",
    "test_training_choices_http.py",
    "test_schema_drift.py",
)


def pytest_collection_modifyitems(config: object, items: list) -> None:
    rank = {name: i for i, name in enumerate(_LONGEST_FIRST)}

    def key(item: object) -> tuple[int, int]:
        path = item.path  # type: ignore[attr-defined]
        if "integration" not in path.parts:
            return (1, 0)
        return (0, rank.get(path.name, len(rank)))

    items.sort(key=key)  # stable: every file's tests stay in their order
