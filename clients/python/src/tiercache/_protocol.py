"""What the sync and asyncio clients share: how each call becomes an HTTP
request, and how each answer becomes a result or a typed exception. The
clients only add the transport and the retry loop."""

from __future__ import annotations

import base64
import json
import math
import re
from dataclasses import dataclass, field
from datetime import timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Callable, Dict, Generic, Iterable, List, Mapping, Optional, Sequence, Tuple, TypeVar, Union
from urllib.parse import quote

import httpx
import msgpack

from ._errors import (
    BadRequest,
    Conflict,
    NotFound,
    PreconditionFailed,
    Queued,
    ServerError,
    TiercacheException,
    TooLarge,
    Unauthorized,
    Unavailable,
)

T = TypeVar("T")

#: A lifetime: seconds (int or float) or a ``timedelta``.
TTL = Union[int, float, timedelta]

MSGPACK_TYPES = frozenset({"application/msgpack", "application/x-msgpack", "application/vnd.msgpack"})


def media_type(content_type: str) -> str:
    """The media type of a ``Content-Type`` value, lower-cased, without
    parameters: ``"application/json; charset=utf-8"`` gives
    ``"application/json"``."""
    return content_type.split(";", 1)[0].strip().lower()


def is_json_type(content_type: str) -> bool:
    """Whether a ``Content-Type`` names JSON: ``application/json`` or any
    ``+json`` type, as the service decides the ``json`` codec."""
    mt = media_type(content_type)
    return mt == "application/json" or mt.endswith("+json")


def is_msgpack_type(content_type: str) -> bool:
    """Whether a ``Content-Type`` names MessagePack, as the service decides
    the ``msgpack`` codec."""
    return media_type(content_type) in MSGPACK_TYPES


def decode_value(data: bytes, content_type: str) -> Any:
    """Decodes stored bytes by their content type: JSON types with
    :func:`json.loads`, MessagePack types with ``msgpack.unpackb`` (strings
    as ``str``, binary as ``bytes``); any other type is returned as bytes."""
    if is_json_type(content_type):
        return json.loads(data)
    if is_msgpack_type(content_type):
        return msgpack.unpackb(data, raw=False)
    return data


def encode_value(value: Any, content_type: Optional[str]) -> Tuple[bytes, Optional[str]]:
    """Turns a value into the body and ``Content-Type`` of a write.

    * ``bytes``, ``bytearray`` and ``memoryview`` are sent as they are, with
      ``content_type`` if given (without one the service stores raw bytes,
      served back as ``application/octet-stream``).
    * ``str`` is sent as UTF-8, by default as ``text/plain; charset=utf-8``.
    * Anything else is serialized: as MessagePack when ``content_type`` is a
      MessagePack type, else as JSON (by default ``application/json``).
    """
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value), content_type
    if isinstance(value, str) and (content_type is None or not (is_json_type(content_type) or is_msgpack_type(content_type))):
        return value.encode("utf-8"), content_type or "text/plain; charset=utf-8"
    if content_type is not None and is_msgpack_type(content_type):
        packed = msgpack.packb(value, use_bin_type=True)
        assert isinstance(packed, bytes)
        return packed, content_type
    if content_type is not None and not is_json_type(content_type):
        raise TypeError(f"cannot serialize {type(value).__name__} as {content_type!r}: give bytes or str, or a JSON or MessagePack content type")
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"), content_type or "application/json"


def ttl_seconds(ttl: Optional[TTL]) -> Optional[Union[int, float]]:
    """A lifetime in seconds, an int when whole; ``None`` stays ``None``
    (the service's default TTL). Raises ValueError unless positive."""
    if ttl is None:
        return None
    secs = ttl.total_seconds() if isinstance(ttl, timedelta) else float(ttl)
    if not math.isfinite(secs) or secs <= 0:
        raise ValueError(f"ttl must be positive, got {ttl!r}")
    return int(secs) if secs == int(secs) else secs


def ttl_param(ttl: Optional[TTL]) -> Optional[str]:
    """The ``ttl`` query parameter for a lifetime: seconds, in decimal
    (the service also takes fractions). ``None`` means the service's
    default TTL."""
    secs = ttl_seconds(ttl)
    if secs is None:
        return None
    return str(secs) if isinstance(secs, int) else format(secs, ".6f").rstrip("0")


