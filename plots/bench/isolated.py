"""Time baselines in a child process, away from the runner's numba thread pool.

torch ships its own libgomp; numba's `omp` threading layer uses the system's. In one process the two
OpenMP pools spin-wait on the same cores after each parallel region, and on a 2-core machine every
call of either then took one scheduler time slice (~8 ms) instead of 0.1-0.3 ms. So the runner keeps
torch out of its own process and sends the torch CPU baselines to a `Worker` (one child process per
run, started with `spawn`), which converts the inputs, makes the warm-up call whose result the runner
checks, and then times the call with `plots.bench.timing.time_cpu`, exactly as in the runner.
"""

from __future__ import annotations

import multiprocessing
import time

import numpy as np

from plots.bench import baselines as bl
from plots.bench.timing import time_cpu


class Worker:
    """A child process that runs baselines on request."""

    def __init__(self):
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child,), daemon=True, name="bench-isolated")
        self._proc.start()
        child.close()
        self.info = self._receive()  # library versions and threads of the child

    def _receive(self):
        status, *payload = self._conn.recv()
        if status == "error":
            raise RuntimeError(f"in the isolated worker: {payload[0]}")
        return payload[0] if len(payload) == 1 else payload

    def call(self, name: str, op: str, args: tuple):
        """Prepare baseline `name` of `op` on `args` and call it once: (NumPy result, seconds)."""
        self._conn.send(("call", name, op, args))
        return self._receive()

    def time(self, budget: float, min_repeats: int) -> dict:
        """Time the prepared call: a `Timing` as a dict."""
        self._conn.send(("time", budget, min_repeats))
        return self._receive()

    def close(self):
        if self._proc.is_alive():
            try:
                self._conn.send(None)
            except OSError:
                pass
            self._proc.join(timeout=10)
            if self._proc.is_alive():
                self._proc.kill()


def _serve(conn):
    prepared = None
    try:
        torch = bl._torch() if bl.HAS_TORCH else None
        conn.send(("ok", {"torch": getattr(torch, "__version__", None),
                          "torch_threads": torch.get_num_threads() if torch else None}))
    except Exception as e:
        conn.send(("error", f"{type(e).__name__}: {e}"))
    while True:
        msg = conn.recv()
        if msg is None:
            return
        try:
            if msg[0] == "call":
                _, name, op, args = msg
                b = next(b for b in bl.BASELINES if b.name == name and b.op == op)
                kind = bl.ARRAY_KINDS[b.arrays]
                dev = tuple(kind.to_kind(a) if isinstance(a, np.ndarray) else a for a in args)
                prepared = (lambda fn=b.fn, dev=dev: fn(*dev))
                t0 = time.perf_counter()
                got = kind.to_host(prepared())
                conn.send(("ok", got, time.perf_counter() - t0))
            else:
                _, budget, min_repeats = msg
                conn.send(("ok", time_cpu(prepared, budget=budget, min_repeats=min_repeats,
                                          warmup=False).as_dict()))
        except Exception as e:  # reported to the runner, which records an error row
            conn.send(("error", f"{type(e).__name__}: {e}"))
