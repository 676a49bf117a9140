"""A tenant's model registry (its SageMaker model package group), as the domain sees it.

Implemented on boto3 in ``model_registry.SageMakerModelVersions``; unit tests use
``trainyard.testing.models.FakeModelVersions``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from trainyard_core.model_versions import ModelStatus, ModelVersion


class ModelRegistryPort(Protocol):
    def list_versions(
        self, group: str, limit: int, next_token: str | None
    ) -> tuple[list[ModelVersion], str | None]:
        """Newest first; ``next_token`` is the API's page token of this group's
        listing (None: the first page; one of another listing is refused with
        ``InvalidNextToken``), and the next page's token is returned (None after
        the last)."""
        ...

    def get_version(self, group: str, version: int) -> ModelVersion | None: ...

    def get_by_arn(self, model_package_arn: str) -> ModelVersion | None: ...

    def latest_approved(self, group: str) -> ModelVersion | None:
        """The newest Approved version of the group (what a deployment runs)."""
        ...

    def add_metadata(self, model: ModelVersion, metadata: dict[str, str]) -> None:
        """Add keys to the package's customer metadata (other keys are kept)."""
        ...

    def set_status(
        self,
        model: ModelVersion,
        status: ModelStatus,
        description: str,
        metadata: dict[str, str],
    ) -> ModelVersion:
        """Change the approval status; ``metadata`` is added to the package's
        customer metadata (other keys are kept). Returns the version after it."""
        ...
