"""Local shims for measured moto gaps (docs/architecture.md §4), kept in one place.

- SageMaker's model registry: moto has no ``DeleteModelPackageGroup``,
  ``DeleteModelPackage`` or ``Get/Put/DeleteModelPackageGroupPolicy``, and its
  ``CreateModelPackageGroup`` silently replaces an existing group. The operations
  below are added to moto's backend and API (reachable with plain boto3) with AWS's
  behaviour: a group that still holds model packages cannot be deleted
  (ConflictException), a group without a policy has none to get (ValidationException).
- SageMaker's UpdateModelPackage: moto replaces the customer metadata with the
  request's (and the approval description with None when the request has none);
  SageMaker changes only what the request names, adding its metadata to the
  package's (``CustomerMetadataPropertiesToRemove`` removes keys).
- SageMaker pipelines: moto has no ``StopPipelineExecution`` or
  ``RetryPipelineExecution``; both are added (only an Executing execution can be
  stopped, only a Failed one retried), and the pipeline engine stops its worker or
  runs the execution again from its failed steps.
- S3 access logging: moto's PutBucketLogging accepts a target bucket policy only if
  its Resource is spelled exactly ``<bucket>/<prefix>*`` (the platform bucket grants
  ``access-logs/*`` to log delivery, with source conditions, which S3 accepts); the
  target's policy is evaluated with the embedded IAM evaluator instead.
- DynamoDB: moto's transactions are not atomic across its server threads; the
  item operations are serialized in process.
- Secrets Manager: moto lets CreateSecret and PutSecretValue use a secret that is
  scheduled for deletion (CreateSecret says ResourceExists); AWS refuses both with
  InvalidRequestException until the secret is restored (RestoreSecret) or gone.
  moto also finishes a forced deletion (ForceDeleteWithoutRecovery) at once; AWS
  finishes it "with an asynchronous background process, so there might be a short
  delay" (DeleteSecret's documentation): meanwhile CreateSecret of that name fails
  (InvalidRequestException, "already scheduled for deletion") and there is nothing to
  restore. The name stays pending here for ``FORCE_DELETE_PENDING_SECONDS``.

moto's CloudFormation is not shimmed here: tenant stacks run on the embedded stack's
own engine (``trainyard/local/cloudformation``).
"""

from __future__ import annotations

import contextvars
import json
import threading
import time
from typing import Any

_lock = threading.Lock()


# ------------------------------------------------------------- SageMaker registry


def _group(backend: Any, name: str) -> Any:
    # Raises moto's ValidationException "ModelPackageGroup <arn> does not exist."
    return backend.describe_model_package_group(_group_name(name))


def _group_name(name_or_arn: str) -> str:
    return name_or_arn.rsplit("/", 1)[-1] if name_or_arn.startswith("arn:") else name_or_arn


def _delete_model_package_group(self: Any, model_package_group_name: str) -> None:
    from moto.sagemaker.exceptions import ConflictException

    group = _group(self, model_package_group_name)
    held = [
        p
        for p in self.model_packages.values()
        if p.model_package_group_name == group.model_package_group_name
    ]
    if held:
        raise ConflictException(
            f"Model Package Group {group.arn} cannot be deleted while it contains "
            f"{len(held)} model package(s); delete them first."
        )
    del self.model_package_groups[group.model_package_group_name]


def _delete_model_package(self: Any, model_package_name: str) -> None:
    package = self.describe_model_package(model_package_name)  # ValidationException if absent
    del self.model_packages[package.arn]
    for key, arn in list(self.model_package_name_mapping.items()):
        if arn == package.arn:
            del self.model_package_name_mapping[key]


def _get_model_package_group_policy(self: Any, model_package_group_name: str) -> str:
    from moto.sagemaker.exceptions import ValidationError

    group = _group(self, model_package_group_name)
    policy = getattr(group, "resource_policy", None)
    if policy is None:
        raise ValidationError(
            f"Model Package Group {group.model_package_group_name} does not have a resource policy."
        )
    return str(policy)


def _put_model_package_group_policy(
    self: Any, model_package_group_name: str, resource_policy: str
) -> str:
    from moto.sagemaker.exceptions import ValidationError

    group = _group(self, model_package_group_name)
    try:
        json.loads(resource_policy)
    except ValueError:
        raise ValidationError("ResourcePolicy is not valid JSON.") from None
    group.resource_policy = resource_policy
    return str(group.arn)


def _delete_model_package_group_policy(self: Any, model_package_group_name: str) -> None:
    self.get_model_package_group_policy(model_package_group_name)  # none -> ValidationException
    _group(self, model_package_group_name).resource_policy = None


