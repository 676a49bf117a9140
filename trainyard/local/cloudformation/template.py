"""Templates as CloudFormation reads them: parsing, validation, parameters, intrinsics
and the order resources are created in.

What the tenant templates use is supported (Ref with pseudo parameters, Fn::GetAtt,
Fn::Sub, Fn::Join, plus Fn::Select, Fn::Split and Fn::Base64); anything else
(Conditions, Mappings, Transform, other intrinsics) is a template error naming it,
never silently ignored.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

MAX_BODY_BYTES = 51_200
MAX_URL_BYTES = 1_000_000
NO_VALUE = object()  # AWS::NoValue: the property (or list item) is dropped

_TOP_LEVEL = {
    "AWSTemplateFormatVersion",
    "Description",
    "Metadata",
    "Parameters",
    "Resources",
    "Outputs",
}
_UNSUPPORTED_SECTIONS = ("Conditions", "Mappings", "Rules", "Transform")
_RESOURCE_KEYS = {
    "Type",
    "Properties",
    "DependsOn",
    "DeletionPolicy",
    "UpdateReplacePolicy",
    "Metadata",
}
POLICIES = ("Delete", "Retain", "RetainExceptOnCreate")
# UpdateReplacePolicy takes Delete, Retain or Snapshot; RetainExceptOnCreate is a
# DeletionPolicy value only (Snapshot: not for the resource types used here).
REPLACE_POLICIES = ("Delete", "Retain")
_PARAMETER_TYPES = ("String", "Number", "CommaDelimitedList")
_SUPPORTED_FUNCTIONS = (
    "Fn::GetAtt",
    "Fn::Sub",
    "Fn::Join",
    "Fn::Select",
    "Fn::Split",
    "Fn::Base64",
)
_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


class TemplateError(ValueError):
    """What CloudFormation reports as a ValidationError before it starts."""


def parse(text: str) -> dict[str, Any]:
    try:
        body = json.loads(text)
    except ValueError:
        try:
            body = yaml.safe_load(text)
        except yaml.YAMLError as exc:  # also short-form tags (!Ref), which need a CFN loader
            message = f"Template format error: not well-formed JSON or YAML: {exc}"
            raise TemplateError(message) from None
    if not isinstance(body, dict):
        raise TemplateError("Template format error: a template is a JSON or YAML object")
    return body


@dataclass(frozen=True)
class Template:
    text: str
    body: dict[str, Any]

    @property
    def parameters(self) -> dict[str, dict[str, Any]]:
        return dict(self.body.get("Parameters") or {})

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        return dict(self.body.get("Resources") or {})

    @property
    def outputs(self) -> dict[str, dict[str, Any]]:
        return dict(self.body.get("Outputs") or {})

    @property
    def description(self) -> str | None:
        return self.body.get("Description")

    def deletion_policy(self, logical_id: str) -> str:
        return str(self.resources[logical_id].get("DeletionPolicy", "Delete"))

    def replace_policy(self, logical_id: str) -> str:
        return str(self.resources[logical_id].get("UpdateReplacePolicy", "Delete"))

    def dependencies(self, logical_id: str) -> set[str]:
        resource = self.resources[logical_id]
        depends = resource.get("DependsOn", [])
        found = set(depends if isinstance(depends, list) else [depends])
        found |= references(resource.get("Properties", {}), set(self.resources))
        return found

    def order(self) -> list[str]:
        """Dependency order; ties keep the template's order (deterministic)."""
        position = {lid: i for i, lid in enumerate(self.resources)}
        pending = {lid: self.dependencies(lid) for lid in self.resources}
        done: list[str] = []
        while pending:
            ready = sorted(
                (lid for lid, deps in pending.items() if deps <= set(done)), key=position.get
            )
            if not ready:
                raise TemplateError(
                    "Template format error: Circular dependency between resources: "
                    f"{sorted(pending)}"
                )
            done.append(ready[0])
            del pending[ready[0]]
        return done


def references(value: Any, resource_ids: set[str]) -> set[str]:
    """Resources a value refers to (Ref, Fn::GetAtt, ${...} in Fn::Sub)."""
    found: set[str] = set()
    if isinstance(value, list):
        for item in value:
            found |= references(item, resource_ids)
    elif isinstance(value, dict):
        if set(value) == {"Ref"} and value["Ref"] in resource_ids:
            found.add(value["Ref"])
        elif set(value) == {"Fn::GetAtt"}:
            found.add(_getatt_args(value["Fn::GetAtt"])[0])
        elif set(value) == {"Fn::Sub"}:
            text, variables = _sub_args(value["Fn::Sub"])
            for name in _SUB_VARIABLE.findall(text):
                head = name.split(".", 1)[0]
                if head in resource_ids and head not in variables:
                    found.add(head)
            found |= references(list(variables.values()), resource_ids)
        else:
            for item in value.values():
                found |= references(item, resource_ids)
    return found


