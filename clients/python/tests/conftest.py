"""Fixtures that start real processes: redis-server and ``tiercache serve``
(built from this repository) on free loopback ports, as the Go tests'
internal/redistest does. Readiness is polled with deadlines.

Under ``CI=true`` a missing go or redis-server fails the tests that need
them instead of skipping them.

Environment:
    TIERCACHE_BIN: a tiercache binary to use instead of building one.
    TIERCACHE_GOWRITER_BIN: likewise for tests/testdata/gowriter.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, TypeVar

import httpx
import pytest
import redis

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent.parent  # clients/python/tests -> repository root
CI = os.environ.get("CI", "").lower() in ("true", "1")

T = TypeVar("T")


def need(what: str, ok: bool) -> None:
    """Skips (or under CI=true fails) a test when a tool is missing."""
    if ok:
        return
    if CI:
        pytest.fail(f"{what} is missing under CI=true: this test must run", pytrace=False)
    pytest.skip(f"{what} is missing")


def wait_for(what: str, cond: Callable[[], Optional[T]], timeout: float = 10.0, interval: float = 0.02) -> T:
    """Polls cond until it returns something other than None or False, and
    returns that; fails the test past the deadline with cond's last
    error."""
    deadline = time.monotonic() + timeout
    last: Optional[BaseException] = None
    while True:
        try:
            v = cond()
            if v is not None and v is not False:
                return v
        except Exception as e:  # noqa: BLE001 - reported below
            last = e
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}" + (f": {last!r}" if last else ""), pytrace=False)
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- binaries ------------------------------------------------------------------


def _go_build(tmp: Path, name: str, pkg: str, env_var: str) -> str:
    given = os.environ.get(env_var)
    if given:
        return given
    need("go", shutil.which("go") is not None)
    out = tmp / name
    r = subprocess.run(["go", "build", "-o", str(out), pkg], cwd=REPO, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        pytest.fail(f"go build {pkg} failed:\n{r.stderr}", pytrace=False)
    return str(out)


@pytest.fixture(scope="session")
def bin_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="tiercache-py-bin-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def tiercache_bin(bin_dir: Path) -> str:
    """The tiercache binary, built from the repository."""
    return _go_build(bin_dir, "tiercache", "./cmd/tiercache", "TIERCACHE_BIN")


@pytest.fixture(scope="session")
def gowriter_bin(bin_dir: Path) -> str:
    """tests/testdata/gowriter, which writes through the Go library."""
    return _go_build(bin_dir, "gowriter", "./clients/python/tests/testdata/gowriter", "TIERCACHE_GOWRITER_BIN")


# ---- redis-server --------------------------------------------------------------


class RedisProc:
    """A redis-server on a loopback port, with fault controls."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        need("redis-server", binary is not None)
        assert binary is not None
        self.binary = binary
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = 0
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> "redis.Redis[bytes]":
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)

    def start(self) -> None:
        """Starts it, on a new free port the first time and on the same
        port after a stop."""
        for attempt in range(5):
            port = self.port or free_port()
            log = open(self.dir / "redis.log", "ab")
            self.proc = subprocess.Popen(
                [self.binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(self.dir), "--save", "", "--appendonly", "no", "--daemonize", "no"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            log.close()
            self.port = port
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break  # the port was taken: try another
                try:
                    if self.client().ping():
                        return
                except redis.RedisError:
                    time.sleep(0.02)
            self.kill()
            if attempt < 4 and self.port == port and self.proc.returncode not in (None, -9):
                self.port = 0
        pytest.fail(f"redis-server did not start; see {self.dir / 'redis.log'}", pytrace=False)

    def kill(self) -> None:
        """SIGKILL, and wait for it to go."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def pause(self) -> None:
        """SIGSTOP: connections stay open and nothing answers."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def close(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
        self.kill()


# ---- tiercache serve ------------------------------------------------------------


class ServeProc:
    """``tiercache serve`` on a loopback port."""

    def __init__(
        self,
        binary: str,
        workdir: Path,
        *,
        redis_url: Optional[str] = None,
        token: Optional[str] = None,
        namespace: str = "pytest",
        env: Optional[Dict[str, str]] = None,
        args: Optional[List[str]] = None,
        tls: Optional[Dict[str, str]] = None,
    ) -> None:
        self.binary = binary
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.token = token
        self.namespace = namespace
        self.tls = tls
        # Only what is given here: nothing from the test's environment
        # (REDIS_URL, TIERCACHE_*, CACHE_*) leaks in.
        e = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.dir),
            "TIERCACHE_RECOVERY_JOURNAL_DIR": str(self.dir / "journal"),
            "CACHE_NAMESPACE": namespace,
            "TIERCACHE_LOG_LEVEL": "debug",
        }
        if redis_url:
            e["REDIS_URL"] = redis_url
        if token:
            e["TIERCACHE_TOKEN"] = token
        e.update(env or {})
        self.env = e
        self.args = list(args or [])
        self.port = 0
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.start()

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def start(self) -> None:
        for _ in range(5):
            self.port = free_port()
            cmd = [self.binary, "serve", "--addr", f"127.0.0.1:{self.port}"] + self.args
            if self.tls:
                cmd += ["--tls-cert", self.tls["cert"], "--tls-key", self.tls["key"]]
            log = open(self.dir / "serve.log", "ab")
            self.proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.dir)
            log.close()
            deadline = time.monotonic() + 20
            verify: Any = self.tls["ca"] if self.tls else True
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    if httpx.get(self.url + "/healthz", timeout=1, verify=verify).status_code == 200:
                        return
                except httpx.HTTPError:
                    time.sleep(0.02)
            if self.proc.poll() is None:
                break
        pytest.fail(f"tiercache serve did not start:\n{self.log()}", pytrace=False)

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Waits for /readyz to answer 200 (Redis reached)."""
        verify: Any = self.tls["ca"] if self.tls else True
        wait_for("serve to be ready", lambda: httpx.get(self.url + "/readyz", timeout=1, verify=verify).status_code == 200, timeout)

    def log(self) -> str:
        try:
            return (self.dir / "serve.log").read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self) -> int:
        """SIGTERM, then SIGKILL past a deadline; returns the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(25)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return int(self.proc.returncode)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def make_redis(tmp_path: Path) -> Iterator[Callable[[], RedisProc]]:
    """Starts redis-servers that the test owns; each is stopped after it."""
    procs: List[RedisProc] = []

    def make() -> RedisProc:
        r = RedisProc(tmp_path / f"redis{len(procs)}")
        procs.append(r)
        return r

    yield make
    for r in procs:
        r.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Keeps each phase's report on the test, so that fixtures can tell a
    failed test at teardown."""
    outcome = yield
    rep = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture
def make_serve(tiercache_bin: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., ServeProc]]:
    """Starts ``tiercache serve`` processes that the test owns; prints the
    end of their logs when the test failed."""
    procs: List[ServeProc] = []

    def make(**kw: Any) -> ServeProc:
        s = ServeProc(tiercache_bin, tmp_path / f"serve{len(procs)}", **kw)
        procs.append(s)
        return s

    yield make
    for s in procs:
        s.stop()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for i, s in enumerate(procs):
            print(f"--- serve{i} log (end) ---\n{s.log()}")


class Stack:
    """A redis-server and a serve in front of it."""

    def __init__(self, redis_proc: RedisProc, serve: ServeProc) -> None:
        self.redis = redis_proc
        self.serve = serve

    @property
    def url(self) -> str:
        return self.serve.url


TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def shared_stack(tiercache_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One redis-server and one serve (with a token, small limits) shared
    by the tests of a module that only need a working service; each test
    uses its own keys."""
    d = tmp_path_factory.mktemp("stack")
    r = RedisProc(d / "redis")
    s = ServeProc(
        tiercache_bin,
        d / "serve",
        redis_url=r.url,
        token=TOKEN,
        env={"CACHE_MAX_VALUE_SIZE": "65536", "TIERCACHE_MAX_BATCH_KEYS": "50"},
        args=["--config", str(warm_config(d))],
    )
    s.wait_ready()
    yield Stack(r, s)
    s.stop()
    r.close()


