"""Ceilings measured on the machine the benchmark runs on (not datasheet numbers).

    peak FLOP/s   a large square matmul: BLAS on the CPU (float32 and float64), cuBLAS on a GPU;
                  2 n^3 FLOPs per call
    bandwidth     a large copy, counting the bytes read plus the bytes written (2 x array size):
                  `dram` (arrays much larger than the caches) and `cache` (an ~8 MB working set on
                  the CPU, half of L2 on a GPU). On the CPU both a one-thread NumPy copy and a numba
                  prange copy over all threads run; the larger is the ceiling.

Each ceiling is a dict: device, kind ("flops" or "bandwidth"), dtype or level, the value from the
fastest call (`value`, the attainable peak) and from the median call, its unit and how it was measured.
"""

from __future__ import annotations

import os

import numba
import numpy as np
from numba import njit, prange

from plots.bench.sweeps import CeilingSizes
from plots.bench.timing import Timing, time_cpu, time_gpu


@njit(parallel=True, cache=True)
def parallel_copy(src, dst):
    """dst[i] = src[i], the range split over numba's threads."""
    for i in prange(src.shape[0]):
        dst[i] = src[i]


def _ceiling(device, kind, key, amount, t: Timing, unit, method, **extra) -> dict:
    scale = 1e9
    return {"type": "ceiling", "device": device, "kind": kind, **key, "value": amount / t.min / scale,
            "value_median": amount / t.median / scale, "unit": unit, "method": method,
            "timing": t.as_dict(), **extra}


def cpu(sizes: CeilingSizes) -> list[dict]:
    out = []
    n = sizes.matmul_n
    for dtype in ("float32", "float64"):
        a, b = (np.random.default_rng(0).standard_normal((n, n)).astype(dtype) for _ in range(2))
        c = np.empty((n, n), dtype)
        t = time_cpu(lambda a=a, b=b, c=c: np.matmul(a, b, out=c), budget=sizes.budget)
        out.append(_ceiling("cpu", "flops", {"dtype": dtype}, 2 * n**3, t, "GFLOP/s",
                            f"numpy matmul {n}x{n} (BLAS)"))
    threads = numba.config.NUMBA_NUM_THREADS
    for level, nbytes in (("dram", sizes.copy_bytes), ("cache", sizes.cache_copy_bytes // 2)):
        src = np.ones(nbytes // 8)
        dst = np.empty_like(src)
        best = None
        copies = ((f"numba prange copy, {threads} threads", lambda s=src, d=dst: parallel_copy(s, d)),
                  ("numpy.copyto, 1 thread", lambda s=src, d=dst: np.copyto(d, s)))
        for method, fn in copies:
            t = time_cpu(fn, budget=sizes.budget)
            row = _ceiling("cpu", "bandwidth", {"level": level}, 2 * src.nbytes, t, "GB/s",
                           f"{method}, {src.nbytes / 2**20:.0f} MiB per array (read + write)",
                           working_set_bytes=2 * src.nbytes)
            best = row if best is None or row["value"] > best["value"] else best
        out.append(best)
    return out


def gpu(sizes: CeilingSizes, l2_bytes: int) -> list[dict]:
    """cuBLAS matmul and device copies through CuPy (empty without CuPy)."""
    try:
        import cupy  # optional: only on a GPU
    except ImportError:
        return []

    out = []
    n = sizes.gpu_matmul_n
    tf32 = os.environ.get("CUPY_TF32", "0")
    for dtype in ("float32", "float64"):
        a, b = (cupy.random.standard_normal((n, n), dtype=dtype) for _ in range(2))
        c = cupy.empty((n, n), dtype)
        t = time_gpu(lambda a=a, b=b, c=c: cupy.matmul(a, b, out=c), budget=sizes.budget)
        out.append(_ceiling("gpu", "flops", {"dtype": dtype}, 2 * n**3, t, "GFLOP/s",
                            f"cupy.matmul {n}x{n} (cuBLAS, CUPY_TF32={tf32})"))
        del a, b, c
    for level, nbytes, flush in (("dram", sizes.gpu_copy_bytes, True), ("cache", l2_bytes // 4, False)):
        src = cupy.ones(nbytes // 4, dtype=cupy.float32)
        dst = cupy.empty_like(src)
        t = time_gpu(lambda src=src, dst=dst: cupy.copyto(dst, src), budget=sizes.budget, flush_l2=flush)
        out.append(_ceiling("gpu", "bandwidth", {"level": level}, 2 * src.nbytes, t, "GB/s",
                            f"cupy.copyto, {src.nbytes / 2**20:.0f} MiB per array (read + write)",
                            working_set_bytes=2 * src.nbytes))
        del src, dst
    return out
