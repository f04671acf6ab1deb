"""The synchronous Client against a real tiercache serve on a real Redis:
every call, authentication, bad keys, limits, TLS, pooling and retries."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from datetime import timedelta
from typing import Any, Callable, Dict, List

import httpx
import msgpack
import pytest

from tiercache import (
    BadRequest,
    Client,
    Conflict,
    ConnectionFailed,
    Item,
    NotFound,
    OutcomeUnknown,
    RetryPolicy,
    TiercacheError,
    TooLarge,
    Unauthorized,
    Unavailable,
)

from conftest import TOKEN, ServeProc, Stack, wait_for


@pytest.fixture
def c(shared_stack: Stack) -> Any:
    with Client(shared_stack.url, token=TOKEN) as client:
        yield client


def k(name: str) -> str:
    """A key of this test run only."""
    return f"{name}:{uuid.uuid4().hex[:8]}"


def test_set_get_delete(c: Client) -> None:
    key = k("user")
    etag = c.set(key, b"\x00\x01binary\xff")
    assert etag.startswith('"') and etag.endswith('"')
    assert c.get(key) == b"\x00\x01binary\xff"
    e = c.get_entry(key)
    assert e.content_type == "application/octet-stream"
    assert e.source in ("hit-l1", "hit-l2") and not e.stale
    assert e.etag == etag
    assert e.age is not None and e.age >= 0
    assert e.ttl is not None and 3500 < e.ttl <= 3600  # the default TTL, 1h
    c.delete(key)
    with pytest.raises(NotFound) as nf:
        c.get(key)
    assert nf.value.status == 404 and nf.value.code == "not_found" and nf.value.request_id
    c.delete(key)  # absent: still 204


def test_values_by_content_type(c: Client) -> None:
    key = k("api:json")
    c.set(key, {"name": "Ada", "langs": ["en", "fr"], "n": 1.5})
    assert c.get_entry(key).content_type == "application/json"
    assert c.get(key) == b'{"name":"Ada","langs":["en","fr"],"n":1.5}'
    assert c.get(key, decode=True) == {"name": "Ada", "langs": ["en", "fr"], "n": 1.5}

    key = k("mp")
    c.set(key, {"a": b"\x00\xff", "b": [1, None, True]}, content_type="application/msgpack")
    assert msgpack.unpackb(c.get(key)) == {"a": b"\x00\xff", "b": [1, None, True]}
    assert c.get(key, decode=True) == {"a": b"\x00\xff", "b": [1, None, True]}

    key = k("text")
    c.set(key, "héllo")
    assert c.get_entry(key).content_type == "text/plain; charset=utf-8"
    assert c.get(key, decode=True) == "héllo".encode()  # other types stay bytes

    key = k("str-json")
    c.set(key, "just a string", content_type="application/problem+json")
    assert c.get(key, decode=True) == "just a string"

    with pytest.raises(TypeError):
        c.set(k("x"), {"a": 1}, content_type="text/plain")


def test_ttl(c: Client) -> None:
    key = k("short")
    c.set(key, b"v", ttl=1)
    assert c.get(key) == b"v"
    wait_for("the entry to expire", lambda: _missing(c, key), timeout=5)
    key = k("td")
    c.set(key, b"v", ttl=timedelta(minutes=2))
    ttl = c.get_entry(key).ttl
    assert ttl is not None and 100 < ttl <= 120
    c.set(key, b"v", ttl=0.5)
    with pytest.raises(ValueError):
        c.set(key, b"v", ttl=0)


def _missing(c: Client, key: str) -> bool:
    try:
        c.get(key)
        return False
    except NotFound:
        return True


def test_tags_and_invalidate(c: Client) -> None:
    a, b, d = k("a"), k("b"), k("d")
    org = k("org")
    c.set(a, b"1", tags=["users", org])
    c.set(b, b"2", tags=[org])
    c.set(d, b"3", tags=["users"])
    c.invalidate_tags(org)
    for key in (a, b):
        with pytest.raises(NotFound):
            c.get(key)
    assert c.get(d) == b"3"
    c.invalidate_tags(org, k("other"))  # several at once
    with pytest.raises(BadRequest) as br:
        c.invalidate_tags()
    assert br.value.code == "invalid_body"
    with pytest.raises(ValueError):
        c.set(a, b"x", tags=["a,b"])  # a PUT cannot carry a comma
    with pytest.raises(TypeError):
        c.set(a, b"x", tags="users")  # type: ignore[arg-type]


def test_batches(c: Client) -> None:
    ks = [k(f"m{i}") for i in range(5)]
    tag = k("batch")
    c.set_many({ks[0]: b"\x00raw", ks[1]: {"j": 1}}, ttl=60, tags=[tag], content_type=None)
    c.set_many([Item(ks[2], {"m": b"\x01"}, ttl=timedelta(seconds=30), content_type="application/msgpack"), Item(ks[3], "txt", tags=["x,with,commas"])])
    res = c.get_many(ks)
    assert res.missing == [ks[4]] and not res.errors
    assert list(res.found) == ks[:4]
    assert res.found[ks[0]].data == b"\x00raw"
    assert res.found[ks[0]].content_type == "application/octet-stream"
    assert res.found[ks[0]].ttl is not None and res.found[ks[0]].ttl <= 60
    assert res.found[ks[1]].value() == {"j": 1}
    assert res.found[ks[2]].value() == {"m": b"\x01"}
    assert res.found[ks[3]].content_type == "text/plain; charset=utf-8"
    assert res.found[ks[0]].etag == c.get_entry(ks[0]).etag
    assert res.values()[ks[1]] == {"j": 1}
    assert res.found[ks[0]].tags == (tag,) and res.found[ks[3]].tags == ("x,with,commas",)
    assert res.found[ks[2]].tags == ()

    c.invalidate_tags("x,with,commas")
    assert c.get_many([ks[3]]).missing == [ks[3]]
    c.invalidate_tags(tag)
    assert c.get_many(ks[:2]).missing == ks[:2]

    c.delete_many([ks[2], ks[4]])
    assert c.get_many([ks[2]]).missing == [ks[2]]
    assert c.get_many([]).found == {}
    c.set_many({})
    c.delete_many([])

    with pytest.raises(BadRequest) as br:
        c.get_many([ks[0], ks[0]])
    assert br.value.code == "duplicate_key"
    with pytest.raises(TooLarge) as tl:
        c.get_many([k("many") for _ in range(51)])  # TIERCACHE_MAX_BATCH_KEYS=50
    assert tl.value.code == "too_many_keys" and tl.value.status == 413
    with pytest.raises(TooLarge):
        c.delete_many([k("many") for _ in range(51)])
    with pytest.raises(BadRequest) as br:
        c.set_many({"": b"x"})
    assert br.value.code == "invalid_key"
    with pytest.raises(BadRequest) as br:
        c.set_many([Item(k("bad"), b"{", content_type="application/json")])
    assert br.value.code == "invalid_value"


def test_clear(shared_stack: Stack) -> None:
    # A serve of its own namespace on the same Redis: clear is per namespace.
    with Client(shared_stack.url, token=TOKEN) as c:
        key = k("kept")
        c.set(key, b"v")
        other = ServeProc(shared_stack.serve.binary, shared_stack.serve.dir.parent / ("other" + uuid.uuid4().hex[:6]), redis_url=shared_stack.redis.url, namespace="other")
        try:
            other.wait_ready()
            with Client(other.url) as o:
                o.set("x", b"1")
                o.clear()
                with pytest.raises(NotFound):
                    o.get("x")
        finally:
            other.stop()
        assert c.get(key) == b"v"


def test_stats_and_health(c: Client, shared_stack: Stack) -> None:
    st = c.stats()
    assert st["namespace"] == "pytest"
    assert "counters" in st and "hit_ratio" in st
    h = c.health()
    assert h["status"] in ("healthy", "degraded") and "checks" in h
    with Client(shared_stack.url) as anon:
        assert set(anon.health()) <= {"status", "timestamp"}  # the verdict only, without the token


def test_warm(c: Client) -> None:
    assert c.warm(["py-demand"]) == ["py-demand"]
    wait_for("the warming run", lambda: c.warm_status()["strategies"][0].get("last_run"), timeout=10)
    st = {s["name"]: s for s in c.warm_status()["strategies"]}
    assert st["py-demand"]["last_run"]["written"] == 2
    # Warming stores each line's value as its raw JSON bytes.
    assert json.loads(c.get("warm:a")) == {"n": 1}
    assert json.loads(c.get("warm:b")) == [1, 2, 3]
    assert c.warm() == ["py-demand"]  # every on-demand strategy
    with pytest.raises(NotFound) as nf:
        c.warm(["nope"])
    assert nf.value.code == "unknown_strategy"
    with pytest.raises(Conflict) as cf:
        c.warm(["py-startup-only"])
    assert cf.value.code == "not_on_demand"


def test_warm_disabled(stack: Stack) -> None:
    with Client(stack.url) as c:
        assert c.warm_status()["enabled"] is False
        with pytest.raises(Unavailable) as un:
            c.warm()
        assert un.value.code == "warming_disabled" and un.value.retry_after is not None


def test_wrong_token(shared_stack: Stack) -> None:
    for token in (None, "wrong"):
        with Client(shared_stack.url, token=token) as c:
            for call in (lambda: c.get("x"), lambda: c.set("x", b"1"), lambda: c.delete("x"), lambda: c.get_many(["x"]), lambda: c.clear(), lambda: c.stats(), lambda: c.invalidate_tags("t")):
                with pytest.raises(Unauthorized) as ua:
                    call()
                assert ua.value.status == 401 and ua.value.code == "unauthorized"
                assert TOKEN not in str(ua.value)


@pytest.mark.parametrize(
    "key",
    ["user:42/profile", "a//b", "a/./b", "a/../b", "..", ".", "/lead", "trail/", "sp ace", "q?x=1", "h#frag", "pct%41", "ünï©ødé", "a+b", "semi;colon", "tab\tkey"],
)
def test_keys_round_trip(c: Client, key: str) -> None:
    """Keys with characters that mean something in URLs are the same keys
    that Go's Set writes."""
    c.set(key, key.encode())
    assert c.get(key) == key.encode()
    assert c.get_many([key]).found[key].data == key.encode()
    c.delete(key)
    with pytest.raises(NotFound):
        c.get(key)


