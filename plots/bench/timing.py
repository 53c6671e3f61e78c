"""Timers: the one place that measures how long a call takes, on the CPU and on a CUDA GPU.

Both return a `Timing`: per-call times in seconds, summarised by the median and the 20th/80th
percentiles (as Triton's ``do_bench(quantiles=[0.5, 0.2, 0.8])``).

CPU (`time_cpu`): one warm-up call first (it absorbs JIT compilation and first-touch page faults),
then ``time.perf_counter`` around each call, repeated until a time budget is spent (and at least
`min_repeats` times), with the garbage collector off.

GPU (`time_gpu`): warm-up, then CUDA events recorded around each call on the default stream, with
the L2 cache flushed before every call by a memset of a buffer of max(2 x L2, 256 MiB), so that no
call finds its inputs cached by the previous one (llm.c, Triton's ``do_bench``). Everything is
enqueued and the events are read after one synchronisation at the end: while the GPU runs the flush,
the host prepares the next call, so its launch overhead is not counted.
The events come from CuPy when it is installed, else from numba.cuda. Without the flush
(``flush_l2=False``) the library timer ``cupyx.profiler.benchmark`` is used, where CuPy is present.
"""

from __future__ import annotations

import functools
import gc
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

QUANTILES = (0.5, 0.2, 0.8)  # median, 20th and 80th percentiles


@dataclass(frozen=True)
class Timing:
    """Summary of repeated calls; times in seconds."""

    median: float
    p20: float
    p80: float
    min: float
    mean: float
    repeats: int  # timed calls (warm-up excluded)
    total: float  # seconds spent in timed calls
    clock: str  # what measured them: "perf_counter", "cuda events (cupy)", ...

    @classmethod
    def from_samples(cls, samples, clock: str) -> Timing:
        s = np.asarray(samples, dtype=np.float64)
        if s.size == 0:
            raise ValueError("no samples")
        med, p20, p80 = np.quantile(s, QUANTILES)
        return cls(float(med), float(p20), float(p80), float(s.min()), float(s.mean()), int(s.size),
                   float(s.sum()), clock)

    def as_dict(self) -> dict:
        return asdict(self)


# --- CPU -----------------------------------------------------------------------------------------

def time_cpu(fn: Callable[[], object], *, budget: float = 0.1, min_repeats: int = 3,
             max_repeats: int = 100_000, warmup: bool = True) -> Timing:
    """Time `fn()` (no arguments: bind them first) with perf_counter.

    budget: seconds of timed calls to collect; the loop also stops after `max_repeats` calls and
    never before `min_repeats`. warmup: make one untimed call first (turn off only when the caller
    has just called `fn` itself, e.g. to check its result).
    """
    if warmup:
        fn()
    samples = []
    clock = time.perf_counter
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        spent = 0.0
        while len(samples) < max_repeats and (spent < budget or len(samples) < min_repeats):
            t0 = clock()
            fn()
            dt = clock() - t0
            samples.append(dt)
            spent += dt
    finally:
        if was_enabled:
            gc.enable()
    return Timing.from_samples(samples, "perf_counter")


def time_race(fns: dict[str, Callable[[], object]], *, budget: float = 0.3, min_rounds: int = 5,
              max_rounds: int = 500, seed: int = 0) -> dict[str, Timing]:
    """Time several calls side by side, round-robin: {name: Timing}.

    After one warm-up call of each, every round calls each fn once untimed (to warm the caches after
    whatever ran before) and once timed, in a new random order per round, until `budget` seconds have
    passed (at least `min_rounds`, at most `max_rounds` rounds), with the garbage collector off. Noise
    from other jobs then lands on all of them alike; on a shared machine other work only ever adds
    time, so compare the `min` of each.
    """
    for fn in fns.values():
        fn()
    samples = {name: [] for name in fns}
    names, order = list(fns), np.random.default_rng(seed)
    clock = time.perf_counter
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        end, rounds = clock() + budget, 0
        while rounds < min_rounds or (clock() < end and rounds < max_rounds):
            for name in order.permutation(names):
                fn = fns[name]
                fn()
                t0 = clock()
                fn()
                samples[name].append(clock() - t0)
            rounds += 1
    finally:
        if was_enabled:
            gc.enable()
    return {name: Timing.from_samples(s, "perf_counter, round-robin") for name, s in samples.items()}


# --- GPU -----------------------------------------------------------------------------------------

