"""Expressions of a pipeline definition: parameters, ``Get`` (Parameters.*, Execution.*,
Steps.<name>.<describe-response path>), ``Std:Join``, ``Std:JsonGet`` (PropertyFile or
S3Uri), conditions, and the property paths and S3 URIs they use."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from typing import Any

from .records import SUCCEEDED, ExecutionContext, StepFailure, StepRecord, now

# ------------------------------------------------------------------- paths

_PATH_TOKEN = re.compile(r"""\.?([A-Za-z0-9_:\-]+)|\[([0-9]+)\]|\[(['"])(.*?)\3\]""")
# List elements are addressed by name in property paths (Outputs['train']).
_NAME_KEYS = ("OutputName", "InputName", "ChannelName", "MetricName", "Name", "PropertyFileName")


def parse_path(path: str) -> list[str | int]:
    """``a.b['c'][0]`` -> ["a", "b", "c", 0]."""
    tokens: list[str | int] = []
    pos = 0
    while pos < len(path):
        match = _PATH_TOKEN.match(path, pos)
        if not match or match.end() == pos:
            raise ValueError(f"cannot parse path {path!r} at {path[pos:]!r}")
        if match.group(1) is not None:
            tokens.append(match.group(1))
        elif match.group(2) is not None:
            tokens.append(int(match.group(2)))
        else:
            tokens.append(match.group(4))
        pos = match.end()
    return tokens


def walk(data: Any, tokens: list[str | int], where: str) -> Any:
    for token in tokens:
        in_list = (
            isinstance(data, list) and isinstance(token, int) and -len(data) <= token < len(data)
        )
        if (isinstance(data, Mapping) and token in data) or in_list:
            data = data[token]
        elif isinstance(data, list) and isinstance(token, str):
            found = [
                item
                for item in data
                if isinstance(item, Mapping) and any(item.get(k) == token for k in _NAME_KEYS)
            ]
            if not found:
                raise StepFailure(f"{where}: no element named {token!r}")
            data = found[0]
        else:
            raise StepFailure(f"{where}: no property {token!r}")
    return data


def split_s3_uri(uri: str) -> tuple[str, str]:
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise StepFailure(f"not an S3 URI: {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    if not bucket:
        raise StepFailure(f"not an S3 URI: {uri!r}")
    return bucket, key


def referenced_steps(value: Any) -> Iterator[str]:
    """Names of the steps whose properties an expression reads (data dependencies)."""
    if isinstance(value, dict):
        get = value.get("Get")
        if isinstance(get, str) and get.startswith("Steps."):
            yield str(parse_path(get[len("Steps.") :])[0])
        for item in value.values():
            yield from referenced_steps(item)
    elif isinstance(value, list):
        for item in value:
            yield from referenced_steps(item)


# ------------------------------------------------------------------ resolver


class Resolver:
    """One execution's expression values: its parameters, its context and what its
    steps produced (``records``, ``property_files``)."""

    def __init__(
        self,
        context: ExecutionContext,
        records: Mapping[str, StepRecord],
        s3: Any,
        as_pipeline: Callable[[], AbstractContextManager[Any]],
    ) -> None:
        self.context = context
        self.records = records
        self.s3 = s3
        self.as_pipeline = as_pipeline
        self.params: dict[str, Any] = {}
        # step -> property file name -> its S3 URI (read when a JsonGet needs it).
        self.property_files: dict[str, dict[str, str]] = {}
        self._documents: dict[str, Any] = {}  # S3 URI -> parsed property file

    def load_parameters(
        self,
        declared: list[Mapping[str, Any]],
        given: Mapping[str, Any] | list[Mapping[str, Any]] | None,
    ) -> None:
        """Execution values over defaults, coerced to the declared types."""
        if isinstance(given, list):
            values = {p["Name"]: p.get("Value") for p in given}
        else:
            values = dict(given or {})
        by_name = {p["Name"]: p for p in declared}
        unknown = sorted(set(values) - set(by_name))
        if unknown:
            raise StepFailure(f"parameters not declared by the pipeline: {', '.join(unknown)}")
        for name, spec in by_name.items():
            kind = spec.get("Type", "String")
            if name in values and values[name] is not None:
                raw = values[name]
            elif "DefaultValue" in spec:
                raw = spec["DefaultValue"]
            else:
                raise StepFailure(f"parameter {name} has no value and no default")
            try:
                value = coerce(raw, kind)
            except ValueError:
                raise StepFailure(f"parameter {name}: {raw!r} is not a valid {kind}") from None
            enum = spec.get("EnumValues")
            if enum and value not in enum:
                raise StepFailure(f"parameter {name}: {value!r} is not one of {enum}")
            self.params[name] = value

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if set(value) == {"Get"}:
            return self._get(value["Get"])
        if "Std:Join" in value and len(value) == 1:
            spec = value["Std:Join"]
            parts = [to_text(self.resolve(v)) for v in spec.get("Values", [])]
            return str(spec.get("On", "")).join(parts)
        if "Std:JsonGet" in value and len(value) == 1:
            return self._json_get(value["Std:JsonGet"])
        return {k: self.resolve(v) for k, v in value.items()}

    def evaluate(self, condition: Mapping[str, Any]) -> bool:
        kind = condition.get("Type")
        if kind == "Not":
            return not self.evaluate(condition["Condition"])
        if kind == "Or":
            return any(self.evaluate(c) for c in condition["Conditions"])
        if kind == "And":
            return all(self.evaluate(c) for c in condition["Conditions"])
        if kind == "In":
            query = self.resolve(condition["QueryValue"])
            return any(_equal(query, self.resolve(v)) for v in condition["Values"])
        left, right = (
            self.resolve(condition.get("LeftValue")),
            self.resolve(condition.get("RightValue")),
        )
        if kind == "Equals":
            return _equal(left, right)
        compare = {
            "GreaterThan": lambda a, b: a > b,
            "GreaterThanOrEqualTo": lambda a, b: a >= b,
            "LessThan": lambda a, b: a < b,
            "LessThanOrEqualTo": lambda a, b: a <= b,
        }.get(str(kind))
        if compare is None:
            raise StepFailure(f"condition type {kind!r} is not supported")
        a, b = _comparable(left, right)
        return bool(compare(a, b))

    def _get(self, path: str) -> Any:
        head, _, rest = path.partition(".")
        if head == "Parameters":
            if rest not in self.params:
                raise StepFailure(f"unknown parameter in {path!r}")
            return self.params[rest]
        if head == "Execution":
            return self._execution_variable(rest)
        if head == "Steps":
            tokens = parse_path(rest)
            step_name = str(tokens[0])
            record = self.records.get(step_name)
            if record is None or record.status != SUCCEEDED:
                raise StepFailure(f"{path}: step {step_name} has not succeeded")
            return walk(record.properties, tokens[1:], path)
        raise StepFailure(f"unsupported reference {path!r}")

    def _execution_variable(self, name: str) -> Any:
        ctx = self.context
        values = {
            "PipelineName": ctx.pipeline_name,
            "PipelineArn": ctx.pipeline_arn,
            "PipelineExecutionId": ctx.execution_id,
            "PipelineExecutionArn": ctx.execution_arn,
            "StartDateTime": ctx.start_time.isoformat(),
            "CurrentDateTime": now().isoformat(),
        }
        if name not in values:
            raise StepFailure(f"execution variable {name} is not supported by the local runner")
        return values[name]

    def _json_get(self, spec: Mapping[str, Any]) -> Any:
        json_path = spec.get("Path", "")
        if "PropertyFile" in spec:
            ref = spec["PropertyFile"]
            ref_path = ref["Get"] if isinstance(ref, dict) else str(ref)
            # Steps.<step>.PropertyFiles.<name>
            tokens = parse_path(ref_path)
            if len(tokens) != 4 or tokens[0] != "Steps" or tokens[2] != "PropertyFiles":
                raise StepFailure(f"unsupported PropertyFile reference {ref_path!r}")
            step_name, file_name = str(tokens[1]), str(tokens[3])
            files = self.property_files.get(step_name)
            if files is None:
                raise StepFailure(f"JsonGet: step {step_name} has not produced property files")
            if file_name not in files:
                raise StepFailure(f"JsonGet: step {step_name} has no property file {file_name}")
            document = self._property_file(files[file_name])
        elif "S3Uri" in spec:
            bucket, key = split_s3_uri(to_text(self.resolve(spec["S3Uri"])))
            body = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            document = json.loads(body)
        else:
            raise StepFailure(f"unsupported Std:JsonGet {spec!r}")
        return walk(document, parse_path(json_path), f"JsonGet {json_path!r}")

    def _property_file(self, uri: str) -> Any:
        """SageMaker reads a property file from the step's S3 output, as the
        pipeline role (not the job's role), when an expression needs it."""
        if uri not in self._documents:
            bucket, key = split_s3_uri(uri)
            with self.as_pipeline():
                body = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            try:
                self._documents[uri] = json.loads(body)
            except ValueError as exc:
                raise StepFailure(f"property file {uri} is not JSON: {exc}") from None
        return self._documents[uri]


# ------------------------------------------------------------------ values


def coerce(raw: Any, kind: str) -> Any:
    """A parameter or Lambda output value as its declared type."""
    if kind == "Integer":
        if isinstance(raw, bool):
            raise ValueError(raw)
        if isinstance(raw, float):
            if not raw.is_integer():
                raise ValueError(raw)
            return int(raw)
        return int(str(raw).strip())
    if kind == "Float":
        if isinstance(raw, bool):
            raise ValueError(raw)
        return float(str(raw).strip()) if not isinstance(raw, int | float) else float(raw)
    if kind == "Boolean":
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text not in ("true", "false"):
            raise ValueError(raw)
        return text == "true"
    return raw if isinstance(raw, str) else to_text(raw)


def to_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _comparable(left: Any, right: Any) -> tuple[Any, Any]:
    a, b = _number(left), _number(right)
    if a is not None and b is not None:
        return a, b
    if isinstance(left, str) and isinstance(right, str):
        return left, right
    raise StepFailure(f"cannot compare {left!r} with {right!r}")


def _equal(left: Any, right: Any) -> bool:
    if isinstance(left, bool) or isinstance(right, bool):
        return to_text(left) == to_text(right)
    if isinstance(left, str) and isinstance(right, str):
        return left == right
    # A JSON number against a Float parameter (or a numeric string) compares by value.
    a, b = _number(left), _number(right)
    if a is not None and b is not None:
        return a == b
    return bool(left == right)
