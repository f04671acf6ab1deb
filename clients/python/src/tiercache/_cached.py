"""Get-or-load: :func:`fetch`, :func:`afetch` and the :func:`cached`
decorator, with one loader call per key at a time in this process."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import threading
from typing import (
    TYPE_CHECKING,
    Any,
    Awaitable,
    Callable,
    Dict,
    Iterable,
    List,
    Literal,
    Optional,
    Tuple,
    TypeVar,
    Union,
    cast,
)

from ._errors import NotFound, OutcomeUnknown, Queued, TooLarge, Unavailable
from ._protocol import TTL, Entry, encode_value

if TYPE_CHECKING:
    from ._aio import AsyncClient
    from ._client import Client

__all__ = ["fetch", "afetch", "cached", "Codec"]

log = logging.getLogger("tiercache")

T = TypeVar("T")

#: How fetch and cached store a loaded value: ``"json"`` (the default: any
#: JSON value, read back as the same JSON types), ``"msgpack"`` (adds
#: ``bytes``), or ``"raw"`` (the loader returns ``bytes``).
Codec = Literal["json", "msgpack", "raw"]

#: A TTL, or a function of the loaded value that returns one (``None``
#: for the service's default).
TTLSpec = Union[TTL, None, Callable[[Any], Optional[TTL]]]
#: Tags, or a function of the loaded value that returns them.
TagsSpec = Union[Iterable[str], Callable[[Any], Iterable[str]]]

_CONTENT_TYPES: Dict[str, Optional[str]] = {"json": "application/json", "msgpack": "application/msgpack", "raw": None}


def _content_type(codec: str) -> Optional[str]:
    try:
        return _CONTENT_TYPES[codec]
    except KeyError:
        raise ValueError(f"codec must be json, msgpack or raw, not {codec!r}") from None


def _resolve(value: Any, ttl: TTLSpec, tags: TagsSpec) -> Tuple[Optional[TTL], List[str]]:
    t = ttl(value) if callable(ttl) else ttl
    g = tags(value) if callable(tags) else tags
    if isinstance(g, str):
        raise TypeError("tags must be an iterable of strings, not one string")
    return t, list(g)


# Storing a loaded value is best effort: the caller gets the value whether
# or not the service stored it.
_STORE_ERRORS = (Queued, Unavailable, OutcomeUnknown, TooLarge)


def _stored_entry(key: str, value: Any, ttl: Optional[TTL], content_type: Optional[str]) -> Entry:
    data, ctype = encode_value(value, content_type)
    secs = None
    if ttl is not None:
        secs = int(ttl.total_seconds()) if not isinstance(ttl, (int, float)) else int(ttl)
    return Entry(key=key, data=data, content_type=ctype or "application/octet-stream", source="local", ttl=secs)


# ---- single flight -----------------------------------------------------------


class _Flight:
    __slots__ = ("done", "value", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = None
        self.error: Optional[BaseException] = None


class _ThreadFlights:
    """One call per key at a time across threads: the first caller runs
    it, the others wait for its outcome."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: Dict[str, _Flight] = {}

    def do(self, key: str, fn: Callable[[], T]) -> T:
        with self._lock:
            f = self._flights.get(key)
            leader = f is None
            if f is None:
                f = self._flights[key] = _Flight()
        if not leader:
            f.done.wait()
            if f.error is not None:
                raise f.error
            return cast(T, f.value)
        try:
            value = fn()
            f.value = value
            return value
        except BaseException as e:
            f.error = e
            raise
        finally:
            with self._lock:
                del self._flights[key]
            f.done.set()


class _TaskFlights:
    """One call per key at a time across the tasks of an event loop."""

    def __init__(self) -> None:
        self._flights: Dict[Tuple[int, str], "asyncio.Future[Any]"] = {}

    async def do(self, key: str, fn: Callable[[], Awaitable[T]]) -> T:
        loop = asyncio.get_running_loop()
        k = (id(loop), key)
        while True:
            fut = self._flights.get(k)
            if fut is None:
                break
            try:
                return cast(T, await asyncio.shield(fut))
            except asyncio.CancelledError:
                if not fut.cancelled():
                    raise  # this task was cancelled
                # The leader was cancelled: take over.
        fut = loop.create_future()
        self._flights[k] = fut
        try:
            value = await fn()
        except asyncio.CancelledError:
            fut.cancel()
            raise
        except BaseException as e:
            fut.set_exception(e)
            fut.exception()  # retrieved: no "never retrieved" warning without followers
            raise
        else:
            fut.set_result(value)
            return value
        finally:
            del self._flights[k]


