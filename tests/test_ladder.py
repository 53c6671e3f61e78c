"""The ladder steps of gpu/cupy/ladder.cu (forward regwin and vec, weight gradient wg_regwin) through the op
map of gpu/steps.py, under the CPU emulator, against the float64 reference.

Every op is checked over the shared edge-size matrix (kernels.cases.SIZES: k = 1, k = n, n = 1, primes,
129, 1000, ...) in both dtypes, with flip, in the forward and the reverse thread order, on 32-thread
blocks so that small inputs span several blocks. Further tests cover block sizes up to 256 (several tap
groups and taps per thread of the weight gradient), several filter chunks (k > 256), grid-stride loops
(max_blocks=1), misaligned arrays (the vector steps' scalar fallback), padding with non-finite values,
the bit-for-bit repeat of the deterministic weight gradient, and the NVRTC compile: no spills on sm_80
and sm_90, launch bounds and shared memory within the limits at every accepted block size.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import assert_engine_result, call_args, emulated_only, needs_nvrtc

from gpu import launch as plan
from gpu.cupy import ladder as cupy_ladder
from gpu.cupy import nvrtc, tunables
from gpu.launch import Launch
from gpu.steps import GATE, RELU, Engines, Step, correlation_impls, register
from kernels import cases, compare
from kernels.backend import Backend

emulated = emulated_only


def host_total(g, out, launch):
    """out[0] = sum g, on the host: the bias gradient is not a ladder step (the backend's `total` engine
    serves it); here it only completes conv1d_relu_backward, whose dx and dw come from the ladder."""
    out[0] = np.sum(g, dtype=np.float64)


STEPS = {  # variant -> (forward engine, weight-gradient engine), as a backend would bundle them
    "regwin": (cupy_ladder.correlate_regwin, cupy_ladder.weight_grad_regwin),
    "vec": (cupy_ladder.correlate_vec, cupy_ladder.weight_grad_regwin),
    "vec16": (cupy_ladder.correlate_vec16, cupy_ladder.weight_grad_regwin),
}
OP_NAMES = ["conv1d", "conv1d_relu", "conv1d_input_grad", "conv1d_weight_grad", "conv1d_relu_backward",
            "circular_correlate", "circular_correlate_backward"]


def ladder_backend() -> Backend:
    """A private backend with the ladder steps registered through gpu.steps.register."""
    backend = Backend("ladder-test", "ladder steps under test")
    for variant, (correlate, weight_grad) in STEPS.items():
        E = Engines(correlate, weight_grad, host_total, empty=np.empty, launch_of=Launch.of)
        register(backend, [Step(variant, correlation_impls(E, OP_NAMES), {"": f"{variant} step"})])
    return backend


BACKEND = ladder_backend()


def run(op_name, variant, args, kwargs, **options):
    return BACKEND.function(op_name, variant, **options)(*args, **kwargs)


def sizes(op_name):
    return cases.sizes_for(op_name, "emulated")


def matrix():
    for op_name in OP_NAMES:
        for n, k in sizes(op_name):
            for flip in cases.flips(op_name):
                yield pytest.param(op_name, n, k, flip, id=f"{op_name}-n{n}-k{k}{'-flip' if flip else ''}")


@emulated
@pytest.mark.parametrize("order", ["forward", "reverse"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("variant", list(STEPS))
@pytest.mark.parametrize("op_name, n, k, flip", list(matrix()))
def test_edge_sizes(op_name, n, k, flip, variant, dtype, order, monkeypatch, rng):
    monkeypatch.setenv("KERNELS_EMU_ORDER", order)
    args, kwargs = call_args(op_name, rng, dtype, (n, k), flip=flip)
    got = run(op_name, variant, args, kwargs, block=32)
    print(*compare.assert_close(op_name, got, args, kwargs))


# (op, n, k): forward tiles and filter chunks (k > 256: two chunks), weight-gradient tap groups
# (TP = 4 up to k = 16, else 16; G up to block / 32)
BLOCK_CASES = [("conv1d", 2000, 5), ("conv1d_input_grad", 1500, 300), ("circular_correlate_backward", 700, 1),
               ("conv1d_weight_grad", 3000, 3), ("conv1d_weight_grad", 1000, 13), ("conv1d_weight_grad", 2500, 100),
               ("conv1d_weight_grad", 1200, 511)]


@emulated
@pytest.mark.parametrize("block", [64, 128, 256])
@pytest.mark.parametrize("op_name, n, k", BLOCK_CASES)
@pytest.mark.parametrize("variant", list(STEPS))
def test_block_sizes(variant, op_name, n, k, block, rng):
    dtype = np.float64 if block == 128 else np.float32
    args, kwargs = call_args(op_name, rng, dtype, (n, k), flip="flip" in cases.keywords(op_name))
    print(*compare.assert_close(op_name, run(op_name, variant, args, kwargs, block=block), args, kwargs))


@emulated
@pytest.mark.parametrize("per_thread", [4, 8])
@pytest.mark.parametrize("correlate", [cupy_ladder.correlate_regwin, cupy_ladder.correlate_vec],
                         ids=["regwin", "vec"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("features", [
    dict(), dict(flip=True), dict(offset=-6), dict(offset=3), dict(offset=-600),
    dict(periodic=True), dict(periodic=True, offset=1, flip=True), dict(periodic=True, offset=-2500),
    dict(bias=0.25, epilogue=RELU), dict(bias=-0.5, epilogue=GATE),
], ids=lambda d: "-".join(f"{a}={ {RELU: 'relu', GATE: 'gate'}.get(b, b) if a == 'epilogue' else b}"
                          for a, b in d.items()) or "plain")
def test_engine_features(features, dtype, correlate, per_thread, rng):
    """The engine directly, against a float64 loop: offsets with zero padding on either side, periodic
    wrap (also over more than one period), bias and the epilogues; both outputs per thread R; grid
    stride (max_blocks=2); M larger than the valid part so that padding is reached at both ends."""
    N, L = 1031, 37
    sig, f = rng.standard_normal(N).astype(dtype), rng.standard_normal(L).astype(dtype)
    flip, offset, periodic = features.get("flip", False), features.get("offset", 0), features.get("periodic", False)
    bias, epilogue = features.get("bias"), features.get("epilogue", 0)
    M = N if periodic else N - L + 1 + 20
    out, gate = np.full(M, np.nan, dtype), rng.standard_normal(M).astype(dtype)
    correlate(sig, f, out, Launch(block=32, max_blocks=2), flip=flip, offset=offset, periodic=periodic, bias=bias,
              epilogue=epilogue, gate=gate if epilogue == GATE else None, per_thread=per_thread)
    assert_engine_result(out, sig, f, flip=flip, offset=offset, periodic=periodic, bias=bias, epilogue=epilogue,
                         gate=gate)


@emulated
@pytest.mark.parametrize("variant", list(STEPS))
def test_misaligned_arrays_fall_back_to_scalar_loads(variant, rng):
    """Views one element into a buffer: the vector loads and stores are not 16-byte aligned."""
    n, k = 1000, 9
    buf_x, buf_y = rng.standard_normal(n + 1).astype(np.float32), np.full(n - k + 2, np.nan, np.float32)
    x, w, y = buf_x[1:], rng.standard_normal(k).astype(np.float32), buf_y[1:]
    STEPS[variant][0](x, w, y, Launch(block=32))
    print(*compare.assert_close("conv1d", y, (x, w)))


@emulated
@pytest.mark.parametrize("variant", list(STEPS))
def test_padding_terms_are_skipped(variant, rng):
    """An infinite filter tap meets only zero padding near the ends of the input gradient: skipped, so
    the outputs there stay finite, as in the reference (a multiplied padding zero would give NaN)."""
    n, k = 300, 7
    args, kwargs = call_args("conv1d_input_grad", rng, np.float32, (n, k))
    w = args[0].copy()
    w[0] = np.inf
    args = (w, *args[1:])
    got = run("conv1d_input_grad", variant, args, kwargs, block=32)
    print(*compare.assert_close("conv1d_input_grad", got, args, kwargs))
    x = rng.standard_normal(n).astype(np.float32)
    x[-1] = np.inf
    g = rng.standard_normal(n - k + 1).astype(np.float32)
    got = run("conv1d_weight_grad", variant, (x, g, k), {}, block=32)
    print(*compare.assert_close("conv1d_weight_grad", got, (x, g, k)))


@emulated
@pytest.mark.parametrize("block, slices, splits", [(32, 1, 3), (64, 2, 2), (128, 1, 1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("k", [3, 40])
def test_weight_grad_chunks_per_split(k, dtype, block, slices, splits, rng):
    """Several j chunks per split (and one split writing dw directly), tap tiles grid-strided; slice
    lengths of one or two runs of TP."""
    n = 2000
    slice_len = slices * plan.wg_layout(k, block, np.dtype(dtype).itemsize)[0]
    x, g = rng.standard_normal(n).astype(dtype), rng.standard_normal(n - k + 1).astype(dtype)
    dw = np.full(k, np.nan, dtype)
    cupy_ladder.weight_grad_regwin(x, g, dw, Launch(block=block, max_blocks=1), flip=True, slice_len=slice_len,
                                   splits=splits)
    print(*compare.assert_close("conv1d_weight_grad", dw, (x, g, k), {"flip": True}))


@emulated
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("k", [3, 100])
def test_weight_grad_repeats_bit_for_bit(k, dtype, monkeypatch, rng):
    """Fixed-order reductions: repeats, and runs in the reverse and a random thread order, give the same
    bits (several splits, several warps per tap group, several tap groups at k = 100)."""
    x = rng.standard_normal(5000).astype(dtype)
    g = rng.standard_normal(5000 - k + 1).astype(dtype)
    runs = []
    for order in ("forward", "forward", "reverse", "random"):
        monkeypatch.setenv("KERNELS_EMU_ORDER", order)
        dw = np.full(k, np.nan, dtype)
        cupy_ladder.weight_grad_regwin(x, g, dw, Launch(block=128), slice_len=plan.TP_LARGE)
        runs.append(dw)
    compare.assert_close("conv1d_weight_grad", runs[0], (x, g, k))
    for r in runs[1:]:
        assert np.array_equal(runs[0], r), "weight_grad_regwin: bits differ between runs"


# --- launch limits and the NVRTC compile -----------------------------------------------------------

def test_the_filter_chunk_reaches_the_kernels_from_one_place():
    """ladder.cu has no default for LADDER_TAPS: the launcher's layouts and the kernels read gpu.launch.TAPS."""
    assert "#define LADDER_TAPS" not in cupy_ladder.SOURCE.read_text()
    assert tunables.defines_for(cupy_ladder.SOURCE)["LADDER_TAPS"] == plan.TAPS