def warm_config(d: Path) -> Path:
    """A configuration with two warming strategies over a JSON Lines file."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "warm.jsonl").write_text(
        '{"key": "warm:a", "value": {"n": 1}, "ttl": 600, "tags": ["warmed"]}\n'
        '{"key": "warm:b", "value": [1, 2, 3]}\n'
    )
    cfg = d / "tiercache.yaml"
    cfg.write_text(
        "warming:\n"
        "  strategies:\n"
        "    - name: py-demand\n"
        "      warm_on_startup: false\n"
        "      warm_on_demand: true\n"
        "      delay_between_batches: 0\n"
        "      file:\n"
        "        path: warm.jsonl\n"
        "    - name: py-startup-only\n"
        "      warm_on_startup: false\n"
        "      warm_on_demand: false\n"
        "      file:\n"
        "        path: warm.jsonl\n"
    )
    return cfg


@pytest.fixture
def stack(make_redis: Callable[[], RedisProc], make_serve: Callable[..., ServeProc]) -> Stack:
    """A redis-server and a serve without token that the test may break."""
    r = make_redis()
    s = make_serve(redis_url=r.url, env={"TIERCACHE_RETRY_AFTER": "2s"})
    s.wait_ready()
    return Stack(r, s)


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, str]:
    """A self-signed certificate for 127.0.0.1, made by Go's generate_cert."""
    need("go", shutil.which("go") is not None)
    d = tmp_path_factory.mktemp("tls")
    goroot = subprocess.run(["go", "env", "GOROOT"], capture_output=True, text=True, check=True).stdout.strip()
    gen = Path(goroot) / "src" / "crypto" / "tls" / "generate_cert.go"
    r = subprocess.run(["go", "run", str(gen), "--host", "127.0.0.1", "--duration", "1h"], cwd=d, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        pytest.fail(f"generate_cert failed: {r.stderr}", pytrace=False)
    return {"cert": str(d / "cert.pem"), "key": str(d / "key.pem"), "ca": str(d / "cert.pem")}


def pytest_report_header(config: pytest.Config) -> str:
    return f"tiercache python client tests: python {sys.version.split()[0]}, repo {REPO}, CI={CI}"