def key_path(key: str) -> str:
    """The path of a key: ``/v1/cache/`` and the key percent-encoded, every
    ``/`` included, so that no key is read as a path with empty, ``.`` or
    ``..`` segments."""
    enc = quote(key, safe=":@!$&'()*+,;=-_~")
    # quote leaves dots alone; a key that is only dots would be a path
    # segment "." or "..".
    enc = enc.replace(".", "%2E") if set(key) == {"."} else enc
    return "/v1/cache/" + enc


@dataclass(frozen=True)
class Entry:
    """A value as the service answered it.

    Attributes:
        key: the key.
        data: the stored bytes, unchanged.
        content_type: the media type the value was stored with, else its
            codec's (``application/json``, ``application/msgpack`` or
            ``application/octet-stream``).
        source: where the answer came from: ``"hit-l1"`` (the service's
            memory), ``"hit-l2"`` (Redis), ``"stale"`` (a fail-safe copy
            while Redis is unreachable), or ``"local"`` (this process's
            opt-in :class:`~tiercache.LocalCache`).
        etag: the quoted entity tag, as the ``ETag`` header, or ``""``.
        age: seconds since the value was written, when known.
        ttl: seconds of freshness left (negative for a stale value past its
            TTL), or ``None`` for a value without expiry or when unknown.
        tags: the tags the value was written with, as ``get_many`` reports
            them; empty for :meth:`~tiercache.Client.get_entry`, whose GET
            does not carry them.
    """

    key: str
    data: bytes
    content_type: str
    source: str
    etag: str = ""
    age: Optional[int] = None
    ttl: Optional[int] = None
    tags: Tuple[str, ...] = ()

    @property
    def stale(self) -> bool:
        """Whether this is a fail-safe answer: the service could not reach
        Redis and served its own copy, which may be past its TTL or
        changed since."""
        return self.source == "stale"

    def value(self) -> Any:
        """The value decoded by its content type (see
        :func:`decode_value`): JSON and MessagePack decoded, anything else
        as bytes."""
        return decode_value(self.data, self.content_type)


@dataclass(frozen=True)
class Item:
    """One entry of :meth:`Client.set_many`.

    ``value`` and ``content_type`` follow :func:`encode_value`; ``ttl``
    ``None`` means the service's default; ``tags`` attach the entry to
    tags for :meth:`Client.invalidate_tags`.
    """

    key: str
    value: Any
    ttl: Optional[TTL] = None
    tags: Sequence[str] = ()
    content_type: Optional[str] = None


@dataclass
class ManyResult:
    """The answer of :meth:`Client.get_many`: each key asked for is in
    exactly one of ``found`` (hits, stale answers included: check
    :attr:`Entry.stale`), ``missing`` and ``errors``.

    Attributes:
        found: the keys with a value, in the order asked.
        missing: the keys without one.
        errors: the keys the service could not answer (Redis unreachable
            and no copy held), each with the error a single get would have
            raised.
    """

    found: Dict[str, Entry] = field(default_factory=dict)
    missing: List[str] = field(default_factory=list)
    errors: Dict[str, Unavailable] = field(default_factory=dict)

    def values(self) -> Dict[str, Any]:
        """The decoded values of the keys found (see :meth:`Entry.value`)."""
        return {k: e.value() for k, e in self.found.items()}