def _getatt_args(args: Any) -> tuple[str, str]:
    if isinstance(args, str) and "." in args:
        head, attr = args.split(".", 1)
        return head, attr
    if isinstance(args, list) and len(args) == 2 and all(isinstance(a, str) for a in args):
        return args[0], args[1]
    raise TemplateError(
        f"Template error: every Fn::GetAtt object requires two non-empty parameters: {args!r}"
    )


def _sub_args(args: Any) -> tuple[str, dict[str, Any]]:
    if isinstance(args, str):
        return args, {}
    if (
        isinstance(args, list)
        and len(args) == 2
        and isinstance(args[0], str)
        and isinstance(args[1], dict)
    ):
        return args[0], dict(args[1])
    raise TemplateError(
        f"Template error: Fn::Sub takes a string or [string, {{variables}}]: {args!r}"
    )


def validate(
    template: Template,
    supported: Mapping[str, Any],
    attributes: Callable[[str], frozenset[str]],
    pseudo: set[str],
) -> None:
    """Structure, resource types, references and attribute names, before any resource."""
    body = template.body
    for section in _UNSUPPORTED_SECTIONS:
        if body.get(section):
            raise TemplateError(
                f"Template error: {section} is not supported by the embedded CloudFormation"
            )
    unknown = sorted(set(body) - _TOP_LEVEL - set(_UNSUPPORTED_SECTIONS))
    if unknown:
        raise TemplateError(
            f"Template format error: Invalid template property or properties {unknown}"
        )
    resources = template.resources
    if not resources:
        raise TemplateError("Template format error: At least one Resources member must be defined.")
    unrecognized = sorted({str(r.get("Type")) for r in resources.values()} - set(supported))
    if unrecognized:
        raise TemplateError(
            f"Template format error: Unrecognized resource types: {unrecognized} (the embedded "
            f"CloudFormation handles {sorted(supported)})"
        )
    names = set(resources) | set(template.parameters) | pseudo
    for logical_id, resource in resources.items():
        extra = sorted(set(resource) - _RESOURCE_KEYS)
        if extra:
            raise TemplateError(
                f"Template error: resource {logical_id} uses {extra}, which the embedded "
                "CloudFormation does not support"
            )
        for key, allowed in (
            ("DeletionPolicy", POLICIES),
            ("UpdateReplacePolicy", REPLACE_POLICIES),
        ):
            if key in resource and resource[key] not in allowed:
                raise TemplateError(
                    f"Template error: {key} {resource[key]!r} of {logical_id} is not one of "
                    f"{list(allowed)} for {resource['Type']}"
                )
        depends = resource.get("DependsOn", [])
        for target in depends if isinstance(depends, list) else [depends]:
            if target not in resources:
                raise TemplateError(
                    f"Template format error: Unresolved resource dependencies [{target}] in the "
                    "Resources block of the template"
                )
        _check_value(resource.get("Properties", {}), names, resources, attributes, logical_id)
    for key, output in template.outputs.items():
        extra = sorted(set(output) - {"Value", "Description"})
        if extra:
            raise TemplateError(
                f"Template error: output {key} uses {extra}, which the embedded "
                "CloudFormation does not support"
            )
        _check_value(output.get("Value"), names, resources, attributes, f"output {key}")
    template.order()


def _check_value(
    value: Any,
    names: set[str],
    resources: Mapping[str, Any],
    attributes: Callable[[str], frozenset[str]],
    where: str,
) -> None:
    if isinstance(value, list):
        for item in value:
            _check_value(item, names, resources, attributes, where)
        return
    if not isinstance(value, dict):
        return
    functions = [k for k in value if k == "Ref" or k.startswith("Fn::")]
    if functions and len(value) != 1:
        raise TemplateError(
            f"Template error: {where}: an intrinsic function stands alone: {value!r}"
        )
    if functions:
        name = functions[0]
        if name == "Ref":
            if value["Ref"] not in names:
                raise TemplateError(
                    f"Template format error: Unresolved resource dependencies [{value['Ref']}] in "
                    "the Resources block of the template"
                )
            return
        if name not in _SUPPORTED_FUNCTIONS:
            raise TemplateError(
                f"Template error: {where}: {name} is not supported by the embedded CloudFormation"
            )
        if name == "Fn::GetAtt":
            target, attr = _getatt_args(value[name])
            if target not in resources:
                raise TemplateError(
                    f"Template error: instance of Fn::GetAtt references undefined resource {target}"
                )
            if attr not in attributes(str(resources[target]["Type"])):
                raise TemplateError(
                    f"Template error: resource {target} does not support attribute type {attr} "
                    "in Fn::GetAtt"
                )
            return
        if name == "Fn::Sub":
            text, variables = _sub_args(value[name])
            for variable in _SUB_VARIABLE.findall(text):
                if variable.startswith("!") or variable in variables:
                    continue
                head, _, attr = variable.partition(".")
                if attr:
                    _check_value({"Fn::GetAtt": [head, attr]}, names, resources, attributes, where)
                elif head not in names:
                    raise TemplateError(
                        f"Template format error: Unresolved resource dependencies [{head}] in the "
                        "Resources block of the template"
                    )
            _check_value(list(variables.values()), names, resources, attributes, where)
            return
    for item in value.values():
        _check_value(item, names, resources, attributes, where)


