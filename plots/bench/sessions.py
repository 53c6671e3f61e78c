"""Where a candidate's calls run, and the process state around them: sessions, GPU pools, OpenMP threads.

A `Session` calls a candidate in this process; an `IsolatedSession` calls a baseline in the child
process of `plots.bench.isolated` (torch on the CPU), so that torch's OpenMP pool and numba's do not
spin on the same cores. `Sessions` hands out one per candidate and owns the child process.

On a GPU the warm-up call fills the libraries' memory pools (CuPy, torch), so timed calls allocate
from a pool; numba.cuda's deallocations are deferred while a numba_cuda kernel is timed; and
`release_gpu_pools` frees the pools between grids. `quiet_spinning` makes idle OpenMP threads sleep.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

from kernels import registry
from plots.bench import baselines as bl
from plots.bench import timing
from plots.bench.isolated import Worker
from plots.bench.plan import Candidate


class Session:
    """Calls of one candidate in this process: call(args) -> (NumPy result, seconds), then time()."""

    def __init__(self, candidate: Candidate, use_out: bool):
        self.candidate, self.use_out, self.out_preallocated = candidate, use_out, None
        self._call = self._written = None

    def call(self, args, kwargs=None):
        self._call = self._written = None  # free the previous inputs first
        self._call, fetch, self.out_preallocated = self.candidate.prepare(args, self.use_out, kwargs)
        t0 = time.perf_counter()
        result = self._call()
        got = fetch(result)
        elapsed = time.perf_counter() - t0
        if self.out_preallocated:  # every later call writes the same arrays
            self._written = (result, fetch)
        return got, elapsed

    def poison_outputs(self):
        """Fill the preallocated outputs with NaN, so that what the next calls leave unwritten shows."""
        if self._written is not None:
            fill = registry.backend(self.candidate.backend).arrays.fill_nan
            result = self._written[0]
            for o in (result if isinstance(result, tuple) else (result,)):
                fill(o)

    def timed_outputs(self):
        """What the calls since `call` wrote into the preallocated outputs (after `time`: the last timed
        call's results, as NumPy arrays), or None when each call allocates its own."""
        return self._written[1](self._written[0]) if self._written is not None else None

    def time(self, budget: float, min_repeats: int) -> timing.Timing:
        if self.candidate.device == "gpu":
            if self.candidate.family == "numba_cuda":  # no synchronising cuMemFree inside the timed calls
                from numba import cuda  # heavy: only for numba_cuda kernels

                with cuda.defer_cleanup():
                    return timing.time_gpu(self._call, budget=budget, min_repeats=max(5, min_repeats))
            return timing.time_gpu(self._call, budget=budget, min_repeats=max(5, min_repeats))
        return timing.time_cpu(self._call, budget=budget, min_repeats=min_repeats, warmup=False)


class IsolatedSession:
    """The same, in the child process of `plots.bench.isolated` (torch on the CPU)."""

    out_preallocated = False

    def __init__(self, candidate: Candidate, worker: Worker):
        self.candidate, self.worker = candidate, worker

    def call(self, args, kwargs=None):
        return self.worker.call(self.candidate.label, self.candidate.op, (*args, *(kwargs or {}).values()))

    def time(self, budget: float, min_repeats: int) -> timing.Timing:
        return timing.Timing(**self.worker.time(budget, min_repeats))


class Sessions:
    """A session per candidate; isolated baselines share one child process, started on first use."""

    def __init__(self, use_out: bool):
        self.use_out, self.worker = use_out, None

    def start_worker(self) -> Worker:
        if self.worker is None:
            self.worker = Worker()
        return self.worker

    def get(self, candidate: Candidate) -> Session | IsolatedSession:
        if candidate.kind == "baseline" and candidate.baseline.isolated:
            return IsolatedSession(candidate, self.start_worker())
        return Session(candidate, self.use_out)

    def close(self):
        if self.worker is not None:
            self.worker.close()


def release_gpu_pools() -> list[str]:
    """Free the device memory cached by the GPU libraries this process has imported: numba.cuda's
    pending deallocations, CuPy's device and pinned pools, torch's caching allocator. Called between
    grids so that one grid's arrays do not crowd the next; libraries not imported (or, for torch and
    numba.cuda, not initialised) are left alone, and a failure to release only costs memory. Returns
    the libraries released."""
    if not bl.gpu_present():
        return []
    done = []
    cupy, torch = sys.modules.get("cupy"), sys.modules.get("torch")
    if cupy is not None:
        with _ignored_failure():
            cupy.cuda.Device().synchronize()
            cupy.get_default_memory_pool().free_all_blocks()
            cupy.get_default_pinned_memory_pool().free_all_blocks()
            done.append("cupy")
    if torch is not None and torch.cuda.is_initialized():
        with _ignored_failure():
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            done.append("torch")
    if "numba.cuda" in sys.modules:
        with _ignored_failure():
            from numba.cuda.cudadrv import driver  # heavy: only once numba.cuda is imported

            if driver.driver.is_initialized and driver.driver.initialization_error is None:
                from numba import cuda  # heavy: only once the CUDA driver is initialised

                ctx = cuda.current_context()
                ctx.synchronize()
                for pending in (ctx.deallocations, getattr(ctx.memory_manager, "deallocations", None)):
                    if pending is not None:
                        pending.clear()
                done.append("numba.cuda")
    return done


@contextlib.contextmanager
def _ignored_failure():
    try:
        yield
    except Exception as e:
        print(f"bench: releasing GPU memory failed ({type(e).__name__}: {e}); continuing", file=sys.stderr)


def quiet_spinning(spin: bool = False) -> dict:
    """Make idle OpenMP threads sleep instead of spin (OMP_WAIT_POLICY=PASSIVE) unless `spin` or the
    user set the policy. Must run before the first parallel numba call loads libgomp.

    Measured on the 2-core machine with one other busy process: with spinning (the default), every
    numba prange call at n=1e3..1e5 took one scheduler time slice, 8 ms, because the thread done
    first spins on the core its partner needs; with PASSIVE the same calls took 0.06-2.5 ms.
    """
    loaded = any("libgomp" in line or "libiomp" in line for line in _maps())
    if not spin:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return {"omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "runtime default (spin, then sleep)"),
            "openmp_loaded_before_setting": loaded}


def _maps():
    try:
        return Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return []
