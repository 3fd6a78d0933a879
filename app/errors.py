"""The one way to refuse a request.

Services raise these; the GraphQL layer turns them into errors whose `extensions.code`
clients can switch on, and the REST endpoints into JSON bodies with the same code. Any
other exception is a bug: it is logged with the request id and masked for the client.
"""

from __future__ import annotations

import uuid
from typing import Any


class UserError(Exception):
    """A refusal the client can act on: the message names the field or the reason."""

    code = "BAD_USER_INPUT"
    http_status = 400

    def __init__(self, message: str, *, field: str | None = None, **extensions: Any) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.extensions = extensions

    def as_extensions(self) -> dict[str, Any]:
        ext: dict[str, Any] = {"code": self.code, **self.extensions}
        if self.field is not None:
            ext["field"] = self.field
        return ext


class BadInput(UserError):
    code = "BAD_USER_INPUT"
    http_status = 400


def trimmed_text(value: str, *, field: str, limit: int) -> str:
    """`value` without surrounding blanks, refused naming `field` unless 1 to `limit`
    characters remain: the check every free-text argument (a reason, an id, a note) gets."""
    text = value.strip()
    if not 1 <= len(text) <= limit:
        raise BadInput(f"{field} must be 1 to {limit} characters", field=field)
    return text


class Unauthenticated(UserError):
    code = "UNAUTHENTICATED"
    http_status = 401


class Forbidden(UserError):
    code = "FORBIDDEN"
    http_status = 403


class NotFound(UserError):
    code = "NOT_FOUND"
    http_status = 404


class RateLimited(UserError):
    code = "RATE_LIMITED"
    http_status = 429


class Unavailable(UserError):
    """The store of record is unreachable: the client should retry, nothing was accepted."""

    code = "UNAVAILABLE"
    http_status = 503


class SlowConsumer(UserError):
    """A live subscriber fell too far behind and was dropped; resubscribe to continue."""

    code = "SLOW_CONSUMER"
    http_status = 409


class QueryTooComplex(UserError):
    """The operation would return more objects than `query_cost_limit` allows: ask for less."""

    code = "QUERY_TOO_COMPLEX"
    http_status = 400


class QueryTimeout(UserError):
    """PostgreSQL cancelled a statement that ran past `statement_timeout`: narrow the query."""

    code = "QUERY_TIMEOUT"
    http_status = 503


def parse_id(value: Any, what: str, field: str = "id") -> uuid.UUID:
    """An id the client sent; a malformed one is as unknown as a foreign one (NOT_FOUND)."""
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise NotFound(f"{what} not found", field=field) from None