# ---- fetch ---------------------------------------------------------------------


def fetch(
    client: "Client",
    key: str,
    loader: Callable[[], T],
    *,
    ttl: TTLSpec = None,
    tags: TagsSpec = (),
    codec: Codec = "json",
    refresh_stale: bool = False,
) -> T:
    """Returns the cached value of ``key``, or calls ``loader()``, stores
    its result and returns it.

    * One loader call per key at a time per client: concurrent callers in
      other threads wait for the first one's outcome (its value, or its
      exception).
    * ``ttl`` and ``tags`` are given, or computed from the loaded value
      (a function of it).
    * ``codec`` is how the value is stored: ``"json"`` (default),
      ``"msgpack"``, or ``"raw"`` (the loader returns bytes). A hit is
      decoded the same way, so a JSON round trip turns tuples into lists.
    * When the service answers **stale** (Redis unreachable, its own copy),
      the stale value is returned and the loader is not called, unless
      ``refresh_stale``: then the loader runs and the stale value is
      returned only if it raises.
    * When the service cannot answer (:class:`Unavailable`), the loader
      runs. Storing is best effort: a queued, refused (too large) or
      failed write is logged at WARNING on the ``tiercache`` logger, and
      the value is still returned.
    * With the client's opt-in :class:`LocalCache`, a fresh local copy is
      returned first (see its freshness rules).

    Raises:
        whatever the loader raises; BadRequest for an invalid key;
        Unauthorized.
    """
    ctype = _content_type(codec)
    local = client.local_cache
    if local is not None:
        e = local.get(key)
        if e is not None:
            return cast(T, e.value())

    def run() -> T:
        token = local.token() if local is not None else 0
        stale: Optional[Entry] = None
        try:
            e = client.get_entry(key)
            if not e.stale:
                if local is not None:
                    local.put(e, token)
                return cast(T, e.value())
            stale = e
            if not refresh_stale:
                return cast(T, e.value())
        except NotFound:
            pass
        except Unavailable as err:
            log.debug("tiercache: fetch %r: the service could not answer (%s); loading", key, err)
        try:
            value = loader()
        except Exception:
            if stale is not None:
                log.warning("tiercache: fetch %r: the loader failed; answering the stale value", key, exc_info=True)
                return cast(T, stale.value())
            raise
        t, g = _resolve(value, ttl, tags)
        # The write evicts the key twice (before and after it is sent): the
        # value goes into the local cache only if no other eviction came.
        token = local.token() + 2 if local is not None else 0
        try:
            client.set(key, value, ttl=t, tags=g, content_type=ctype)
        except _STORE_ERRORS as err:
            log.warning("tiercache: fetch %r: the loaded value was not stored: %s", key, err)
        else:
            if local is not None:
                local.put(_stored_entry(key, value, t, ctype), token)
        return value

    return client._flights.do(key, run)


async def afetch(
    client: "AsyncClient",
    key: str,
    loader: Callable[[], Awaitable[T]],
    *,
    ttl: TTLSpec = None,
    tags: TagsSpec = (),
    codec: Codec = "json",
    refresh_stale: bool = False,
) -> T:
    """:func:`fetch` for asyncio: ``loader`` is a coroutine function, and
    concurrent tasks of the event loop asking for the same key wait for
    the first one's outcome. Same rules otherwise."""
    ctype = _content_type(codec)
    local = client.local_cache
    if local is not None:
        e = local.get(key)
        if e is not None:
            return cast(T, e.value())

    async def run() -> T:
        token = local.token() if local is not None else 0
        stale: Optional[Entry] = None
        try:
            e = await client.get_entry(key)
            if not e.stale:
                if local is not None:
                    local.put(e, token)
                return cast(T, e.value())
            stale = e
            if not refresh_stale:
                return cast(T, e.value())
        except NotFound:
            pass
        except Unavailable as err:
            log.debug("tiercache: fetch %r: the service could not answer (%s); loading", key, err)
        try:
            value = await loader()
        except Exception:
            if stale is not None:
                log.warning("tiercache: fetch %r: the loader failed; answering the stale value", key, exc_info=True)
                return cast(T, stale.value())
            raise
        t, g = _resolve(value, ttl, tags)
        # The write evicts the key twice (before and after it is sent): the
        # value goes into the local cache only if no other eviction came.
        token = local.token() + 2 if local is not None else 0
        try:
            await client.set(key, value, ttl=t, tags=g, content_type=ctype)
        except _STORE_ERRORS as err:
            log.warning("tiercache: fetch %r: the loaded value was not stored: %s", key, err)
        else:
            if local is not None:
                local.put(_stored_entry(key, value, t, ctype), token)
        return value

    return await client._flights.do(key, run)


