"""Ports of the tenant lifecycle: tenant stacks, data purges and moves, the model
registry. Implemented on AWS by ``trainyard_core.provisioning`` (CloudFormation, S3)
and ``trainyard_core.model_registry`` (SageMaker); by in-memory fakes in tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from trainyard_core.config import Isolation


@dataclass(frozen=True)
class StackState:
    status: str  # CloudFormation stack status, e.g. CREATE_COMPLETE
    outputs: dict[str, str] = field(default_factory=dict)
    reason: str | None = None

    @property
    def complete(self) -> bool:
        return self.status in ("CREATE_COMPLETE", "UPDATE_COMPLETE")

    @property
    def in_progress(self) -> bool:
        # Rollbacks and cleanups in progress too: CloudFormation accepts no new
        # operation (a DeleteStack to retry, say) until they end.
        return self.status.endswith("_IN_PROGRESS")

    @property
    def failed(self) -> bool:
        return not self.in_progress and (
            self.status.endswith("_FAILED") or "ROLLBACK" in self.status
        )


class StackProvisioner(Protocol):
    def create(
        self,
        stack_name: str,
        parameters: dict[str, str],
        tags: dict[str, str],
        *,
        isolation: Isolation = "silo",
    ) -> None:
        """Create the stack from the template of that isolation model."""

    def describe(self, stack_name: str) -> StackState | None:
        """None when the stack does not exist."""

    def update(
        self, stack_name: str, parameters: dict[str, str], *, isolation: Isolation | None = None
    ) -> None:
        """Update parameters; with an isolation, also switch to that template."""

    def delete(self, stack_name: str) -> None: ...


class DataPurger(Protocol):
    def purge(self, bucket: str, prefix: str, stop: Callable[[], bool] | None = None) -> int:
        """Delete every object (and version) under prefix; returns how many.
        An empty prefix means the whole bucket, which is then deleted too. Once
        ``stop()`` is true it raises PurgePaused (what is deleted stays deleted)."""


@dataclass(frozen=True)
class StoredObject:
    key: str  # relative to the tenant's root prefix, identical at both locations
    etag: str
    size: int
    # When it was written at the source (ISO 8601), if the mover knows.
    modified: str | None = None


class DataMover(Protocol):
    """Moves a tenant's objects between locations (bucket + root prefix)."""

    def copy(
        self,
        src_bucket: str,
        src_root: str,
        dst_bucket: str,
        dst_root: str,
        stop: Callable[[], bool] | None = None,
    ) -> list[StoredObject]:
        """Copy every current object under src_root to the same relative key under
        dst_root, skipping those already there with the same ETag. Returns the
        source objects now at the destination (copied or already present); [] only
        if there are none. Once ``stop()`` is true it returns early, after at least
        one object."""

    def verify(self, objects: list[StoredObject], dst_bucket: str, dst_root: str) -> list[str]:
        """Relative keys that are missing or differ at the destination."""

    def delete(self, objects: list[StoredObject], src_bucket: str, src_root: str) -> int:
        """Delete (every version of) the source objects that are still as copied."""

    def delete_bucket(self, bucket: str) -> None:
        """Remove an emptied bucket; refuses (raises) while it holds current objects."""


class ModelPurger(Protocol):
    def purge(self, group: str) -> int:
        """Delete the group's model packages and the group itself (idempotent)."""


class PurgePaused(Exception):
    """A purge ran out of time; the next lifecycle run resumes it (not a failure)."""


@dataclass(frozen=True)
class TenantExecution:
    """A pipeline execution of a tenant that has not ended (it may still write)."""

    run_id: str
    execution_arn: str | None  # None: admitted, its start still in flight
    status: str  # Starting | Executing | Stopping


class TenantExecutions(Protocol):
    """The tenant's pipeline executions, for offboarding: a purge waits for them."""

    def unfinished(self, tenant_id: str) -> list[TenantExecution]:
        """Its executions that have not ended (Stopped, Failed, Succeeded)."""

    def stop(self, execution_arn: str) -> None:
        """StopPipelineExecution; an execution already ending or ended is not an error."""
