"""Reads tiercache's wire format straight from Redis.

tiercache wraps every value it stores in Redis in a versioned envelope
(``docs/wire-format.md``): codec, flags, creation and expiry times, the
namespace and tag versions current when it was written, an optional media
type, and the payload, perhaps compressed as a Snappy block. This module
decodes envelopes (:func:`decode`), decides whether one is still current
exactly as the Go library does (:func:`verdict`), and reads keys from
Redis with both (:class:`Reader`, :class:`AsyncReader`), so that it never
returns an entry the Go library treats as invalid.

A read is a miss, in this order, when the value is absent; not an
envelope, malformed, or of an unknown version (``"corrupt"``,
``"version"``); over the payload limit (``"too_large"``); of a codec the
reader does not know (``"unknown_codec"``); written under a namespace or
tag version that is no longer current, or whose counter is gone
(``"invalidated"``); past its logical expiry (``"expired"``); or a cached
"not found" (``"negative"``). Otherwise it is ``"valid"``.

Write through ``tiercache serve`` (or the Go library), never with this
module: it only reads.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Dict, List, Mapping, Optional, Protocol, Sequence, Tuple

import msgpack

from ._errors import NotFound
from ._snappy import SnappyError, decoded_len, decompress

__all__ = [
    "CODEC_RAW",
    "CODEC_MSGPACK",
    "CODEC_JSON",
    "FLAG_COMPRESSED",
    "FLAG_NEGATIVE",
    "DEFAULT_MAX_PAYLOAD",
    "WireError",
    "CorruptError",
    "VersionError",
    "TooLargeError",
    "UnknownCodecError",
    "TagVersion",
    "Envelope",
    "decode",
    "decode_payload",
    "verdict",
    "version_keys",
    "Lookup",
    "Reader",
    "AsyncReader",
    "RedisLike",
    "AsyncRedisLike",
]

CODEC_RAW = 0
CODEC_MSGPACK = 1
CODEC_JSON = 2

FLAG_COMPRESSED = 0x01
FLAG_NEGATIVE = 0x02
_KNOWN_FLAGS = FLAG_COMPRESSED | FLAG_NEGATIVE

MAX_TAGS = 64
MAX_TAG_LEN = 1024
MAX_CONTENT_TYPE_LEN = 255
#: The payload limit of the service and the Go library by default
#: (``Options.MaxValueSize``, ``cache.max_value_size``): 4 MiB.
DEFAULT_MAX_PAYLOAD = 4 << 20
_MAX_EXPANSION = 32
_MAX_INT64 = (1 << 63) - 1


class WireError(ValueError):
    """An envelope that cannot be read. :attr:`reason` is the verdict
    (``"corrupt"``, ``"version"``, ``"too_large"``, ``"unknown_codec"``)."""

    reason = "corrupt"


class CorruptError(WireError):
    """Bytes that are not a well-formed envelope.

    Attributes:
        offset: the byte at which decoding failed.
    """

    reason = "corrupt"

    def __init__(self, offset: int, why: str) -> None:
        super().__init__(f"tiercache envelope: corrupt value at byte {offset}: {why}")
        self.offset = offset


class VersionError(WireError):
    """An envelope of a version this reader does not read (it reads 1 and
    2)."""

    reason = "version"


class TooLargeError(WireError):
    """A payload over the reader's limit, uncompressed."""

    reason = "too_large"


class UnknownCodecError(WireError):
    """A codec ID the reader has no decoder for."""

    reason = "unknown_codec"


@dataclass(frozen=True)
class TagVersion:
    """A tag and its version when the value was written."""

    tag: str
    version: int


@dataclass(frozen=True)
class Envelope:
    """A decoded envelope.

    Attributes:
        version: the format version, 1 or 2 (2 carries a media type).
        codec: the codec ID: 0 raw, 1 msgpack, 2 json, 128-255 the
            application's own.
        flags: bit 0 compressed, bit 1 negative.
        created_at_ms: when it was written, Unix milliseconds.
        expires_at_ms: its logical expiry, Unix milliseconds; 0 for none.
        ns_version: the namespace version it was written under.
        tags: the tags it was written with and their versions then.
        content_type: the stored media type (version 2), else ``""``.
        payload: the payload, decompressed.
    """

    version: int
    codec: int
    flags: int
    created_at_ms: int
    expires_at_ms: int
    ns_version: int
    tags: Tuple[TagVersion, ...]
    content_type: str
    payload: bytes

    @property
    def compressed(self) -> bool:
        """Whether the payload was stored compressed."""
        return bool(self.flags & FLAG_COMPRESSED)

    @property
    def negative(self) -> bool:
        """Whether it is a cached "not found"."""
        return bool(self.flags & FLAG_NEGATIVE)

    def expired(self, now_ms: int) -> bool:
        """Whether its logical expiry has passed at ``now_ms`` (a value whose
        expiry equals the time is expired, as in Go)."""
        return self.expires_at_ms != 0 and self.expires_at_ms <= now_ms