def _stop_pipeline_execution(
    self: Any, pipeline_execution_arn: str, client_request_token: str | None = None
) -> str:
    """Without a pipeline engine nothing executes (moto records executions as
    Succeeded): only an Executing one can be stopped, as in AWS. The engine replaces
    this on the backend it watches, to stop its worker."""
    from moto.sagemaker.exceptions import ValidationError

    for pipeline in list(self.pipelines.values()):
        execution = pipeline.pipeline_executions.get(pipeline_execution_arn)
        if execution is None:
            continue
        if execution.pipeline_execution_status != "Executing":
            raise ValidationError(
                f"Pipeline execution {pipeline_execution_arn} is "
                f"{execution.pipeline_execution_status}; only an Executing execution can "
                "be stopped."
            )
        execution.pipeline_execution_status = "Stopped"
        return pipeline_execution_arn
    raise ValidationError(f"Pipeline execution {pipeline_execution_arn} does not exist.")


def _retry_pipeline_execution(
    self: Any,
    pipeline_execution_arn: str,
    client_request_token: str | None = None,
    parallelism_configuration: dict[str, int] | None = None,
) -> str:
    """Without a pipeline engine nothing executes, so nothing ever Failed: only a
    Failed execution can be retried, as in AWS. The engine replaces this."""
    from moto.sagemaker.exceptions import ResourceNotFound, ValidationError

    for pipeline in list(self.pipelines.values()):
        execution = pipeline.pipeline_executions.get(pipeline_execution_arn)
        if execution is None:
            continue
        if execution.pipeline_execution_status != "Failed":
            raise ValidationError(
                f"Pipeline execution {pipeline_execution_arn} is "
                f"{execution.pipeline_execution_status}; only a Failed execution can be "
                "retried."
            )
        execution.pipeline_execution_status = "Executing"
        return pipeline_execution_arn
    raise ResourceNotFound(f"Pipeline execution {pipeline_execution_arn} does not exist.")


def _update_model_package(
    self: Any,
    model_package_arn: str,
    model_approval_status: str | None,
    approval_description: str | None,
    customer_metadata_properties: dict[str, str] | None,
    customer_metadata_properties_to_remove: list[str] | None,
    additional_inference_specifications_to_add: list[Any] | None,
) -> str:
    """UpdateModelPackage as SageMaker applies it: only the named fields change."""
    from moto.sagemaker.exceptions import ValidationError

    mapped = self.model_package_name_mapping.get(model_package_arn, model_package_arn)
    package = self.model_packages.get(mapped)
    if package is None:
        raise ValidationError(f"Model package {model_package_arn} not found")
    if model_approval_status is not None:
        package.set_model_approval_status(model_approval_status)
    if approval_description is not None:
        package.approval_description = approval_description
    metadata = dict(package.customer_metadata_properties or {})
    metadata.update(customer_metadata_properties or {})
    for key in customer_metadata_properties_to_remove or []:
        metadata.pop(key, None)
    package.customer_metadata_properties = metadata or None
    if additional_inference_specifications_to_add:
        package.add_additional_inference_specifications(additional_inference_specifications_to_add)
    package.modifications_done()
    return str(package.arn)


def _create_model_package_group_once(original: Any) -> Any:
    def create(self: Any, model_package_group_name: str, *args: Any, **kwargs: Any) -> Any:
        from moto.sagemaker.exceptions import ValidationError

        existing = self.model_package_groups.get(model_package_group_name)
        if existing is not None:
            raise ValidationError(f"Model Package Group already exists: {existing.arn}")
        return original(self, model_package_group_name, *args, **kwargs)

    create._trainyard_shim = True  # type: ignore[attr-defined]
    return create


def _response(backend_method: str, *params: str, result: str | None = None) -> Any:
    def respond(self: Any) -> Any:
        from moto.core.responses import ActionResult, EmptyResult

        value = getattr(self.sagemaker_backend, backend_method)(
            *(self._get_param(p) for p in params)
        )
        return ActionResult({result: value}) if result else EmptyResult()

    respond.__name__ = backend_method
    return respond


