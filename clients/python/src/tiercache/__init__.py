"""Python client of tiercache.

* :class:`Client` and :class:`AsyncClient` speak to ``tiercache serve``'s
  HTTP API: get, set, delete, the batch calls, tag invalidation, clear,
  stats, health and warming, with typed exceptions for its answers.
* :func:`fetch`, :func:`afetch` and :func:`cached` are get-or-load with
  one loader call per key at a time, and an opt-in in-process
  :class:`LocalCache`.
* :mod:`tiercache.wire` reads tiercache's envelopes straight from Redis,
  with the Go library's validity rules.
"""

from ._aio import AsyncClient
from ._cached import Codec, afetch, cached, fetch
from ._client import Client
from ._errors import (
    BadRequest,
    Conflict,
    ConnectionFailed,
    NotFound,
    OutcomeUnknown,
    PreconditionFailed,
    Queued,
    ServerError,
    TiercacheError,
    TiercacheException,
    TooLarge,
    Unauthorized,
    Unavailable,
)
from ._local import LocalCache
from ._protocol import TTL, Entry, Item, ManyResult, RetryPolicy, decode_value, encode_value

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "BadRequest",
    "Client",
    "Codec",
    "Conflict",
    "ConnectionFailed",
    "Entry",
    "Item",
    "LocalCache",
    "ManyResult",
    "NotFound",
    "OutcomeUnknown",
    "PreconditionFailed",
    "Queued",
    "RetryPolicy",
    "ServerError",
    "TTL",
    "TiercacheError",
    "TiercacheException",
    "TooLarge",
    "Unauthorized",
    "Unavailable",
    "afetch",
    "cached",
    "decode_value",
    "encode_value",
    "fetch",
]
