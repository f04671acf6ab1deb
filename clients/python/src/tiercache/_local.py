"""The opt-in in-process cache (L1) of :func:`tiercache.fetch` and
:func:`tiercache.cached`."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import replace
from typing import Callable, Iterable, Optional, Tuple

from ._protocol import Entry

__all__ = ["LocalCache"]


class LocalCache:
    """A small, short-lived copy of values in this process, in front of the
    service. It is used only by :func:`~tiercache.fetch`,
    :func:`~tiercache.afetch` and :func:`~tiercache.cached` of a client
    constructed with ``local_cache=LocalCache(...)``; ``get`` and the other
    calls always ask the service.

    Freshness rules:

    * An entry is served for at most ``ttl`` seconds after it was read from
      (or written to) the service, and never past the TTL the service
      reported for it.
    * Stale answers of the service (fail-safe, while Redis is unreachable)
      and queued writes are never stored in it.
    * Writes through the same client (``set``, ``delete``, ``set_many``,
      ``delete_many``) remove their keys at once; ``invalidate_tags`` and
      ``clear`` empty it. A read whose answer arrives after such a write
      started is not stored.
    * A change made anywhere else (another process, another client, the Go
      library, an invalidation or clear through another client) is **not**
      seen by it: this process may serve the previous value for up to
      ``ttl`` seconds after the change. Choose ``ttl`` as the staleness
      you accept.

    Args:
        ttl: the longest an entry is served, in seconds (default 1).
        max_entries: the most entries kept; the least recently used go
            first.
        clock: a monotonic clock in seconds, for tests.
    """

    def __init__(self, ttl: float = 1.0, max_entries: int = 10_000, *, clock: Callable[[], float] = time.monotonic) -> None:
        if not ttl > 0:
            raise ValueError("ttl must be positive")
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.ttl = float(ttl)
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._data: "OrderedDict[str, Tuple[Entry, float]]" = OrderedDict()
        self._gen = 0

    def token(self) -> int:
        """A snapshot to take before asking the service; :meth:`put` with it
        stores nothing if an eviction happened since."""
        with self._lock:
            return self._gen

    def get(self, key: str) -> Optional[Entry]:
        """The entry for ``key`` while it is fresh, with source ``"local"``."""
        with self._lock:
            hit = self._data.get(key)
            if hit is None:
                return None
            entry, deadline = hit
            if self._clock() >= deadline:
                del self._data[key]
                return None
            self._data.move_to_end(key)
            return entry

    def put(self, entry: Entry, token: int) -> bool:
        """Stores a fresh entry unless an eviction happened since ``token``
        was taken; reports whether it did."""
        if entry.stale:
            return False
        life = self.ttl
        if entry.ttl is not None:
            life = min(life, float(entry.ttl))
        if life <= 0:
            return False
        with self._lock:
            if token != self._gen:
                return False
            self._data[entry.key] = (replace(entry, source="local"), self._clock() + life)
            self._data.move_to_end(entry.key)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)
            return True

    def discard(self, keys: Iterable[str]) -> None:
        """Removes keys, and stops reads in flight from storing."""
        with self._lock:
            self._gen += 1
            for k in keys:
                self._data.pop(k, None)

    def clear(self) -> None:
        """Removes every entry, and stops reads in flight from storing."""
        with self._lock:
            self._gen += 1
            self._data.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)
