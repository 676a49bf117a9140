"""What AWS STS refuses in an AssumeRole that moto's STS takes (the enforcer asks).

moto issues credentials for any DurationSeconds and any session policy. AWS STS
(AssumeRole's documentation; botocore's ``sts`` model) answers ``ValidationError``:

- for a DurationSeconds above the role's MaxSessionDuration ("The requested
  DurationSeconds exceeds the MaxSessionDuration set for this role.");
- for role chaining, i.e. AssumeRole called with a role session's credentials (every
  Lambda function, job and stack role of the embedded stack is one), above one hour
  ("The requested DurationSeconds exceeds the 1 hour session limit for roles assumed
  by role chaining.");
- for an inline session policy over 2,048 plaintext characters (the shape's max, in
  the "1 validation error detected" wording). The shape's other constraints (the
  policy's characters, DurationSeconds up to 43,200) are ``api_model.py``'s, which
  checks every call against the botocore shapes; botocore itself checks the minimums.

Not modelled: ``PackedPolicyTooLarge``. AWS compresses the session policy, policy
ARNs and session tags into a packed form whose format and limit it does not publish
(only a percentage in the answer), so a policy within 2,048 characters may still be
refused in AWS; Trainyard's session policies stay far below the plaintext limit
(``tests/unit/test_sts_limits.py`` measures the longest one).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

VALIDATION_ERROR = "ValidationError"
DEFAULT_DURATION_SECONDS = 3600
ROLE_CHAINING_MAX_SECONDS = 3600
SESSION_POLICY_MAX_CHARS = 2048  # sessionPolicyDocumentType

EXCEEDS_MAX_SESSION = (
    "The requested DurationSeconds exceeds the MaxSessionDuration set for this role."
)
EXCEEDS_CHAINING = (
    "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by "
    "role chaining."
)


def _constraint(value: Any, member: str, constraint: str) -> str:
    return (
        f"1 validation error detected: Value '{value}' at '{member}' failed to satisfy "
        f"constraint: {constraint}"
    )


def assume_role_refusal(
    params: Mapping[str, Any], *, max_session_duration: int, chained: bool
) -> str | None:
    """The ValidationError message AWS STS answers this AssumeRole with, or None."""
    duration = int(params.get("DurationSeconds", DEFAULT_DURATION_SECONDS))
    policy = params.get("Policy")
    if policy is not None and len(str(policy)) > SESSION_POLICY_MAX_CHARS:
        # The shape's max, which botocore's loaded model leaves out (so api_model.py,
        # which checks the shapes' ranges and patterns, cannot see it).
        return _constraint(
            str(policy),
            "policy",
            f"Member must have length less than or equal to {SESSION_POLICY_MAX_CHARS}",
        )
    if chained and duration > ROLE_CHAINING_MAX_SECONDS:
        return EXCEEDS_CHAINING
    if duration > max_session_duration:
        return EXCEEDS_MAX_SESSION
    return None
