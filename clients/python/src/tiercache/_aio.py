"""The asyncio client of ``tiercache serve``."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Type, TypeVar, Union

import httpx

from . import _protocol as p
from ._local import LocalCache
from ._protocol import TTL, Entry, Item, ManyResult, RetryPolicy

T = TypeVar("T")

__all__ = ["AsyncClient"]

from ._client import Timeout, Verify, _http_options


class AsyncClient:
    """A client of ``tiercache serve``'s HTTP API for asyncio, with the
    same calls as :class:`Client` as coroutines. Share one per event loop:
    it pools connections.

    Args:
        base_url: the service, such as ``"http://127.0.0.1:8080"`` or
            ``"https://cache.internal:8443"``.
        token: the bearer token (``http.token`` of the service), if one is
            set.
        timeout: seconds for each of connecting, sending, reading an answer
            and waiting for a pooled connection, or an ``httpx.Timeout``.
        verify: TLS verification: ``True`` (the system's CAs), a CA bundle
            path, an ``ssl.SSLContext``, or ``False`` (do not verify).
        cert: a client certificate, as httpx takes it.
        retry: when calls are sent again (see :class:`RetryPolicy`): reads
            after a transport failure, writes only when the connection
            failed before the request left.
        max_connections: the most connections open at once.
        max_keepalive_connections: the most idle connections kept.
        local_cache: an opt-in :class:`LocalCache` that :func:`fetch` and
            :func:`cached` consult first; the client's writes evict it.
        headers: extra headers sent with every request.
        transport: an httpx transport, for tests.
    """

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8080",
        *,
        token: Optional[str] = None,
        timeout: Timeout = 5.0,
        verify: Verify = True,
        cert: Optional[Union[str, tuple]] = None,  # type: ignore[type-arg]
        retry: RetryPolicy = RetryPolicy(),
        max_connections: int = 100,
        max_keepalive_connections: int = 20,
        local_cache: Optional[LocalCache] = None,
        headers: Optional[Mapping[str, str]] = None,
        transport: Optional[httpx.AsyncBaseTransport] = None,
    ) -> None:
        opts = _http_options(base_url, token, timeout, verify, cert, max_connections, max_keepalive_connections, headers)
        self._http = httpx.AsyncClient(transport=transport, **opts)
        self.retry = retry
        self.local_cache = local_cache
        # Flights of fetch: one loader per key at a time (see _cached).
        from ._cached import _TaskFlights

        self._flights = _TaskFlights()

    # -- plumbing ------------------------------------------------------------

    async def _run(self, call: p.Call[T]) -> T:
        local = self.local_cache
        if local is not None:
            if call.evict_all:
                local.clear()
            elif call.evict_keys:
                local.discard(call.evict_keys)
        try:
            return await self._send(call)
        finally:
            if local is not None and (call.evict_all or call.evict_keys):
                if call.evict_all:
                    local.clear()
                else:
                    local.discard(call.evict_keys)

    async def _send(self, call: p.Call[T]) -> T:
        attempt = 0
        while True:
            attempt += 1
            try:
                resp = await self._http.request(call.method, call.path, params=call.params, content=call.content, headers=call.headers)
            except httpx.TransportError as e:
                pause = self.retry.after_error(call, e, attempt)
                if pause is None:
                    raise p.transport_error(call, e) from e
                await asyncio.sleep(pause)
                continue
            pause = self.retry.after_answer(call, resp, attempt)
            if pause is not None:
                await asyncio.sleep(pause)
                continue
            return call.parse(resp)

    async def aclose(self) -> None:
        """Closes the pooled connections."""
        await self._http.aclose()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, et: Optional[Type[BaseException]], ev: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        await self.aclose()

    # -- the API ---------------------------------------------------------------

    async def get(self, key: str, *, decode: bool = False) -> Any:
        """The value of ``key``: its bytes, or with ``decode=True`` the
        value decoded by its content type (JSON and MessagePack; other
        types stay bytes). A stale answer (Redis unreachable, the service's
        own copy) is returned too; use :meth:`get_entry` to tell.

        Raises:
            NotFound: the key has no current value.
            BadRequest: an invalid key.
            Unavailable: Redis is unreachable and the service holds no copy
                (``retry_after`` says when to try again).
        """
        e = await self.get_entry(key)
        return e.value() if decode else e.data

    async def get_entry(self, key: str) -> Entry:
        """The value of ``key`` with what the service says about it: content
        type, ``source`` (``"stale"`` for a fail-safe answer), ETag, age and
        TTL left. Raises as :meth:`get`."""
        return await self._run(p.get_call(key))

    async def set(
        self,
        key: str,
        value: Any,
        *,
        ttl: Optional[TTL] = None,
        tags: Iterable[str] = (),
        content_type: Optional[str] = None,
    ) -> str:
        """Stores ``value`` under ``key`` (see :func:`encode_value` for how
        values become bytes) and returns the stored value's ETag.

        Args:
            ttl: seconds or a ``timedelta``; ``None`` for the service's
                default TTL.
            tags: tags to invalidate it by (no commas: use
                :meth:`set_many` for such tags).
            content_type: the media type to store, which also picks the
                service's codec (JSON, MessagePack, else raw).

        Raises:
            Queued: 202, Redis is unreachable and the write waits in the
                service's recovery queue: not applied yet.
            BadRequest: a bad key, ttl, tag or content type, or a body that
                does not parse as its type; TooLarge (413) over the limit.
            Unavailable: neither applied nor queued.
            OutcomeUnknown: sent, but no answer came.
        """
        return await self._run(p.set_call(key, value, ttl, tags, content_type))

    async def delete(self, key: str, *, soft: bool = False) -> None:
        """Deletes ``key`` (whether or not it exists). Raises
        :class:`Queued` when the delete waits in the recovery queue, and
        otherwise as :meth:`set`.

        With ``soft=True`` the entries become stale instead of gone: the
        service answers them as misses, but while Redis is unreachable it
        still answers them, flagged stale (a soft invalidation).
        """
        await self._run(p.delete_call(key, soft))

    async def get_many(self, keys: Sequence[str]) -> ManyResult:
        """Reads many keys in one request (``POST /v1/mget``): each key
        ends in ``found``, ``missing`` or ``errors`` of the result; one
        key failing does not fail the others. No keys, no request.

        Raises:
            BadRequest: a bad or duplicate key; TooLarge over the batch
                limits.
        """
        if not keys:
            return ManyResult()
        return await self._run(p.get_many_call(keys))

    async def set_many(
        self,
        items: Union[Mapping[str, Any], Iterable[Item]],
        *,
        ttl: Optional[TTL] = None,
        tags: Sequence[str] = (),
        content_type: Optional[str] = None,
    ) -> None:
        """Writes many keys in one request (``POST /v1/mset``): a mapping of
        keys to values sharing ``ttl``, ``tags`` and ``content_type``, or
        :class:`Item` objects with their own. The whole batch is checked
        before anything is written. No items, no request.

        Raises:
            Queued: every item waits in the recovery queue.
            BadRequest, TooLarge, Unavailable, OutcomeUnknown: as
                :meth:`set`.
        """
        its = p.as_items(items, ttl, tags, content_type)
        if its:
            await self._run(p.set_many_call(its))

    async def delete_many(self, keys: Sequence[str], *, soft: bool = False) -> None:
        """Deletes many keys in one request (``POST /v1/mdelete``). Raises
        as :meth:`delete`. No keys, no request. ``soft`` as for
        :meth:`delete`."""
        if keys:
            await self._run(p.delete_many_call(keys, soft))

    async def invalidate_tags(self, *tags: str, soft: bool = False) -> None:
        """Invalidates every entry written with any of ``tags``, on every
        instance (``POST /v1/invalidate``).

        With ``soft=True`` the entries become stale instead of gone: the
        service answers them as misses, but while Redis is unreachable it
        still answers them, flagged stale (a soft invalidation).

        Raises:
            Queued: the invalidation waits in the recovery queue; the keys
                read as misses on that instance meanwhile.
            BadRequest: no tag, or a tag the service refuses.
            Unavailable, OutcomeUnknown: as :meth:`set`.
        """
        await self._run(p.invalidate_call(tags, soft))

    async def clear(self, *, soft: bool = False) -> None:
        """Invalidates every entry of the service's namespace
        (``POST /v1/clear``). Raises as :meth:`invalidate_tags`; ``soft``
        as there."""
        await self._run(p.clear_call(soft))

    async def stats(self) -> Dict[str, Any]:
        """The service's statistics (``GET /v1/stats``): counters, hit
        ratios, latencies, Redis INFO; see the service's observability
        documentation."""
        return await self._run(p.stats_call())

    async def health(self) -> Dict[str, Any]:
        """The service's health report (``GET /readyz``), whatever its
        verdict: ``{"status": "healthy" | "degraded" | "unhealthy", ...}``
        (only the status without the token when one is set)."""
        return await self._run(p.health_call())

    async def warm(self, strategies: Optional[Iterable[str]] = None) -> List[str]:
        """Starts warming runs in the background (``POST /v1/warm``): the
        named strategies, or every on-demand one, and returns their names
        in run order. Follow them with :meth:`warm_status`.

        Raises:
            NotFound: an unknown strategy (``unknown_strategy``).
            Conflict: a strategy that is not on-demand.
            Unavailable: warming is not configured (``warming_disabled``).
        """
        return await self._run(p.warm_call(strategies))

    async def warm_status(self) -> Dict[str, Any]:
        """The warming strategies and their last runs (``GET /v1/warm``)."""
        return await self._run(p.warm_status_call())