# ---- the decorator ---------------------------------------------------------------

F = TypeVar("F", bound=Callable[..., Any])
KeySpec = Union[None, str, Callable[..., str]]


def _default_key(fn: Callable[..., Any], bound: inspect.BoundArguments) -> str:
    args = ",".join(f"{k}={v!r}" for k, v in bound.arguments.items())
    return f"{fn.__module__}.{fn.__qualname__}({args})"


def cached(
    client: Union["Client", "AsyncClient"],
    *,
    key: KeySpec = None,
    ttl: TTLSpec = None,
    tags: TagsSpec = (),
    codec: Codec = "json",
    refresh_stale: bool = False,
) -> Callable[[F], F]:
    """Decorates a function (with a :class:`Client`) or a coroutine
    function (with an :class:`AsyncClient`) so that its results are cached
    by :func:`fetch` / :func:`afetch`.

    Args:
        key: the cache key of a call: a template formatted with the call's
            arguments by name (``"user:{user_id}"``), a function taking the
            same arguments, or ``None`` for
            ``"<module>.<qualname>(<arg>=<repr>,...)"``.
        ttl: seconds, a ``timedelta``, or a function of the result.
        tags: tags, each a template formatted like ``key``
            (``["org:{org_id}"]``), or a function of the result.
        codec, refresh_stale: as :func:`fetch`.

    The decorated function gets a ``key_for(*args, **kwargs)`` attribute
    that returns the key of a call.
    """
    _content_type(codec)

    def decorate(fn: F) -> F:
        sig = inspect.signature(fn)
        is_async = inspect.iscoroutinefunction(fn)

        def bind(args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> inspect.BoundArguments:
            b = sig.bind(*args, **kwargs)
            b.apply_defaults()
            return b

        def key_for(*args: Any, **kwargs: Any) -> str:
            if callable(key):
                return key(*args, **kwargs)
            b = bind(args, kwargs)
            if key is None:
                return _default_key(fn, b)
            return key.format(**b.arguments)

        def tags_for(args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> TagsSpec:
            if callable(tags):
                return tags
            if isinstance(tags, str):
                raise TypeError("tags must be an iterable of strings, not one string")
            b = bind(args, kwargs)
            return [t.format(**b.arguments) for t in tags]

        if is_async:

            @functools.wraps(fn)
            async def awrapper(*args: Any, **kwargs: Any) -> Any:
                from ._aio import AsyncClient

                if not isinstance(client, AsyncClient):
                    raise TypeError("a coroutine function needs an AsyncClient")
                async def load() -> Any:
                    return await fn(*args, **kwargs)

                return await afetch(
                    client,
                    key_for(*args, **kwargs),
                    load,
                    ttl=ttl,
                    tags=tags_for(args, kwargs),
                    codec=codec,
                    refresh_stale=refresh_stale,
                )

            awrapper.key_for = key_for  # type: ignore[attr-defined]
            return cast(F, awrapper)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            from ._client import Client

            if not isinstance(client, Client):
                raise TypeError("a plain function needs a Client; use an AsyncClient with coroutine functions")
            def load() -> Any:
                return fn(*args, **kwargs)

            return fetch(
                client,
                key_for(*args, **kwargs),
                load,
                ttl=ttl,
                tags=tags_for(args, kwargs),
                codec=codec,
                refresh_stale=refresh_stale,
            )

        wrapper.key_for = key_for  # type: ignore[attr-defined]
        return cast(F, wrapper)

    return decorate
