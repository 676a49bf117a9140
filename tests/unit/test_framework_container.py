"""The local runner's framework-container script mode (XGBoost / scikit-learn images
running a provider script): the SageMaker training toolkit's contract, and what
CreateTrainingJob refuses."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.unit import test_pipeline_runner as base

# The runner tests' moto server and clients, as fixtures of this module too.
endpoint, aws, bucket = base.endpoint, base.aws, base.bucket
put_script, runner = base.put_script, base.runner

SKLEARN_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
XGBOOST_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"

# Writes what it saw into the model dir (which the job tars to model.tar.gz).
PROBE = """
import json, os, sys
model = os.environ["SM_MODEL_DIR"]
seen = {k: v for k, v in os.environ.items() if k.startswith("SM_")}
json.dump({"argv": sys.argv[1:], "env": seen,
           "train": sorted(os.listdir(os.environ["SM_CHANNEL_TRAIN"])),
           "cwd_code": sorted(os.listdir(os.path.dirname(os.path.abspath(__file__))))},
          open(os.path.join(model, "probe.json"), "w"))
"""


def training_step(bucket: str, hyperparameters: dict[str, str], image: str = SKLEARN_IMAGE):
    def channel(name: str, uri: str) -> dict[str, Any]:
        return {
            "ChannelName": name,
            "DataSource": {"S3DataSource": {"S3Uri": uri, "S3DataType": "S3Prefix"}},
        }

    return {
        "Name": "Train",
        "Type": "Training",
        "Arguments": {
            "AlgorithmSpecification": {"TrainingImage": image, "TrainingInputMode": "File"},
            "HyperParameters": hyperparameters,
            "InputDataConfig": [
                channel("train", f"s3://{bucket}/splits/train/"),
                channel("code", f"s3://{bucket}/code/probe.py"),
            ],
            "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/model"},
            "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
        },
    }


SCRIPT_MODE = {
    "sagemaker_program": "probe.py",
    "sagemaker_submit_directory": "/opt/ml/input/data/code",
}


def _run(aws: Callable[[str], Any], bucket: str, tmp_path: Path, step: dict[str, Any]):
    aws("s3").put_object(Bucket=bucket, Key="splits/train/train.csv", Body=b"1,2\n0,3\n")
    return runner(aws, tmp_path).run(json.dumps({"Steps": [step]}))


def _model_files(aws: Callable[[str], Any], bucket: str, result: Any) -> dict[str, bytes]:
    train = next(s for s in result.steps if s.name == "Train")
    uri = train.properties["ModelArtifacts"]["S3ModelArtifacts"]
    body = aws("s3").get_object(Bucket=bucket, Key=uri.split(f"s3://{bucket}/", 1)[1])["Body"]
    with tarfile.open(fileobj=io.BytesIO(body.read()), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def test_script_mode_runs_the_program_with_the_toolkits_environment_and_arguments(
    aws: Callable[[str], Any], bucket: str, tmp_path: Path
) -> None:
    put_script(aws, bucket, "probe.py", PROBE)
    hyperparameters = {**SCRIPT_MODE, "alpha": "0.5", "settings": '{"b": 2, "a": 1}'}

    result = _run(aws, bucket, tmp_path, training_step(bucket, hyperparameters))

    assert result.status == "Succeeded", result.failure_reason
    files = _model_files(aws, bucket, result)
    probe = json.loads(files["probe.json"])
    env = probe["env"]
    # sagemaker_* are the toolkit's; the rest reach the script decoded from JSON.
    assert json.loads(env["SM_HPS"]) == {"alpha": 0.5, "settings": {"a": 1, "b": 2}}
    assert env["SM_HP_ALPHA"] == "0.5" and env["SM_HP_SETTINGS"] == '{"a":1,"b":2}'
    assert probe["argv"] == ["--alpha", "0.5", "--settings", "a=1,b=2"]
    assert json.loads(env["SM_CHANNELS"]) == ["code", "train"]
    assert probe["train"] == ["train.csv"]
    assert env["SM_USER_ENTRY_POINT"] == "probe.py"
    assert env["SM_CHANNEL_TRAIN"].endswith("/input/data/train")
    assert env["SM_OUTPUT_DATA_DIR"].endswith("/output/data")
    assert "/opt/ml" not in env["SM_MODEL_DIR"]  # mapped to the job's local root
    assert probe["cwd_code"] == ["probe.py"]  # the submit directory copied to /opt/ml/code


def test_script_mode_failure_reason_comes_from_the_failure_file(
    aws: Callable[[str], Any], bucket: str, tmp_path: Path
) -> None:
    put_script(
        aws,
        bucket,
        "probe.py",
        "import os, sys\n"
        "open(os.path.join(os.environ['SM_OUTPUT_DIR'], 'failure'), 'w')"
        ".write('ClientError: the data is not what I expected')\n"
        "sys.exit(3)\n",
    )

    result = _run(aws, bucket, tmp_path, training_step(bucket, SCRIPT_MODE))

    assert result.status == "Failed"
    reason = "Step Train failed: ClientError: the data is not what I expected"
    assert result.failure_reason == reason


def test_scikit_learn_image_without_sagemaker_program_fails_as_the_toolkit_does(
    aws: Callable[[str], Any], bucket: str, tmp_path: Path
) -> None:
    put_script(aws, bucket, "probe.py", PROBE)
    step = training_step(bucket, {"sagemaker_submit_directory": "/opt/ml/input/data/code"})

    result = _run(aws, bucket, tmp_path, step)

    assert result.status == "Failed"
    assert "no user entry point" in (result.failure_reason or "")


def test_a_program_missing_from_the_submit_directory_fails(
    aws: Callable[[str], Any], bucket: str, tmp_path: Path
) -> None:
    put_script(aws, bucket, "probe.py", PROBE)
    step = training_step(bucket, {**SCRIPT_MODE, "sagemaker_program": "other.py"})

    result = _run(aws, bucket, tmp_path, step)

    assert result.status == "Failed"
    assert "the user entry point 'other.py' is not in" in (result.failure_reason or "")


def test_an_s3_submit_directory_must_be_a_tar_gz(
    aws: Callable[[str], Any], bucket: str, tmp_path: Path
) -> None:
    put_script(aws, bucket, "probe.py", PROBE)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("probe.py")
        info.size = len(PROBE.encode())
        tar.addfile(info, io.BytesIO(PROBE.encode()))
    aws("s3").put_object(Bucket=bucket, Key="code/sourcedir.tar.gz", Body=buffer.getvalue())
    packed = {**SCRIPT_MODE, "sagemaker_submit_directory": f"s3://{bucket}/code/sourcedir.tar.gz"}
    plain = {**SCRIPT_MODE, "sagemaker_submit_directory": f"s3://{bucket}/code/probe.py"}

    assert _run(aws, bucket, tmp_path / "a", training_step(bucket, packed)).status == "Succeeded"
    failed = _run(aws, bucket, tmp_path / "b", training_step(bucket, plain))

    assert failed.status == "Failed"
    assert "is not a tar.gz" in (failed.failure_reason or "")


def test_the_xgboost_image_without_a_program_still_runs_its_builtin_algorithm(
    aws: Callable[[str], Any], bucket: str, tmp_path: Path
) -> None:
    put_script(aws, bucket, "probe.py", PROBE)  # a code channel alone runs nothing
    step = training_step(bucket, {"num_round": "2", "objective": "binary:logistic"}, XGBOOST_IMAGE)

    result = _run(aws, bucket, tmp_path, step)

    assert result.status == "Succeeded", result.failure_reason
    assert "xgboost-model" in _model_files(aws, bucket, result)


def test_hyperparameter_values_over_2500_characters_are_refused(
    aws: Callable[[str], Any], bucket: str, tmp_path: Path
) -> None:
    put_script(aws, bucket, "probe.py", PROBE)
    step = training_step(bucket, {**SCRIPT_MODE, "settings": "x" * 2501})

    result = _run(aws, bucket, tmp_path, step)

    assert result.status == "Failed"
    reason = result.failure_reason or ""
    assert reason.startswith("Step Train failed: ValidationException")
    assert "less than or equal to 2500" in reason


def test_more_than_100_hyperparameters_are_refused(
    aws: Callable[[str], Any], bucket: str, tmp_path: Path
) -> None:
    put_script(aws, bucket, "probe.py", PROBE)
    many = {f"h{i}": "1" for i in range(99)}  # + the 2 sagemaker_* = 101
    step = training_step(bucket, {**SCRIPT_MODE, **many})

    result = _run(aws, bucket, tmp_path, step)

    assert result.status == "Failed"
    assert "less than or equal to 100" in (result.failure_reason or "")