class _Decoder:
    def __init__(self, b: bytes) -> None:
        self.b = b
        self.i = 5

    def uvarint(self, field: str) -> int:
        b, i = self.b, self.i
        x = shift = 0
        for n in range(10):
            if i + n >= len(b):
                raise CorruptError(i, "truncated " + field)
            c = b[i + n]
            if n == 9 and c > 1:
                raise CorruptError(i, field + " overflows 64 bits")
            x |= (c & 0x7F) << shift
            if c < 0x80:
                if n > 0 and c == 0:
                    raise CorruptError(i, field + " is not in shortest form")
                self.i = i + n + 1
                return x
            shift += 7
        raise CorruptError(i, field + " overflows 64 bits")

    def time(self, field: str) -> int:
        at = self.i
        x = self.uvarint(field)
        if x > _MAX_INT64:
            self.i = at
            raise CorruptError(at, field + " out of range")
        return x

    def take(self, n: int, what: str) -> bytes:
        if n > len(self.b) - self.i:
            raise CorruptError(len(self.b), "truncated " + what)
        s = self.b[self.i : self.i + n]
        self.i += n
        return s


def decode(b: bytes, max_payload: int = DEFAULT_MAX_PAYLOAD) -> Envelope:
    """Decodes an envelope of version 1 or 2, as the Go library's
    ``envelope.Decode`` does, and decompresses its payload.

    Args:
        b: the bytes stored in Redis.
        max_payload: the largest payload accepted, uncompressed; ``<= 0``
            means 512 MiB. Checked before decompressing.

    Raises:
        CorruptError, VersionError, TooLargeError (all :class:`WireError`).
    """
    b = bytes(b)
    if max_payload <= 0:
        max_payload = 512 << 20
    if len(b) < 2 or b[0] != 0x54 or b[1] != 0x43:
        raise CorruptError(0, "no magic bytes")
    if len(b) < 3:
        raise CorruptError(2, "truncated header")
    version = b[2]
    if version not in (1, 2):
        raise VersionError(f"tiercache envelope: unsupported version {version} (this reader reads 1 and 2)")
    if len(b) < 5:
        raise CorruptError(len(b), "truncated header")
    codec, flags = b[3], b[4]
    if flags & ~_KNOWN_FLAGS:
        raise CorruptError(4, "unknown flags")
    d = _Decoder(b)
    created = d.time("created-at")
    expires = d.time("expires-at")
    ns = d.uvarint("namespace version")
    ntags = d.uvarint("tag count")
    if ntags > MAX_TAGS:
        raise CorruptError(d.i, f"{ntags} tags, at most {MAX_TAGS} allowed")
    tags: List[TagVersion] = []
    for _ in range(ntags):
        n = d.uvarint("tag length")
        if n == 0 or n > MAX_TAG_LEN:
            raise CorruptError(d.i, f"tag name of {n} bytes, want 1 to {MAX_TAG_LEN}")
        name = d.take(n, "tag name")
        tags.append(TagVersion(name.decode("utf-8", "surrogateescape"), d.uvarint("tag version")))
    content_type = ""
    if version == 2:
        n = d.uvarint("content type length")
        if n == 0 or n > MAX_CONTENT_TYPE_LEN:
            raise CorruptError(d.i, f"content type of {n} bytes, want 1 to {MAX_CONTENT_TYPE_LEN}")
        at = d.i
        ct = d.take(n, "content type")
        if any(c < 0x20 or c > 0x7E for c in ct):
            raise CorruptError(at, "content type holds a byte outside printable ASCII")
        content_type = ct.decode("ascii")
    n = d.uvarint("payload length")
    rest = len(b) - d.i
    if n > rest:
        raise CorruptError(len(b), "truncated payload")
    if n < rest:
        raise CorruptError(d.i + n, "bytes after the payload")
    p = b[d.i :]
    if not flags & FLAG_COMPRESSED:
        if len(p) > max_payload:
            raise TooLargeError(f"tiercache envelope: payload too large: {len(p)} bytes, the limit is {max_payload}")
    else:
        try:
            size, _ = decoded_len(p)
        except SnappyError:
            raise CorruptError(d.i, "bad compressed length") from None
        if size > _MAX_EXPANSION * len(p):
            raise CorruptError(d.i, f"{len(p)} compressed bytes claim to hold {size}")
        if size > max_payload:
            raise TooLargeError(f"tiercache envelope: payload too large: {size} bytes uncompressed, the limit is {max_payload}")
        try:
            p = decompress(p)
        except SnappyError:
            raise CorruptError(d.i, "bad compressed payload") from None
    return Envelope(version, codec, flags, created, expires, ns, tuple(tags), content_type, p)


