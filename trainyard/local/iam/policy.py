"""IAM policy evaluation: the one evaluator of Trainyard (embedded stack and tests).

Implements the parts of AWS's documented evaluation logic that Trainyard's policies
use, and fails closed (``UnsupportedPolicyError``) on anything else, so a policy
can never pass here by using a feature the evaluator does not know:

- "By default, all requests are implicitly denied"; "an explicit deny in any policy
  overrides any allows"; within one account a request is allowed when an
  identity-based policy *or* a resource-based policy allows it (IAM User Guide,
  "Policy evaluation logic", same-account requests). No SCPs, permissions
  boundaries exist in Trainyard's account model; a session policy (the uploader
  role's sessions) is evaluated by the enforcer as a second policy that must allow.
- ``Action``/``NotAction`` match case-insensitively with ``*`` and ``?``.
- ``Resource``/``NotResource`` and the ``Arn*`` operators match ARNs per component:
  "each of the six colon-delimited components of the ARN is checked separately and
  each can include wildcards"; the last component (the resource id) may itself
  contain colons, so it is everything after the fifth colon.
- Conditions: all operators of a statement, and all keys of an operator, must hold
  (AND); several values for one key match if any does (OR). A missing key fails a
  positive operator and satisfies a negated one; ``...IfExists`` treats a missing
  key as a match; ``Null`` tests presence. ``ForAnyValue:``/``ForAllValues:`` take
  multivalued keys.
- Resource-based policies name their ``Principal`` (``*``, ``AWS`` account or ARN,
  ``Service``); ``NotPrincipal`` is not modelled.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

ContextValue = str | Sequence[str]

IMPLICIT_DENY = "implicit"
IDENTITY_DENY = "identity-deny"
RESOURCE_DENY = "resource-deny"


class UnsupportedPolicyError(NotImplementedError):
    """The policy uses something the evaluator does not model."""


@dataclass(frozen=True)
class Request:
    """One authorization question: may the principal do ``action`` on ``resource``?"""

    action: str
    resource: str
    context: Mapping[str, ContextValue] = field(default_factory=dict)


@dataclass(frozen=True)
class RequestPrincipal:
    """Who asks, as a resource-based policy's ``Principal`` sees it."""

    arn: str = ""  # role ARN (the assumed-role session's role), or "" for a service
    account: str = ""
    service: str = ""  # e.g. "cloudwatch.amazonaws.com" for a service principal


@dataclass(frozen=True)
class Decision:
    allowed: bool
    # IMPLICIT_DENY, IDENTITY_DENY or RESOURCE_DENY when denied; "" when allowed.
    denial: str = ""
    statement: str = ""  # Sid (or index) of the deciding statement, for messages

    def __bool__(self) -> bool:
        return self.allowed


# --------------------------------------------------------------------- matching


@lru_cache(maxsize=4096)
def _glob_regex(pattern: str, case_sensitive: bool) -> re.Pattern[str]:
    if "${" in pattern:
        raise UnsupportedPolicyError(f"policy variables are not modelled: {pattern!r}")
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(regex, re.DOTALL | (0 if case_sensitive else re.IGNORECASE))


def glob(pattern: str, value: str, *, case_sensitive: bool = True) -> bool:
    """IAM wildcard match: ``*`` any run of characters (also none), ``?`` one."""
    return _glob_regex(pattern, case_sensitive).fullmatch(value) is not None


def _arn_parts(arn: str) -> list[str] | None:
    parts = arn.split(":", 5)
    return parts if len(parts) == 6 and parts[0] == "arn" else None


def arn_match(pattern: str, arn: str) -> bool:
    """ARN wildcard match, component by component ("*" alone matches anything)."""
    if pattern == "*":
        return True
    pattern_parts, arn_parts = _arn_parts(pattern), _arn_parts(arn)
    if pattern_parts is None or arn_parts is None:
        # Not an ARN on one side (e.g. a bare "*foo*"): a plain glob is the best reading.
        return glob(pattern, arn)
    return all(glob(p, a) for p, a in zip(pattern_parts, arn_parts, strict=True))


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


# ------------------------------------------------------------------- conditions


