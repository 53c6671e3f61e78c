"""Count the global-memory accesses of numba.cuda kernels per warp request, under numba's CUDA simulator.

    with recording() as log:
        kernel[blocks, threads](x, y)        # simulator only (NUMBA_ENABLE_CUDASIM=1)
    stats = count(log)                       # requests, sectors per request, unique bytes, ...

Every element a kernel reads or writes in a global array (the simulator's in-kernel array) is logged
with its thread, block, byte address and program point (source line and array). A warp request is
what one warp does at one program point: the n-th execution of a line by the 32 lanes of a warp is
one load (or store) instruction, as it would be on a GPU whose warp runs in lockstep. Its cost is
the number of distinct 32-byte sectors its lanes touch: 4 for 32 consecutive float32, 32 for a
stride of 32 floats. Shared and local arrays are NumPy arrays in the simulator and are not logged.

What this does not see: caches (every request is counted, hits or not; `unique_bytes` is the
compulsory traffic), divergence inside a warp (lanes that skip a line do not count, lanes are
matched by occurrence), and vectorised accesses (numba issues one scalar access per element).
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections import defaultdict

SECTOR = 32  # bytes per L1/L2 sector
WARP = 32


@contextlib.contextmanager
def recording():
    """Log every global-array access of kernels launched inside the block (simulator only)."""
    from numba import config  # heavy: in the trace child, after the simulator is switched on

    if not config.ENABLE_CUDASIM:
        raise RuntimeError("plots.model.traffic needs numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1)")
    from numba.cuda.simulator.cudadrv.devicearray import FakeWithinKernelCUDAArray as Fake  # heavy: as above

    log: list = []
    get, put = Fake.__getitem__, Fake.__setitem__

    def record(self, idx, kind):
        thread = threading.current_thread()
        ary = self._item._ary
        index = idx if isinstance(idx, tuple) else (idx,)
        if len(index) != ary.ndim or not all(isinstance(i, int) or hasattr(i, "__index__") for i in index):
            return  # a slice or a view: no single element
        offset = sum(int(i) * s for i, s in zip(index, ary.strides))
        frame = sys._getframe(2)
        site = (frame.f_code.co_filename, frame.f_lineno, id(ary), kind)
        seen = thread.__dict__.setdefault("_trace_seen", defaultdict(int))
        occurrence = seen[site]
        seen[site] += 1
        block = tuple(thread.blockIdx) if hasattr(thread, "blockIdx") else (0,)
        warp = getattr(thread, "thread_id", 0) // WARP
        log.append((block, warp, site, occurrence, kind, _device_address(ary) + offset, ary.itemsize, id(ary)))

    def traced_get(self, idx):
        record(self, idx, "load")
        return get(self, idx)

    def traced_put(self, idx, val):
        record(self, idx, "store")
        return put(self, idx, val)

    Fake.__getitem__, Fake.__setitem__ = traced_get, traced_put
    try:
        yield log
    finally:
        Fake.__getitem__, Fake.__setitem__ = get, put


def _device_address(ary) -> int:
    """The address `ary[0...]` would have on a GPU: its offset in its allocation (the NumPy array that
    owns the memory) plus a base aligned as cudaMalloc aligns (256 bytes; here 2**40 apart)."""
    root = ary
    while isinstance(getattr(root, "base", None), type(ary)):
        root = root.base
    start = root.__array_interface__["data"][0]
    bases = _BASES.setdefault(start, (len(_BASES) + 1) << 40)
    return bases + ary.__array_interface__["data"][0] - start


_BASES: dict = {}


def count(log) -> dict:
    """Requests, sectors and bytes of a recorded launch, per kind ("load", "store") and in total.

    For each kind: `requests` (warp instructions), `sectors` (summed over requests: what the memory
    system moves, 32 bytes each), `sectors_per_request`, `bytes` (what the lanes asked for) and
    `unique_bytes` (32 x the distinct sectors touched by the whole launch: the compulsory traffic).
    """
    groups = defaultdict(set)
    touched = defaultdict(set)
    asked = defaultdict(int)
    for block, warp, site, occurrence, kind, address, nbytes, _ in log:
        sectors = range(address // SECTOR, (address + nbytes - 1) // SECTOR + 1)
        groups[(kind, block, warp, site, occurrence)].update(sectors)
        touched[kind].update(sectors)
        asked[kind] += nbytes
    out = {}
    for kind in ("load", "store"):
        reqs = [len(s) for key, s in groups.items() if key[0] == kind]
        out[kind] = {"requests": len(reqs), "sectors": sum(reqs),
                     "sectors_per_request": sum(reqs) / len(reqs) if reqs else 0.0,
                     "bytes": asked[kind], "unique_bytes": SECTOR * len(touched[kind])}
    out["requests"] = out["load"]["requests"] + out["store"]["requests"]
    out["sectors"] = out["load"]["sectors"] + out["store"]["sectors"]
    out["unique_bytes"] = out["load"]["unique_bytes"] + out["store"]["unique_bytes"]
    return out
