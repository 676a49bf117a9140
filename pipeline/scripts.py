"""The step scripts: the one table of placeholder -> script file.

Every ``*.py`` in ``pipeline/steps/`` is a step script, run as a processing job's
entrypoint; every ``*.json`` there is a static input a step reads (the no-baseline
marker of the schema-drift check), shipped and referred to the same way. The
definition refers to a script's S3 URI by a placeholder named after it
(``preprocess.py`` -> ``${PreprocessScriptUri}``, ``no_schema_baseline.json`` ->
``${NoSchemaBaselineFileUri}``); the CDK construct
(``infra/pipeline.py``) ships the scripts to the platform bucket and fills the
placeholders in with Fn::Sub, the local bootstrap with ``render_definition``. A new
processing step is therefore its script in ``steps/`` and its step in the definition.
"""

from __future__ import annotations

from pathlib import Path

STEPS_DIR = Path(__file__).resolve().parent / "steps"


_KINDS = {".py": "ScriptUri", ".json": "FileUri"}


def _placeholder_for(script: str) -> str:
    path = Path(script)
    words = path.stem.split("_")
    return "".join(word[:1].upper() + word[1:] for word in words) + _KINDS.get(path.suffix, "")


# Placeholder in the definition -> step file shipped for it (scripts and static inputs).
STEP_SCRIPTS: dict[str, str] = {
    _placeholder_for(path.name): path.name
    for path in sorted(STEPS_DIR.iterdir())
    if path.is_file() and path.suffix in _KINDS
}


def script_placeholder(script: str) -> str:
    """The definition's placeholder for ``script``'s S3 URI (it must be in steps/)."""
    placeholder = _placeholder_for(script)
    if STEP_SCRIPTS.get(placeholder) != script:
        raise ValueError(f"{script!r} is not a step script in {STEPS_DIR}")
    return placeholder
