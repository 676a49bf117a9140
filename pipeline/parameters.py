"""The pipeline's parameters, built with the SageMaker Python SDK v3 (``contract.py``
names them; the defaults come from the settings).

Import this module only inside ``sdk_offline.offline_sdk()``, as ``build.py``: it
imports the SDK at the top.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sagemaker.core import image_uris
from sagemaker.core.workflow.parameters import ParameterFloat, ParameterInteger, ParameterString
from trainyard_core.config import Settings

from pipeline import contract
from pipeline.scripts import script_placeholder


@dataclass(frozen=True)
class Parameters:
    """The pipeline parameters, in ``contract.PARAMETERS`` order."""

    tenant_id: Any
    run_id: Any
    input_data_uri: Any
    output_uri: Any
    execution_role: Any
    training_instance_type: Any
    training_instance_count: Any
    processing_instance_type: Any
    model_package_group: Any
    approval_status: Any
    metric_threshold: Any
    training_image: Any
    processing_image: Any
    num_round: Any
    max_depth: Any
    eta: Any
    problem_type: Any
    algorithm: Any
    hyperparameters: Any
    volume_size: Any
    schema_baseline: Any
    schema_drift: Any

    def ordered(self) -> list[Any]:
        values = list(vars(self).values())
        names = [value.name for value in values]
        if names != contract.PARAMETERS:
            raise RuntimeError(f"parameters {names} differ from the contract")
        return values


def parameters(settings: Settings, session: Any) -> Parameters:
    default_plan = settings.plan(settings.default_plan)
    hyperparameters = settings.xgboost.hyperparameters
    return Parameters(
        tenant_id=ParameterString("TenantId"),
        run_id=ParameterString("RunId"),
        input_data_uri=ParameterString("InputDataUri"),
        output_uri=ParameterString("OutputUri"),
        execution_role=ParameterString("ExecutionRoleArn"),
        training_instance_type=ParameterString(
            "TrainingInstanceType", default_value=default_plan.training_instance_type
        ),
        training_instance_count=ParameterInteger(
            "TrainingInstanceCount", default_value=default_plan.training_instance_count
        ),
        processing_instance_type=ParameterString(
            "ProcessingInstanceType", default_value=settings.processing_instance_type
        ),
        model_package_group=ParameterString("ModelPackageGroupName"),
        approval_status=ParameterString(
            "ModelApprovalStatus", default_value=settings.model_approval_status
        ),
        metric_threshold=ParameterFloat("MetricThreshold", default_value=settings.metric_threshold),
        training_image=ParameterString(
            "TrainingImageUri",
            default_value=image_uris.retrieve(
                "xgboost",
                region=settings.region,
                version=settings.xgboost.framework_version,
                sagemaker_session=session,
            ),
        ),
        processing_image=ParameterString(
            "ProcessingImageUri",
            default_value=image_uris.retrieve(
                "sklearn",
                region=settings.region,
                version=settings.sklearn_framework_version,
                instance_type=settings.processing_instance_type,
                sagemaker_session=session,
            ),
        ),
        num_round=ParameterInteger("NumRound", default_value=int(hyperparameters["num_round"])),
        max_depth=ParameterInteger("MaxDepth", default_value=int(hyperparameters["max_depth"])),
        eta=ParameterFloat("Eta", default_value=float(hyperparameters["eta"])),
        # Declared for the scheduler's start (dispatch.training_parameters).
        problem_type=ParameterString(
            contract.PROBLEM_TYPE_PARAMETER, default_value=settings.default_training.problem_type
        ),
        algorithm=ParameterString(
            contract.ALGORITHM_PARAMETER, default_value=settings.default_training.algorithm
        ),
        hyperparameters=ParameterString(contract.HYPERPARAMETERS_PARAMETER, default_value="{}"),
        volume_size=ParameterInteger(
            contract.VOLUME_SIZE_PARAMETER, default_value=default_plan.training_volume_size_gb
        ),
        schema_baseline=ParameterString(
            contract.SCHEMA_BASELINE_PARAMETER,
            default_value=contract.SCRIPT_SENTINELS[
                script_placeholder(contract.NO_SCHEMA_BASELINE_FILE)
            ],
        ),
        schema_drift=ParameterString(
            contract.SCHEMA_DRIFT_PARAMETER, default_value=settings.default_training.schema_drift
        ),
    )
