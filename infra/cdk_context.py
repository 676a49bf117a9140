"""cdk.json's context (feature flags), for Apps created in-process.

The CDK CLI passes cdk.json's context to the app through the environment; apps
built without the CLI (`python app.py`, tests, the tenant template synthesized
by the local runtime) get the same flags from here, so every path synthesizes
the same templates.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def cdk_json_context(project_root: Path = PROJECT_ROOT) -> dict[str, Any]:
    cdk_json = project_root / "cdk.json"
    if not cdk_json.exists():
        return {}
    return dict(json.loads(cdk_json.read_text()).get("context", {}))
