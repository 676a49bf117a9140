"""Domain errors that the API maps to 4xx responses with a code and a message."""

from __future__ import annotations


class DomainError(Exception):
    status = 400
    code = "BadRequest"
    # The offending field of the request body, when there is one.
    field: str | None = None

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code


class InvalidRequest(DomainError):
    status = 400
    code = "InvalidRequest"


class NotFound(DomainError):
    status = 404
    code = "NotFound"


class Conflict(DomainError):
    status = 409
    code = "Conflict"


class PayloadTooLarge(DomainError):
    status = 413
    code = "PayloadTooLarge"