#: Decoders of payloads by codec ID; :class:`Reader` takes more for the
#: application's own codecs (128-255).
PayloadDecoder = Callable[[bytes], Any]


def _msgpack(p: bytes) -> Any:
    return msgpack.unpackb(p, raw=False, strict_map_key=False)


DEFAULT_DECODERS: Mapping[int, PayloadDecoder] = {
    CODEC_RAW: bytes,
    CODEC_MSGPACK: _msgpack,
    CODEC_JSON: json.loads,
}


def decode_payload(env: Envelope, decoders: Mapping[int, PayloadDecoder] = DEFAULT_DECODERS) -> Any:
    """The envelope's value: bytes for ``raw``, the parsed JSON for
    ``json``, the unpacked MessagePack for ``msgpack`` (strings as
    ``str``, binary as ``bytes``, Go structs as dicts keyed by their
    ``msgpack`` / ``json`` tag names).

    Raises:
        UnknownCodecError: no decoder for its codec.
    """
    dec = decoders.get(env.codec)
    if dec is None:
        raise UnknownCodecError(f"tiercache envelope: no decoder for codec {env.codec}")
    return dec(env.payload)


def version_keys(namespace: str, env: Envelope) -> List[str]:
    """The Redis keys of the version counters an envelope depends on: the
    namespace's (``<namespace>#ns``), then each tag's
    (``<namespace>#t:<tag>``)."""
    return [namespace + "#ns"] + [f"{namespace}#t:{t.tag}" for t in env.tags]


def _counter(v: Optional[Any], key: str) -> int:
    """A version counter as Redis returns it; an absent one is 0, which no
    entry records."""
    if v is None:
        return 0
    s = v.decode("ascii", "replace") if isinstance(v, (bytes, bytearray)) else str(v)
    if not (s.isascii() and s.isdigit()) or int(s) >= 1 << 64:
        raise CorruptError(0, f"version key {key!r} holds {s[:32]!r}, not a version")
    return int(s)


def verdict(
    env: Envelope,
    versions: Mapping[str, Optional[Any]],
    namespace: str,
    now_ms: int,
    known_codecs: Sequence[int] = (CODEC_RAW, CODEC_MSGPACK, CODEC_JSON),
) -> str:
    """Whether a decoded envelope is current, as the Go library decides.

    Args:
        env: the envelope.
        versions: the current values of its version keys (see
            :func:`version_keys`) as Redis holds them (``bytes``, ``str`` or
            ``int``), ``None`` (or absent) for a key that does not exist.
        namespace: the cache's namespace (``tiercache`` by default).
        now_ms: the time, Unix milliseconds.
        known_codecs: the codec IDs the reader decodes.

    Returns:
        ``"unknown_codec"``, ``"invalidated"``, ``"expired"``,
        ``"negative"`` or ``"valid"``, checked in that order.
    """
    if env.codec not in known_codecs:
        return "unknown_codec"
    keys = version_keys(namespace, env)
    if _counter(versions.get(keys[0]), keys[0]) != env.ns_version:
        return "invalidated"
    for k, t in zip(keys[1:], env.tags):
        if _counter(versions.get(k), k) != t.version:
            return "invalidated"
    if env.expired(now_ms):
        return "expired"
    if env.negative:
        return "negative"
    return "valid"


@dataclass(frozen=True)
class Lookup:
    """What a :class:`Reader` found under a key.

    Attributes:
        key: the caller's key.
        store_key: the Redis key, ``<namespace>:<key>``.
        reason: ``"valid"``, or why it is a miss: ``"absent"``,
            ``"corrupt"``, ``"version"``, ``"too_large"``,
            ``"unknown_codec"``, ``"invalidated"``, ``"expired"``,
            ``"negative"``.
        envelope: the decoded envelope, when it decoded.
        error: the decoding error, for the first three reasons.
    """

    key: str
    store_key: str
    reason: str
    envelope: Optional[Envelope] = None
    error: Optional[WireError] = field(default=None, compare=False)

    @property
    def valid(self) -> bool:
        """Whether the Go library would answer this entry."""
        return self.reason == "valid"


class RedisLike(Protocol):
    """What :class:`Reader` needs of a Redis client: ``redis.Redis`` (with
    ``decode_responses=False``, the default) fits."""

    def get(self, name: str) -> Optional[bytes]:
        """GET."""

    def mget(self, keys: Sequence[bytes]) -> List[Optional[bytes]]:
        """MGET. On Redis Cluster, use a client that splits it by slot."""