def accepted_blocks(bound):
    return [b for b in (32, 64, 128, 256, 512, 1024) if b <= bound]


@pytest.mark.parametrize("itemsize", [4, 8])
def test_every_accepted_block_fits_48_kb(itemsize):
    dtype = {4: np.float32, 8: np.float64}[itemsize]
    for step in ("regwin", "vec", "vec16"):
        for block in accepted_blocks(cupy_ladder.FORWARD_BOUNDS[(step, np.dtype(dtype).name, 4)]):
            R = cupy_ladder.forward_per_thread(step, dtype, block)
            assert block <= cupy_ladder.FORWARD_BOUNDS[(step, np.dtype(dtype).name, R)]
            assert plan.forward_shared_bytes(block, R, plan.TAPS, itemsize, step != "regwin") <= 48 << 10
    # vec16 accepts every block vec does (auto's forward), with R = 16 up to its bound
    name = np.dtype(dtype).name
    assert cupy_ladder.FORWARD_BOUNDS[("vec16", name, 4)] == cupy_ladder.FORWARD_BOUNDS[("vec", name, 4)]
    assert cupy_ladder.forward_per_thread("vec16", dtype, cupy_ladder.FORWARD_BOUNDS[("vec16", name, 16)]) == 16
    for k in (1, 3, 16, 17, 100, 511, 10**6):
        TP = plan.TP_SMALL if k <= plan.TP_SMALL_MAX_K else plan.TP_LARGE
        for block in accepted_blocks(cupy_ladder.WG_BOUNDS[(np.dtype(dtype).name, TP)]):
            _, G, JS = plan.wg_layout(k, block, itemsize)
            assert JS >= TP and JS % TP == 0 and plan.wg_shared_bytes(block, G, TP, JS, itemsize) <= 48 << 10