def install_sagemaker_registry_shims() -> None:
    """Add the model registry operations moto lacks (idempotent, process-wide)."""
    from moto.sagemaker.models import SageMakerModelBackend
    from moto.sagemaker.responses import SageMakerResponse

    with _lock:
        if getattr(SageMakerModelBackend, "_trainyard_registry", False):
            return
        for name, function in (
            ("delete_model_package_group", _delete_model_package_group),
            ("delete_model_package", _delete_model_package),
            ("get_model_package_group_policy", _get_model_package_group_policy),
            ("put_model_package_group_policy", _put_model_package_group_policy),
            ("delete_model_package_group_policy", _delete_model_package_group_policy),
            ("stop_pipeline_execution", _stop_pipeline_execution),
            ("retry_pipeline_execution", _retry_pipeline_execution),
            ("update_model_package", _update_model_package),
        ):
            setattr(SageMakerModelBackend, name, function)
        SageMakerModelBackend.create_model_package_group = _create_model_package_group_once(
            SageMakerModelBackend.create_model_package_group
        )
        # moto dispatches an API action to the response method of the same name.
        for name, params, result in (
            ("delete_model_package_group", ("ModelPackageGroupName",), None),
            ("delete_model_package", ("ModelPackageName",), None),
            ("get_model_package_group_policy", ("ModelPackageGroupName",), "ResourcePolicy"),
            (
                "put_model_package_group_policy",
                ("ModelPackageGroupName", "ResourcePolicy"),
                "ModelPackageGroupArn",
            ),
            ("delete_model_package_group_policy", ("ModelPackageGroupName",), None),
            (
                "stop_pipeline_execution",
                ("PipelineExecutionArn", "ClientRequestToken"),
                "PipelineExecutionArn",
            ),
            (
                "retry_pipeline_execution",
                ("PipelineExecutionArn", "ClientRequestToken", "ParallelismConfiguration"),
                "PipelineExecutionArn",
            ),
        ):
            setattr(SageMakerResponse, name, _response(name, *params, result=result))
        SageMakerModelBackend._trainyard_registry = True  # type: ignore[attr-defined]


# ------------------------------------------------------------ S3 access logging

_logging_source: contextvars.ContextVar[Any] = contextvars.ContextVar("trainyard_logging_source")


def _log_delivery_allowed(target_bucket: Any, target_prefix: str | None) -> bool:
    """Whether the target bucket's policy lets S3's log delivery write this source
    bucket's logs, decided by the embedded IAM evaluator (moto only accepts a Resource
    spelled exactly ``<bucket>/<prefix>*`` and ignores the conditions)."""
    from .iam.policy import Request, RequestPrincipal, evaluate_resource_policy

    source = _logging_source.get(None)
    if not target_bucket.policy or source is None:
        return False
    raw = target_bucket.policy
    document = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    partition = target_bucket.partition
    # A key as log delivery writes it: <prefix><date and time>-<unique id>.
    key = f"{target_prefix or ''}2026-01-01-00-00-00-0123456789ABCDEF"
    request = Request(
        "s3:PutObject",
        f"arn:{partition}:s3:::{target_bucket.name}/{key}",
        {
            "aws:SourceArn": f"arn:{partition}:s3:::{source.name}",
            "aws:SourceAccount": str(source.account_id),
            "aws:SecureTransport": "true",
        },
    )
    who = RequestPrincipal(service="logging.s3.amazonaws.com")
    return evaluate_resource_policy(document, request, who).allowed


def install_s3_logging_policy_check() -> None:
    """PutBucketLogging accepts a target whose bucket policy admits log delivery for
    this source bucket, as S3 decides it (idempotent, process-wide)."""
    from moto.s3.models import FakeBucket

    with _lock:
        if getattr(FakeBucket, "_trainyard_logging", False):
            return
        original = FakeBucket.set_logging

        def set_logging(self: Any, logging_config: Any, bucket_backend: Any) -> None:
            token = _logging_source.set(self)
            try:
                original(self, logging_config, bucket_backend)
            finally:
                _logging_source.reset(token)

        FakeBucket.set_logging = set_logging  # type: ignore[method-assign]
        FakeBucket._log_permissions_enabled_policy = staticmethod(_log_delivery_allowed)  # type: ignore[method-assign]
        FakeBucket._trainyard_logging = True  # type: ignore[attr-defined]


# DynamoDB operations that must see and leave a consistent table. moto's
# transact_write_items snapshots whole tables for its rollback, so a write or a
# transaction running beside it in another server thread can be lost or half
# seen; DynamoDB itself makes transactions and conditional writes atomic.
_DYNAMODB_OPS = (
    "put_item",
    "update_item",
    "delete_item",
    "transact_write_items",
    "get_item",
    "query",
    "scan",
    "transact_get_items",
)
_dynamodb_lock = threading.RLock()


def install_dynamodb_serializer() -> None:
    """Serialize moto's DynamoDB item operations in this process (idempotent)."""
    from moto.dynamodb.models import DynamoDBBackend

    with _lock:
        for name in _DYNAMODB_OPS:
            original = getattr(DynamoDBBackend, name, None)
            if original is None or getattr(original, "_trainyard_serialized", False):
                continue

            def serialized(original: Any = original) -> Any:
                def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
                    with _dynamodb_lock:
                        return original(self, *args, **kwargs)

                wrapper._trainyard_serialized = True  # type: ignore[attr-defined]
                wrapper.__name__ = original.__name__
                return wrapper

            setattr(DynamoDBBackend, name, serialized())


# ----------------------------------------------------------------- Secrets Manager