class AsyncRedisLike(Protocol):
    """What :class:`AsyncReader` needs: ``redis.asyncio.Redis`` fits."""

    def get(self, name: str) -> Awaitable[Optional[bytes]]:
        """GET."""

    def mget(self, keys: Sequence[bytes]) -> Awaitable[List[Optional[bytes]]]:
        """MGET."""


def _redis_keys(keys: Sequence[str]) -> List[bytes]:
    """Keys as Redis sees them: tag names that are not UTF-8 were decoded
    with surrogateescape, so they are encoded back byte for byte."""
    return [k.encode("utf-8", "surrogateescape") for k in keys]


class _Base:
    def __init__(
        self,
        namespace: str = "tiercache",
        *,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        decoders: Optional[Mapping[int, PayloadDecoder]] = None,
        clock: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        if not namespace or any(c.isspace() or c in "{}#" for c in namespace):
            raise ValueError(f"invalid namespace {namespace!r}")
        self.namespace = namespace
        self.max_payload = max_payload
        self.decoders: Dict[int, PayloadDecoder] = dict(DEFAULT_DECODERS)
        if decoders:
            self.decoders.update(decoders)
        self._clock = clock

    def store_key(self, key: str) -> str:
        """The Redis key of a cache key: ``<namespace>:<key>``."""
        return f"{self.namespace}:{key}"

    def _first(self, key: str, b: Optional[bytes]) -> Tuple[Optional[Lookup], Optional[Envelope]]:
        sk = self.store_key(key)
        if b is None:
            return Lookup(key, sk, "absent"), None
        try:
            env = decode(b, self.max_payload)
        except WireError as e:
            return Lookup(key, sk, e.reason, error=e), None
        if env.codec not in self.decoders:
            return Lookup(key, sk, "unknown_codec", env), None
        return None, env

    def _second(self, key: str, env: Envelope, raw_versions: Sequence[Optional[bytes]]) -> Lookup:
        keys = version_keys(self.namespace, env)
        r = verdict(env, dict(zip(keys, raw_versions)), self.namespace, self._clock(), tuple(self.decoders))
        return Lookup(key, self.store_key(key), r, env)

    def _value(self, lk: Lookup, decode_value: bool) -> Any:
        if not lk.valid or lk.envelope is None:
            raise NotFound(f"{lk.key!r}: {lk.reason}", code=lk.reason)
        return decode_payload(lk.envelope, self.decoders) if decode_value else lk.envelope.payload


class Reader(_Base):
    """Reads tiercache entries from Redis, with the Go library's validity
    rules: decode, then check the namespace and tag versions (one ``MGET``
    of their counters), the logical expiry and the negative flag.

    Args:
        redis: a Redis client (see :class:`RedisLike`).
        namespace: the cache's namespace (``cache.namespace``).
        max_payload: the largest payload accepted, as the cache's
            ``MaxValueSize`` (4 MiB by default).
        decoders: payload decoders for the application's own codec IDs.
        clock: Unix milliseconds, for tests.

    Like the Go library reading L2, it reads the entry, then the current
    versions: an invalidation that lands between the two reads is seen.
    """

    def __init__(self, redis: RedisLike, namespace: str = "tiercache", **kw: Any) -> None:
        super().__init__(namespace, **kw)
        self.redis = redis

    def lookup(self, key: str) -> Lookup:
        """What is stored under ``key`` and whether it is valid."""
        lk, env = self._first(key, self.redis.get(self.store_key(key)))
        if lk is not None:
            return lk
        assert env is not None
        return self._second(key, env, self.redis.mget(_redis_keys(version_keys(self.namespace, env))))

    def get(self, key: str, *, decode: bool = True) -> Any:
        """The value of ``key`` decoded by its codec (or its payload bytes
        with ``decode=False``).

        Raises:
            NotFound: with ``code`` the reason when it is not valid.
        """
        return self._value(self.lookup(key), decode)


class AsyncReader(_Base):
    """:class:`Reader` for asyncio Redis clients (``redis.asyncio``)."""

    def __init__(self, redis: AsyncRedisLike, namespace: str = "tiercache", **kw: Any) -> None:
        super().__init__(namespace, **kw)
        self.redis = redis

    async def lookup(self, key: str) -> Lookup:
        """What is stored under ``key`` and whether it is valid."""
        lk, env = self._first(key, await self.redis.get(self.store_key(key)))
        if lk is not None:
            return lk
        assert env is not None
        return self._second(key, env, await self.redis.mget(_redis_keys(version_keys(self.namespace, env))))

    async def get(self, key: str, *, decode: bool = True) -> Any:
        """As :meth:`Reader.get`."""
        return self._value(await self.lookup(key), decode)
