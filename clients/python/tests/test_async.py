"""The AsyncClient against a real serve: every call, as coroutines, with
the same answers as the sync client; many tasks sharing one client."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any, Dict

import pytest

from tiercache import AsyncClient, BadRequest, Conflict, ConnectionFailed, Item, NotFound, RetryPolicy, TooLarge, Unauthorized

from conftest import TOKEN, ServeProc, Stack, wait_for


def k(name: str) -> str:
    return f"{name}:{uuid.uuid4().hex[:8]}"


@pytest.mark.asyncio
async def test_every_call(shared_stack: Stack) -> None:
    async with AsyncClient(shared_stack.url, token=TOKEN) as c:
        key = k("api:a")
        etag = await c.set(key, {"a": 1}, ttl=120, tags=["async-t"])
        e = await c.get_entry(key)
        assert e.etag == etag and e.value() == {"a": 1} and e.ttl is not None and e.ttl <= 120
        assert await c.get(key) == b'{"a":1}'
        assert await c.get(key, decode=True) == {"a": 1}
        await c.invalidate_tags("async-t")
        with pytest.raises(NotFound):
            await c.get(key)
        await c.set(key, b"raw")
        await c.delete(key)
        with pytest.raises(NotFound):
            await c.get(key)

        ks = [k("am") for _ in range(3)]
        await c.set_many({ks[0]: b"0", ks[1]: {"one": 1}})
        await c.set_many([Item(ks[2], b"\x02", ttl=30, tags=["x"], content_type="application/x-thing")])
        res = await c.get_many(ks + [k("none")])
        assert [res.found[x].data for x in ks] == [b"0", b'{"one":1}', b"\x02"]
        assert res.found[ks[2]].content_type == "application/x-thing" and len(res.missing) == 1
        await c.delete_many(ks)
        assert (await c.get_many(ks)).missing == ks
        assert (await c.get_many([])).found == {}

        st = await c.stats()
        assert st["namespace"] == "pytest"
        assert (await c.health())["status"] in ("healthy", "degraded")
        assert await c.warm(["py-demand"]) == ["py-demand"]
        with pytest.raises(Conflict):
            await c.warm(["py-startup-only"])
        status = await c.warm_status()
        assert status["enabled"] is True

        with pytest.raises(BadRequest) as br:
            await c.get("x" * 1025)
        assert br.value.code == "invalid_key"
        with pytest.raises(TooLarge):
            await c.set(k("big"), bytes(70_000))

    async with AsyncClient(shared_stack.url, token="wrong") as bad:
        with pytest.raises(Unauthorized):
            await bad.get("x")
        with pytest.raises(Unauthorized):
            await bad.set("x", b"y")



@pytest.mark.asyncio
async def test_many_tasks_one_client(shared_stack: Stack) -> None:
    async with AsyncClient(shared_stack.url, token=TOKEN, max_connections=10) as c:

        async def one(i: int) -> bytes:
            key = f"task:{i}"
            await c.set(key, str(i))
            return bytes(await c.get(key))

        got = await asyncio.gather(*(one(i) for i in range(200)))
        assert got == [str(i).encode() for i in range(200)]



@pytest.mark.asyncio
async def test_clear(make_serve: Any, make_redis: Any) -> None:
    r = make_redis()
    s: ServeProc = make_serve(redis_url=r.url)
    s.wait_ready()
    async with AsyncClient(s.url) as c:
        await c.set("x", b"1")
        await c.clear()
        with pytest.raises(NotFound):
            await c.get("x")


@pytest.mark.asyncio
async def test_unreachable() -> None:
    import socket

    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        port = sk.getsockname()[1]
    async with AsyncClient(f"http://127.0.0.1:{port}", retry=RetryPolicy(retries=1, backoff=0.01)) as c:
        with pytest.raises(ConnectionFailed):
            await c.get("k")
        with pytest.raises(ConnectionFailed):
            await c.set("k", b"v")

