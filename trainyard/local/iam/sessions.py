"""STS sessions of the embedded account: who a request signed with temporary keys is.

In AWS the credentials a request is signed with *are* the principal. The embedded
stack's own callers all sign with the same placeholder keys and say who they are
through ``acting_as``; keys that the embedded STS (moto) issued for an AssumeRole
are a real session: its role, its session policy and its expiry. The enforcer
(SDK calls) and the presigned-request gate (plain HTTP) both resolve them here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# STS's temporary access key ids start with ASIA (long-term ones with AKIA).
TEMPORARY_KEY_PREFIX = "ASIA"


class SessionExpired(Exception):
    """What AWS answers ExpiredToken for: the session's credentials have expired."""


@dataclass(frozen=True)
class Session:
    role_arn: str
    name: str
    policy: str | None
    secret_access_key: str
    session_token: str
    expiration: datetime

    def principal(self) -> Any:
        from .enforcer import Principal

        return Principal(self.role_arn, self.name, session_policy=self.policy)


def find_session(access_key: str | None) -> Session | None:
    """The embedded STS's session of ``access_key`` (expired ones too), or None."""
    if not access_key or not access_key.startswith(TEMPORARY_KEY_PREFIX):
        return None
    from moto.sts.models import sts_backends

    for account in list(sts_backends.keys()):
        for partition in list(sts_backends[account].keys()):
            found = sts_backends[account][partition].get_assumed_role_from_access_key(access_key)
            if found is not None:
                expiration = found.expiration
                if expiration.tzinfo is None:
                    expiration = expiration.replace(tzinfo=UTC)
                return Session(
                    role_arn=found.role_arn,
                    name=found.session_name,
                    policy=found.policy or None,
                    secret_access_key=found.secret_access_key,
                    session_token=found.session_token,
                    expiration=expiration,
                )
    return None


def session_of(access_key: str | None, now: datetime | None = None) -> Any:
    """The principal of a live session of ``access_key``; None if the key is no
    session's; ``SessionExpired`` once the session has ended."""
    session = find_session(access_key)
    if session is None:
        return None
    if (now or datetime.now(UTC)) >= session.expiration:
        raise SessionExpired("The provided token has expired.")
    return session.principal()
