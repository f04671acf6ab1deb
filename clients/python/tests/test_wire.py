"""tiercache.wire against the conformance vectors the Go tests write
(tests/data/wire-vectors.json, TestWireVectors in the repository root),
and against entries written by a real ``tiercache serve`` into a real
redis-server."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest
import redis
import redis.asyncio

from tiercache import Client, NotFound
from tiercache import _snappy
from tiercache.wire import (
    AsyncReader,
    CorruptError,
    Envelope,
    Reader,
    TooLargeError,
    VersionError,
    WireError,
    decode,
    decode_payload,
    verdict,
    version_keys,
)

from conftest import RedisProc, Stack

VECTORS_FILE = Path(__file__).parent / "data" / "wire-vectors.json"
VECTORS: List[Dict[str, Any]] = json.loads(VECTORS_FILE.read_text())["vectors"]


def _jsonable(v: Any) -> Any:
    """msgpack values as the vector file writes them: bytes as {"$bytes": base64}."""
    if isinstance(v, bytes):
        return {"$bytes": base64.b64encode(v).decode()}
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    return v


def _check_fields(env: Envelope, x: Dict[str, Any]) -> None:
    assert env.version == x["version"]
    assert env.codec == x["codec"]
    assert env.compressed == x["compressed"]
    assert env.negative == x["negative"]
    assert env.created_at_ms == x["created_at_ms"]
    assert env.expires_at_ms == x["expires_at_ms"]
    assert env.ns_version == x["ns_version"]
    assert [(t.tag, t.version) for t in env.tags] == [(t["tag"], t["version"]) for t in x["tags"]]
    assert env.content_type == x["content_type"]
    assert env.payload == base64.b64decode(x["payload"])


def _versions(v: Dict[str, Any]) -> Dict[str, Optional[bytes]]:
    return {k: (None if n is None else n.encode()) for k, n in v["versions"].items()}


def test_vectors_cover_every_verdict() -> None:
    reasons = {v["expect"]["reason"] for v in VECTORS}
    assert reasons == {"valid", "corrupt", "version", "too_large", "unknown_codec", "invalidated", "expired", "negative"}
    codecs = {(v["expect"]["codec"], v["expect"]["compressed"]) for v in VECTORS if v["expect"]["reason"] == "valid"}
    assert {(0, False), (0, True), (1, False), (1, True), (2, False), (2, True)} <= codecs
    assert any(v["expect"]["tags"] for v in VECTORS if v["expect"]["reason"] == "valid")
    assert any(v["expect"].get("version") == 2 for v in VECTORS)


@pytest.mark.parametrize("v", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vector(v: Dict[str, Any]) -> None:
    """decode and verdict agree with the Go library on every vector."""
    x = v["expect"]
    b = base64.b64decode(v["envelope"])
    try:
        env = decode(b, v["max_payload"])
    except WireError as e:
        assert e.reason == x["reason"], f"Python: {e}"
        assert x["outcome"] == "miss"
        return
    _check_fields(env, x)
    r = verdict(env, _versions(v), v["namespace"], v["now_ms"])
    assert r == x["reason"]
    assert ("hit" if r == "valid" else "miss") == x["outcome"]
    assert set(version_keys(v["namespace"], env)) <= set(v["versions"])
    if r == "valid" and "value" in x:
        assert _jsonable(decode_payload(env)) == x["value"]


def test_error_types() -> None:
    with pytest.raises(CorruptError) as ce:
        decode(b"hello")
    assert ce.value.offset == 0
    with pytest.raises(VersionError):
        decode(b"TC\x09\x00\x00")
    too_big = next(v for v in VECTORS if v["expect"]["reason"] == "too_large")
    with pytest.raises(TooLargeError):
        decode(base64.b64decode(too_big["envelope"]), too_big["max_payload"])


def test_decoder_never_raises_anything_else() -> None:
    """Mutated vectors raise WireError or decode; nothing else escapes."""
    rnd = random.Random(15)
    seeds = [base64.b64decode(v["envelope"]) for v in VECTORS]
    for _ in range(3000):
        b = bytearray(rnd.choice(seeds))
        for _ in range(rnd.randint(1, 4)):
            op = rnd.randint(0, 2)
            if op == 0 and b:
                b[rnd.randrange(len(b))] = rnd.randrange(256)
            elif op == 1 and b:
                del b[rnd.randrange(len(b)) :]
            else:
                b.insert(rnd.randrange(len(b) + 1), rnd.randrange(256))
        try:
            decode(bytes(b), 1 << 20)
        except WireError:
            pass


def test_snappy_overlapping_copies() -> None:
    # "a" then a copy of length 10 at offset 1 (copy with 2-byte offset).
    block = bytes([11, 0 << 2, ord("a"), ((10 - 1) << 2) | 2, 1, 0])
    assert _snappy.decompress(block) == b"a" * 11
    with pytest.raises(_snappy.SnappyError):
        _snappy.decompress(bytes([3, 0 << 2, ord("a"), ((2 - 1) << 2) | 2, 5, 0]))  # offset past the start


# ---- against Redis ----------------------------------------------------------------


def _load(r: "redis.Redis[bytes]", v: Dict[str, Any]) -> None:
    r.set(v["store_key"], base64.b64decode(v["envelope"]))
    for k, n in v["versions"].items():
        if n is None:
            r.delete(k)
        else:
            r.set(k, n)


def test_reader_on_vectors_in_redis(make_redis: Any) -> None:
    """Every vector stored in a real Redis reads as the Go library read it."""
    rp: RedisProc = make_redis()
    r = rp.client()
    for v in VECTORS:
        r.flushdb()
        _load(r, v)
        rd = Reader(r, v["namespace"], max_payload=v["max_payload"], clock=lambda: int(v["now_ms"]))
        lk = rd.lookup(v["key"])
        assert lk.reason == v["expect"]["reason"], v["name"]
        if v["expect"]["outcome"] == "hit":
            assert rd.get(v["key"], decode=False) == base64.b64decode(v["expect"]["payload"])
        else:
            with pytest.raises(NotFound) as nf:
                rd.get(v["key"])
            assert nf.value.code == lk.reason


def test_async_reader_on_vectors_in_redis(make_redis: Any) -> None:
    rp: RedisProc = make_redis()
    sync = rp.client()

    async def main() -> None:
        ar = redis.asyncio.Redis(host="127.0.0.1", port=rp.port)
        try:
            for v in VECTORS:
                sync.flushdb()
                _load(sync, v)
                rd = AsyncReader(ar, v["namespace"], max_payload=v["max_payload"], clock=lambda: int(v["now_ms"]))
                assert (await rd.lookup(v["key"])).reason == v["expect"]["reason"], v["name"]
        finally:
            await ar.close()

    asyncio.run(main())


def test_reader_absent_key(make_redis: Any) -> None:
    rd = Reader(make_redis().client(), "ns")
    assert rd.lookup("nothing").reason == "absent"
    with pytest.raises(NotFound):
        rd.get("nothing")


def test_reader_follows_serve(stack: Stack) -> None:
    """Entries written through serve read back from Redis with the Go
    library's rules: valid, then invalidated by a tag, by clear, expired,
    deleted."""
    ns = stack.serve.namespace
    rd = Reader(stack.redis.client(), ns)
    with Client(stack.url) as c:
        c.set("api:user/1", {"name": "Ada", "n": [1, 2]}, ttl=600, tags=["users", "org:1"])
        c.set("bin", bytes(range(256)) * 20, ttl=600)  # compressible: stored compressed
        c.set("mp", {"a": b"\x00\xff", "b": 1.5}, content_type="application/msgpack", tags=["users"])
        c.set("short", b"s", ttl=1)
        assert rd.get("api:user/1") == {"name": "Ada", "n": [1, 2]}
        assert rd.lookup("api:user/1").envelope.content_type == "application/json"  # type: ignore[union-attr]
        assert rd.get("bin") == bytes(range(256)) * 20
        assert rd.lookup("bin").envelope.compressed  # type: ignore[union-attr]
        assert rd.get("mp") == {"a": b"\x00\xff", "b": 1.5}

        c.invalidate_tags("org:1")
        assert rd.lookup("api:user/1").reason == "invalidated"
        assert rd.lookup("mp").valid  # another tag

        c.set("api:user/1", {"name": "Grace"}, tags=["users", "org:1"])
        assert rd.get("api:user/1") == {"name": "Grace"}

        c.delete("bin")
        assert rd.lookup("bin").reason == "absent"

        time.sleep(0)  # the expiry is checked against the reader's clock
        later = Reader(stack.redis.client(), ns, clock=lambda: int(time.time() * 1000) + 1500)
        assert later.lookup("short").reason == "expired"

        c.clear()
        assert rd.lookup("api:user/1").reason == "invalidated"
        assert rd.lookup("mp").reason == "invalidated"


def test_reader_custom_codec(make_redis: Any) -> None:
    """An application codec (128-255) reads once the reader has a decoder
    for it; without one it is a miss, as in Go without the codec."""
    v = next(x for x in VECTORS if x["name"] == "unknown codec")
    r = make_redis().client()
    _load(r, v)
    clock = lambda: int(v["now_ms"])  # noqa: E731
    assert Reader(r, "vec", clock=clock).lookup(v["key"]).reason == "unknown_codec"
    rd = Reader(r, "vec", clock=clock, decoders={200: lambda p: p.decode().upper()})
    # The hand-made envelope records namespace version 1000; the vector's
    # counter differs, so it is also invalidated until the counter says 1000.
    assert rd.lookup(v["key"]).reason == "invalidated"
    r.set("vec#ns", 1000)
    assert rd.get(v["key"]) == "HI"
