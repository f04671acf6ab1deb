"""Typed exceptions that mirror the answers of ``tiercache serve``.

Two families share the root :class:`TiercacheException`:

* :class:`Queued` is neither a success nor a failure: the service answered
  ``202 Accepted`` because Redis was unreachable, and the change waits in
  its recovery queue (on disk with the journal) to be applied, in order, as
  soon as Redis answers again.
* :class:`TiercacheError` and its subclasses are failures: nothing was
  done, or (for :class:`OutcomeUnknown`) the client cannot tell.
"""

from __future__ import annotations

from typing import Optional

__all__ = [
    "TiercacheException",
    "Queued",
    "TiercacheError",
    "NotFound",
    "BadRequest",
    "TooLarge",
    "Unauthorized",
    "PreconditionFailed",
    "Conflict",
    "Unavailable",
    "ConnectionFailed",
    "OutcomeUnknown",
    "ServerError",
]


class TiercacheException(Exception):
    """Root of every exception this package raises for an answer of the
    service (or the lack of one).

    Attributes:
        status: the HTTP status, or 0 when no answer came.
        code: the stable error code of the service's JSON error (such as
            ``"invalid_key"``), or a code of this client (``"queued"``,
            ``"connection_failed"``, ``"outcome_unknown"``).
        message: the human-readable message.
        request_id: the service's ``X-Request-Id``, which finds the
            service's log lines; empty when no answer came.
    """

    def __init__(self, message: str, *, status: int = 0, code: str = "", request_id: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id

    def __str__(self) -> str:
        parts = [self.message]
        if self.code:
            parts.append(f"code={self.code}")
        if self.status:
            parts.append(f"status={self.status}")
        if self.request_id:
            parts.append(f"request_id={self.request_id}")
        return " ".join(parts[:1]) + (" (" + ", ".join(parts[1:]) + ")" if len(parts) > 1 else "")


class Queued(TiercacheException):
    """The service answered 202: the change is **queued**, not applied yet.

    Redis was unreachable; the write, delete, invalidation or clear waits in
    the service's recovery queue and is applied as soon as Redis answers
    again (with the recovery journal, even after a restart of the service).
    Until then the keys it concerns read as misses on that instance. It is
    deliberately not a :class:`TiercacheError`: nothing failed, but nothing
    is done yet either.

    Attributes:
        detail: the service's explanation.
    """

    def __init__(self, detail: str, *, request_id: str = "") -> None:
        super().__init__(detail or "queued", status=202, code="queued", request_id=request_id)
        self.detail = detail


class TiercacheError(TiercacheException):
    """A failure: the service refused or could not do the request, or it
    could not be reached."""


class NotFound(TiercacheError):
    """404: the key is absent, expired, invalidated, or its stored value
    could not be decoded (``not_found``); also an unknown path
    (``no_such_endpoint``) or warming strategy (``unknown_strategy``)."""


class BadRequest(TiercacheError):
    """400: the request is malformed; :attr:`code` says how (``invalid_key``,
    ``invalid_parameter``, ``invalid_tag``, ``invalid_body``,
    ``invalid_value``, ``invalid_content_type``, ``duplicate_key``, ...).
    Retrying the same request gives the same answer."""


class TooLarge(BadRequest):
    """413: a value, a batch body or a batch's answer is over the service's
    limits (``value_too_large``, ``body_too_large``, ``too_many_keys``)."""


class Unauthorized(TiercacheError):
    """401: the bearer token is missing or wrong."""


class PreconditionFailed(TiercacheError):
    """412: a conditional request's ``If-Match`` / ``If-None-Match`` did not
    hold; nothing was written."""


class Conflict(TiercacheError):
    """409: ``POST /v1/warm`` named a strategy that is not on-demand."""


class Unavailable(TiercacheError):
    """503: neither applied nor queued. Redis is unreachable and the service
    holds no copy (reads), the recovery queue is full or its journal failed
    (writes), the request timed out, warming is off, or the service is
    shutting down. :attr:`code` says which.

    Attributes:
        retry_after: seconds the service asks to wait (its ``Retry-After``),
            or ``None`` when it gave none.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int = 503,
        code: str = "unavailable",
        request_id: str = "",
        retry_after: Optional[float] = None,
    ) -> None:
        super().__init__(message, status=status, code=code, request_id=request_id)
        self.retry_after = retry_after


class ConnectionFailed(Unavailable):
    """The service could not be reached (connection refused, TLS failure,
    DNS, a connect timeout), or, for a read, did not answer in time. A write
    that raises it was never sent, so it was not applied."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=0, code="connection_failed")


class OutcomeUnknown(TiercacheError):
    """A write was sent but no answer came (a read timeout, a dropped
    connection): it may or may not have been applied, or queued. The client
    does not retry it; repeat it only if doing it twice is harmless."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=0, code="outcome_unknown")


class ServerError(TiercacheError):
    """500 or another unexpected answer: a bug in the service (``internal``),
    or something between the client and the service (a proxy) that did not
    answer in the service's terms."""