class GpuClock:
    """CUDA events and an L2 flush on the default stream, from CuPy or numba.cuda.

    record() -> event; elapsed(a, b) -> seconds between two recorded events; synchronize();
    flush() overwrites a buffer of max(2 x L2, 256 MiB); flush_seconds() is what one flush costs.
    """

    FLUSH_MIN_BYTES = 256 << 20

    def __init__(self, library: str | None = None):
        if library is None:
            try:
                import cupy  # noqa: F401  (optional: only on a GPU)

                library = "cupy"
            except ImportError:
                library = "numba"
        self.library = library
        self.name = f"cuda events ({library})"
        self._flush_buf = None
        if library == "cupy":
            import cupy  # optional: only on a GPU

            self._cp = cupy
            dev = cupy.cuda.Device()
            self.l2_bytes = int(cupy.cuda.runtime.getDeviceProperties(dev.id)["l2CacheSize"])
        elif library == "numba":
            from numba import cuda  # heavy: initialises the CUDA driver, only without CuPy

            self._cuda = cuda
            self.l2_bytes = int(cuda.get_current_device().L2_CACHE_SIZE)
        else:
            raise ValueError(f"library: expected 'cupy' or 'numba', got {library!r}")

    def record(self):
        if self.library == "cupy":
            ev = self._cp.cuda.Event()
            ev.record()
        else:
            ev = self._cuda.event(timing=True)
            ev.record(0)
        return ev

    def elapsed(self, start, end) -> float:
        if self.library == "cupy":
            return self._cp.cuda.get_elapsed_time(start, end) * 1e-3  # ms -> s
        return self._cuda.event_elapsed_time(start, end) * 1e-3

    def synchronize(self):
        if self.library == "cupy":
            self._cp.cuda.Device().synchronize()
        else:
            self._cuda.synchronize()

    @functools.cached_property
    def flush_seconds(self) -> float:
        self.flush()
        self.synchronize()
        start = self.record()
        for _ in range(5):
            self.flush()
        end = self.record()
        self.synchronize()
        return self.elapsed(start, end) / 5

    def flush(self):
        nbytes = max(2 * self.l2_bytes, self.FLUSH_MIN_BYTES)
        if self.library == "cupy":
            if self._flush_buf is None:
                self._flush_buf = self._cp.empty(nbytes, dtype=self._cp.uint8)
            self._flush_buf.fill(0)
        else:
            if self._flush_buf is None:
                self._flush_buf = self._cuda.device_array(nbytes, dtype=np.uint8)
            from numba.cuda.cudadrv import driver  # heavy: numba.cuda, only for the numba clock

            driver.device_memset(self._flush_buf, 0, nbytes)


@functools.cache
def default_clock() -> GpuClock:
    """One clock (and one flush buffer) per process: CuPy's events when CuPy is there."""
    return GpuClock()


def time_gpu(fn: Callable[[], object], *, budget: float = 0.1, min_repeats: int = 5,
             max_repeats: int = 2_000, flush_l2: bool = True, clock: GpuClock | None = None) -> Timing:
    """Time `fn()` (which launches work on the default stream) with CUDA events.

    One warm-up call, then an estimate from 3 calls sets the number of repeats that fits `budget`
    seconds of GPU time (flushes included); each repeat is [flush L2] -> event -> fn() -> event, all
    enqueued, and the events are read after one synchronisation.
    """
    benchmark = None  # the library timer, used when there is no flush to interleave
    if not flush_l2 and (clock is None or clock.library == "cupy"):
        try:
            from cupyx.profiler import benchmark  # optional: CuPy, only on a GPU
        except ImportError:
            pass
    clock = clock or default_clock()
    fn()  # warm-up
    clock.synchronize()
    est = _estimate_gpu(fn, clock, flush=flush_l2)
    n = _repeats_for(budget, est + (clock.flush_seconds if flush_l2 else 0.0), min_repeats, max_repeats)
    if benchmark is not None:
        result = benchmark(fn, n_repeat=n, n_warmup=0)
        return Timing.from_samples(result.gpu_times[0], "cupyx.profiler.benchmark")
    pairs = []
    for _ in range(n):
        if flush_l2:
            clock.flush()
        start = clock.record()
        fn()
        pairs.append((start, clock.record()))
    clock.synchronize()
    return Timing.from_samples([clock.elapsed(a, b) for a, b in pairs], clock.name)


def _estimate_gpu(fn, clock: GpuClock, flush: bool, calls: int = 3) -> float:
    """Seconds per call of `fn` over a few event-timed calls."""
    if flush:
        clock.flush()
    start = clock.record()
    for _ in range(calls):
        fn()
    end = clock.record()
    clock.synchronize()
    return clock.elapsed(start, end) / calls


def _repeats_for(budget: float, per_call: float, min_repeats: int, max_repeats: int) -> int:
    if per_call <= 0:
        return max_repeats
    return int(min(max_repeats, max(min_repeats, math.ceil(budget / per_call))))
