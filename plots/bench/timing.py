"""Timers: the one place that measures how long a call takes, on the CPU and on a CUDA GPU.

Both return a `Timing`: per-call times in seconds, summarised by the median and the 20th/80th
percentiles (as Triton's ``do_bench(quantiles=[0.5, 0.2, 0.8])``).

CPU (`time_cpu`): one warm-up call first (it absorbs JIT compilation and first-touch page faults),
then ``time.perf_counter`` around each call, repeated until a time budget is spent (and at least
`min_repeats` times), with the garbage collector off.

GPU (`time_gpu`): kernel time, not call time. After a warm-up, a batch of calls (arguments bound
beforehand) is enqueued behind a kernel that holds the GPU busy for longer than the host takes to
enqueue the whole batch (`GpuClock.hold`), so the GPU never waits for Python between two events: each
sample is [flush L2] -> event -> the call's kernels -> event, with the L2 cache flushed by a memset of
max(2 x L2, 256 MiB) so that no call finds its inputs cached by the previous one (llm.c, Triton's
``do_bench``, nvbench's blocking kernel). The events are read after one synchronisation. Where the
host did take longer than the hold (`Timing.host_bound`), the samples may include launch gaps. The
call time (a synchronous call, Python included) is measured separately (`Timing.call`), and the SM clock
is read before and after (`Timing.sm_clock_mhz`, from NVML). `implausible` rejects a rate above the
device's physical limit. The events come from CuPy when it is installed, else from numba.cuda (which has
no hold kernel: host_bound is then None).
"""

from __future__ import annotations

import functools
import gc
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

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
    call: float | None = None  # GPU: seconds of one synchronous call, Python and launches included (median)
    host_bound: bool | None = None  # GPU: the host took longer to enqueue than the hold: launch gaps possible
    sm_clock_mhz: tuple | None = None  # GPU: the SM clock before and after the samples (NVML), where readable

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


def implausible(seconds: float, flops: float, min_bytes: float, limits: dict) -> str | None:
    """Why a time is impossible on the device of `limits` ({"gflops": peak FLOP/s / 1e9, "gbs": DRAM bytes/s /
    1e9}, either may be missing), or None: the rate it implies is over the limit by more than 10%."""
    for what, amount, unit in (("gflops", flops, "GFLOP/s"), ("gbs", min_bytes, "GB/s")):
        limit = limits.get(what)
        if limit and seconds > 0 and amount / seconds / 1e9 > 1.1 * limit:
            return (f"{amount / seconds / 1e9:.4g} {unit} in {seconds:.3g} s is over the device's limit of "
                    f"{limit:.4g} {unit}: a wrong timer or result, not a fast kernel")
    return None


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
        self._flush_buf = self._hold = None
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

    #: Holds the GPU for `ns` nanoseconds of its global timer (sleeping between reads).
    HOLD = r"""extern "C" __global__ void hold(unsigned long long ns) {
        unsigned long long t0, t;
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
        do { __nanosleep(1000); asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t)); } while (t - t0 < ns);
    }"""

    def hold(self, seconds: float) -> bool:
        """Enqueue a kernel that keeps the GPU busy for `seconds`, so that the host can enqueue what follows
        before the GPU reaches it; False where there is none (the numba clock)."""
        if self.library != "cupy":
            return False
        if self._hold is None:
            self._hold = self._cp.RawKernel(self.HOLD, "hold")
        self._hold((1,), (1,), (np.uint64(int(seconds * 1e9)),))
        return True

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
             max_repeats: int = 2_000, flush_l2: bool = True, clock: GpuClock | None = None,
             sm_clock: Callable[[], float | None] = lambda: None) -> Timing:
    """Kernel time of `fn()` (which launches work on the default stream, its arguments bound) by CUDA events.

    One warm-up call; the call time from 3 synchronous calls; an estimate from 3 event-timed calls sets the
    number of repeats that fits `budget` seconds of GPU time (flushes included). The repeats go in batches,
    each behind a hold of 1.5 x the host's enqueue time of the batch (`GpuClock.hold`), each repeat
    [flush L2] -> event -> fn() -> event; the events are read after one synchronisation. `sm_clock()` is read
    before and after (None where unknown).
    """
    clock = clock or default_clock()
    fn()  # warm-up
    clock.synchronize()
    calls = []
    for _ in range(3):
        t0 = time.perf_counter()
        fn()
        clock.synchronize()
        calls.append(time.perf_counter() - t0)
    host = _host_seconds(fn, clock)
    est = _estimate_gpu(fn, clock, flush=flush_l2)
    n = _repeats_for(budget, est + (clock.flush_seconds if flush_l2 else 0.0), min_repeats, max_repeats)
    before = sm_clock()
    samples, host_bound = [], None
    per_batch = max(1, min(200, int(0.5 / max(host, 1e-6))))  # <= 0.5 s of host time, within the launch queue
    for first in range(0, n, per_batch):
        count = min(per_batch, n - first)
        clock.synchronize()
        held = clock.hold(1.5 * host * count + 1e-3)
        t0, pairs = time.perf_counter(), []
        for _ in range(count):
            if flush_l2:
                clock.flush()
            start = clock.record()
            fn()
            pairs.append((start, clock.record()))
        enqueue = time.perf_counter() - t0
        clock.synchronize()
        if held:
            host_bound = bool(host_bound) or enqueue > 1.5 * host * count + 1e-3
        samples += [clock.elapsed(a, b) for a, b in pairs]
    return replace(Timing.from_samples(samples, clock.name + (", held" if host_bound is not None else "")),
                   call=float(np.median(calls)), host_bound=host_bound, sm_clock_mhz=(before, sm_clock()))


def _host_seconds(fn, clock: GpuClock, calls: int = 3) -> float:
    """Seconds the host takes to enqueue one call of `fn` (flush and events included), not waiting for the GPU."""
    t0 = time.perf_counter()
    for _ in range(calls):
        clock.flush()
        clock.record()
        fn()
        clock.record()
    host = (time.perf_counter() - t0) / calls
    clock.synchronize()
    return host


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
