"""One synthesis of the CDK app per test session, shared by every infra test.

The app is built by `infra.app.build_app` (what `app.py` and `npx cdk synth`
run) with cdk-nag AwsSolutions on and the tenant stack added as a second stack,
so both templates are checked by the same synthesis.
"""

from __future__ import annotations

import pytest
from trainyard_core.config import Settings, load_project_settings

from infra.app import PROJECT_ROOT
from tests.infra.synth_support import Synth, synthesize


@pytest.fixture(scope="session")
def project_settings() -> Settings:
    # What `npx cdk synth` uses: cdk.json's context, no overrides.
    return load_project_settings(PROJECT_ROOT)


@pytest.fixture(scope="session")
def synth(project_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return synthesize(project_settings, tmp_path_factory.mktemp("cdk.out"))
