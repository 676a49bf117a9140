"""The pipeline's contract: its parameters, step names, placeholders and evaluation report.

Shared by the steps (``build.py``), the definition (``definition.py``, which re-exports
every name here), the CDK stack, the local runner and the scheduler.
"""

from __future__ import annotations

from trainyard_core.lineage import DATA_REPORT_SUFFIX as DATA_REPORT_SUFFIX
from trainyard_core.lineage import PRIMARY_METRICS as PRIMARY_METRICS

from pipeline.scripts import STEP_SCRIPTS

# What a run trains (chosen at dispatch: lambdas/trainyard_core/training.py).
PROBLEM_TYPE_PARAMETER = "ProblemType"  # binary | multiclass | regression
ALGORITHM_PARAMETER = "Algorithm"  # a catalog entry's name (settings.algorithms)
# A JSON object string: the validated, defaulted hyperparameters, typed as the catalog says.
HYPERPARAMETERS_PARAMETER = "Hyperparameters"
VOLUME_SIZE_PARAMETER = "TrainingVolumeSizeInGB"
# The schema-drift check (preprocess): the S3 prefix of the tenant's previous successful
# run's data report (its schema.json), else the platform's no-baseline marker (the
# parameter's default); and warn | fail.
SCHEMA_BASELINE_PARAMETER = "SchemaBaselineUri"
SCHEMA_DRIFT_PARAMETER = "SchemaDrift"
NO_SCHEMA_BASELINE_FILE = "no_schema_baseline.json"

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
    PROBLEM_TYPE_PARAMETER,
    ALGORITHM_PARAMETER,
    HYPERPARAMETERS_PARAMETER,
    VOLUME_SIZE_PARAMETER,
    SCHEMA_BASELINE_PARAMETER,
    SCHEMA_DRIFT_PARAMETER,
]
# What the step scripts can train (the catalog's entries use these names).
PROBLEM_TYPES = ("binary", "multiclass", "regression")
ALGORITHMS = ("xgboost", "linear", "random-forest")
DEFAULT_PROBLEM_TYPE = "binary"
DEFAULT_ALGORITHM = "xgboost"
RECORDER_PLACEHOLDER = "RecorderFunctionArn"
# Deploy-time values: each step script's S3 URI (pipeline/scripts.py) and the recorder.
PLACEHOLDERS = (*STEP_SCRIPTS, RECORDER_PLACEHOLDER)

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
# Every problem type's evaluation names one primary metric, higher is better for each
# (AUC for binary, macro-F1 for multiclass, R² for regression): the condition compares
# it with MetricThreshold, the model package and the run record it.
# PRIMARY_METRICS: trainyard_core/lineage.py (the run's lineage names it too).
PRIMARY_METRIC_NAME_PATH = "primary_metric.name"
PRIMARY_METRIC_VALUE_PATH = "primary_metric.value"
# Every metric as one compact JSON object string (what the recorder gets).
METRICS_JSON_PATH = "metrics_json"

# The data report preprocess writes (rows, columns, class balance or target range,
# missing values), under <OutputUri><RunId>/data-report/, read by the pipeline as a
# PropertyFile; ``summary`` is the report as one bounded JSON string for the recorder.
DATA_REPORT_PROPERTY_FILE = "DataReport"
DATA_REPORT_FILE = "data-report.json"
DATA_REPORT_JSON_PATH = "summary"
DATA_REPORT_MAX_CHARS = 4096
SCHEMA_FILE = "schema.json"  # beside the data report: the next run's drift baseline
SCHEMA_DRIFT_MODES = ("warn", "fail")
RUN_TAG_KEY = "trainyard:run-id"

# The SDK insists on s3:// URIs for code inputs (anything else is uploaded from disk) and on a
# literal role for ModelTrainer (its `role` field is a plain str); these sentinels stand in for
# the deploy-time values and are swapped out by _bind_deploy_time_values (build.py uses them).
_SENTINEL_BUCKET = "s3://trainyard-sdk-offline-sentinel"
SCRIPT_SENTINELS = {name: f"{_SENTINEL_BUCKET}/{name}" for name in STEP_SCRIPTS}
ROLE_SENTINEL = "arn:aws:iam::000000000000:role/trainyard-sdk-offline-sentinel"


def placeholder(name: str) -> str:
    return "${" + name + "}"
