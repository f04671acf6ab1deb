"""fetch, afetch and cached against a real serve: get-or-load, TTL and tags
per call or from the result, one loader call per key (threads and asyncio
tasks), stale answers, and the opt-in LocalCache's staleness bound when the
value changes through the Go library or another serve instance."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import threading
import time
import uuid
from typing import Any, Callable, Dict, List, Tuple

import pytest

from tiercache import AsyncClient, BadRequest, Client, LocalCache, NotFound, afetch, cached, fetch

from conftest import TOKEN, ServeProc, Stack, wait_for


def k(name: str) -> str:
    return f"{name}:{uuid.uuid4().hex[:8]}"


class Loader:
    """Counts its calls; optionally slow or failing."""

    def __init__(self, value: Any, delay: float = 0.0, fail: bool = False) -> None:
        self.value, self.delay, self.fail = value, delay, fail
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self) -> Any:
        with self.lock:
            self.calls += 1
        time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("the database is down")
        return self.value

    async def coro(self) -> Any:
        self.calls += 1
        await asyncio.sleep(self.delay)
        if self.fail:
            raise RuntimeError("the database is down")
        return self.value


@pytest.fixture
def c(shared_stack: Stack) -> Any:
    with Client(shared_stack.url, token=TOKEN) as client:
        yield client


def test_fetch_get_or_load(c: Client) -> None:
    key = k("f")
    ld = Loader({"name": "Ada", "ids": [1, 2]})
    assert fetch(c, key, ld, ttl=60, tags=["users"]) == {"name": "Ada", "ids": [1, 2]}
    assert fetch(c, key, ld) == {"name": "Ada", "ids": [1, 2]}
    assert ld.calls == 1
    e = c.get_entry(key)
    assert e.content_type == "application/json" and e.ttl is not None and e.ttl <= 60
    c.invalidate_tags("users")
    fetch(c, key, ld)
    assert ld.calls == 2


def test_fetch_codecs(c: Client) -> None:
    key = k("mp")
    assert fetch(c, key, lambda: {"b": b"\x00\xff"}, codec="msgpack") == {"b": b"\x00\xff"}
    assert fetch(c, key, Loader(None), codec="msgpack") == {"b": b"\x00\xff"}
    key = k("raw")
    assert fetch(c, key, lambda: b"\x01\x02", codec="raw") == b"\x01\x02"
    assert c.get_entry(key).content_type == "application/octet-stream"
    key = k("str")
    assert fetch(c, key, lambda: "text") == "text"
    assert fetch(c, key, Loader("other")) == "text"  # a JSON string round-trips as str
    with pytest.raises(ValueError):
        fetch(c, key, lambda: 1, codec="yaml")  # type: ignore[arg-type]


def test_ttl_and_tags_from_the_result(c: Client) -> None:
    key = k("r")
    org = k("org")
    v = fetch(c, key, lambda: {"ttl": 42, "org": org}, ttl=lambda r: r["ttl"], tags=lambda r: [r["org"]])
    e = c.get_entry(key)
    assert e.ttl is not None and 30 < e.ttl <= 42
    c.invalidate_tags(v["org"])
    with pytest.raises(NotFound):
        c.get(key)


def test_single_flight_threads(c: Client) -> None:
    key = k("sf")
    ld = Loader([1, 2, 3], delay=0.3)
    out: List[Any] = []
    ts = [threading.Thread(target=lambda: out.append(fetch(c, key, ld))) for _ in range(16)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert ld.calls == 1
    assert out == [[1, 2, 3]] * 16


def test_single_flight_shares_the_loader_error(c: Client) -> None:
    key = k("err")
    ld = Loader(None, delay=0.2, fail=True)
    errors: List[BaseException] = []

    def call() -> None:
        try:
            fetch(c, key, ld)
        except RuntimeError as e:
            errors.append(e)

    ts = [threading.Thread(target=call) for _ in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert ld.calls == 1 and len(errors) == 8
    ld.fail = False
    assert fetch(c, key, ld) is None  # the next call loads again
    assert ld.calls == 2


def test_fetch_bad_key(c: Client) -> None:
    with pytest.raises(BadRequest):
        fetch(c, "x" * 2000, Loader(1))


def test_decorator(c: Client) -> None:
    calls: List[Tuple[int, str]] = []
    org = k("org")

    @cached(c, key="user:{user_id}:" + org, ttl=60, tags=["org:{org}"])
    def load_user(user_id: int, org: str = org) -> Dict[str, Any]:
        """Loads a user."""
        calls.append((user_id, org))
        return {"id": user_id, "org": org}

    assert load_user(1) == {"id": 1, "org": org}
    assert load_user(1) == {"id": 1, "org": org}
    assert load_user(user_id=1) == {"id": 1, "org": org}
    assert load_user(2) == {"id": 2, "org": org}
    assert calls == [(1, org), (2, org)]
    assert load_user.__doc__ == "Loads a user."
    assert load_user.key_for(1) == f"user:1:{org}"  # type: ignore[attr-defined]
    c.invalidate_tags(f"org:{org}")
    load_user(1)
    assert len(calls) == 3

    n = {"calls": 0}

    @cached(c)
    def square(x: int) -> int:
        n["calls"] += 1
        return x * x

    token = uuid.uuid4().hex
    assert square(int(token[:6], 16)) == int(token[:6], 16) ** 2
    square(int(token[:6], 16))
    assert n["calls"] == 1
    assert square.key_for(3) == f"{__name__}.test_decorator.<locals>.square(x=3)"  # type: ignore[attr-defined]

    @cached(c, key=lambda a, b: f"sum:{a}:{b}:{token}", ttl=lambda r: 10 + r)
    def add(a: int, b: int) -> int:
        return a + b

    assert add(1, 2) == 3
    ttl = c.get_entry(f"sum:1:2:{token}").ttl
    assert ttl is not None and ttl <= 13


def test_decorator_needs_the_matching_client(shared_stack: Stack) -> None:
    ac = AsyncClient(shared_stack.url, token=TOKEN)

    @cached(ac)
    def f() -> int:
        return 1

    with pytest.raises(TypeError):
        f()


def test_async(shared_stack: Stack) -> None:
    async def main() -> None:
        async with AsyncClient(shared_stack.url, token=TOKEN) as ac:
            key = k("a")
            ld = Loader({"x": 1}, delay=0.3)
            out = await asyncio.gather(*(afetch(ac, key, ld.coro, ttl=30) for _ in range(50)))
            assert ld.calls == 1 and out == [{"x": 1}] * 50
            e = await ac.get_entry(key)
            assert e.ttl is not None and e.ttl <= 30

            failing = Loader(None, delay=0.1, fail=True)
            key2 = k("af")
            res = await asyncio.gather(*(afetch(ac, key2, failing.coro) for _ in range(10)), return_exceptions=True)
            assert failing.calls == 1 and all(isinstance(r, RuntimeError) for r in res)

            calls = {"n": 0}
            tag = k("t")

            @cached(ac, key="doc:{doc_id}:" + tag, tags=[tag], ttl=60)
            async def load_doc(doc_id: int) -> Dict[str, int]:
                calls["n"] += 1
                await asyncio.sleep(0.05)
                return {"doc": doc_id}

            got = await asyncio.gather(*(load_doc(7) for _ in range(20)))
            assert got == [{"doc": 7}] * 20 and calls["n"] == 1
            await ac.invalidate_tags(tag)
            await load_doc(7)
            assert calls["n"] == 2

            # The leader's cancellation does not strand the others.
            slow = Loader(5, delay=0.5)
            key3 = k("cancel")
            leader = asyncio.ensure_future(afetch(ac, key3, slow.coro))
            await asyncio.sleep(0.05)
            follower = asyncio.ensure_future(afetch(ac, key3, slow.coro))
            await asyncio.sleep(0.05)
            leader.cancel()
            assert await follower == 5

            @cached(ac)
            def sync_fn() -> int:
                return 1

            with pytest.raises(TypeError):
                sync_fn()

    asyncio.run(main())


# ---- stale answers -------------------------------------------------------------------


def test_fetch_with_redis_down(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    with Client(stack.url, timeout=10) as c:
        fetch(c, "held", Loader({"v": "old"}))
        c.get("held")
        stack.redis.kill()
        try:
            wait_for("a stale answer", lambda: c.get_entry("held").stale, timeout=15)
            fresh = Loader({"v": "new"})
            assert fetch(c, "held", fresh) == {"v": "old"}  # the stale value, no load
            assert fresh.calls == 0
            # refresh_stale: the loader runs; when it fails, the stale value.
            assert fetch(c, "held", Loader(None, fail=True), refresh_stale=True) == {"v": "old"}
            with caplog.at_level(logging.WARNING, logger="tiercache"):
                assert fetch(c, "held", fresh, refresh_stale=True) == {"v": "new"}
            assert fresh.calls == 1
            assert "not stored" in caplog.text and "queued" in caplog.text
            # The queued write makes the key a miss on this instance.
            with pytest.raises(NotFound):
                c.get("held")
            # A key the service never held: 503, so the loader runs.
            ld = Loader([1])
            assert fetch(c, "never", ld) == [1]
            assert ld.calls == 1
        finally:
            stack.redis.start()


# ---- the local cache's bound -----------------------------------------------------------


L1_TTL = 1.0
SLACK = 0.5  # the serve instances' own invalidation delay, and scheduling


def _watch(read: Callable[[], Any], old: Any, filled_at: float) -> Tuple[List[float], float]:
    """Reads until the value is no longer old; returns the times old was
    seen (after filled_at) and when the new value first was."""
    seen_old: List[float] = []
    deadline = filled_at + L1_TTL + 5
    while time.monotonic() < deadline:
        t = time.monotonic()
        v = read()
        if v != old:
            return seen_old, t
        seen_old.append(t)
        time.sleep(0.01)
    pytest.fail("the old value was still served 5 s past the local cache's bound")


def _two_instances(make_redis: Any, make_serve: Any) -> Tuple[Any, ServeProc, ServeProc]:
    r = make_redis()
    a = make_serve(redis_url=r.url, namespace="shared")
    b = make_serve(redis_url=r.url, namespace="shared")
    a.wait_ready()
    b.wait_ready()
    return r, a, b


@pytest.mark.parametrize("writer", ["go-library", "other-serve"])
def test_local_cache_bound(make_redis: Any, make_serve: Any, gowriter_bin: str, writer: str) -> None:
    """A value changed elsewhere is served from the LocalCache for at most
    its ttl after the local copy was filled, then the new value is."""
    r, a, b = _two_instances(make_redis, make_serve)
    local = LocalCache(ttl=L1_TTL)
    key = "api:profile/1"
    with Client(a.url, local_cache=local) as ca, Client(b.url) as cb:
        ld = Loader({"v": 1})
        assert fetch(ca, key, ld) == {"v": 1}
        filled_at = time.monotonic()
        assert len(local) == 1
        if writer == "go-library":
            subprocess.run([gowriter_bin, "set", key, '{"v":2}'], env={"REDIS_URL": r.url, "CACHE_NAMESPACE": "shared"}, check=True, timeout=30)
        else:
            cb.set(key, {"v": 2})
        changed_at = time.monotonic()
        seen_old, new_at = _watch(lambda: fetch(ca, key, ld), {"v": 1}, filled_at)
        assert ld.calls == 1
        assert new_at <= filled_at + L1_TTL + SLACK, f"new value first seen {new_at - filled_at:.3f}s after the fill"
        assert all(t < filled_at + L1_TTL + 0.05 for t in seen_old)
        if changed_at < filled_at + L1_TTL - 0.2:
            assert seen_old, "the local cache was not used"
        # And get, which never uses the local cache, sees the change.
        assert ca.get(key, decode=True) == {"v": 2}


def test_local_cache_bound_on_invalidation(make_redis: Any, make_serve: Any, gowriter_bin: str) -> None:
    r, a, _ = _two_instances(make_redis, make_serve)
    local = LocalCache(ttl=L1_TTL)
    with Client(a.url, local_cache=local) as ca:
        ld = Loader({"v": 1})
        fetch(ca, "k", ld, tags=["grp"])
        filled_at = time.monotonic()
        subprocess.run([gowriter_bin, "invalidate", "grp"], env={"REDIS_URL": r.url, "CACHE_NAMESPACE": "shared"}, check=True, timeout=30)
        ld.value = {"v": 2}
        seen_old, new_at = _watch(lambda: fetch(ca, "k", ld, tags=["grp"]), {"v": 1}, filled_at)
        assert ld.calls == 2
        assert new_at <= filled_at + L1_TTL + SLACK
        assert all(t < filled_at + L1_TTL + 0.05 for t in seen_old)


def test_local_cache_own_writes(shared_stack: Stack) -> None:
    """Writes through the same client are seen at once."""
    local = LocalCache(ttl=60)
    with Client(shared_stack.url, token=TOKEN, local_cache=local) as c:
        key = k("own")
        ld = Loader("v1")
        assert fetch(c, key, ld) == "v1"
        c.set(key, "v2", content_type="application/json")
        assert fetch(c, key, ld) == "v2"
        c.delete(key)
        ld.value = "v3"
        assert fetch(c, key, ld) == "v3"
        tag = k("t")
        c.set(key, "v4", content_type="application/json", tags=[tag])
        assert fetch(c, key, ld) == "v4"
        c.invalidate_tags(tag)
        ld.value = "v5"
        assert fetch(c, key, ld) == "v5"
        c.set_many({key: "v6"}, content_type="application/json")
        assert fetch(c, key, ld) == "v6"
        c.clear()
        assert len(local) == 0


def test_local_cache_unit() -> None:
    from tiercache import Entry

    now = [0.0]
    lc = LocalCache(ttl=2, max_entries=2, clock=lambda: now[0])
    tok = lc.token()
    assert lc.put(Entry("a", b"1", "application/json", "hit-l2", ttl=1), tok)
    assert lc.put(Entry("b", b"2", "application/json", "hit-l2"), tok)
    assert not lc.put(Entry("s", b"2", "application/json", "stale"), tok)  # never stale answers
    assert not lc.put(Entry("e", b"2", "application/json", "hit-l2", ttl=0), tok)
    now[0] = 0.99
    assert lc.get("a") is not None and lc.get("a").source == "local"  # type: ignore[union-attr]
    now[0] = 1.0
    assert lc.get("a") is None  # the service's TTL bounds it
    assert lc.get("b") is not None
    now[0] = 2.0
    assert lc.get("b") is None  # its own ttl
    tok = lc.token()
    lc.discard(["x"])
    assert not lc.put(Entry("c", b"3", "application/json", "hit-l2"), tok)  # a write happened meanwhile
    tok = lc.token()
    for key in "cde":
        lc.put(Entry(key, b"3", "application/json", "hit-l2"), tok)
    assert len(lc) == 2 and lc.get("c") is None
