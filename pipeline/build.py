"""The pipeline's steps, built with the SageMaker Python SDK v3: one function per step.

Import this module only inside ``sdk_offline.offline_sdk()`` (``definition.py`` does):
it imports the SDK at the top, and the SDK must never be imported without the offline
patches (see ``sdk_offline``). The contract these steps implement — parameter names,
step names, placeholders, the evaluation report — lives in ``contract.py``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

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
from sagemaker.mlops.workflow.retry import (
    SageMakerJobExceptionTypeEnum,
    SageMakerJobStepRetryPolicy,
    StepExceptionTypeEnum,
    StepRetryPolicy,
)
from sagemaker.serve.model_builder import ModelBuilder
from sagemaker.train.configs import Compute, InputData, OutputDataConfig, Tag
from sagemaker.train.model_trainer import ModelTrainer
from trainyard_core.config import Settings
from trainyard_core.model_versions import (
    META_ALGORITHM,
    META_PRIMARY_METRIC,
    META_PRIMARY_METRIC_VALUE,
    META_PROBLEM_TYPE,
    META_RUN,
    META_TENANT,
)
from trainyard_core.wiring import TENANT_TAG_KEY, Names

from pipeline import contract
from pipeline.parameters import Parameters, parameters
from pipeline.scripts import script_placeholder
from pipeline.sdk_offline import offline_session

_PROCESSING = "/opt/ml/processing"
_CODE_DIR = f"{_PROCESSING}/input/code"
_SPLITS = ("train", "validation", "test")
# Script mode: the train step's code arrives as an input channel and the framework
# container copies that directory to /opt/ml/code (sagemaker_submit_directory may be a
# local directory; an S3 value would have to be a tar.gz, the step scripts are plain files).
_CODE_CHANNEL = "code"
_SUBMIT_DIRECTORY = f"/opt/ml/input/data/{_CODE_CHANNEL}"
_TRAIN_SCRIPT = "train.py"
_PROBLEM_TYPE_SETS = ("objective", "eval_metric", "num_class")
# Transient failures a new attempt can fix (SageMaker's retry exception types): no
# capacity for the instance type, a resource-limit quota briefly full, the job's
# InternalServerError, throttled or failing calls to SageMaker. Bounded: at most
# _RETRY_MAX_ATTEMPTS retries, the first after _RETRY_INTERVAL_SECONDS, each later wait
# _RETRY_BACKOFF_RATE times longer (30 s, 60 s, 120 s): a capacity shortage often
# clears within minutes, and a run that keeps failing still ends within ~4 minutes
# of waiting instead of holding the tenant's slot. Anything else (the algorithm's
# own error, bad data, a denied call) fails the step at once.
_RETRY_MAX_ATTEMPTS = 3
_RETRY_INTERVAL_SECONDS = 30
_RETRY_BACKOFF_RATE = 2.0


def _retry_policies() -> list[Any]:
    bounds = {
        "max_attempts": _RETRY_MAX_ATTEMPTS,
        "interval_seconds": _RETRY_INTERVAL_SECONDS,
        "backoff_rate": _RETRY_BACKOFF_RATE,
    }
    return [
        SageMakerJobStepRetryPolicy(
            exception_types=[SageMakerJobExceptionTypeEnum.RESOURCE_LIMIT],
            failure_reason_types=[
                SageMakerJobExceptionTypeEnum.CAPACITY_ERROR,
                SageMakerJobExceptionTypeEnum.INTERNAL_ERROR,
            ],
            **bounds,
        ),
        StepRetryPolicy(
            exception_types=[
                StepExceptionTypeEnum.THROTTLING,
                StepExceptionTypeEnum.SERVICE_FAULT,
            ],
            **bounds,
        ),
    ]


@dataclass(frozen=True)
class _Jobs:
    """What every job of a run shares: the session, the parameters, the tags, its paths."""

    settings: Settings
    session: Any
    p: Parameters

    @property
    def tags(self) -> list[dict[str, Any]]:
        return [
            {"Key": TENANT_TAG_KEY, "Value": self.p.tenant_id},
            {"Key": contract.RUN_TAG_KEY, "Value": self.p.run_id},
        ]

    def run_uri(self, suffix: str) -> Join:
        # OutputUri ends with '/', so <OutputUri><RunId>/<suffix>.
        return Join(on="", values=[self.p.output_uri, self.p.run_id, suffix])

    @staticmethod
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

    @staticmethod
    def s3_out(name: str, local_path: str, uri: Any) -> ProcessingOutput:
        return ProcessingOutput(
            output_name=name,
            s3_output=ProcessingS3Output(
                s3_uri=uri, local_path=local_path, s3_upload_mode="EndOfJob"
            ),
        )

    def run_script(self, image: Any, script: str, inputs: list[ProcessingInput], **run: Any) -> Any:
        """Processor.run of a step script (pipeline/steps/), its code the last input."""
        sentinel = contract.SCRIPT_SENTINELS[script_placeholder(script)]
        code = self.s3_in("code", sentinel, _CODE_DIR)
        return Processor(
            role=self.p.execution_role,
            image_uri=image,
            instance_count=1,
            instance_type=self.p.processing_instance_type,
            entrypoint=["python3", f"{_CODE_DIR}/{script}"],
            sagemaker_session=self.session,
            tags=self.tags,
        ).run(inputs=[*inputs, code], **run)


@dataclass(frozen=True)
class _Preprocess:
    step: ProcessingStep
    data_report: JsonGet


def _preprocess(jobs: _Jobs) -> _Preprocess:
    """Validates the data for the problem type (fails before any training is paid
    for) and writes the data report, a PropertyFile the recorder gets a summary of."""
    report = PropertyFile(
        name=contract.DATA_REPORT_PROPERTY_FILE,
        output_name="report",
        path=contract.DATA_REPORT_FILE,
    )
    report_dir = f"{_PROCESSING}/report"
    step = ProcessingStep(
        name=contract.PREPROCESS_STEP,
        step_args=jobs.run_script(
            jobs.p.processing_image,
            "preprocess.py",
            inputs=[
                jobs.s3_in("data", jobs.p.input_data_uri, f"{_PROCESSING}/input/data"),
                jobs.s3_in("baseline", jobs.p.schema_baseline, f"{_PROCESSING}/input/baseline"),
            ],
            outputs=[
                jobs.s3_out(
                    split, f"{_PROCESSING}/output/{split}", jobs.run_uri(f"/preprocess/{split}")
                )
                for split in _SPLITS
            ]
            + [jobs.s3_out("report", report_dir, jobs.run_uri(contract.DATA_REPORT_SUFFIX))],
            arguments=[
                "--input-dir",
                f"{_PROCESSING}/input/data",
                "--output-dir",
                f"{_PROCESSING}/output",
                "--problem-type",
                jobs.p.problem_type,
                "--report-dir",
                report_dir,
                "--baseline-dir",
                f"{_PROCESSING}/input/baseline",
                "--schema-drift",
                jobs.p.schema_drift,
                "--run-id",
                jobs.p.run_id,
            ],
        ),
        property_files=[report],
        retry_policies=_retry_policies(),
    )
    data_report = JsonGet(
        step_name=contract.PREPROCESS_STEP,
        property_file=report,
        json_path=contract.DATA_REPORT_JSON_PATH,
    )
    return _Preprocess(step, data_report)


def _split_uri(preprocess: ProcessingStep, split: str) -> Any:
    return preprocess.properties.ProcessingOutputConfig.Outputs[split].S3Output.S3Uri


def _train(jobs: _Jobs, preprocess: ProcessingStep) -> TrainingStep:
    """Every algorithm runs the provider script (steps/train.py) in script mode in its
    image (TrainingImageUri: the XGBoost or the scikit-learn framework image): one
    TrainingStep cannot switch between the built-in XGBoost algorithm-mode contract
    and a framework script, script mode serves both. Artifact
    <S3OutputPath>/<job>/output/model.tar.gz."""
    p = jobs.p
    tuned = {
        "num_round": p.num_round.to_string(),
        "max_depth": p.max_depth.to_string(),
        "eta": p.eta.to_string(),
        "algorithm": p.algorithm,
        "problem_type": p.problem_type,
        "hyperparameters": p.hyperparameters,
        "sagemaker_program": _TRAIN_SCRIPT,
        "sagemaker_submit_directory": _SUBMIT_DIRECTORY,
    }
    trainer = ModelTrainer(
        training_image=p.training_image,
        role=contract.ROLE_SENTINEL,
        # Compute narrows ResourceConfig's volume_size_in_gb (IntPipeVar) to int, though
        # its docstring says IntPipeVar: the parameter goes in unvalidated (model_copy).
        compute=Compute(
            instance_type=p.training_instance_type, instance_count=p.training_instance_count
        ).model_copy(update={"volume_size_in_gb": p.volume_size}),
        output_data_config=OutputDataConfig(s3_output_path=jobs.run_uri("/model")),
        # The settings' xgboost defaults (train.py applies them to xgboost only); the
        # objective and eval metric follow the problem type.
        hyperparameters={
            **{
                k: v
                for k, v in jobs.settings.xgboost.hyperparameters.items()
                if k not in _PROBLEM_TYPE_SETS
            },
            **tuned,
        },
        tags=[Tag(key=tag["Key"], value=tag["Value"]) for tag in jobs.tags],
        base_job_name="trainyard-train",
        sagemaker_session=jobs.session,
    )
    return TrainingStep(
        name=contract.TRAIN_STEP,
        step_args=trainer.train(
            input_data_config=[
                InputData(
                    channel_name=split,
                    data_source=_split_uri(preprocess, split),
                    content_type="text/csv",
                )
                for split in ("train", "validation")
            ]
            + [
                InputData(
                    channel_name=_CODE_CHANNEL,
                    data_source=contract.SCRIPT_SENTINELS[script_placeholder(_TRAIN_SCRIPT)],
                )
            ]
        ),
        retry_policies=_retry_policies(),
    )


@dataclass(frozen=True)
class _Evaluation:
    step: ProcessingStep
    metric_name: JsonGet  # the problem type's primary metric: auc, macro_f1 or r2
    metric_value: JsonGet
    metrics_json: JsonGet  # every metric, one JSON object string
    report_uri: Join


def _evaluate(jobs: _Jobs, preprocess: ProcessingStep, train: TrainingStep) -> _Evaluation:
    """The training image has python3 + sklearn (+ xgboost in the XGBoost image): the
    evaluation runs in it, loading the model the way its algorithm saved it."""
    report = PropertyFile(
        name=contract.EVALUATION_PROPERTY_FILE,
        output_name="evaluation",
        path=contract.EVALUATION_FILE,
    )
    model_artifact = train.properties.ModelArtifacts.S3ModelArtifacts
    step = ProcessingStep(
        name=contract.EVALUATE_STEP,
        step_args=jobs.run_script(
            jobs.p.training_image,
            "evaluate.py",
            inputs=[
                jobs.s3_in("model", model_artifact, f"{_PROCESSING}/input/model"),
                jobs.s3_in("test", _split_uri(preprocess, "test"), f"{_PROCESSING}/input/test"),
            ],
            outputs=[
                jobs.s3_out(
                    "evaluation",
                    f"{_PROCESSING}/evaluation",
                    jobs.run_uri(contract.EVALUATION_SUFFIX),
                )
            ],
            arguments=[
                "--model-dir",
                f"{_PROCESSING}/input/model",
                "--test-dir",
                f"{_PROCESSING}/input/test",
                "--output-dir",
                f"{_PROCESSING}/evaluation",
                "--algorithm",
                jobs.p.algorithm,
                "--problem-type",
                jobs.p.problem_type,
            ],
        ),
        property_files=[report],
        retry_policies=_retry_policies(),
    )

    def get(path: str) -> JsonGet:
        return JsonGet(step_name=contract.EVALUATE_STEP, property_file=report, json_path=path)

    report_uri = Join(
        on="/",
        values=[
            step.properties.ProcessingOutputConfig.Outputs["evaluation"].S3Output.S3Uri,
            contract.EVALUATION_FILE,
        ],
    )
    return _Evaluation(
        step,
        get(contract.PRIMARY_METRIC_NAME_PATH),
        get(contract.PRIMARY_METRIC_VALUE_PATH),
        get(contract.METRICS_JSON_PATH),
        report_uri,
    )


def _register(jobs: _Jobs, train: TrainingStep, evaluation: _Evaluation) -> ModelStep:
    builder = ModelBuilder(
        s3_model_data_url=train.properties.ModelArtifacts.S3ModelArtifacts,
        image_uri=jobs.p.training_image,
        role_arn=contract.ROLE_SENTINEL,
        instance_type=jobs.settings.processing_instance_type,
        # The deprecated `dependencies` defaults to {"auto": True}, which sends register()
        # down the code-upload path (and asks for a default bucket) although there is no code.
        dependencies={},
        sagemaker_session=jobs.session,
    )
    return ModelStep(
        name=contract.REGISTER_STEP,
        step_args=builder.register(
            model_package_group_name=jobs.p.model_package_group,
            approval_status=jobs.p.approval_status,
            content_types=["text/csv"],
            response_types=["text/csv"],
            model_metrics=ModelMetrics(
                model_statistics=MetricsSource(
                    content_type="application/json", s3_uri=evaluation.report_uri
                )
            ),
            # Whose model it is and how good, on the package itself: the model list,
            # its approval and a deployment stack read them without the runs table.
            # Values are strings (a Join makes the metric one). Keys are literals, so the
            # metric goes by name and value (the registry reads it as {name: value}).
            customer_metadata_properties={
                META_TENANT: jobs.p.tenant_id,
                META_RUN: jobs.p.run_id,
                META_PRIMARY_METRIC: evaluation.metric_name,
                META_PRIMARY_METRIC_VALUE: Join(on="", values=[evaluation.metric_value]),
                META_PROBLEM_TYPE: jobs.p.problem_type,
                META_ALGORITHM: jobs.p.algorithm,
            },
        ),
    )


def _record(
    jobs: _Jobs,
    preprocess: _Preprocess,
    train: TrainingStep,
    evaluation: _Evaluation,
    register: ModelStep,
) -> LambdaStep:
    function_arn = contract.placeholder(contract.RECORDER_PLACEHOLDER)
    return LambdaStep(
        name=contract.RECORD_STEP,
        lambda_func=Lambda(function_arn=function_arn, session=jobs.session),
        inputs={
            "tenant_id": jobs.p.tenant_id,
            "run_id": jobs.p.run_id,
            "model_package_arn": register.properties.ModelPackageArn,
            "problem_type": jobs.p.problem_type,
            "algorithm": jobs.p.algorithm,
            "metrics": evaluation.metrics_json,
            "data_report": preprocess.data_report,
            "evaluation_uri": evaluation.report_uri,
            "training_job_name": train.properties.TrainingJobName,
        },
        outputs=[LambdaOutput(output_name="recorded", output_type=LambdaOutputTypeEnum.String)],
        depends_on=[register],
    )


def _fail(jobs: _Jobs, evaluation: _Evaluation) -> FailStep:
    return FailStep(
        name=contract.FAIL_STEP,
        error_message=Join(
            on=" ",
            values=[
                "Model",
                evaluation.metric_name,
                evaluation.metric_value,
                "is below the threshold",
                jobs.p.metric_threshold,
                "for tenant",
                jobs.p.tenant_id,
                "run",
                jobs.p.run_id,
                "- the model was not registered.",
            ],
        ),
    )


def definition(settings: Settings) -> str:
    """Preprocess → Train → Evaluate → CheckMetric → (Register + RecordRun | Fail)."""
    session = offline_session(settings.region)
    jobs = _Jobs(settings, session, parameters(settings, session))
    preprocess = _preprocess(jobs)
    train = _train(jobs, preprocess.step)
    evaluation = _evaluate(jobs, preprocess.step, train)
    register = _register(jobs, train, evaluation)
    record = _record(jobs, preprocess, train, evaluation, register)
    check = ConditionStep(
        name=contract.CONDITION_STEP,
        # The problem type's primary metric (AUC, macro-F1, R²), higher is better for
        # each; MetricThreshold is the threshold for the run's problem type.
        conditions=[
            ConditionGreaterThanOrEqualTo(
                left=evaluation.metric_value, right=jobs.p.metric_threshold
            )
        ],
        if_steps=[register, record],
        else_steps=[_fail(jobs, evaluation)],
    )
    pipeline = Pipeline(
        name=Names.from_settings(settings).pipeline_name,
        parameters=jobs.p.ordered(),
        steps=[preprocess.step, train, evaluation.step, check],
        sagemaker_session=session,
        # No automatic experiment/trial per execution: it needs extra permissions on the
        # pipeline role, the local runner would have to emulate it, and it varies by region.
        pipeline_experiment_config=None,
    )
    with warnings.catch_warnings():
        # The volume size parameter in Compute (see _train) makes pydantic warn on dump.
        warnings.filterwarnings("ignore", "Pydantic serializer warnings", UserWarning)
        return pipeline.definition()