@dataclass
class Call(Generic[T]):
    """One request and how to read its answer."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: Optional[List[Tuple[str, Union[str, int, float, bool, None]]]] = None
    content: Optional[bytes] = None
    headers: Dict[str, str] = field(default_factory=dict)
    #: A read, which may be sent again after any failure; writes are sent
    #: again only when the connection failed before the request left.
    idempotent: bool = False
    #: Keys and tags whose local copies the call makes out of date.
    evict_keys: Sequence[str] = ()
    evict_all: bool = False


def _request_id(resp: httpx.Response) -> str:
    return str(resp.headers.get("x-request-id", ""))


def retry_after(resp: httpx.Response) -> Optional[float]:
    """The ``Retry-After`` of an answer in seconds (a number or an HTTP
    date), or ``None``."""
    v = resp.headers.get("retry-after")
    if v is None:
        return None
    try:
        return max(0.0, float(v))
    except ValueError:
        pass
    try:
        from datetime import datetime, timezone

        return max(0.0, float((parsedate_to_datetime(v) - datetime.now(timezone.utc)).total_seconds()))
    except (TypeError, ValueError):
        return None


def error_for(resp: httpx.Response) -> TiercacheException:
    """The exception for an answer that is not the call's success: the
    service's JSON error (``{"error": {"code", "message"}, "request_id"}``)
    mapped by status."""
    code, message = "", ""
    try:
        body = resp.json()
        if isinstance(body, dict):
            err = body.get("error")
            if isinstance(err, dict):
                code = str(err.get("code", ""))
                message = str(err.get("message", ""))
    except ValueError:
        pass
    rid = _request_id(resp)
    st = resp.status_code
    if not message:
        message = resp.reason_phrase or f"HTTP {st}"
    if st == 202:
        detail = ""
        try:
            b = resp.json()
            if isinstance(b, dict):
                detail = str(b.get("detail", ""))
        except ValueError:
            pass
        return Queued(detail, request_id=rid)
    if st == 404:
        return NotFound(message, status=st, code=code or "not_found", request_id=rid)
    if st == 401:
        return Unauthorized(message, status=st, code=code or "unauthorized", request_id=rid)
    if st == 413:
        return TooLarge(message, status=st, code=code or "value_too_large", request_id=rid)
    if st == 412:
        return PreconditionFailed(message, status=st, code=code or "precondition_failed", request_id=rid)
    if st == 409:
        return Conflict(message, status=st, code=code, request_id=rid)
    if st == 503:
        return Unavailable(message, status=st, code=code or "unavailable", request_id=rid, retry_after=retry_after(resp))
    if 400 <= st < 500:
        return BadRequest(message, status=st, code=code or "bad_request", request_id=rid)
    return ServerError(message, status=st, code=code or "internal", request_id=rid)


def _expect(resp: httpx.Response, *statuses: int) -> None:
    if resp.status_code not in statuses:
        raise error_for(resp)


_TTL_RE = re.compile(r";\s*ttl=(-?\d+)")


def _int_header(resp: httpx.Response, name: str) -> Optional[int]:
    v = resp.headers.get(name)
    try:
        return int(v) if v is not None else None
    except ValueError:
        return None


# ---- the calls -------------------------------------------------------------


def get_call(key: str) -> Call[Entry]:
    """GET /v1/cache/{key}: 200 with the value, else an exception."""

    def parse(resp: httpx.Response) -> Entry:
        _expect(resp, 200)
        m = _TTL_RE.search(resp.headers.get("cache-status", ""))
        return Entry(
            key=key,
            data=resp.content,
            content_type=resp.headers.get("content-type", "application/octet-stream"),
            source=resp.headers.get("x-cache", "hit-l2"),
            etag=resp.headers.get("etag", ""),
            age=_int_header(resp, "age"),
            ttl=int(m.group(1)) if m else None,
        )

    return Call("GET", key_path(key), parse, idempotent=True)


def set_call(key: str, value: Any, ttl: Optional[TTL], tags: Iterable[str], content_type: Optional[str]) -> Call[str]:
    """PUT /v1/cache/{key}?ttl=&tags=: 204 with the stored ETag."""
    body, ctype = encode_value(value, content_type)
    params: List[Tuple[str, Union[str, int, float, bool, None]]] = []
    t = ttl_param(ttl)
    if t is not None:
        params.append(("ttl", t))
    tag_list = _tags(tags)
    if tag_list:
        params.append(("tags", ",".join(tag_list)))
    headers = {"content-type": ctype} if ctype else {}

    def parse(resp: httpx.Response) -> str:
        _expect(resp, 204, 200)
        return str(resp.headers.get("etag", ""))

    return Call("PUT", key_path(key), parse, params=params or None, content=body, headers=headers, evict_keys=(key,))


def _tags(tags: Iterable[str]) -> List[str]:
    if isinstance(tags, str):
        raise TypeError("tags must be an iterable of strings, not one string")
    out = [str(t) for t in tags]
    for t in out:
        if "," in t:
            # The ttl/tags query parameter is comma-separated; a PUT cannot
            # carry such a tag (set_many can).
            raise ValueError(f"tag {t!r} contains a comma, which a PUT's tags parameter cannot carry; use set_many")
    return out


def _soft_params(soft: bool) -> Optional[List[Tuple[str, Union[str, int, float, bool, None]]]]:
    """The query of a soft invalidation (``?soft=true``), or none."""
    return [("soft", "true")] if soft else None


def delete_call(key: str, soft: bool = False) -> Call[None]:
    """DELETE /v1/cache/{key}: 204 whether or not it existed."""

    def parse(resp: httpx.Response) -> None:
        _expect(resp, 204, 200)

    return Call("DELETE", key_path(key), parse, params=_soft_params(soft), evict_keys=(key,))


def _json_body(obj: Any) -> Tuple[bytes, Dict[str, str]]:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8"), {"content-type": "application/json"}


def get_many_call(keys: Sequence[str]) -> Call[ManyResult]:
    """POST /v1/mget: one item per key."""
    keys = list(keys)
    body, headers = _json_body({"keys": keys})

    def parse(resp: httpx.Response) -> ManyResult:
        _expect(resp, 200)
        out = ManyResult()
        for it in resp.json().get("items", []):
            k, status = it["key"], it["status"]
            if status in ("hit-l1", "hit-l2", "stale"):
                out.found[k] = Entry(
                    key=k,
                    data=base64.b64decode(it.get("value", "")),
                    content_type=it.get("content_type", "application/octet-stream"),
                    source=status,
                    etag=it.get("etag", ""),
                    age=it.get("age"),
                    ttl=it.get("ttl"),
                    tags=tuple(it.get("tags") or ()),
                )
            elif status == "miss":
                out.missing.append(k)
            else:
                err = it.get("error") or {}
                out.errors[k] = Unavailable(
                    str(err.get("message", "the service could not answer for this key")),
                    code=str(err.get("code", "unavailable")),
                    request_id=_request_id(resp),
                )
        return out

    return Call("POST", "/v1/mget", parse, content=body, headers=headers, idempotent=True)


def set_many_call(items: Sequence[Item]) -> Call[None]:
    """POST /v1/mset: 204 once every item is stored."""
    wire: List[Dict[str, Any]] = []
    for it in items:
        data, ctype = encode_value(it.value, it.content_type)
        d: Dict[str, Any] = {"key": it.key, "value": base64.b64encode(data).decode("ascii")}
        t = ttl_seconds(it.ttl)
        if t is not None:
            d["ttl"] = t
        tags = [str(x) for x in it.tags] if not isinstance(it.tags, str) else None
        if tags is None:
            raise TypeError("tags must be an iterable of strings, not one string")
        if tags:
            d["tags"] = tags
        if ctype:
            d["content_type"] = ctype
        wire.append(d)
    body, headers = _json_body({"items": wire})

    def parse(resp: httpx.Response) -> None:
        _expect(resp, 204, 200)

    return Call("POST", "/v1/mset", parse, content=body, headers=headers, evict_keys=[it.key for it in items])


def delete_many_call(keys: Sequence[str], soft: bool = False) -> Call[None]:
    """POST /v1/mdelete: 204 whether or not the keys existed."""
    keys = list(keys)
    body, headers = _json_body({"keys": keys})

    def parse(resp: httpx.Response) -> None:
        _expect(resp, 204, 200)

    return Call("POST", "/v1/mdelete", parse, params=_soft_params(soft), content=body, headers=headers, evict_keys=keys)


def invalidate_call(tags: Iterable[str], soft: bool = False) -> Call[None]:
    """POST /v1/invalidate: 204 once applied."""
    if isinstance(tags, str):
        raise TypeError("tags must be an iterable of strings, not one string")
    # An empty list goes too: the service answers it with 400 invalid_body.
    body, headers = _json_body({"tags": [str(t) for t in tags]})

    def parse(resp: httpx.Response) -> None:
        _expect(resp, 204, 200)

    return Call("POST", "/v1/invalidate", parse, params=_soft_params(soft), content=body, headers=headers, evict_all=True)


def clear_call(soft: bool = False) -> Call[None]:
    """POST /v1/clear: 204 once applied."""

    def parse(resp: httpx.Response) -> None:
        _expect(resp, 204, 200)

    return Call("POST", "/v1/clear", parse, params=_soft_params(soft), evict_all=True)


def _json_answer(resp: httpx.Response) -> Dict[str, Any]:
    _expect(resp, 200)
    body = resp.json()
    if not isinstance(body, dict):
        raise ServerError("the answer is not a JSON object", status=resp.status_code, request_id=_request_id(resp))
    return body


def stats_call() -> Call[Dict[str, Any]]:
    """GET /v1/stats: the cache's statistics."""
    return Call("GET", "/v1/stats", _json_answer, idempotent=True)