def _refuse_when_scheduled_for_deletion(original: Any, message: str, key: str) -> Any:
    def guarded(self: Any, *args: Any, **kwargs: Any) -> Any:
        from moto.secretsmanager.exceptions import InvalidRequestException

        secret_id = kwargs.get(key, args[0] if args else None)
        secret = self.secrets.get(secret_id) if secret_id is not None else None
        is_deleted = getattr(secret, "is_deleted", None)
        if callable(is_deleted) and is_deleted():
            raise InvalidRequestException(message)
        return original(self, *args, **kwargs)

    guarded._trainyard_shim = True  # type: ignore[attr-defined]
    guarded.__name__ = original.__name__
    return guarded


# How long a force-deleted secret's name stays taken. AWS documents no bound ("a
# short delay"); long enough that any immediate re-creation in a test meets it.
FORCE_DELETE_PENDING_SECONDS = 20.0
_CREATE_PENDING = (
    "You can't create this secret because a secret with this name is already "
    "scheduled for deletion."
)
_RESTORE_PENDING = (
    "You can't restore this secret because it was deleted without a recovery window "
    "and is being deleted."
)


def _pending_names(backend: Any) -> dict[str, float]:
    """Name -> monotonic time its forced deletion finishes (per moto backend, so a
    reset backend forgets them with its secrets)."""
    pending = backend.__dict__.get("_trainyard_force_deleted")
    if pending is None:
        pending = backend.__dict__.setdefault("_trainyard_force_deleted", {})
    now = time.monotonic()
    for name in [n for n, until in pending.items() if until <= now]:
        del pending[name]
    return pending  # type: ignore[no-any-return]


def _pending_name(backend: Any, secret_id: str) -> str | None:
    """The pending name ``secret_id`` names (a name, or an ARN of that name)."""
    pending = _pending_names(backend)
    if secret_id in pending:
        return secret_id
    for name in pending:
        # arn:...:secret:<name>-<6 random characters>
        if secret_id.startswith("arn:") and secret_id.rsplit(":", 1)[-1][:-7] == name:
            return name
    return None


def _delayed_force_delete(original: Any) -> Any:
    def delete_secret(
        self: Any,
        secret_id: str,
        recovery_window_in_days: int | None,
        force_delete_without_recovery: bool,
    ) -> Any:
        existing = self.secrets.get(secret_id) if self._is_valid_identifier(secret_id) else None
        answer = original(self, secret_id, recovery_window_in_days, force_delete_without_recovery)
        if force_delete_without_recovery and existing is not None:
            _pending_names(self)[existing.name] = time.monotonic() + FORCE_DELETE_PENDING_SECONDS
        return answer

    return delete_secret


def _refuse_pending(original: Any, message: str, key: str) -> Any:
    def refuse(self: Any, *args: Any, **kwargs: Any) -> Any:
        from moto.secretsmanager.exceptions import InvalidRequestException

        secret_id = kwargs.get(key, args[0] if args else None)
        if secret_id is not None and _pending_name(self, str(secret_id)) is not None:
            raise InvalidRequestException(message)
        return original(self, *args, **kwargs)

    return refuse


def install_secretsmanager_deletion_checks() -> None:
    """CreateSecret / PutSecretValue on a secret scheduled for deletion fail as in AWS,
    and a forced deletion keeps its name taken for a while, as AWS's asynchronous
    deletion does (idempotent)."""
    from moto.secretsmanager.models import SecretsManagerBackend

    with _lock:
        if not getattr(SecretsManagerBackend, "_trainyard_force_delete", False):
            wrapped = {
                "delete_secret": _delayed_force_delete(SecretsManagerBackend.delete_secret),
                "create_secret": _refuse_pending(
                    SecretsManagerBackend.create_secret, _CREATE_PENDING, "name"
                ),
                "restore_secret": _refuse_pending(
                    SecretsManagerBackend.restore_secret, _RESTORE_PENDING, "secret_id"
                ),
            }
            for method, function in wrapped.items():
                function.__name__ = method
                setattr(SecretsManagerBackend, method, function)
            SecretsManagerBackend._trainyard_force_delete = True  # type: ignore[attr-defined]

    checks = {
        "create_secret": (
            "You can't create this secret because a secret with this name is already "
            "scheduled for deletion.",
            "name",
        ),
        "put_secret_value": (
            "You can't perform this operation on the secret because it was marked for deletion.",
            "secret_id",
        ),
    }
    with _lock:
        for method, (message, key) in checks.items():
            original = getattr(SecretsManagerBackend, method)
            if getattr(original, "_trainyard_shim", False):
                continue
            setattr(
                SecretsManagerBackend,
                method,
                _refuse_when_scheduled_for_deletion(original, message, key),
            )