def _number(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise UnsupportedPolicyError(f"not a number in a Numeric condition: {value!r}") from None


def _bool_text(value: str) -> str:
    return str(value).strip().lower()


# base operator -> (test(expected, actual), negated)
_OPERATORS: dict[str, tuple[Callable[[str, str], bool], bool]] = {
    "StringEquals": (lambda e, a: e == a, False),
    "StringNotEquals": (lambda e, a: e == a, True),
    "StringEqualsIgnoreCase": (lambda e, a: e.lower() == a.lower(), False),
    "StringNotEqualsIgnoreCase": (lambda e, a: e.lower() == a.lower(), True),
    "StringLike": (lambda e, a: glob(e, a), False),
    "StringNotLike": (lambda e, a: glob(e, a), True),
    # "ArnEquals, ArnLike: ... each of the six colon-delimited components of the ARN is
    # checked separately and each can include wildcards" - the two behave alike.
    "ArnEquals": (arn_match, False),
    "ArnNotEquals": (arn_match, True),
    "ArnLike": (arn_match, False),
    "ArnNotLike": (arn_match, True),
    "Bool": (lambda e, a: _bool_text(e) == _bool_text(a), False),
    "NumericEquals": (lambda e, a: _number(a) == _number(e), False),
    "NumericNotEquals": (lambda e, a: _number(a) == _number(e), True),
    "NumericLessThan": (lambda e, a: _number(a) < _number(e), False),
    "NumericLessThanEquals": (lambda e, a: _number(a) <= _number(e), False),
    "NumericGreaterThan": (lambda e, a: _number(a) > _number(e), False),
    "NumericGreaterThanEquals": (lambda e, a: _number(a) >= _number(e), False),
}


def _context_values(context: Mapping[str, ContextValue], key: str) -> list[str] | None:
    # Condition key names are case-insensitive.
    lowered = key.lower()
    for name, value in context.items():
        if name.lower() == lowered:
            return [str(v) for v in _as_list(value)]
    return None


def condition_holds(
    operator: str, key: str, expected: Any, context: Mapping[str, ContextValue]
) -> bool:
    """One key of one condition operator."""
    actual = _context_values(context, key)
    if operator == "Null":
        # "Null": true -> the key must be absent; false -> present.
        wants_absent = any(_bool_text(v) == "true" for v in _as_list(expected))
        return (actual is None) == wants_absent
    set_mode = ""
    base = operator
    for prefix in ("ForAnyValue:", "ForAllValues:"):
        if base.startswith(prefix):
            set_mode, base = prefix[:-1], base[len(prefix) :]
    if_exists = base.endswith("IfExists")
    base = base.removesuffix("IfExists")
    if base not in _OPERATORS:
        raise UnsupportedPolicyError(f"condition operator not modelled: {operator}")
    test, negated = _OPERATORS[base]
    values = [str(v) for v in _as_list(expected)]
    if actual is None:
        if set_mode == "ForAllValues":
            return True  # vacuously true for an empty set (AWS's documented caveat)
        if set_mode == "ForAnyValue":
            return False
        return if_exists or negated

    def matches(one: str) -> bool:
        return any(test(v, one) for v in values)

    if set_mode == "ForAllValues":
        return all((not matches(a)) if negated else matches(a) for a in actual)
    if set_mode == "ForAnyValue":
        return any((not matches(a)) if negated else matches(a) for a in actual)
    if len(actual) != 1:
        raise UnsupportedPolicyError(
            f"{key} is multivalued; {operator} needs ForAnyValue:/ForAllValues:"
        )
    return not matches(actual[0]) if negated else matches(actual[0])


def conditions_hold(conditions: Mapping[str, Mapping[str, Any]], request: Request) -> bool:
    return all(
        condition_holds(operator, key, expected, request.context)
        for operator, keys in conditions.items()
        for key, expected in keys.items()
    )


# ------------------------------------------------------------------- statements


def _action_matches(statement: Mapping[str, Any], action: str) -> bool:
    if "NotAction" in statement:
        return not any(
            glob(a, action, case_sensitive=False) for a in _as_list(statement["NotAction"])
        )
    if "Action" not in statement:
        raise UnsupportedPolicyError("statement without Action or NotAction")
    return any(glob(a, action, case_sensitive=False) for a in _as_list(statement["Action"]))


def _resource_matches(statement: Mapping[str, Any], resource: str) -> bool:
    if "NotResource" in statement:
        return not any(arn_match(r, resource) for r in _as_list(statement["NotResource"]))
    if "Resource" not in statement:
        raise UnsupportedPolicyError("identity statement without Resource or NotResource")
    return any(arn_match(r, resource) for r in _as_list(statement["Resource"]))


def _principal_match(principal_element: Any, who: RequestPrincipal) -> str:
    """ "exact" when the statement names this principal (or "*"), "account" when it
    names its whole account, "" when it does not apply to it."""
    # "Principal": "*" and {"AWS": "*"} are equivalent: everyone, services included.
    if principal_element == "*" or (
        isinstance(principal_element, Mapping) and "*" in _as_list(principal_element.get("AWS", []))
    ):
        return "exact"
    if not isinstance(principal_element, Mapping):
        raise UnsupportedPolicyError(f"Principal {principal_element!r} is not modelled")
    found = ""
    for kind, values in principal_element.items():
        if kind not in ("Service", "AWS"):
            raise UnsupportedPolicyError(f"Principal type {kind!r} is not modelled")
        for value in _as_list(values):
            text = str(value)
            if kind == "Service":
                if who.service and text == who.service:
                    return "exact"
            elif not who.service:
                if text == "*" or (who.arn and text == who.arn):
                    return "exact"
                if text == who.account or re.fullmatch(
                    rf"arn:[\w-]+:iam::{who.account}:root", text
                ):
                    found = "account"
    return found


def _effect(statement: Mapping[str, Any]) -> str:
    effect = statement.get("Effect")
    if effect not in ("Allow", "Deny"):
        raise UnsupportedPolicyError(f"bad Effect {effect!r}")
    return str(effect)


def _sid(statement: Mapping[str, Any], index: int) -> str:
    return str(statement.get("Sid") or f"#{index}")


def _statements(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [s for s in _as_list(document.get("Statement", [])) if isinstance(s, Mapping)]


def statement_applies(statement: Mapping[str, Any], request: Request) -> bool:
    """An identity-policy statement applies to the request (effect aside)."""
    if "Principal" in statement or "NotPrincipal" in statement:
        raise UnsupportedPolicyError("a Principal in an identity policy statement")
    return (
        _action_matches(statement, request.action)
        and _resource_matches(statement, request.resource)
        and conditions_hold(statement.get("Condition", {}), request)
    )


def resource_statement_applies(
    statement: Mapping[str, Any], request: Request, who: RequestPrincipal
) -> str:
    """How a resource-based statement applies: "exact", "account" (it names the
    principal's account: an Allow then only delegates to the account's own
    identity policies, a Deny still applies) or ""."""
    if "NotPrincipal" in statement:
        raise UnsupportedPolicyError("NotPrincipal is not modelled")
    if "Principal" not in statement:
        raise UnsupportedPolicyError("resource-based statement without Principal")
    match = _principal_match(statement["Principal"], who)
    if not match or not _action_matches(statement, request.action):
        return ""
    # A resource policy's Resource may be omitted (e.g. trust policies).
    if ("Resource" in statement or "NotResource" in statement) and not _resource_matches(
        statement, request.resource
    ):
        return ""
    return match if conditions_hold(statement.get("Condition", {}), request) else ""


# --------------------------------------------------------------------- decisions


def evaluate(
    identity_documents: Iterable[Mapping[str, Any]],
    request: Request,
    *,
    resource_document: Mapping[str, Any] | None = None,
    principal: RequestPrincipal | None = None,
) -> Decision:
    """Same-account decision: an explicit Deny anywhere wins, then an Allow in an
    identity-based or the resource-based policy, else the implicit deny."""
    allow: str = ""
    for document in identity_documents:
        for index, statement in enumerate(_statements(document)):
            effect = _effect(statement)
            if statement_applies(statement, request):
                if effect == "Deny":
                    return Decision(False, IDENTITY_DENY, _sid(statement, index))
                allow = allow or _sid(statement, index)
    if resource_document is not None:
        who = principal or RequestPrincipal()
        for index, statement in enumerate(_statements(resource_document)):
            effect = _effect(statement)
            match = resource_statement_applies(statement, request, who)
            if match and effect == "Deny":
                return Decision(False, RESOURCE_DENY, _sid(statement, index))
            if match == "exact":
                allow = allow or _sid(statement, index)
    return Decision(True, "", allow) if allow else Decision(False, IMPLICIT_DENY)


def evaluate_resource_policy(
    document: Mapping[str, Any], request: Request, principal: RequestPrincipal
) -> Decision:
    """A resource-based policy on its own (a trust policy, a key or topic policy
    asked by a service principal that has no identity policy)."""
    return evaluate([], request, resource_document=document, principal=principal)


def trust_names(document: Mapping[str, Any], request: Request, who: RequestPrincipal) -> bool:
    """Whether a role's trust policy lets ``who`` assume it: an Allow naming it (or
    its account) applies, and no Deny does. "account" still needs the caller's own
    identity-based Allow, which ``evaluate`` decides."""
    allowed = False
    for statement in _statements(document):
        match = resource_statement_applies(statement, request, who)
        if match and _effect(statement) == "Deny":
            return False
        allowed = allowed or (bool(match) and _effect(statement) == "Allow")
    return allowed