@emulated
def test_blocks_beyond_the_launch_bounds_are_refused():
    x, w = np.ones(100), np.ones(3)
    with pytest.raises(ValueError, match="block.*at most 512 threads, got 1024"):
        cupy_ladder.correlate_regwin(x, w, np.empty(98), Launch(block=1024), per_thread=8)
    with pytest.raises(ValueError, match="block.*at most 512 threads, got 1024"):
        cupy_ladder.correlate_vec(x, w, np.empty(98), Launch(block=1024))
    with pytest.raises(ValueError, match=r"block.*needs \d+ bytes of shared memory"):
        cupy_ladder.correlate_vec(x.astype(np.float32), w.astype(np.float32), np.empty(98, np.float32),
                                  Launch(block=1024), per_thread=8)
    cupy_ladder.correlate_regwin(x, w, y := np.empty(98), Launch(block=1024))  # picks R = 4
    assert np.all(y == 3)
    x, w = np.ones(300), np.ones(100)
    with pytest.raises(ValueError, match="block.*at most 256 threads, got 512"):
        cupy_ladder.weight_grad_regwin(x, np.ones(201), np.empty(100), Launch(block=512))


@needs_nvrtc
@pytest.mark.exhaustive  # every accepted launch; make test compiles ladder.cu in tests/test_nvrtc.py
@pytest.mark.parametrize("arch", nvrtc.ARCHS)
def test_nvrtc_no_spills_within_launch_bounds(arch):
    """Every instantiation, compiled with the launcher's -D options: no spills, and its registers times
    its launch bound (the largest accepted block) fit the 64K-register file, so every accepted block
    launches; static shared memory plus the largest dynamic request stays within 48 KB."""
    code = cupy_ladder.SOURCE.read_text()
    log, lowered = nvrtc.compile_log(code, cupy_ladder.NAMES, arch, tunables.compile_options(cupy_ladder.SOURCE),
                                           "ladder.cu")
    rows = {r.kernel: r for r in nvrtc.parse_ptxas(log, lowered, "ladder.cu")}
    assert set(rows) == set(cupy_ladder.NAMES)
    for name, r in rows.items():
        print(r)
        assert r.spill_stores == 0 and r.spill_loads == 0, r
        bound = int(re.search(r"(\d+)>$", name)[1]) if name.count(",") == 2 else 1024
        assert r.registers * bound <= 65536, r
        assert r.shared <= 1024, r


