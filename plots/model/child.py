"""Run a module's child entry in a fresh interpreter, and cache its JSON answer by content hash.

    rows = child.run_json("plots.model.resources", ["--child", "--arch", "80", "90"], simulator=False,
                          key=("numba", archs), what="real compile")

Compiling numba.cuda kernels for real needs the simulator off, tracing them needs it on, and numba reads
that switch once, at import: so both run in a child process. The answer is cached in
$KERNELS_COMPILE_CACHE (default ~/.cache/kernels-compile) under a key made of every source the answer can
depend on (the `.py`, `.cu` and `.cuh` files of gpu/, kernels/ and plots/model/), the toolchain's versions
and the caller's `key`; a cache file is written by atomic rename, so a run cut short leaves none. One child
runs per cache entry at a time (a file lock): a second caller, in another process, waits for its answer.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: The folders whose sources an answer may depend on.
SOURCE_DIRS = ("gpu", "kernels", "plots/model")
SOURCE_SUFFIXES = (".py", ".cu", ".cuh", ".h", ".cpp")
#: The packages whose versions an answer may depend on.
TOOLCHAIN = ("numpy", "numba", "numba-cuda", "nvidia-cuda-nvcc", "nvidia-nvvm", "cuda-bindings",
             "nvidia-cuda-nvrtc", "nvidia-cuda-nvdisasm")


def cache_dir() -> Path:
    return Path(os.environ.get("KERNELS_COMPILE_CACHE", Path.home() / ".cache" / "kernels-compile"))


def content_key(key=()) -> str:
    """A hash of the sources of SOURCE_DIRS, the TOOLCHAIN versions and `key` (any repr-able value)."""
    h = hashlib.sha256()
    for folder in SOURCE_DIRS:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix in SOURCE_SUFFIXES and "__pycache__" not in path.parts:
                h.update(str(path.relative_to(ROOT)).encode())
                h.update(path.read_bytes())
    for package in TOOLCHAIN:
        try:
            h.update(importlib.metadata.version(package).encode())
        except importlib.metadata.PackageNotFoundError:
            h.update(b"-")
    h.update(repr(key).encode())
    return h.hexdigest()[:24]


def cached(name: str, key=()):
    """The cached answer for (name, key), or None."""
    path = cache_dir() / f"{name}-{content_key(key)}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def store(name: str, key, value) -> None:
    """Cache `value` for (name, key), by atomic rename."""
    path = cache_dir() / f"{name}-{content_key(key)}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value))
    tmp.replace(path)


@contextlib.contextmanager
def entry_lock(name: str, key=()):
    """Hold the lock file of (name, key)'s cache entry: an exclusive flock, released on exit or at the
    holder's death."""
    path = cache_dir() / f"{name}-{content_key(key)}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def run_json(module: str, args, *, simulator: bool, name: str, key=(), cache=True, what="child process"):
    """The JSON a `python -m module *args` child prints, with numba's CUDA simulator on or off, from the
    cache when there; RuntimeError with the tail of its stderr when it fails. With `cache`, a caller that
    finds another process computing the same entry waits for it and reads its answer."""
    if not cache:
        return _run(module, args, simulator, what)
    if (hit := cached(name, key)) is not None:
        return hit
    with entry_lock(name, key):
        if (hit := cached(name, key)) is not None:  # computed while this process waited
            return hit
        value = _run(module, args, simulator, what)
        store(name, key, value)
    return value


def _run(module: str, args, simulator: bool, what: str):
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1" if simulator else "0",
           "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    out = subprocess.run([sys.executable, "-m", module, *map(str, args)], env=env, cwd=ROOT, capture_output=True,
                         text=True)
    if out.returncode:
        raise RuntimeError(f"{what} failed:\n{out.stderr[-6000:]}")
    return json.loads(out.stdout)
