"""The numba.cuda ladder steps (gpu/numba_cuda/ladder.py: forward regwin, weight gradient wg_regwin) beyond
the common matrix, under numba's CUDA simulator or on a GPU.

The whole conformance matrix (tests/test_conformance.py: kernels.cases edge sizes, both dtypes, flip,
32-thread blocks so that small inputs span several blocks) picks the registered steps up by itself. Here:
several filter chunks (k > TAPS) and tap groups at larger blocks, the engine's offsets, periodic wrap,
bias and epilogues at both outputs per thread, grid-stride loops (max_blocks=1 and 2) with several
j chunks per split, padding with non-finite values, the bit-for-bit repeat of the deterministic weight
gradient, the warp-sum tree (shuffles on a GPU, their shared-memory stand-in under the simulator) against
a NumPy model of __shfl_down_sync, launches refused with an error naming the argument, and large n on a
real GPU (`pytest -m gpu`). The simulator is slow: sizes stay small.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from conftest import STATE_MARKS, assert_engine_result, call_args

import kernels
from gpu.steps import FORWARD_OPS, GATE, RELU
from kernels import cases, compare

STATUS = kernels.status("numba_cuda")
pytestmark = [pytest.mark.skipif(not STATUS.usable, reason=f"numba_cuda: {STATUS.reason}"),
              *([STATE_MARKS[STATUS.state]] if STATUS.state in STATE_MARKS else [])]
if STATUS.usable:  # numba.cuda imports (on a GPU or under the simulator)
    from numba import cuda
gpu_only = pytest.mark.skipif(STATUS.state != "real GPU",
                              reason=f"no CUDA device: numba_cuda is {STATUS.state} ({STATUS.reason})")


def ladder():
    from gpu.numba_cuda import ladder as numba_cuda_ladder

    return numba_cuda_ladder


def launch(**options):
    from gpu.launch import NumbaCudaLaunch

    return NumbaCudaLaunch(**options)


def device(a):
    from numba import cuda

    return cuda.to_device(np.ascontiguousarray(a))


def get(op, variant, **options):
    return kernels.get(op, "numba_cuda", variant, **options)


def test_the_ladder_steps_are_registered_without_vec():
    for op in FORWARD_OPS:
        assert {"regwin"} <= set(kernels.variants(op, "numba_cuda")) and "vec" not in kernels.variants(op, "numba_cuda")
    others = {"naive", "tiled", "atomic", "auto"}
    assert set(kernels.variants("conv1d_weight_grad", "numba_cuda")) - others == {"wg_regwin", "wg_stream"}


# (op, n, k, block, variant): two filter chunks (TAPS = 256), tiles of 64 threads x 8 outputs; weight-gradient
# tap groups (TP = 4 up to k = 16, else 16; G up to block / 32) and several tap tiles
CHUNK_CASES = [("conv1d_input_grad", 400, 300, 32, "regwin"), ("conv1d", 700, 260, 64, "regwin"),
               ("circular_correlate_backward", 150, 1, 64, "regwin"), ("conv1d_weight_grad", 400, 13, 64, "wg_regwin"),
               ("conv1d_weight_grad", 500, 100, 64, "wg_regwin"), ("conv1d_weight_grad", 600, 300, 32, "wg_regwin")]


@pytest.mark.parametrize("op_name, n, k, block, variant", CHUNK_CASES)
def test_filter_chunks_and_tap_groups(op_name, n, k, block, variant, rng):
    dtype = np.float64 if block == 64 else np.float32
    args, kwargs = call_args(op_name, rng, dtype, (n, k), flip="flip" in cases.keywords(op_name))
    print(*compare.assert_close(op_name, get(op_name, variant, block=block)(*args, **kwargs), args, kwargs))


@pytest.mark.parametrize("dtype, per_thread", [(np.float32, 4), (np.float32, 8), (np.float32, 16), (np.float64, 4),
                                               (np.float64, 8)],
                         ids=["f32-R4", "f32-R8", "f32-R16", "f64-R4", "f64-R8"])
@pytest.mark.parametrize("features", [
    dict(), dict(flip=True), dict(offset=-6), dict(offset=3), dict(offset=-400),
    dict(periodic=True), dict(periodic=True, offset=1, flip=True), dict(periodic=True, offset=-700),
    dict(bias=0.25, epilogue=RELU), dict(bias=-0.5, epilogue=GATE),
], ids=lambda d: "-".join(f"{a}={ {RELU: 'relu', GATE: 'gate'}.get(b, b) if a == 'epilogue' else b}"
                          for a, b in d.items()) or "plain")
def test_engine_features(features, dtype, per_thread, rng):
    """correlate_regwin directly, against a float64 loop: offsets with zero padding on either side,
    periodic wrap (also over more than one period), bias and the epilogues; each R; grid stride
    (max_blocks=2); M larger than the valid part so that padding is reached at both ends."""
    N, L = 301, 37
    sig, f = rng.standard_normal(N).astype(dtype), rng.standard_normal(L).astype(dtype)
    flip, offset, periodic = features.get("flip", False), features.get("offset", 0), features.get("periodic", False)
    bias, epilogue = features.get("bias"), features.get("epilogue", 0)
    M = N if periodic else N - L + 1 + 20
    gate = rng.standard_normal(M).astype(dtype)
    out = device(np.full(M, np.nan, dtype))
    ladder().correlate_regwin(device(sig), device(f), out, launch(block=32, max_blocks=2), flip=flip, offset=offset,
                              periodic=periodic, bias=bias, epilogue=epilogue,
                              gate=device(gate) if epilogue == GATE else None, per_thread=per_thread)
    got = out.copy_to_host()
    assert_engine_result(got, sig, f, flip=flip, offset=offset, periodic=periodic, bias=bias, epilogue=epilogue,
                         gate=gate)


@pytest.mark.parametrize("block, slices, splits", [(32, 1, 3), (64, 2, 2), (32, 1, 1)])
@pytest.mark.parametrize("k, dtype", [(3, np.float32), (3, np.float64),
                                      pytest.param(40, np.float64, marks=pytest.mark.exhaustive)],  # ~15 s each
                         ids=["3-f32", "3-f64", "40-f64"])
def test_weight_grad_chunks_per_split(k, dtype, block, slices, splits, rng):
    """Several j chunks per split (and one split writing dw directly), tap tiles grid-strided
    (max_blocks=1); slice lengths of one or two runs of TP."""
    from gpu import launch as plan

    n = 1200
    slice_len = slices * plan.wg_layout(k, block, np.dtype(dtype).itemsize)[0]
    x, g = rng.standard_normal(n).astype(dtype), rng.standard_normal(n - k + 1).astype(dtype)
    dw = device(np.full(k, np.nan, dtype))
    ladder().weight_grad_regwin(device(x), device(g), dw, launch(block=block, max_blocks=1), flip=True,
                                slice_len=slice_len, splits=splits)
    print(*compare.assert_close("conv1d_weight_grad", dw.copy_to_host(), (x, g, k), {"flip": True}))


@pytest.mark.parametrize("variant", ["regwin", "wg_regwin"])
def test_padding_terms_are_skipped(variant, rng):
    """An infinite filter tap meets only zero padding near the ends of the input gradient: skipped, so
    the outputs there stay finite, as in the reference (a multiplied padding zero would give NaN); an Inf
    at the end of x reaches only the taps that read it."""
    n, k = 200, 7
    if variant == "regwin":
        args, kwargs = call_args("conv1d_input_grad", rng, np.float32, (n, k))
        w = args[0].copy()
        w[0] = np.inf
        args = (w, *args[1:])
        got = get("conv1d_input_grad", variant, block=32)(*args, **kwargs)
        print(*compare.assert_close("conv1d_input_grad", got, args, kwargs))
        assert np.isfinite(got).sum() == k - 1 and not np.isnan(got).any()
    x = rng.standard_normal(n).astype(np.float32)
    x[-1] = np.inf
    g = rng.standard_normal(n - k + 1).astype(np.float32)
    got = get("conv1d_weight_grad", "wg_regwin", block=32)(x, g, k)
    print(*compare.assert_close("conv1d_weight_grad", got, (x, g, k)))


@pytest.mark.parametrize("k, dtype, repeats", [(3, np.float32, 3), (3, np.float64, 3),
                                               pytest.param(20, np.float64, 2, marks=pytest.mark.exhaustive)],
                         ids=["3-f32", "3-f64", "20-f64"])
def test_weight_grad_repeats_bit_for_bit(k, dtype, repeats, rng):
    """Fixed-order reductions (warp tree, warps in order, splits in order by the second pass): repeated runs
    give the same bits, with several splits (slice_len = TP), two warps per tap group (block 64, G = 1 at
    k = 3) and two tap groups at k = 20 (the simulator runs the second pass, a block per tap, slowly)."""
    from gpu import launch as plan

    x = rng.standard_normal(600).astype(dtype)
    g = rng.standard_normal(600 - k + 1).astype(dtype)
    xd, gd = device(x), device(g)
    TP = plan.wg_layout(k, 64, np.dtype(dtype).itemsize)[0]
    runs = []
    for _ in range(repeats):  # the simulator's threads interleave differently on every run
        dw = device(np.full(k, np.nan, dtype))
        ladder().weight_grad_regwin(xd, gd, dw, launch(block=64), slice_len=TP)
        runs.append(dw.copy_to_host())
    print(*compare.assert_close("conv1d_weight_grad", runs[0], (x, g, k)))
    for r in runs[1:]:
        assert np.array_equal(runs[0], r), "wg_regwin: bits differ between runs"


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("block", [32, 64])
def test_second_pass_adds_in_its_fixed_order(block, dtype, rng):
    """sum_partials_kernel: out[c] = sum_b partial[b*cols + c] with more rows than threads, to the bit of a
    NumPy model of its order (thread t adds rows t, t+B, ... in turn; the shuffle tree; the warps in turn),
    and within rounding of the float64 sum; grid-strided over columns (2 blocks for 5 columns)."""
    rows, cols = 150, 5
    partial = (rng.standard_normal((rows, cols)) * 10.0 ** rng.integers(-4, 5, (rows, cols))).astype(dtype)
    out = device(np.full(cols, np.nan, dtype))
    ladder().sum_partials_kernel(np.dtype(dtype), block)[2, block](device(partial.ravel()), rows, out, dtype(0))
    want = np.empty(cols, dtype)
    for c in range(cols):
        per_thread = np.zeros(block, dtype)
        for t in range(block):
            for b in range(t, rows, block):
                per_thread[t] = per_thread[t] + partial[b, c]
        warps = shfl_down_tree(per_thread)
        total = warps[0]
        for w in warps[1:]:
            total = dtype(total + w)
        want[c] = total
    got = out.copy_to_host()
    assert np.array_equal(got, want), (got, want)
    err = np.abs(got - partial.astype(np.float64).sum(axis=0))
    assert np.all(err <= 4 * rows * np.finfo(dtype).eps * np.abs(partial).astype(np.float64).sum(axis=0))


def shfl_down_tree(values: np.ndarray) -> np.ndarray:
    """lane 0 of each warp after v += __shfl_down_sync(v, d), d = 16 .. 1 (lanes past the warp read their own v)."""
    v = values.reshape(-1, 32).copy()
    for d in (16, 8, 4, 2, 1):
        v = v + np.concatenate([v[:, d:], v[:, 32 - d:]], axis=1)
    return v[:, 0]


@functools.cache
def warp_sum_probe(dtype, block: int, count: int):
    """A kernel: dst[u, w] = lane 0 of warp w after warp_sum of src[u, t] (u < count)."""
    warp_sum = ladder().warp_sum_factory(np.dtype(dtype), block, count)
    T = ladder().scalar_type(dtype)

    @cuda.jit
    def kernel(src, dst):
        v = cuda.local.array(count, T)
        t = cuda.threadIdx.x
        for u in range(count):
            v[u] = src[u, t]
        warp_sum(v)
        if t % 32 == 0:
            for u in range(count):
                dst[u, t // 32] = v[u]

    return kernel


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_warp_sum_adds_in_the_shuffle_tree_order(dtype, rng):
    """warp_sum (shuffles on a GPU, the shared-memory stand-in under the simulator) gives, in lane 0 of every
    warp, the bits of the __shfl_down_sync tree computed in NumPy; values spread over many magnitudes so
    that another order would round differently."""
    block, count = 64, 3
    src = (rng.standard_normal((count, block)) * 10.0 ** rng.integers(-6, 7, (count, block))).astype(dtype)
    dst = device(np.full((count, block // 32), np.nan, dtype))
    warp_sum_probe(np.dtype(dtype), block, count)[1, block](device(src), dst)
    want = np.stack([shfl_down_tree(src[u]) for u in range(count)])
    assert np.array_equal(dst.copy_to_host(), want)


@pytest.mark.parametrize("call, words", [
    (lambda L, x, w, y: L.correlate_regwin(x, w, y, launch(block=32), per_thread=3), ["per_thread", "[4, 8]", "3"]),
    (lambda L, x, w, y: L.correlate_regwin(x, w, y, launch(block=1024), per_thread=8),
     ["block", "at most 512", "1024"]),
    (lambda L, x, w, y: L.weight_grad_regwin(x, y, w, launch(block=32), slice_len=3), ["slice_len", "3"]),
    (lambda L, x, w, y: L.weight_grad_regwin(x, y, w, launch(block=32), splits=0), ["splits", "0"]),
], ids=["per_thread", "forward-block", "slice_len", "splits"])
def test_unfitting_launches_are_refused(call, words):
    x, w = device(np.ones(100)), device(np.ones(3))
    y = device(np.full(98, np.nan))
    with pytest.raises(ValueError) as info:
        call(ladder(), x, w, y)
    assert all(word in str(info.value) for word in words), str(info.value)


def test_blocks_beyond_the_weight_gradients_registers_are_refused(rng):
    args, kwargs = call_args("conv1d_weight_grad", rng, np.float64, (300, 100))
    with pytest.raises(ValueError, match="block: wg_regwin .* at most 256 threads, got 512"):
        get("conv1d_weight_grad", "wg_regwin", block=512)(*args, **kwargs)


def test_block_1024_takes_four_outputs_per_thread_in_float64(rng):
    """R = 8 in float64 is bounded at 512 threads (its registers): at 1024 regwin falls back to R = 4."""
    assert ladder().forward_per_thread(np.float64, 1024) == 4 and ladder().forward_per_thread(np.float64, 512) == 8
    args, kwargs = call_args("conv1d", rng, np.float64, (300, 5))
    print(*compare.assert_close("conv1d", get("conv1d", "regwin", block=1024)(*args, **kwargs), args, kwargs))


@pytest.mark.exhaustive
def test_every_accepted_launch_is_compiled_and_fits():
    """plots.model.resources compiles regwin at every (block, R) its launcher accepts and wg_regwin at every
    (block, TP), both dtypes, sm_80 and sm_90: no spills, registers x block within the register file,
    static + dynamic shared memory within 48 KB (rows shared with tests/test_gpu_compile.py's cache)."""
    from gpu import launch as plan
    from plots.model import resources

    if problem := resources.toolchain_problem():
        pytest.skip(f"real compile: {problem}")
    rows = [r for r in resources.run() if r["kernel"].startswith("ladder.")]
    have = {(r["kernel"], r["dtype"], r["arch"]) for r in rows}
    L = ladder()
    for dtype in ("float32", "float64"):
        itemsize = np.dtype(dtype).itemsize
        for block in plan.BLOCKS:
            want = [f"ladder.sum_partials_kernel[B={block}]"]
            rs = sorted(R for d, R in L.FORWARD_BOUNDS if d == dtype)
            want += [f"ladder.regwin_kernel[B={block},R={R}]" for R in rs
                     if block <= L.FORWARD_BOUNDS[(dtype, R)]
                     and plan.forward_shared_bytes(block, R, plan.TAPS, itemsize, False) <= plan.SHARED_LIMIT]
            want += [f"ladder.wg_regwin_kernel[B={block},TP={TP}]" for TP in plan.TAPS_PER_THREAD
                     if block <= L.WG_BOUNDS[(dtype, TP)]]
            for name in want:
                assert all((name, dtype, arch) in have for arch in resources.ARCHS), (name, dtype)
        assert L.forward_per_thread(dtype, 1024) in rs  # block 1024 always has an R that launches
    bad = resources.failures(rows)
    assert not bad, "\n".join(bad)


@gpu_only
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("op_name, variant, k", [("conv1d", "regwin", 31), ("conv1d_input_grad", "regwin", 257),
                                                 ("conv1d_weight_grad", "wg_regwin", 31),
                                                 ("conv1d_weight_grad", "wg_regwin", 257)])
def test_large_n_on_gpu(op_name, variant, k, dtype, rng):
    args, kwargs = call_args(op_name, rng, np.dtype(dtype), (10_000_019, k), flip="flip" in cases.keywords(op_name))
    print(*compare.assert_close(op_name, get(op_name, variant)(*args, **kwargs), args, kwargs))
