"""The Trainyard training pipeline, defined once with the SageMaker Python SDK v3.

``build_definition_json(settings)`` returns the pipeline definition JSON that the CDK stack
deploys (``AWS::SageMaker::Pipeline``, through ``Fn::Sub``) and the local pipeline runner
executes (after :func:`render_definition`). It is deterministic and built offline: see
``pipeline/sdk_offline.py`` for every workaround that takes. This module is the contract
(parameters, step names, placeholders, the evaluation report); ``pipeline/build.py``
builds the steps, one function each.

Print the definition for default settings::

    python -m pipeline.definition

Regenerate the golden file after an intended change (then review the diff)::

    python -m pipeline.definition --write-golden

Where the SDK cannot express the contract directly, the SDK output is adjusted in exactly one
place, :func:`_bind_deploy_time_values`: the SDK needs ``s3://`` URIs for code inputs and a
literal role ARN for ``ModelTrainer``, so it is given sentinels that are then replaced by the
``${...}`` placeholders and by ``{"Get": "Parameters.ExecutionRoleArn"}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainyard_core.config import Settings

from pipeline.contract import (
    PLACEHOLDERS,
    ROLE_SENTINEL,
    SCRIPT_SENTINELS,
    placeholder,
)
from pipeline.sdk_offline import offline_sdk

GOLDEN_PATH = Path(__file__).parent / "golden" / "definition.default.json"


def build_definition_json(settings: Settings) -> str:
    """The pipeline definition for ``settings``, byte-identical for equal settings."""
    with offline_sdk():
        # The steps' module imports the SDK, which must only happen inside offline_sdk().
        from pipeline import build

        definition = json.loads(build.definition(settings))
    definition = _bind_deploy_time_values(definition)
    return json.dumps(definition, sort_keys=True, indent=2)


def render_definition(definition_json: str, values: dict[str, str]) -> str:
    """Replace the ``${...}`` placeholders with concrete values (what Fn::Sub does on AWS)."""
    missing = [name for name in PLACEHOLDERS if name not in values]
    unknown = sorted(set(values) - set(PLACEHOLDERS))
    if missing or unknown:
        raise ValueError(f"placeholder values: missing {missing}, unknown {unknown}")

    def substitute(text: str) -> str:
        for name in PLACEHOLDERS:
            text = text.replace(placeholder(name), values[name])
        return text

    # Substituting inside parsed strings keeps the result valid JSON whatever the values hold.
    rendered = _map_strings(json.loads(definition_json), substitute)
    text = json.dumps(rendered, sort_keys=True, indent=2)
    if "${" in text:
        raise ValueError("definition still contains '${' after rendering")
    return text


# --- Post-processing: the one place the SDK output is adjusted --------------------------------


def _map_values(node: Any, fn: Callable[[Any], Any]) -> Any:
    """Apply ``fn`` to every leaf (and every dict) bottom-up; ``fn`` returns the replacement."""
    if isinstance(node, dict):
        return fn({key: _map_values(value, fn) for key, value in node.items()})
    if isinstance(node, list):
        return [_map_values(item, fn) for item in node]
    return fn(node)


def _map_strings(node: Any, fn: Callable[[str], str]) -> Any:
    return _map_values(node, lambda value: fn(value) if isinstance(value, str) else value)


def _bind_deploy_time_values(definition: dict[str, Any]) -> dict[str, Any]:
    replacements: dict[str, Any] = {
        sentinel: placeholder(name) for name, sentinel in SCRIPT_SENTINELS.items()
    }
    replacements[ROLE_SENTINEL] = {"Get": "Parameters.ExecutionRoleArn"}

    def swap(value: Any) -> Any:
        return replacements.get(value, value) if isinstance(value, str) else value

    bound = _map_values(definition, swap)
    leftovers = [s for s in replacements if s in json.dumps(bound)]
    if leftovers:
        # A sentinel embedded in a larger string would deploy a bogus value: fail the build.
        raise RuntimeError(f"SDK output still contains sentinels {leftovers}")
    return bound


# --- CLI --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.definition",
        description="Print the Trainyard pipeline definition JSON for default settings.",
    )
    parser.add_argument(
        "--write-golden",
        action="store_true",
        help=f"write it to {GOLDEN_PATH.relative_to(Path(__file__).parent.parent)} instead",
    )
    args = parser.parse_args(argv)
    text = build_definition_json(Settings()) + "\n"
    if args.write_golden:
        GOLDEN_PATH.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN_PATH.write_text(text, encoding="utf-8")
        print(f"wrote {GOLDEN_PATH}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
