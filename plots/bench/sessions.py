"""Where a candidate's calls run, and the process state around them: sessions, GPU pools, OpenMP threads.

A `Session` calls a candidate in this process; an `IsolatedSession` calls a baseline in the child
process of `plots.bench.isolated` (torch on the CPU), so that torch's OpenMP pool and numba's do not
spin on the same cores. `Sessions` hands out one per candidate and owns the child process.

On a GPU the warm-up call fills the libraries' memory pools (CuPy, torch), so timed calls allocate
from a pool; numba.cuda's deallocations are deferred while a numba_cuda kernel is timed. A GPU timing
(`timing.time_gpu`: kernel time, the call time beside it, the SM clock) is then judged: the output of the
last timed call is checked again (`verify`), and a rate over the device's physical limit
(`gpu_limits`) is rejected (`TimingRejected`). Then the session drops its arrays and
`release_gpu_pools` frees the pools and cuFFT plan caches, so the next point starts from free memory.
`quiet_spinning` makes idle OpenMP threads sleep.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

import cpu
from kernels import registry
from plots.bench import baselines as bl
from plots.bench import machine, timing
from plots.bench.isolated import Worker
from plots.bench.plan import Candidate


class TimingRejected(RuntimeError):
    """A GPU timing whose output was wrong after timing ("wrong"), or whose rate is over the device's limit
    ("impossible"): `status` is the result row's."""

    def __init__(self, why: str, status: str):
        super().__init__(why)
        self.status = status


class Session:
    """Calls of one candidate in this process: call(args) -> (NumPy result, seconds), then time()."""

    def __init__(self, candidate: Candidate, use_out: bool):
        self.candidate, self.use_out, self.out_preallocated = candidate, use_out, None
        self._call = self._fetch = self._written = None

    def call(self, args, kwargs=None):
        self._call = self._written = None  # free the previous inputs first
        self._call, self._fetch, self.out_preallocated = self.candidate.prepare(args, self.use_out, kwargs)
        t0 = time.perf_counter()
        result = self._call()
        got = self._fetch(result)
        elapsed = time.perf_counter() - t0
        if self.out_preallocated:  # every later call writes the same arrays
            self._written = (result, self._fetch)
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

    def time(self, budget: float, min_repeats: int, verify=None, rates=None) -> timing.Timing:
        """Time the last prepared call. On a GPU, `verify(result)` (a verdict dict with "ok") judges the output of
        the last timed call, and `rates` (flops, min_bytes, itemsize) the rate: TimingRejected where either fails."""
        if self.candidate.device != "gpu":
            return timing.time_cpu(self._call, budget=budget, min_repeats=min_repeats, warmup=False)
        try:
            return self._time_gpu(budget, max(5, min_repeats), verify, rates)
        finally:
            self._call = self._fetch = None
            release_gpu_pools()

    def _time_gpu(self, budget, min_repeats, verify, rates) -> timing.Timing:
        last = []

        def fn():
            last[:] = [self._call()]

        with _deferred_numba_cleanup(self.candidate.family == "numba_cuda"):
            t = timing.time_gpu(fn, budget=budget, min_repeats=min_repeats, sm_clock=machine.sm_clock_mhz)
        if verify is not None and not (verdict := verify(self._fetch(last[0])))["ok"]:
            raise TimingRejected(f"wrong after timing: {verdict.get('detail', verdict)}", "wrong")
        if rates is not None:
            flops, min_bytes, itemsize = rates
            if why := timing.implausible(t.median, flops, min_bytes, gpu_limits(itemsize)):
                raise TimingRejected(why, "impossible")
        return t


def gpu_limits(itemsize: int) -> dict:
    """{"gflops", "gbs"}: the physical limits of CUDA device 0 for a dtype of `itemsize` bytes, the highest
    datasheet figures of the model's devices its name matches (an "H100" by the SXM part's); {} without a
    device or a match (nothing is then rejected)."""
    from plots.draw.model import measured_on  # heavy: matplotlib, only when a GPU is timed
    from plots.model.devices import DEVICES  # the model's device table

    gpu = machine.gpu_info()
    matched = [d for slug, d in DEVICES.items() if gpu and measured_on(gpu, slug)]
    if not matched:
        return {}
    return {"gflops": max(d.peak_gflops(itemsize) for d in matched), "gbs": max(d.hbm_gbs for d in matched)}


@contextlib.contextmanager
def _deferred_numba_cleanup(numba_kernel: bool):
    """numba.cuda's deallocations deferred (no synchronising cuMemFree inside the timed calls) for its kernels."""
    if not numba_kernel:
        yield
        return
    from numba import cuda  # heavy: only for numba_cuda kernels

    with cuda.defer_cleanup():
        yield


class IsolatedSession:
    """The same, in the child process of `plots.bench.isolated` (torch on the CPU)."""

    out_preallocated = False

    def __init__(self, candidate: Candidate, worker: Worker):
        self.candidate, self.worker = candidate, worker

    def call(self, args, kwargs=None):
        return self.worker.call(self.candidate.label, self.candidate.op, (*args, *(kwargs or {}).values()))

    def time(self, budget: float, min_repeats: int, verify=None, rates=None) -> timing.Timing:
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
    pending deallocations, CuPy's device and pinned pools and cuFFT plan cache, torch's caching allocator and
    cuFFT plan cache. Called after every GPU timing and between grids, so that one point's arrays and plans do
    not crowd the next; libraries not imported (or, for torch and
    numba.cuda, not initialised) are left alone, and a failure to release only costs memory. Returns
    the libraries released."""
    if not bl.gpu_present():
        return []
    done = []
    cupy, torch = sys.modules.get("cupy"), sys.modules.get("torch")
    if cupy is not None:
        with _ignored_failure():
            cupy.cuda.Device().synchronize()
            cupy.fft.config.get_plan_cache().clear()  # cuFFT plans hold 6-13 GB at n = 1e8
            cupy.get_default_memory_pool().free_all_blocks()
            cupy.get_default_pinned_memory_pool().free_all_blocks()
            done.append("cupy")
    if torch is not None and torch.cuda.is_initialized():
        with _ignored_failure():
            torch.cuda.synchronize()
            torch.backends.cuda.cufft_plan_cache.clear()
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
    """Idle OpenMP threads sleep (OMP_WAIT_POLICY=PASSIVE, the policy `cpu` sets for the product), or spin
    with `spin` (ACTIVE), unless the user set the policy. Must run before the first parallel numba call loads
    libgomp.

    Measured on the 2-core machine with one other busy process: with spinning, every numba prange call at
    n=1e3..1e5 took one scheduler time slice, 8 ms, because the thread done first spins on the core its
    partner needs; with PASSIVE the same calls took 0.06-2.5 ms.
    """
    loaded = any("libgomp" in line or "libiomp" in line for line in _maps())
    if cpu.USER_WAIT_POLICY is None:
        os.environ["OMP_WAIT_POLICY"] = "ACTIVE" if spin else cpu.WAIT_POLICY
    return {"omp_wait_policy": os.environ["OMP_WAIT_POLICY"], "openmp_loaded_before_setting": loaded}


def _maps():
    try:
        return Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return []
