"""The package builds as a wheel with Debian's build tools (python3-build,
hatchling, without network), and the wheel alone is importable and typed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import tiercache

PKG = Path(__file__).resolve().parent.parent


def test_wheel(tmp_path: Path) -> None:
    # Build from a copy, so that setuptools' build/ and egg-info stay out
    # of the source tree.
    src = tmp_path / "pkg"
    shutil.copytree(PKG, src, ignore=shutil.ignore_patterns("__pycache__", ".mypy_cache", "build", "dist", "*.egg-info", "tests"))
    out = tmp_path / "dist"
    r = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--wheel", "--outdir", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    wheels = list(out.glob("tiercache-*.whl"))
    assert len(wheels) == 1, wheels
    whl = wheels[0]
    assert whl.name == f"tiercache-{tiercache.__version__}-py3-none-any.whl"
    with zipfile.ZipFile(whl) as z:
        names = set(z.namelist())
        for f in ("__init__.py", "py.typed", "wire.py", "_snappy.py", "_client.py", "_aio.py", "_cached.py"):
            assert f"tiercache/{f}" in names
        assert not any(n.startswith("tests/") for n in names)
        meta = z.read(next(n for n in names if n.endswith("METADATA"))).decode()
        assert "Requires-Dist: httpx" in meta and "Requires-Dist: msgpack" in meta
        site = tmp_path / "site"
        z.extractall(site)
    # Import from the wheel's files only, not from src/.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    r = subprocess.run(
        [sys.executable, "-c", "import tiercache, tiercache.wire; print(tiercache.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().startswith(str(site))
