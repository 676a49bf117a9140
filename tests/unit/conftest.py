"""Fixtures shared by the unit tests of the embedded CloudFormation."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.unit.cfn_support import Account, embedded_account


@pytest.fixture
def cfn(monkeypatch: pytest.MonkeyPatch) -> Iterator[Account]:
    yield from embedded_account(monkeypatch)
