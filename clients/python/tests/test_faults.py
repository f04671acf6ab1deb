"""Redis stopped under the service: stale answers, 202 queued, 503 with
Retry-After, and queued changes applied once Redis is back. Both ways of
stopping it: killed (connections refused) and frozen (SIGSTOP: nothing
answers)."""

from __future__ import annotations

import asyncio
import time
from typing import Any, List

import pytest

from tiercache import AsyncClient, Client, Entry, NotFound, Queued, TiercacheError, Unavailable

from conftest import Stack, wait_for


def _stale(c: Client, key: str) -> Entry:
    e = c.get_entry(key)
    return e if e.stale else None  # type: ignore[return-value]


@pytest.mark.parametrize("how", ["kill", "sigstop"])
def test_redis_down(stack: Stack, how: str) -> None:
    with Client(stack.url, timeout=10) as c:
        c.set("held", {"v": 1}, tags=["t1"])
        c.set("held2", b"two")
        c.set("to-delete", b"x")
        assert c.get("held", decode=True) == {"v": 1}  # in serve's memory now
        c.get("held2")
        c.get("to-delete")

        if how == "kill":
            stack.redis.kill()
        else:
            stack.redis.pause()
        try:
            # A key the service holds: answered stale, flagged.
            e = wait_for("a stale answer", lambda: _stale(c, "held"), timeout=15)
            assert e.value() == {"v": 1} and e.source == "stale"
            assert e.ttl is not None

            # A key it never held: 503 with Retry-After (TIERCACHE_RETRY_AFTER=2s).
            with pytest.raises(Unavailable) as un:
                c.get("never-held")
            assert un.value.status == 503 and un.value.code in ("unavailable", "timeout")
            assert un.value.retry_after == 2.0
            assert "127.0.0.1:" + str(stack.redis.port) not in str(un.value)

            # Batch reads: stale for held keys, an error for the others.
            res = c.get_many(["held2", "never-held"])
            assert res.found["held2"].stale and res.found["held2"].data == b"two"
            assert isinstance(res.errors["never-held"], Unavailable)

            # Writes are queued: reported as such, neither success nor failure.
            queued: List[Queued] = []
            for call in (
                lambda: c.set("queued", b"later", ttl=600),
                lambda: c.delete("to-delete"),
                lambda: c.set_many({"qm1": b"1", "qm2": b"2"}),
                lambda: c.delete_many(["held2"]),
                lambda: c.invalidate_tags("t1"),
            ):
                with pytest.raises(Queued) as q:
                    call()
                assert q.value.status == 202 and q.value.code == "queued" and q.value.request_id
                assert not isinstance(q.value, TiercacheError)
                queued.append(q.value)
            # While queued, the keys read as misses on this instance.
            with pytest.raises(NotFound):
                c.get("queued")
        finally:
            if how == "kill":
                stack.redis.start()
            else:
                stack.redis.resume()

        # Once Redis answers, the queue is applied in order.
        wait_for("the queued write", lambda: c.get("queued") == b"later", timeout=20)
        assert c.get_many(["qm1", "qm2"]).values() == {"qm1": b"1", "qm2": b"2"}
        for gone in ("to-delete", "held2", "held"):
            wait_for(f"{gone} to be gone", lambda: _missing(c, gone), timeout=10)


def _missing(c: Client, key: str) -> bool:
    try:
        c.get(key)
        return False
    except NotFound:
        return True


def test_clear_queued(stack: Stack) -> None:
    with Client(stack.url, timeout=10) as c:
        c.set("k", b"v")
        stack.redis.kill()
        try:
            wait_for("clear to be queued (202)", lambda: _raises_queued(c.clear), timeout=10)
        finally:
            stack.redis.start()
        wait_for("the clear", lambda: _missing(c, "k"), timeout=20)


def _raises_queued(fn: Any) -> bool:
    try:
        fn()
    except Queued:
        return True
    return False


def test_health_unhealthy_and_async(stack: Stack) -> None:
    with Client(stack.url, timeout=10) as c:
        c.set("held", b"h")
        c.get("held")
        stack.redis.kill()
        try:
            h = wait_for("unhealthy", lambda: (lambda r: r if r["status"] == "unhealthy" else None)(c.health()), timeout=15)
            assert h["checks"]["connectivity"]["status"] == "fail"

            async def main() -> None:
                async with AsyncClient(stack.url, timeout=10) as ac:
                    e = await ac.get_entry("held")
                    assert e.stale and e.data == b"h"
                    with pytest.raises(Unavailable) as un:
                        await ac.get("never")
                    assert un.value.retry_after == 2.0
                    with pytest.raises(Queued):
                        await ac.set("q", b"v")

            asyncio.run(main())
        finally:
            stack.redis.start()
        wait_for("healthy again", lambda: c.health()["status"] == "healthy", timeout=20)
        wait_for("the async write", lambda: c.get("q") == b"v", timeout=20)


def test_soft_invalidation(stack: Stack) -> None:
    """soft=True makes entries stale: misses while Redis answers, stale
    answers while it is down. Hard invalidations leave nothing to answer."""
    with Client(stack.url, timeout=10) as c:
        for key, tag in (("s-tag", "st"), ("h-tag", "ht"), ("s-del", None), ("s-mdel", None), ("s-clear", None)):
            c.set(key, key.encode(), tags=[tag] if tag else [])
            assert c.get(key) == key.encode()
        c.invalidate_tags("st", soft=True)
        c.invalidate_tags("ht")
        c.delete("s-del", soft=True)
        c.delete_many(["s-mdel"], soft=True)
        for key in ("s-tag", "h-tag", "s-del", "s-mdel"):
            assert _missing(c, key), key
        assert c.get("s-clear") == b"s-clear"
        c.clear(soft=True)
        assert _missing(c, "s-clear")

        stack.redis.kill()
        try:
            for key in ("s-tag", "s-del", "s-mdel", "s-clear"):
                e = wait_for(f"{key} answered stale", lambda: _stale(c, key), timeout=15)
                assert e.data == key.encode() and e.source == "stale"
            with pytest.raises((NotFound, Unavailable)):
                c.get("h-tag")
        finally:
            stack.redis.start()
