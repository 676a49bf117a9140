"""The Trainyard training pipeline, defined once with the SageMaker Python SDK v3.

``build_definition_json(settings)`` returns the pipeline definition JSON that the CDK stack
deploys (``AWS::SageMaker::Pipeline``, through ``Fn::Sub``) and the local pipeline runner
executes (after :func:`render_definition`). It is deterministic and built offline: see
``pipeline/sdk_offline.py`` for every workaround that takes.

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
from trainyard_core.wiring import TENANT_TAG_KEY, Names

from pipeline.sdk_offline import offline_sdk, offline_session

# --- The contract (shared with the local runner, the CDK stack and the scheduler) -------------

PARAMETERS: list[str] = [
    "TenantId",
    "RunId",
    "InputDataUri",
    "OutputUri",
    "ExecutionRoleArn",
    "TrainingInstanceType",
    "TrainingInstanceCount",
    "ProcessingInstanceType",
    "ModelPackageGroupName",
    "ModelApprovalStatus",
    "MetricThreshold",
    "TrainingImageUri",
    "ProcessingImageUri",
    "NumRound",
    "MaxDepth",
    "Eta",
]
PLACEHOLDERS = ("PreprocessScriptUri", "EvaluateScriptUri", "RecorderFunctionArn")

PREPROCESS_STEP = "Preprocess"
TRAIN_STEP = "Train"
EVALUATE_STEP = "Evaluate"
CONDITION_STEP = "CheckMetric"
REGISTER_STEP = "Register"
RECORD_STEP = "RecordRun"
FAIL_STEP = "MetricBelowThreshold"

EVALUATION_PROPERTY_FILE = "EvaluationReport"
EVALUATION_FILE = "evaluation.json"
# Where the evaluation report lands, under <OutputUri><RunId>: SageMaker reads it
# (the PropertyFile) with the pipeline's role, whose policy names this path.
EVALUATION_SUFFIX = "/evaluation"
AUC_JSON_PATH = "metrics.auc.value"
RUN_TAG_KEY = "trainyard:run-id"

GOLDEN_PATH = Path(__file__).parent / "golden" / "definition.default.json"

_PROCESSING = "/opt/ml/processing"
_CODE_DIR = f"{_PROCESSING}/input/code"

# The SDK insists on s3:// URIs for code inputs (anything else is uploaded from disk) and on a
# literal role for ModelTrainer (its `role` field is a plain str); these sentinels stand in for
# the deploy-time values and are swapped out by _bind_deploy_time_values.
_SENTINEL_BUCKET = "s3://trainyard-sdk-offline-sentinel"
_SCRIPT_SENTINELS = {
    "PreprocessScriptUri": f"{_SENTINEL_BUCKET}/PreprocessScriptUri",
    "EvaluateScriptUri": f"{_SENTINEL_BUCKET}/EvaluateScriptUri",
}
_ROLE_SENTINEL = "arn:aws:iam::000000000000:role/trainyard-sdk-offline-sentinel"


def _placeholder(name: str) -> str:
    return "${" + name + "}"


def build_definition_json(settings: Settings) -> str:
    """The pipeline definition for ``settings``, byte-identical for equal settings."""
    with offline_sdk():
        definition = json.loads(_build_with_sdk(settings))
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
            text = text.replace(_placeholder(name), values[name])
        return text

    # Substituting inside parsed strings keeps the result valid JSON whatever the values hold.
    rendered = _map_strings(json.loads(definition_json), substitute)
    text = json.dumps(rendered, sort_keys=True, indent=2)
    if "${" in text:
        raise ValueError("definition still contains '${' after rendering")
    return text


# --- Building ---------------------------------------------------------------------------------


def _build_with_sdk(settings: Settings) -> str:
    # The SDK is imported here, inside offline_sdk(), never at module import: see sdk_offline.
    from sagemaker.core import image_uris
    from sagemaker.core.lambda_helper import Lambda
    from sagemaker.core.model_metrics import MetricsSource, ModelMetrics
    from sagemaker.core.processing import Processor
    from sagemaker.core.shapes import (
        ProcessingInput,
        ProcessingOutput,
        ProcessingS3Input,
        ProcessingS3Output,
    )
    from sagemaker.core.workflow.conditions import ConditionGreaterThanOrEqualTo
    from sagemaker.core.workflow.functions import Join, JsonGet
    from sagemaker.core.workflow.parameters import (
        ParameterFloat,
        ParameterInteger,
        ParameterString,
    )
    from sagemaker.core.workflow.properties import PropertyFile
    from sagemaker.mlops.workflow import (
        ConditionStep,
        FailStep,
        LambdaOutput,
        LambdaStep,
        ModelStep,
        Pipeline,
        ProcessingStep,
        TrainingStep,
    )
    from sagemaker.mlops.workflow.lambda_step import LambdaOutputTypeEnum
    from sagemaker.serve.model_builder import ModelBuilder
    from sagemaker.train.configs import Compute, InputData, OutputDataConfig, Tag
    from sagemaker.train.model_trainer import ModelTrainer

    session = offline_session(settings.region)
    default_plan = settings.plan(settings.default_plan)
    hyperparameters = settings.xgboost.hyperparameters

    # --- parameters (order = PARAMETERS)
    tenant_id = ParameterString("TenantId")
    run_id = ParameterString("RunId")
    input_data_uri = ParameterString("InputDataUri")
    output_uri = ParameterString("OutputUri")
    execution_role = ParameterString("ExecutionRoleArn")
    training_instance_type = ParameterString(
        "TrainingInstanceType", default_value=default_plan.training_instance_type
    )
    training_instance_count = ParameterInteger(
        "TrainingInstanceCount", default_value=default_plan.training_instance_count
    )
    processing_instance_type = ParameterString(
        "ProcessingInstanceType", default_value=settings.processing_instance_type
    )
    model_package_group = ParameterString("ModelPackageGroupName")
    approval_status = ParameterString(
        "ModelApprovalStatus", default_value=settings.model_approval_status
    )
    metric_threshold = ParameterFloat("MetricThreshold", default_value=settings.metric_threshold)
    training_image = ParameterString(
        "TrainingImageUri",
        default_value=image_uris.retrieve(
            "xgboost",
            region=settings.region,
            version=settings.xgboost.framework_version,
            sagemaker_session=session,
        ),
    )
    processing_image = ParameterString(
        "ProcessingImageUri",
        default_value=image_uris.retrieve(
            "sklearn",
            region=settings.region,
            version=settings.sklearn_framework_version,
            instance_type=settings.processing_instance_type,
            sagemaker_session=session,
        ),
    )
    num_round = ParameterInteger("NumRound", default_value=int(hyperparameters["num_round"]))
    max_depth = ParameterInteger("MaxDepth", default_value=int(hyperparameters["max_depth"]))
    eta = ParameterFloat("Eta", default_value=float(hyperparameters["eta"]))
    parameters = [
        tenant_id,
        run_id,
        input_data_uri,
        output_uri,
        execution_role,
        training_instance_type,
        training_instance_count,
        processing_instance_type,
        model_package_group,
        approval_status,
        metric_threshold,
        training_image,
        processing_image,
        num_round,
        max_depth,
        eta,
    ]

    def run_uri(suffix: str) -> Join:
        # OutputUri ends with '/', so <OutputUri><RunId>/<suffix>.
        return Join(on="", values=[output_uri, run_id, suffix])

    job_tags = [
        {"Key": TENANT_TAG_KEY, "Value": tenant_id},
        {"Key": RUN_TAG_KEY, "Value": run_id},
    ]

    def s3_in(name: str, uri: Any, local_path: str) -> ProcessingInput:
        return ProcessingInput(
            input_name=name,
            s3_input=ProcessingS3Input(
                s3_uri=uri,
                local_path=local_path,
                s3_data_type="S3Prefix",
                s3_input_mode="File",
                s3_data_distribution_type="FullyReplicated",
            ),
        )

    def s3_out(name: str, local_path: str, uri: Any) -> ProcessingOutput:
        return ProcessingOutput(
            output_name=name,
            s3_output=ProcessingS3Output(
                s3_uri=uri, local_path=local_path, s3_upload_mode="EndOfJob"
            ),
        )

    def processor(image: Any, script: str) -> Processor:
        return Processor(
            role=execution_role,
            image_uri=image,
            instance_count=1,
            instance_type=processing_instance_type,
            entrypoint=["python3", f"{_CODE_DIR}/{script}"],
            sagemaker_session=session,
            tags=job_tags,
        )

    # --- 1. Preprocess
    splits = ("train", "validation", "test")
    preprocess = ProcessingStep(
        name=PREPROCESS_STEP,
        step_args=processor(processing_image, "preprocess.py").run(
            inputs=[
                s3_in("data", input_data_uri, f"{_PROCESSING}/input/data"),
                s3_in("code", _SCRIPT_SENTINELS["PreprocessScriptUri"], _CODE_DIR),
            ],
            outputs=[
                s3_out(split, f"{_PROCESSING}/output/{split}", run_uri(f"/preprocess/{split}"))
                for split in splits
            ],
            arguments=[
                "--input-dir",
                f"{_PROCESSING}/input/data",
                "--output-dir",
                f"{_PROCESSING}/output",
            ],
        ),
    )

    def split_uri(split: str) -> Any:
        return preprocess.properties.ProcessingOutputConfig.Outputs[split].S3Output.S3Uri

    # --- 2. Train (built-in XGBoost container; artifact <S3OutputPath>/<job>/output/model.tar.gz)
    tuned = {
        "num_round": num_round.to_string(),
        "max_depth": max_depth.to_string(),
        "eta": eta.to_string(),
    }
    trainer = ModelTrainer(
        training_image=training_image,
        role=_ROLE_SENTINEL,
        compute=Compute(
            instance_type=training_instance_type, instance_count=training_instance_count
        ),
        output_data_config=OutputDataConfig(s3_output_path=run_uri("/model")),
        hyperparameters={**hyperparameters, **tuned},
        tags=[Tag(key=tag["Key"], value=tag["Value"]) for tag in job_tags],
        base_job_name="trainyard-train",
        sagemaker_session=session,
    )
    train = TrainingStep(
        name=TRAIN_STEP,
        step_args=trainer.train(
            input_data_config=[
                InputData(channel_name=split, data_source=split_uri(split), content_type="text/csv")
                for split in ("train", "validation")
            ]
        ),
    )
    model_artifact = train.properties.ModelArtifacts.S3ModelArtifacts

    # --- 3. Evaluate (the XGBoost image has python3 + xgboost + sklearn)
    report = PropertyFile(
        name=EVALUATION_PROPERTY_FILE, output_name="evaluation", path=EVALUATION_FILE
    )
    evaluate = ProcessingStep(
        name=EVALUATE_STEP,
        step_args=processor(training_image, "evaluate.py").run(
            inputs=[
                s3_in("model", model_artifact, f"{_PROCESSING}/input/model"),
                s3_in("test", split_uri("test"), f"{_PROCESSING}/input/test"),
                s3_in("code", _SCRIPT_SENTINELS["EvaluateScriptUri"], _CODE_DIR),
            ],
            outputs=[s3_out("evaluation", f"{_PROCESSING}/evaluation", run_uri(EVALUATION_SUFFIX))],
            arguments=[
                "--model-dir",
                f"{_PROCESSING}/input/model",
                "--test-dir",
                f"{_PROCESSING}/input/test",
                "--output-dir",
                f"{_PROCESSING}/evaluation",
            ],
        ),
        property_files=[report],
    )
    auc = JsonGet(step_name=EVALUATE_STEP, property_file=report, json_path=AUC_JSON_PATH)
    evaluation_uri = Join(
        on="/",
        values=[
            evaluate.properties.ProcessingOutputConfig.Outputs["evaluation"].S3Output.S3Uri,
            EVALUATION_FILE,
        ],
    )

    # --- 5. Register
    builder = ModelBuilder(
        s3_model_data_url=model_artifact,
        image_uri=training_image,
        role_arn=_ROLE_SENTINEL,
        instance_type=settings.processing_instance_type,
        # The deprecated `dependencies` defaults to {"auto": True}, which sends register()
        # down the code-upload path (and asks for a default bucket) although there is no code.
        dependencies={},
        sagemaker_session=session,
    )
    register = ModelStep(
        name=REGISTER_STEP,
        step_args=builder.register(
            model_package_group_name=model_package_group,
            approval_status=approval_status,
            content_types=["text/csv"],
            response_types=["text/csv"],
            model_metrics=ModelMetrics(
                model_statistics=MetricsSource(
                    content_type="application/json", s3_uri=evaluation_uri
                )
            ),
        ),
    )

    # --- 6. RecordRun
    record = LambdaStep(
        name=RECORD_STEP,
        lambda_func=Lambda(function_arn=_placeholder("RecorderFunctionArn"), session=session),
        inputs={
            "tenant_id": tenant_id,
            "run_id": run_id,
            "model_package_arn": register.properties.ModelPackageArn,
            "auc": auc,
            "evaluation_uri": evaluation_uri,
            "training_job_name": train.properties.TrainingJobName,
        },
        outputs=[LambdaOutput(output_name="recorded", output_type=LambdaOutputTypeEnum.String)],
        depends_on=[register],
    )

    # --- 7. MetricBelowThreshold
    fail = FailStep(
        name=FAIL_STEP,
        error_message=Join(
            on=" ",
            values=[
                "Model AUC",
                auc,
                "is below the threshold",
                metric_threshold,
                "for tenant",
                tenant_id,
                "run",
                run_id,
                "- the model was not registered.",
            ],
        ),
    )

    # --- 4. CheckMetric
    check = ConditionStep(
        name=CONDITION_STEP,
        conditions=[ConditionGreaterThanOrEqualTo(left=auc, right=metric_threshold)],
        if_steps=[register, record],
        else_steps=[fail],
    )

    pipeline = Pipeline(
        name=Names.from_settings(settings).pipeline_name,
        parameters=parameters,
        steps=[preprocess, train, evaluate, check],
        sagemaker_session=session,
        # No automatic experiment/trial per execution: it needs extra permissions on the
        # pipeline role, the local runner would have to emulate it, and it varies by region.
        pipeline_experiment_config=None,
    )
    return pipeline.definition()


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
        sentinel: _placeholder(name) for name, sentinel in _SCRIPT_SENTINELS.items()
    }
    replacements[_ROLE_SENTINEL] = {"Get": "Parameters.ExecutionRoleArn"}

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
