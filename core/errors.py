"""One exception type for every refusal of the domain, carrying a SPEC §3 error code."""

from __future__ import annotations

import enum


class ErrorCode(enum.StrEnum):
    UNAUTHENTICATED = "UNAUTHENTICATED"
    FORBIDDEN = "FORBIDDEN"
    NOT_FOUND = "NOT_FOUND"
    NOT_SUBSCRIBED = "NOT_SUBSCRIBED"
    FEATURE_DISABLED = "FEATURE_DISABLED"
    MAILBOX_DEACTIVATED = "MAILBOX_DEACTIVATED"
    MAILBOX_NOT_EMPTY = "MAILBOX_NOT_EMPTY"
    DUPLICATE_NAME = "DUPLICATE_NAME"
    VALIDATION_ERROR = "VALIDATION_ERROR"
    ATTACHMENT_TOO_LARGE = "ATTACHMENT_TOO_LARGE"
    ATTACHMENT_TYPE_NOT_ALLOWED = "ATTACHMENT_TYPE_NOT_ALLOWED"
    RATE_LIMITED = "RATE_LIMITED"
    QUERY_TOO_COMPLEX = "QUERY_TOO_COMPLEX"


class DomainError(Exception):
    """A refused operation: `code` is machine-readable, `message` tells the caller what to do."""

    def __init__(self, code: ErrorCode, message: str, **extra: object) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.extra = extra

    def __repr__(self) -> str:
        return f"DomainError({self.code.value}, {self.message!r})"


NOT_FOUND_MESSAGE = "No such record, or you do not have access to it."


def not_found(what: str = "record") -> DomainError:
    """`what` names, for the reader of the call site, the record that was looked up. The message is the same for
    every kind: which check refuses first differs between another practice's record (its practice) and a made-up
    id (the record itself), and naming it would tell the two apart, i.e. count other practices' records."""
    return DomainError(ErrorCode.NOT_FOUND, NOT_FOUND_MESSAGE)


NOT_SIGNED_IN_MESSAGE = "Sign in or send 'Authorization: Bearer <token>'."


def not_signed_in() -> DomainError:
    """Nobody is signed in (staff or patient), or a socket's browser session has ended: one of the two
    UNAUTHENTICATED answers; the other is a refused token's (`core.tokens.INVALID_TOKEN_MESSAGE`), over HTTP, on
    the socket and when a live stream's token is revoked."""
    return DomainError(ErrorCode.UNAUTHENTICATED, NOT_SIGNED_IN_MESSAGE)
