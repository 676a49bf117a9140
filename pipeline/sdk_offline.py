"""Every workaround needed to build a pipeline definition with SageMaker Python SDK v3 offline.

This is the ONLY module that knows about them; ``pipeline.definition`` just does::

    with offline_sdk():
        session = offline_session(region)
        ...  # import and drive sagemaker.* as documented

Measured against ``sagemaker`` 3.27 (see ``tests/unit/test_pipeline_definition.py``, which
builds with sockets blocked and no credentials, in a fresh interpreter):

* Region before import: ``import sagemaker.mlops.workflow`` pulls in
  ``sagemaker.ai_registry.air_hub.AIRHub``, which calls ``boto3.client(...)`` in its class
  body and raises ``NoRegionError`` without a region.
* ``AWS_EC2_METADATA_DISABLED``: creating those clients resolves credentials; with none in the
  environment botocore probes the EC2 instance metadata service (169.254.169.254), a network
  call at import time.
* ``SAGEMAKER_VALIDATE_ROLE=false``: ``ModelTrainer`` otherwise validates its role with
  ``iam:SimulatePrincipalPolicy``.
* SDK defaults files: ``~/.config/sagemaker/config.yaml`` (or an ``s3://`` override, which would
  be fetched) would silently change the definition; both override variables point at
  ``os.devnull`` while building so the output depends on Trainyard settings only.
* Telemetry: opted out through the SDK's documented ``TelemetryOptOut`` defaults key, given to
  the session directly.
* Speed: the SDK re-validates the whole SDK-defaults dict against its JSON schema (including a
  meta-schema check) on every config lookup, ~0.25 s each and ~50 per build; while building,
  an identical dict is validated once (:func:`_validate_config_once`).
* Logging: importing the SDK calls ``logging.basicConfig`` (``sagemaker.core.experiments``);
  the root logger is restored afterwards and SDK chatter is silenced while building.
* The session (:func:`offline_session`): static dummy credentials (the credential chain is
  never consulted), a botocore ``before-send`` hook that raises :class:`OfflineAwsCallError`
  for any request, and ``default_bucket()`` raising, because every S3 location in our
  definition is explicit and a default bucket would need STS and S3.

Environment changes are scoped to the ``with`` block and restored afterwards, so importing the
pipeline builder into the CDK app or the local runtime does not change their AWS behaviour.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sagemaker.core.workflow.pipeline_context import PipelineSession

# Region used only to satisfy import-time client creation when none is configured; the
# definition itself uses the region from Trainyard settings via offline_session().
IMPORT_REGION = "us-east-1"

# The SDK's documented switch for telemetry (SageMaker.PythonSDK.Modules.TelemetryOptOut).
SDK_DEFAULTS: dict[str, Any] = {
    "SchemaVersion": "1.0",
    "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}},
}

_FORCED_ENV = {
    "AWS_EC2_METADATA_DISABLED": "true",
    "SAGEMAKER_VALIDATE_ROLE": "false",
    "SAGEMAKER_ADMIN_CONFIG_OVERRIDE": os.devnull,
    "SAGEMAKER_USER_CONFIG_OVERRIDE": os.devnull,
}

# Environment mutation is process-wide: serialize builds.
_LOCK = threading.RLock()


class OfflineAwsCallError(RuntimeError):
    """The SDK tried to call an AWS API while building the definition offline."""


@contextmanager
def _scoped_environ(forced: dict[str, str], defaults: dict[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in (*forced, *defaults)}
    os.environ.update(forced)
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def _preserved_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    # INFO/WARNING lines ("Popping out 'ProcessingJobName'...") are expected noise here;
    # sagemaker.config sets its own level, so it is quieted separately.
    sdk_loggers = [logging.getLogger(name) for name in ("sagemaker", "sagemaker.config")]
    sdk_levels = [logger.level for logger in sdk_loggers]
    for logger in sdk_loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for logger, sdk_level in zip(sdk_loggers, sdk_levels, strict=True):
            logger.setLevel(sdk_level)


@contextmanager
def _validate_config_once() -> Iterator[None]:
    # Imported here: this is the first SDK import, and it needs the environment set above.
    from sagemaker.core.config.config_manager import SageMakerConfig

    original = inspect.getattr_static(SageMakerConfig, "validate_sagemaker_config")
    validate = SageMakerConfig.validate_sagemaker_config
    validated: set[str] = set()

    def validate_once(sagemaker_config: dict[str, Any] | None = None) -> None:
        key = json.dumps(sagemaker_config, sort_keys=True, default=repr)
        if key not in validated:
            validate(sagemaker_config)
            validated.add(key)

    SageMakerConfig.validate_sagemaker_config = staticmethod(validate_once)  # type: ignore[method-assign]
    try:
        yield
    finally:
        SageMakerConfig.validate_sagemaker_config = original  # type: ignore[method-assign]


@contextmanager
def offline_sdk() -> Iterator[None]:
    """Import and drive the SageMaker SDK inside this block, never outside it."""
    with (
        _LOCK,
        _scoped_environ(_FORCED_ENV, {"AWS_DEFAULT_REGION": IMPORT_REGION}),
        _preserved_root_logger(),
        warnings.catch_warnings(),
    ):
        # "Running within a PipelineSession, there will be No Wait..." is the expected mode.
        warnings.filterwarnings("ignore", category=UserWarning, module=r"sagemaker\..*")
        with _validate_config_once():
            yield


def _refuse_aws_call(event_name: str = "", **_: Any) -> None:
    raise OfflineAwsCallError(
        f"the SageMaker SDK tried to call AWS ({event_name}) while building offline; "
        "give that value explicitly instead"
    )


def offline_session(region: str) -> PipelineSession:
    """A PipelineSession that can never reach AWS. Call inside :func:`offline_sdk`."""
    import boto3
    from sagemaker.core.workflow.pipeline_context import PipelineSession

    class _OfflinePipelineSession(PipelineSession):
        def default_bucket(self) -> str:
            raise OfflineAwsCallError(
                "the SageMaker SDK asked for a default bucket; give every S3 location explicitly"
            )

        def account_id(self) -> str:
            raise OfflineAwsCallError("the SageMaker SDK asked for the account id")

    boto_session = boto3.Session(
        aws_access_key_id="offline",
        aws_secret_access_key="offline",
        region_name=region,
    )
    boto_session.events.register("before-send", _refuse_aws_call)
    return _OfflinePipelineSession(boto_session=boto_session, sagemaker_config=SDK_DEFAULTS)
