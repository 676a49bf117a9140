"""Docker-free interpreter for SageMaker pipeline definitions (schema 2020-12-01).

Runs the *same* definition JSON that is deployed to AWS against S3/SageMaker
APIs reached through boto3 (moto locally)::

    runner = PipelineRunner(s3=..., sagemaker=..., workdir=Path(...),
                            lambda_invoker=fn, job_timeout_seconds=900)
    result = runner.run(definition_json, parameters={"TenantId": "acme", ...},
                        context=ExecutionContext(pipeline_name=..., execution_arn=...))
    result.status          # "Succeeded" | "Failed" | "Stopped"
    result.failure_reason  # None or a human-readable reason
    result.steps           # [StepRecord] of the steps that ran, in order
    result.step("Train").properties["ModelArtifacts"]["S3ModelArtifacts"]

``lambda_invoker(function_arn, payload) -> dict`` executes Lambda steps; its
result provides the step's OutputParameters; an exception fails the step.
``runner.job_launcher`` (a ``JobLauncher``) runs the Processing and Training jobs.

Supported: Parameters (String/Integer/Float/Boolean; execution values over
defaults), ``Get`` of Parameters.*, Execution.* and Steps.<name>.<describe-response
path> (e.g. ``ProcessingOutputConfig.Outputs['train'].S3Output.S3Uri``,
``ModelArtifacts.S3ModelArtifacts``, ``OutputParameters['x']``, ``ModelPackageArn``),
``Std:Join``, ``Std:JsonGet`` (PropertyFile or S3Uri), conditions (Equals,
GreaterThan[OrEqualTo], LessThan[OrEqualTo], In, Not, Or, And), DependsOn and data
dependencies, IfSteps/ElseSteps (untaken branches do not run). Step types:
Processing (local Python process, SageMaker directory contract), Training (the
built-in XGBoost container, emulated), RegisterModel and Model (boto3
CreateModelPackage / CreateModel), Lambda, Condition, Fail. Anything else fails
the step with a "not supported by the local runner" reason.

Modules: ``execution`` (the runner, ordering, branches, records), ``expressions``,
``step_types`` (one handler per type), ``staging`` (S3 <-> /opt/ml), ``jobs`` (the
job launcher), ``records`` (context, records, result), ``retry`` (a step's
RetryPolicies), ``xgboost_container``.
"""

from .execution import LambdaInvoker, PipelineRunner
from .jobs import Job, JobLauncher, SubprocessJobLauncher
from .records import (
    EXECUTING,
    FAILED,
    STOPPED,
    SUCCEEDED,
    ExecutionContext,
    ExecutionResult,
    ExecutionStopped,
    StepFailure,
    StepRecord,
)

__all__ = [
    "EXECUTING",
    "FAILED",
    "STOPPED",
    "SUCCEEDED",
    "ExecutionContext",
    "ExecutionResult",
    "ExecutionStopped",
    "Job",
    "JobLauncher",
    "LambdaInvoker",
    "PipelineRunner",
    "StepFailure",
    "StepRecord",
    "SubprocessJobLauncher",
]