def wavefronts(byte_addresses, size: int) -> int:
    """Shared-memory wavefronts of one warp access of `size`-byte words (32 banks of 4 bytes; 64- and
    128-bit accesses are served in phases of 16 and 8 lanes): per phase, the most distinct 4-byte words
    that fall in one bank."""
    lanes, total = 128 // size, 0
    for p in range(0, 32, lanes):
        banks = {}
        for a in byte_addresses[p:p + lanes]:
            for word in range(a // 4, (a + size) // 4):
                banks.setdefault(word % 32, set()).add(word)
        total += max(len(v) for v in banks.values())
    return total


@pytest.mark.parametrize("itemsize", [4, 8])
def test_padded_layouts_are_free_of_bank_conflicts(itemsize):
    """The padding of gpu/cupy/ladder.cu makes the lane-strided reads of the inner loops conflict-free at every
    offset: the forward's runs of R (scalar in regwin, 16-byte vectors in vec; lane t reads t*R + d) and
    the weight gradient's slices of JS (lane js reads js*JS + d). Without padding they would conflict."""
    W = 16 // itemsize
    ideal = {itemsize: itemsize * 32 // 128, 16: 4}
    for R in (4, 8):
        for vec, size in ((False, itemsize), (True, 16)):
            pad = plan.forward_pad(R, itemsize, vec)
            for d in range(0, 4 * R, W if vec else 1):
                slots = [plan.skew(t * R + d, R, pad) * itemsize for t in range(32)]
                assert wavefronts(slots, size) == ideal[size], (R, vec, d)
            if not (vec and R == W):
                assert wavefronts([(t * R) * itemsize for t in range(32)], size) > ideal[size]
    for JS in (4, 8, 16, 32):
        for d in range(2 * JS + 64):
            slots = [plan.skew(js * JS + d, JS, 1) * itemsize for js in range(32)]
            assert wavefronts(slots, itemsize) == ideal[itemsize], (JS, d)
