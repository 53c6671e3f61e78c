"""Step wg_stream of gpu/numba_cuda/ladder.py under numba's CUDA simulator (or on a GPU) against the float64
reference: chunks long enough for the hoisted staging (16 floats or 8 doubles per thread in flight), several
chunks per split, the remainder staged one value at a time, flip, 32 taps per thread in float32 beyond k = 64
(a slice's last values of j through the window's tail), and the same bits on every run; the generated window
code. The conformance matrix (tests/test_conformance.py) runs its edge sizes. The simulator is slow: sizes
stay small."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import STATE_MARKS

import kernels
from gpu import launch as plan
from kernels import compare

STATUS = kernels.status("numba_cuda")
pytestmark = [pytest.mark.skipif(not STATUS.usable, reason=f"numba_cuda: {STATUS.reason}"),
              *([STATE_MARKS[STATUS.state]] if STATUS.state in STATE_MARKS else [])]


@pytest.mark.parametrize("dtype, k, splits, n", [
    (np.float32, 3, 2, 2600), (np.float64, 5, 1, 2600), (np.float32, 20, 3, 2600),  # 3 chunks of 1024 values of j
    (np.float32, 65, 1, 1125),  # TP_WIDE: one chunk hoisted, then 37 values of j: a trip and the tail (m % 32 = 5)
    pytest.param(np.float32, 100, 2, 2600, marks=pytest.mark.exhaustive)])  # TP_WIDE, 4 tap tiles, 3 chunks
def test_hoisted_staging_matches_the_reference_and_repeats(dtype, k, splits, n, rng):
    from numba import cuda

    from gpu.numba_cuda import ladder

    block = 32
    loads = plan.STAGE_LOADS * 16 // np.dtype(dtype).itemsize
    TP, G, JS = plan.wg_layout(k, block, np.dtype(dtype).itemsize, None, plan.STREAM_SLICE_BYTES,
                               ladder.wide(dtype, block, True))
    assert block // G * JS >= loads * block  # a chunk of g takes the hoisted path at least once
    assert (TP == plan.TP_WIDE) == (k > 64)
    x, g = rng.standard_normal(n).astype(dtype), rng.standard_normal(n - k + 1).astype(dtype)
    runs = []
    for _ in range(2):
        dw = cuda.to_device(np.full(k, np.nan, dtype))
        ladder.weight_grad_regwin(cuda.to_device(x), cuda.to_device(g), dw,
                                  plan.NumbaCudaLaunch(block=block, max_blocks=1), flip=True, splits=splits,
                                  stream=True)
        runs.append(dw.copy_to_host())
        print(*compare.assert_close("conv1d_weight_grad", runs[-1], (x, g, k), {"flip": True}))
    assert np.array_equal(runs[0], runs[1])


def test_the_step_is_registered_in_both_backends():
    for backend in ("cupy", "numba_cuda"):
        assert "wg_stream" in kernels.variants("conv1d_weight_grad", backend)


def test_the_window_code_is_the_loops_it_replaces():
    """window_source(TP) written out: TP loads and TP*TP FMAs a trip in the loops' order (row v: value v of
    j), the tail's rows nested under rem > v; the trip and tail it builds run here (simulator) or compile (GPU)."""
    from gpu.numba_cuda import ladder

    for TP in (*plan.TAPS_PER_THREAD, plan.TP_WIDE):
        *rows, trip, tail = ladder.window_source(TP).split("\n\n\n")
        for v, row in enumerate(rows):
            want = [f"def row{v}(sm, pg, acc, xa):", f"gj = sm[uint64(pg + {v})]",
                    *(f"acc[{u}] += gj * xa[{u + v}]" for u in range(TP))]
            assert [line.strip() for line in row.splitlines()] == want
        body = [line.strip() for line in trip.splitlines()[1:]]
        want = [f"xa[{TP + u}] = sm[uint64(px + {u})]" for u in range(TP)]
        want += [f"row{v}(sm, pg, acc, xa)" for v in range(TP)]
        want += [f"xa[{u}] = xa[{u + TP}]" for u in range(TP)]
        assert len(rows) == TP and body == want
        calls = [line.strip() for line in tail.splitlines() if "row" in line]
        assert calls == [f"row{v}(sm, pg, acc, xa)" for v in range(TP - 1)] and tail.count("if rem > ") == TP - 1
        assert all(callable(f) for f in ladder.window_factory(TP))
