"""What the gateway answers when it cannot take a request: RFC 7807 problem documents.

Every refusal is a typed :class:`GatewayError` carrying its HTTP status and a stable
machine-readable ``code``; the application turns it into ``application/problem+json`` in one
place, so a handler only raises. For bodies the engine's decoder refuses, the code is the
dead-letter reason the engine would have given the same bytes (``schemas.common.DeadLetterReason``):
a front-end handles one vocabulary whether it writes to Kafka or to the gateway.
"""

from __future__ import annotations

import math

import msgspec

from engine.errors import TechXError

PROBLEM_CONTENT_TYPE = "application/problem+json"
#: Problem ``type`` URIs are ``urn:techx:problem:<code>``: stable names, not pages to fetch.
PROBLEM_TYPE_PREFIX = "urn:techx:problem:"


class Problem(msgspec.Struct, frozen=True, omit_defaults=True):
    """An RFC 7807 problem document, with ``code`` (the stable short form of ``type``)."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    #: Seconds to wait, for 429 and 503 (also in the Retry-After header).
    retry_after: int | None = None


class GatewayError(TechXError):
    """A request the gateway refuses; ``status`` and ``code`` say how, ``detail`` why."""

    status = 500
    title = "Internal error"

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail

    def retry_after_s(self) -> int | None:
        return None

    def problem(self) -> Problem:
        return Problem(
            type=PROBLEM_TYPE_PREFIX + self.code,
            title=self.title,
            status=self.status,
            detail=self.detail,
            code=self.code,
            retry_after=self.retry_after_s(),
        )


class BadCommandError(GatewayError):
    """The body is not a command the engine would accept (400); ``code`` is a dead-letter
    reason, or ``command_not_accepted`` for a command front-ends may not send (tick)."""

    status = 400
    title = "Bad command"


class UnauthorizedError(GatewayError):
    """No API key, or one that is unknown, malformed, revoked or rotated away (401).

    The detail never says which of these it was beyond what the caller already knows, so a
    guesser learns nothing about other participants' keys.
    """

    status = 401
    title = "Unauthorized"

    def __init__(self, detail: str) -> None:
        super().__init__("unauthorized", detail)


class PayloadTooLargeError(GatewayError):
    """The body is over the engine's 16 KiB command limit (413)."""

    status = 413
    title = "Payload too large"

    def __init__(self, detail: str) -> None:
        super().__init__("too_large", detail)


class UnsupportedMediaTypeError(GatewayError):
    """The body is not declared as JSON (415)."""

    status = 415
    title = "Unsupported media type"

    def __init__(self, detail: str) -> None:
        super().__init__("unsupported_media_type", detail)


class RateLimitedError(GatewayError):
    """The key used up its token bucket (429); Retry-After says when one token is back."""

    status = 429
    title = "Too many requests"

    def __init__(self, detail: str, wait_s: float) -> None:
        super().__init__("rate_limited", detail)
        self.wait_s = wait_s

    def retry_after_s(self) -> int:
        return max(1, math.ceil(self.wait_s))


class UnavailableError(GatewayError):
    """Kafka or PostgreSQL did not answer (503): nothing was written, send it again."""

    status = 503
    title = "Service unavailable"
    retriable = True

    def retry_after_s(self) -> int:
        return 1