def health_call() -> Call[Dict[str, Any]]:
    """GET /readyz: the health report, whether the verdict is healthy (200)
    or unhealthy (503)."""

    def parse(resp: httpx.Response) -> Dict[str, Any]:
        if resp.status_code in (200, 503):
            try:
                body = resp.json()
            except ValueError:
                body = None
            if isinstance(body, dict) and "status" in body:
                return body
        raise error_for(resp)

    return Call("GET", "/readyz", parse, idempotent=True)


def warm_call(strategies: Optional[Iterable[str]]) -> Call[List[str]]:
    """POST /v1/warm: 202 with the strategies started, in run order. This
    202 is the call's success (the runs started), not a queued change."""
    content: Optional[bytes] = None
    headers: Dict[str, str] = {}
    if strategies is not None:
        if isinstance(strategies, str):
            raise TypeError("strategies must be an iterable of strings, not one string")
        content, headers = _json_body({"strategies": list(strategies)})

    def parse(resp: httpx.Response) -> List[str]:
        if resp.status_code != 202:
            raise error_for(resp)
        return [str(s) for s in resp.json().get("strategies", [])]

    return Call("POST", "/v1/warm", parse, content=content, headers=headers)


def warm_status_call() -> Call[Dict[str, Any]]:
    """GET /v1/warm: the strategies and their last runs."""
    return Call("GET", "/v1/warm", _json_answer, idempotent=True)


