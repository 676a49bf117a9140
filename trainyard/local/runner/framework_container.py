"""Emulation of a SageMaker framework container in script mode (the XGBoost and the
scikit-learn images run a user script when its hyperparameters name one).

What the image's training toolkit (sagemaker-training) does, on the job's local
/opt/ml stand-in:

* the user code: ``sagemaker_submit_directory`` is a local directory in the
  container (e.g. a channel, /opt/ml/input/data/code: copied) or an S3 URI of a
  tar.gz (downloaded and extracted), into /opt/ml/code; ``sagemaker_program`` is
  the script there. A missing program fails the job as the toolkit does.
* the hyperparameters: each value JSON-decoded when it parses; the ``sagemaker_*``
  ones are the toolkit's, the rest the script's: ``SM_HPS`` (one JSON object),
  ``SM_HP_<NAME>`` and ``--name value`` arguments (an object as ``k=v,k2=v2``).
* the environment: ``SM_MODEL_DIR``, ``SM_CHANNELS``, ``SM_CHANNEL_<NAME>``,
  ``SM_OUTPUT_DIR``, ``SM_OUTPUT_DATA_DIR``, ``SM_INPUT_DIR``, ``SM_INPUT_CONFIG_DIR``,
  ``SM_MODULE_DIR``, ``SM_USER_ENTRY_POINT``, ``SM_USER_ARGS``, ``SM_HOSTS``,
  ``SM_CURRENT_HOST``, ``SM_NUM_CPUS``, ``SM_NUM_GPUS``, with /opt/ml mapped.

The model directory is tarred to model.tar.gz and the failure reason read from
/opt/ml/output/failure by the training step (``step_types.training``), as for the
emulated built-in XGBoost container.

``hyperparameter_problems`` is CreateTrainingJob's own validation of the
HyperParameters map, read from botocore's SageMaker model (at most 100 entries,
keys up to 256 and values up to 2,500 characters): botocore checks no maximum on
the client, SageMaker rejects the request.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from .expressions import split_s3_uri
from .records import StepFailure
from .staging import OPT_ML, map_path

PROGRAM = "sagemaker_program"
SUBMIT_DIRECTORY = "sagemaker_submit_directory"
# Images whose toolkit runs a user script (the local Python has their libraries).
FRAMEWORK_IMAGES = ("xgboost", "sklearn", "scikit-learn")


@cache
def _hyperparameter_limits() -> tuple[int, int, int]:
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    shape = model.shape_for("CreateTrainingJobRequest").members["HyperParameters"]
    return (
        int(shape.metadata["max"]),
        int(shape.key.metadata["max"]),
        int(shape.value.metadata["max"]),
    )


def hyperparameter_problems(hyperparameters: Mapping[str, str]) -> list[str]:
    """Why CreateTrainingJob refuses this HyperParameters map (empty: it accepts it)."""
    max_entries, max_key, max_value = _hyperparameter_limits()
    problems = []
    if len(hyperparameters) > max_entries:
        problems.append(
            f"Member must have length less than or equal to {max_entries} "
            f"(hyperParameters has {len(hyperparameters)} entries)"
        )
    for key, value in hyperparameters.items():
        if len(key) > max_key:
            problems.append(
                f"hyperParameters key {key[:40]!r}… must have length less than or equal "
                f"to {max_key}"
            )
        if len(value) > max_value:
            problems.append(
                f"hyperParameters value of {key[:40]!r} ({len(value)} characters) must have "
                f"length less than or equal to {max_value}"
            )
    return problems


def is_script_mode(hyperparameters: Mapping[str, str], image: str) -> bool:
    """The XGBoost image runs a script when one is named, else its built-in
    algorithm; the scikit-learn image has no algorithm of its own."""
    lowered = image.lower()
    return PROGRAM in hyperparameters or ("sklearn" in lowered or "scikit-learn" in lowered)


def _decoded(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def _arg_value(value: Any) -> str:
    if isinstance(value, Mapping):
        return ",".join(f"{k}={v}" for k, v in sorted(value.items()))
    return value if isinstance(value, str) else json.dumps(value)


def _env_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def stage_code(s3: Any, hyperparameters: Mapping[str, str], root: Path) -> str:
    """Put the user code where the toolkit puts it (<root>/code); -> the program name."""
    program = hyperparameters.get(PROGRAM, "").strip()
    if not program:
        raise StepFailure(
            "AlgorithmError: framework container: no user entry point: the "
            f"'{PROGRAM}' hyperparameter is not set"
        )
    source = hyperparameters.get(SUBMIT_DIRECTORY, "").strip()
    code = root / "code"
    shutil.rmtree(code, ignore_errors=True)
    if source.startswith("s3://"):
        bucket, key = split_s3_uri(source)
        with tempfile.TemporaryDirectory() as scratch:
            archive = Path(scratch) / "sourcedir.tar.gz"
            try:
                s3.download_file(bucket, key, str(archive))
            except Exception as exc:
                raise StepFailure(
                    f"AlgorithmError: cannot download {SUBMIT_DIRECTORY} {source}: {exc}"
                ) from None
            try:
                with tarfile.open(archive, mode="r:gz") as tar:
                    tar.extractall(code, filter="data")
            except (tarfile.TarError, OSError) as exc:
                raise StepFailure(
                    f"AlgorithmError: {SUBMIT_DIRECTORY} {source} is not a tar.gz: {exc}"
                ) from None
    elif source:
        if not (source == OPT_ML or source.startswith(OPT_ML + "/")):
            raise StepFailure(
                f"AlgorithmError: {SUBMIT_DIRECTORY} {source!r} is neither an S3 URI nor a "
                "directory in the container"
            )
        local = map_path(source, root)
        if not local.is_dir():
            raise StepFailure(f"AlgorithmError: {SUBMIT_DIRECTORY} {source!r} does not exist")
        shutil.copytree(local, code)
    else:
        code.mkdir(parents=True)
    if not (code / program).is_file():
        raise StepFailure(
            f"AlgorithmError: framework container: the user entry point {program!r} is not "
            f"in {SUBMIT_DIRECTORY} {source or '(none)'}"
        )
    return program


def command_and_env(
    python: str,
    program: str,
    hyperparameters: Mapping[str, str],
    channels: list[str],
    root: Path,
    instance_count: int,
) -> tuple[list[str], dict[str, str]]:
    """The toolkit's ``python <program> --name value …`` and its SM_* environment."""
    user = {
        k: _decoded(v) for k, v in sorted(hyperparameters.items()) if not k.startswith("sagemaker_")
    }
    args: list[str] = []
    for name, value in user.items():
        args += [f"--{name}", _arg_value(value)]
    hosts = [f"algo-{i + 1}" for i in range(max(1, instance_count))]
    env = {
        "SM_MODEL_DIR": str(root / "model"),
        "SM_CHANNELS": json.dumps(sorted(channels)),
        "SM_OUTPUT_DIR": str(root / "output"),
        "SM_OUTPUT_DATA_DIR": str(root / "output" / "data"),
        "SM_INPUT_DIR": str(root / "input"),
        "SM_INPUT_CONFIG_DIR": str(root / "input" / "config"),
        "SM_MODULE_DIR": hyperparameters.get(SUBMIT_DIRECTORY, ""),
        "SM_USER_ENTRY_POINT": program,
        "SM_USER_ARGS": json.dumps(args),
        "SM_HPS": json.dumps(user, sort_keys=True),
        "SM_HOSTS": json.dumps(hosts),
        "SM_CURRENT_HOST": hosts[0],
        "SM_NUM_CPUS": str(os.cpu_count() or 1),
        "SM_NUM_GPUS": "0",
    }
    for name in channels:
        env[f"SM_CHANNEL_{name.upper()}"] = str(root / "input" / "data" / name)
    for name, value in user.items():
        env[f"SM_HP_{name.upper()}"] = _env_value(value)
    (root / "model").mkdir(parents=True, exist_ok=True)
    (root / "output" / "data").mkdir(parents=True, exist_ok=True)
    return [python, str(root / "code" / program), *args], env