def test_bad_keys(c: Client) -> None:
    with pytest.raises(BadRequest) as br:
        c.get("x" * 1025)
    assert br.value.code == "invalid_key" and br.value.status == 400
    with pytest.raises(BadRequest) as br:
        c.set("x" * 1025, b"v")
    assert br.value.code == "invalid_key"
    with pytest.raises(BadRequest) as br:
        c.get("")
    assert br.value.code == "invalid_key"
    with pytest.raises(BadRequest) as br:
        c.get_many([""])
    assert br.value.code == "invalid_key"


def test_oversized_values(c: Client) -> None:
    """CACHE_MAX_VALUE_SIZE=65536 on the shared serve."""
    key = k("big")
    c.set(key, b"x" * 1000)
    with pytest.raises(TooLarge) as tl:
        c.set(key, bytes(70_000))
    assert tl.value.status == 413 and tl.value.code == "value_too_large"
    assert c.get(key) == b"x" * 1000  # unchanged
    with pytest.raises(TooLarge):
        c.set_many({key: bytes(70_000)})
    with pytest.raises(BadRequest) as br:
        c.set(key, b"{not json", content_type="application/json")
    assert br.value.code == "invalid_body"
    with pytest.raises(BadRequest) as br:
        c.set(key, b"v", content_type="not a type\x01")
    assert br.value.code in ("invalid_content_type", "bad_request")