def as_items(
    items: Union[Mapping[str, Any], Iterable[Item]],
    ttl: Optional[TTL],
    tags: Sequence[str],
    content_type: Optional[str],
) -> List[Item]:
    """The items of a set_many call: ``Item`` objects as they are, or a
    mapping of keys to values that share ``ttl``, ``tags`` and
    ``content_type``."""
    if isinstance(items, Mapping):
        return [Item(k, v, ttl, tuple(tags), content_type) for k, v in items.items()]
    out = list(items)
    for it in out:
        if not isinstance(it, Item):
            raise TypeError(f"set_many takes a mapping or Item objects, got {type(it).__name__}")
    return out


# ---- retries ---------------------------------------------------------------

#: Transport failures that happen before the request leaves: safe to retry
#: for every call, writes included.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


@dataclass(frozen=True)
class RetryPolicy:
    """When a call is sent again.

    Attributes:
        retries: the most extra attempts of one call.
        backoff: the first pause in seconds; it doubles with each attempt.
        max_backoff: the longest pause.
        retry_unavailable: also retry reads answered 503, after the
            service's ``Retry-After`` (capped by ``max_backoff``). Writes
            answered 503 are never retried: the answer may be a timeout of
            a write that Redis applied after all.
    """

    retries: int = 2
    backoff: float = 0.05
    max_backoff: float = 1.0
    retry_unavailable: bool = False

    def pause(self, attempt: int) -> float:
        """The pause before attempt ``attempt`` (1 for the first retry)."""
        return float(min(self.max_backoff, self.backoff * 2.0 ** (attempt - 1)))

    def after_answer(self, call: Call[Any], resp: httpx.Response, attempt: int) -> Optional[float]:
        """The pause before retrying a call answered ``resp``, or ``None``
        not to retry."""
        if attempt > self.retries or not call.idempotent or resp.status_code != 503 or not self.retry_unavailable:
            return None
        ra = retry_after(resp)
        return min(self.max_backoff, ra if ra is not None else self.pause(attempt))

    def after_error(self, call: Call[Any], exc: Exception, attempt: int) -> Optional[float]:
        """The pause before retrying a call whose transport failed with
        ``exc``, or ``None`` not to retry."""
        if attempt > self.retries:
            return None
        if isinstance(exc, NOT_SENT) or (call.idempotent and isinstance(exc, httpx.TransportError)):
            return self.pause(attempt)
        return None


def transport_error(call: Call[Any], exc: Exception) -> TiercacheException:
    """The exception for a call whose transport failed for good."""
    from ._errors import ConnectionFailed, OutcomeUnknown

    what = f"{call.method} {call.path}"
    if isinstance(exc, NOT_SENT) or call.idempotent:
        return ConnectionFailed(f"{what}: {type(exc).__name__}: {exc}")
    return OutcomeUnknown(f"{what}: sent, but no answer came ({type(exc).__name__}: {exc}); it may or may not have been applied")
