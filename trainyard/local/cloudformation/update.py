"""UpdateStack: add, modify, replace and remove resources, with CloudFormation's
cleanup phase and its rollback.

- A resource new to the template is created; one gone from it is removed in the
  cleanup phase, honouring its DeletionPolicy (``RetainExceptOnCreate`` keeps it: this
  update did not create it).
- A changed property updates the resource in place, unless it is create-only (the
  type's schema ``createOnlyProperties``): then the resource is replaced, a new one
  first and the old one removed in cleanup honouring ``UpdateReplacePolicy``. A
  replacement that would reuse a custom name fails, as in CloudFormation.
- A failure rolls back: modified resources get their old properties again, resources
  this update created are deleted, the stack keeps its old template and parameters
  (``UPDATE_ROLLBACK_COMPLETE``).
"""

from __future__ import annotations

from dataclasses import dataclass

from infra import cfn_permissions as perms

from ..iam.enforcer import acting_as
from .engine import Engine, handler_reason
from .handlers import HANDLERS, Live, Properties
from .model import Operation, StackFailure, now
from .template import TemplateError

_REPLACING = (
    "Requested update requires the creation of a new physical resource; hence creating one."
)


@dataclass
class _Modified:
    live: Live
    before: Properties
    attempted: Properties


class Update:
    def __init__(self, engine: Engine, op: Operation) -> None:
        self.engine = engine
        self.op = op
        self.stack = op.stack
        self.old_template = op.stack.parsed
        self.modified: list[_Modified] = []
        self.created: list[Live] = []  # added resources and replacements, in order
        self.swapped: list[tuple[str, Live]] = []  # (logical id, the replaced resource)

    def run(self) -> None:
        engine, op, stack = self.engine, self.op, self.stack
        engine.event(stack, "UPDATE_IN_PROGRESS", "User Initiated", token=op.token)
        try:
            for logical_id in op.template.order():
                self.apply(logical_id)
            outputs = engine.outputs(op)
        except StackFailure as failure:
            self.rollback(
                f"The following resource(s) failed to {failure.verb}: [{failure.logical_id}]. "
            )
            return
        except TemplateError as exc:
            self.rollback(f"{exc}. ")
            return
        removed = [
            live
            for live in engine.in_order(stack, self.old_template)
            if live.logical_id not in op.template.resources
        ]
        stack.use(op.template)
        stack.parameters = dict(op.parameters)
        stack.tags = dict(op.tags)
        stack.resolved_outputs = outputs
        stack.last_updated_time = now()
        engine.event(stack, "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS", token=op.token)
        # Cleanup failures are reported as events; the update itself has succeeded.
        for _, old in reversed(self.swapped):
            keep = old.replace_policy in ("Retain", "RetainExceptOnCreate")
            engine.delete_resource(op, old, retain=keep)
        engine.delete_all(op, removed)
        engine.event(stack, "UPDATE_COMPLETE", token=op.token)

    # ------------------------------------------------------------ one resource

    def apply(self, logical_id: str) -> None:
        engine, op, stack = self.engine, self.op, self.stack
        current = stack.live.get(logical_id)
        if current is None:
            self.created.append(engine.create_resource(op, logical_id))
            return
        resource_type = str(op.template.resources[logical_id]["Type"])
        if current.resource_type != resource_type:
            engine.event(
                stack,
                "UPDATE_FAILED",
                f"Update of resource type is not permitted. The new template modifies resource "
                f"type of the following resources: [{logical_id}]",
                current,
            )
            raise StackFailure(logical_id, "update")
        try:
            props = engine.properties(op, logical_id)
        except TemplateError as exc:
            engine.event(stack, "UPDATE_FAILED", str(exc), current)
            raise StackFailure(logical_id, "update") from exc
        current.deletion_policy = op.template.deletion_policy(logical_id)
        current.replace_policy = op.template.replace_policy(logical_id)
        if props == current.properties:
            return
        changed = {
            k
            for k in set(props) | set(current.properties)
            if props.get(k) != current.properties.get(k)
        }
        if changed & perms.create_only_properties(resource_type):
            self.replace(logical_id, current, props)
        else:
            self.modify(current, props)

    def modify(self, live: Live, props: Properties) -> None:
        engine, op, stack = self.engine, self.op, self.stack
        engine.event(stack, "UPDATE_IN_PROGRESS", None, live, props, op.token)
        before = live.properties
        try:
            engine.check(op, live, ("update", "read"), props)
            # From here the resource may change: a failure reverts it.
            self.modified.append(_Modified(live, before, props))
            with acting_as(None):
                HANDLERS[live.resource_type].update(engine.context(stack), live, before, props)
        except Exception as exc:
            engine.event(stack, "UPDATE_FAILED", handler_reason(exc), live)
            raise StackFailure(live.logical_id, "update") from exc
        live.properties = props
        engine.event(stack, "UPDATE_COMPLETE", None, live)

    def replace(self, logical_id: str, current: Live, props: Properties) -> None:
        engine, op, stack = self.engine, self.op, self.stack
        handler = HANDLERS[current.resource_type]
        live = engine.blank(op, logical_id)
        live.properties = props
        live.name = handler.physical_name(engine.context(stack), logical_id, props)
        if handler.name_property and props.get(handler.name_property) and live.name == current.name:
            engine.event(
                stack,
                "UPDATE_FAILED",
                "CloudFormation cannot update a stack when a custom-named resource requires "
                f"replacing. Rename {current.name} and update the stack again.",
                current,
            )
            raise StackFailure(logical_id, "update")
        engine.event(stack, "UPDATE_IN_PROGRESS", _REPLACING, live, props, op.token)
        try:
            engine.make(op, live)
        except Exception as exc:
            engine.event(stack, "UPDATE_FAILED", handler_reason(exc), live)
            if live.physical_id is not None:
                self.created.append(live)
            raise StackFailure(logical_id, "update") from exc
        stack.live[logical_id] = live
        self.swapped.append((logical_id, current))
        self.created.append(live)
        engine.event(stack, "UPDATE_COMPLETE", None, live)

    # ---------------------------------------------------------------- rollback

    def rollback(self, reason: str) -> None:
        engine, op, stack = self.engine, self.op, self.stack
        engine.event(stack, "UPDATE_ROLLBACK_IN_PROGRESS", reason, token=op.token)
        for logical_id, old in reversed(self.swapped):
            stack.live[logical_id] = old
        failed: list[str] = []
        for change in reversed(self.modified):
            live = change.live
            engine.event(stack, "UPDATE_IN_PROGRESS", None, live, change.before, op.token)
            try:
                engine.check(op, live, ("update", "read"), change.before)
                with acting_as(None):
                    HANDLERS[live.resource_type].update(
                        engine.context(stack), live, change.attempted, change.before
                    )
            except Exception as exc:
                engine.event(stack, "UPDATE_FAILED", handler_reason(exc), live)
                failed.append(live.logical_id)
                continue
            live.properties = change.before
            engine.event(stack, "UPDATE_COMPLETE", None, live)
        engine.event(stack, "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS", token=op.token)
        failed += engine.delete_all(op, self.created)
        for live in stack.live.values():  # policies of resources the update did not touch
            if live.logical_id in self.old_template.resources:
                live.deletion_policy = self.old_template.deletion_policy(live.logical_id)
                live.replace_policy = self.old_template.replace_policy(live.logical_id)
        if failed:
            engine.event(
                stack,
                "UPDATE_ROLLBACK_FAILED",
                f"The following resource(s) failed to roll back: {failed}. ",
                token=op.token,
            )
        else:
            engine.event(stack, "UPDATE_ROLLBACK_COMPLETE", token=op.token)