def test_pooling(c: Client) -> None:
    """Requests reuse pooled connections."""
    before = c.stats()["http"]["connections_accepted"]
    for i in range(30):
        c.set(f"pool:{i}", b"v")
        c.get(f"pool:{i}")
    after = c.stats()["http"]["connections_accepted"]
    assert after - before <= 2


def test_concurrent_threads(c: Client) -> None:
    errors: List[BaseException] = []

    def work(i: int) -> None:
        try:
            for j in range(20):
                key = f"thr:{i}:{j}"
                c.set(key, str(j))
                assert c.get(key) == str(j).encode()
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors


def test_tls(make_serve: Callable[..., ServeProc], tls_files: Dict[str, str]) -> None:
    s = make_serve(tls=tls_files, token="tls-token")
    with Client(s.url, token="tls-token", verify=tls_files["ca"]) as c:
        c.set("secure", b"v")
        assert c.get("secure") == b"v"
    with Client(s.url, token="tls-token", retry=RetryPolicy(retries=0)) as c:
        with pytest.raises(ConnectionFailed):  # self-signed: not trusted
            c.get("secure")
    with Client(s.url, token="tls-token", verify=False) as c:
        assert c.get("secure") == b"v"


# ---- retries: only where safe -----------------------------------------------------


class Silent:
    """A TCP server that reads requests and never answers, counting them."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.requests = 0
        self.conns: List[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        buf = b""
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            buf += data
            while b"\r\n\r\n" in buf:
                _, buf = buf.split(b"\r\n\r\n", 1)
                with self.lock:
                    self.requests += 1

    def close(self) -> None:
        self.sock.close()
        for cn in self.conns:
            cn.close()


def test_reads_are_retried_writes_are_not() -> None:
    srv = Silent()
    try:
        with Client(f"http://127.0.0.1:{srv.port}", timeout=0.3, retry=RetryPolicy(retries=2, backoff=0.01)) as c:
            with pytest.raises(ConnectionFailed):
                c.get("k")
            wait_for("3 read attempts", lambda: srv.requests == 3, timeout=3)
            with pytest.raises(ConnectionFailed):
                c.get_many(["k"])  # a read, although a POST
            wait_for("3 mget attempts", lambda: srv.requests == 6, timeout=3)
            for call in (lambda: c.set("k", b"v"), lambda: c.delete("k"), lambda: c.invalidate_tags("t"), lambda: c.clear(), lambda: c.set_many({"k": b"v"})):
                n = srv.requests
                with pytest.raises(OutcomeUnknown):
                    call()  # sent, no answer: may have been applied
                wait_for("the write to arrive", lambda: srv.requests == n + 1, timeout=3)
                time.sleep(0.2)
                assert srv.requests == n + 1, "a write that may have been applied was sent again"
    finally:
        srv.close()


def test_connection_refused_retries_everything() -> None:
    """A request that never left (connection refused) is safe to repeat,
    writes included; the error says it was not applied."""
    port = _closed_port()
    with Client(f"http://127.0.0.1:{port}", retry=RetryPolicy(retries=2, backoff=0.01)) as c:
        t0 = time.monotonic()
        for call in (lambda: c.get("k"), lambda: c.set("k", b"v")):
            with pytest.raises(ConnectionFailed) as cf:
                call()
            assert cf.value.code == "connection_failed"
        assert time.monotonic() - t0 < 5


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_retry_after_on_503_for_reads_when_asked() -> None:
    """With retry_unavailable, a read answered 503 is repeated after
    Retry-After (capped); a write is not."""
    calls: List[str] = []

    def handler(req: httpx.Request) -> httpx.Response:
        calls.append(req.method)
        if len([m for m in calls if m == req.method]) < 3 and req.method == "GET":
            return httpx.Response(503, headers={"retry-after": "1"}, json={"error": {"code": "unavailable", "message": "m"}})
        if req.method == "PUT":
            return httpx.Response(503, headers={"retry-after": "1"}, json={"error": {"code": "queue_full", "message": "m"}})
        return httpx.Response(200, content=b"ok", headers={"x-cache": "hit-l2"})

    with Client("http://svc", transport=httpx.MockTransport(handler), retry=RetryPolicy(retries=2, max_backoff=0.01, retry_unavailable=True)) as c:
        assert c.get("k") == b"ok"
        assert calls.count("GET") == 3
        with pytest.raises(Unavailable) as un:
            c.set("k", b"v")
        assert un.value.code == "queue_full" and un.value.retry_after == 1.0
        assert calls.count("PUT") == 1
    calls.clear()
    with Client("http://svc", transport=httpx.MockTransport(handler)) as c:
        with pytest.raises(Unavailable) as un:
            c.get("k")  # retry_unavailable is off by default
        assert un.value.retry_after == 1.0 and calls.count("GET") == 1