# ------------------------------------------------------------------ parameters


def resolve_parameters(
    declared: Mapping[str, Mapping[str, Any]],
    given: Mapping[str, str],
    previous: Mapping[str, str] | None = None,
    use_previous: set[str] | None = None,
) -> dict[str, str]:
    """Parameter values with defaults, checked against their constraints."""
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise TemplateError(f"Parameters: {unknown} do not exist in the template")
    values: dict[str, str] = {}
    missing: list[str] = []
    for name, spec in declared.items():
        if name in (use_previous or set()):
            if previous is None or name not in previous:
                raise TemplateError(
                    f"Invalid input for parameter key {name}. Cannot use previous value"
                )
            values[name] = previous[name]
        elif name in given:
            values[name] = str(given[name])
        elif "Default" in spec:
            values[name] = str(spec["Default"])
        else:
            missing.append(name)
    if missing:
        raise TemplateError(f"Parameters: {missing} must have values")
    for name, value in values.items():
        _check_parameter(name, declared[name], value)
    return values


def _check_parameter(name: str, spec: Mapping[str, Any], value: str) -> None:
    kind = spec.get("Type", "String")
    if kind not in _PARAMETER_TYPES:
        raise TemplateError(
            f"Template error: parameter {name} has type {kind}, which the embedded "
            "CloudFormation does not support"
        )
    if kind == "Number":
        try:
            float(value)
        except ValueError:
            raise TemplateError(f"Parameter '{name}' must be a number.") from None
    if "AllowedValues" in spec and value not in [str(v) for v in spec["AllowedValues"]]:
        raise TemplateError(f"Parameter '{name}' must be one of AllowedValues")
    if "AllowedPattern" in spec and not re.fullmatch(str(spec["AllowedPattern"]), value):
        raise TemplateError(
            f"Parameter '{name}' must match pattern {spec['AllowedPattern']}"
            if "ConstraintDescription" not in spec
            else f"Parameter '{name}' failed to satisfy constraint: {spec['ConstraintDescription']}"
        )
    if "MinLength" in spec and len(value) < int(spec["MinLength"]):
        raise TemplateError(
            f"Parameter '{name}' must contain at least {spec['MinLength']} characters"
        )
    if "MaxLength" in spec and len(value) > int(spec["MaxLength"]):
        raise TemplateError(
            f"Parameter '{name}' must contain at most {spec['MaxLength']} characters"
        )


# ------------------------------------------------------------------ intrinsics


@dataclass
class Resolver:
    """Resolves a value against parameters, pseudo parameters and created resources."""

    parameters: Mapping[str, str]
    pseudo: Mapping[str, str]
    ref: Callable[[str], str]  # a resource's Ref value
    getatt: Callable[[str, str], Any]
    list_parameters: set[str] = field(default_factory=set)

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            items = [self.resolve(v) for v in value]
            return [v for v in items if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((name, args),) = value.items()
            if name == "Ref":
                return self._ref(str(args))
            if name.startswith("Fn::"):
                return self._function(name, args)
        out = {}
        for key, item in value.items():
            resolved = self.resolve(item)
            if resolved is not NO_VALUE:
                out[key] = resolved
        return out

    def _ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            value = self.parameters[name]
            return [v.strip() for v in value.split(",")] if name in self.list_parameters else value
        return self.ref(name)

    def _function(self, name: str, args: Any) -> Any:
        if name == "Fn::GetAtt":
            target, attr = _getatt_args(args)
            return self.getatt(target, attr)
        if name == "Fn::Join":
            sep, items = args
            parts = self.resolve(items)
            if not isinstance(parts, list) or not all(isinstance(p, str) for p in parts):
                raise TemplateError(f"Template error: Fn::Join takes a list of strings: {parts!r}")
            return str(sep).join(parts)
        if name == "Fn::Sub":
            text, variables = _sub_args(args)
            bound = {k: self.resolve(v) for k, v in variables.items()}

            def substitute(match: re.Match[str]) -> str:
                variable = match[1]
                if variable.startswith("!"):
                    return "${" + variable[1:] + "}"
                if variable in bound:
                    return str(bound[variable])
                head, _, attr = variable.partition(".")
                return str(self.getatt(head, attr) if attr else self._ref(head))

            return _SUB_VARIABLE.sub(substitute, text)
        if name == "Fn::Select":
            index, items = args
            values = self.resolve(items)
            position = int(self.resolve(index))
            if not isinstance(values, list) or not 0 <= position < len(values):
                raise TemplateError(f"Template error: Fn::Select index {position} out of bounds")
            return values[position]
        if name == "Fn::Split":
            sep, text = args
            return str(self.resolve(text)).split(str(sep))
        if name == "Fn::Base64":
            return base64.b64encode(str(self.resolve(args)).encode()).decode()
        raise TemplateError(
            f"Template error: {name} is not supported by the embedded CloudFormation"
        )
