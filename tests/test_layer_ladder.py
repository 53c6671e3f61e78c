"""The layer step gemm of gpu/cupy/layer_gemm.cu (cupy backend, conv1d_layer and conv1d_layer_backward) under the
CPU emulator, against the float64 reference.

A matrix of layer shapes (stride 1-3, padding 0 and beyond the filter, dilation 1-2, groups 1, 2 and
depthwise, no bias, channel counts and lengths that are not multiples of the block tile, N = 1, L_out = 1)
runs in both dtypes, in the forward and the reverse thread order, in strict mode (the emulator's default),
on 32-thread blocks and on larger ones so that inputs span several tiles and reduction chunks, plus 150
random layers in a random thread order. Further tests: grid-stride loops (max_blocks = 1), non-finite
values in interior and edge tiles (padded positions are multiplied zeros in y and dw, absent terms of dx
are skipped), the bit-for-bit repeat of the backward in every thread order and grid cap, the launch limits,
the NVRTC compile (no spills on sm_80 and sm_90, registers and shared memory within the limits at every
accepted block) and the static model's targets (plots/model/layer.py).
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import emulated_only, needs_nvrtc

import kernels
from gpu.cupy import layer_gemm, nvrtc, tunables
from gpu.launch import Launch
from kernels import compare, layer
from kernels.spec import OPS

FORWARD, BACKWARD = "conv1d_layer", "conv1d_layer_backward"


emulated = emulated_only

#: id -> layer sizes and settings (kernels.layer.make_*_args keywords)
SHAPES = {
    "plain": dict(N=2, C_in=4, C_out=6, L=40, K=3),
    "padded": dict(N=2, C_in=3, C_out=5, L=37, K=3, padding=1),
    "stride2-pad2-dil2-groups2": dict(N=2, C_in=4, C_out=6, L=40, K=3, stride=2, padding=2, dilation=2, groups=2),
    "stride3-dil2-K4": dict(N=1, C_in=3, C_out=5, L=37, K=4, stride=3, padding=1, dilation=2),
    "stride2-dil2": dict(N=2, C_in=2, C_out=3, L=30, K=3, stride=2, dilation=2),  # gcd 2: odd classes have no taps
    "depthwise": dict(N=2, C_in=4, C_out=4, L=20, K=3, padding=1, groups=4),
    "depthwise-x2": dict(N=1, C_in=3, C_out=6, L=25, K=5, padding=2, groups=3, stride=2),
    "no-bias": dict(N=2, C_in=5, C_out=3, L=19, K=2, padding=1, bias=False),
    "untiled-C-and-L": dict(N=1, C_in=9, C_out=17, L=150, K=5, padding=2),  # > BK steps, several L tiles
    "N1-Lout1": dict(N=1, C_in=3, C_out=2, L=5, K=3, dilation=2),
    "padding-beyond-filter": dict(N=2, C_in=2, C_out=2, L=4, K=2, padding=5),
    "K1-stride3": dict(N=3, C_in=2, C_out=4, L=11, K=1, stride=3),
}


def run(op_name, args, kwargs, **options):
    return kernels.get(op_name, "cupy", "gemm", **options)(*args, **kwargs)


def make(op_name, rng, dtype, sizes):
    return OPS[op_name].make_args(rng, np.dtype(dtype), **sizes)


@emulated
@pytest.mark.parametrize("order", ["forward", "reverse"])
@pytest.mark.parametrize("block", [32, 128])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("op_name", [FORWARD, BACKWARD])
def test_layer_shapes(op_name, shape, dtype, block, order, monkeypatch, rng):
    monkeypatch.setenv("KERNELS_EMU_ORDER", order)
    args, kwargs = make(op_name, rng, dtype, SHAPES[shape])
    print(*compare.assert_close(op_name, run(op_name, args, kwargs, block=block), args, kwargs))


@emulated
@pytest.mark.parametrize("block", [64, 256])
@pytest.mark.parametrize("op_name", [FORWARD, BACKWARD])
def test_several_tiles_chunks_and_a_strided_grid(op_name, block, rng):
    """Several row and column tiles, reduction chunks and weight-gradient splits, at the largest block and
    with the grid capped at one block (every tile by grid stride)."""
    sizes = dict(N=2, C_in=12, C_out=40, L=140, K=3, stride=2, padding=1, groups=2)
    for dtype in (np.float32, np.float64):
        args, kwargs = make(op_name, rng, dtype, sizes)
        for options in ({"block": block}, {"block": block, "max_blocks": 1}):
            print(*compare.assert_close(op_name, run(op_name, args, kwargs, **options), args, kwargs))


@emulated
@pytest.mark.parametrize("orientation", layer_gemm.ORIENTATIONS)
@pytest.mark.parametrize("block", [32, 128])
@pytest.mark.parametrize("sizes", [dict(N=2, C_in=3, C_out=20, L=50, K=3, padding=1),
                                   dict(N=3, C_in=8, C_out=6, L=37, K=5, stride=2, padding=3, dilation=2, groups=2),
                                   dict(N=1, C_in=40, C_out=70, L=30, K=2, bias=False)],
                         ids=["C3-20", "strided-grouped", "C40-70-no-bias"])
def test_weight_grad_orientations(sizes, block, orientation, rng):
    """Both orientations of the weight gradient's tiles (rows r and columns co, or the reverse; the launcher
    picks the one that wastes less) against the reference, in both dtypes; several tiles along r and co."""
    for dtype in (np.float32, np.float64):
        args, kwargs = make(BACKWARD, rng, dtype, sizes)
        p, (x, w, g) = layer.parse_backward(*args, **kwargs)
        outs = [np.full(shape, np.nan, dtype) for shape in (p.x_shape, p.w_shape, p.b_shape)]
        layer_gemm.backward_gemm(p, x, w, g, *outs, Launch(block=block), orientation=orientation)
        print(*compare.assert_close(BACKWARD, tuple(outs), args, kwargs))


def test_the_orientation_follows_the_waste():
    assert layer_gemm.param_orientation(problem(C_in=64, C_out=128, K=3), 128) == 0  # R = 192 = 3 x 64, co = 128
    assert layer_gemm.param_orientation(problem(C_in=128, C_out=64, K=3), 128) == 1  # co = 64 rows, R = 384 = 3 x 128


@emulated
def test_random_layers_in_a_random_thread_order(monkeypatch, rng):
    """150 random layers (stride 1-4, dilation 1-3, padding 0-4, K 1-5, groups 1-3, L 1-39, N 1-3, with and
    without bias) in both dtypes at every accepted block, threads of a block run in a random order."""
    monkeypatch.setenv("KERNELS_EMU_ORDER", "random")
    done = 0
    while done < 150:
        s, d, K, p = (int(v) for v in (rng.integers(1, 5), rng.integers(1, 4), rng.integers(1, 6), rng.integers(0, 5)))
        G, L = int(rng.integers(1, 4)), int(rng.integers(1, 40))
        if d * (K - 1) + 1 > L + 2 * p:
            continue
        sizes = dict(N=int(rng.integers(1, 4)), C_in=G * int(rng.integers(1, 4)), C_out=G * int(rng.integers(1, 4)),
                     L=L, K=K, stride=s, padding=p, dilation=d, groups=G, bias=bool(rng.integers(0, 2)))
        dtype, block = (np.float32, np.float64)[done % 2], (32, 64, 128, 256)[done % 4]
        for op_name in (FORWARD, BACKWARD):
            args, kwargs = make(op_name, rng, dtype, sizes)
            report = compare.compare(op_name, run(op_name, args, kwargs, block=block), args, kwargs)
            assert all(m.ok for m in report), (op_name, sizes, block, dtype, [str(m) for m in report])
        done += 1


@emulated
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # 0 * Inf, on purpose
@pytest.mark.parametrize("value", [np.inf, np.nan])
@pytest.mark.parametrize("where", ["x", "w", "grad_out"])
@pytest.mark.parametrize("op_name", [FORWARD, BACKWARD])
def test_non_finite_values_in_interior_and_edge_tiles(op_name, where, value, rng):
    """A non-finite value in x, w or grad_out, at a row start (meets the padding) and in the middle of a row
    (interior tiles of dx at block 32: 128 columns per tile, three tiles): NaN and Inf exactly where the
    reference has them. dx has no padded terms, so an Inf of w stays an Inf next to the padding."""
    if op_name == FORWARD and where == "grad_out":
        pytest.skip("the forward takes no grad_out")
    sizes = dict(N=2, C_in=2, C_out=4, L=300, K=3, padding=2, dilation=2, groups=2)
    args, kwargs = make(op_name, rng, np.float32, sizes)
    args = list(args)
    i = {"x": 0, "w": 1, "grad_out": 2}[where]
    a = args[i].copy()
    a[0, 0, 0] = value
    a[-1, -1, a.shape[2] // 2] = -value
    args[i] = a
    got = run(op_name, tuple(args), kwargs, block=32)
    report = compare.compare(op_name, got, tuple(args), kwargs)
    assert all(m.ok for m in report), [str(m) for m in report]


@emulated
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_backward_repeats_bit_for_bit(dtype, monkeypatch, rng):
    """Fixed-order reductions: every thread order and a capped grid give the same bits for dx, dw and db
    (several splits, whose chunks cross from one n to the next)."""
    args, kwargs = make(BACKWARD, rng, dtype, dict(N=3, C_in=6, C_out=8, L=37, K=3, padding=1, groups=2))
    runs = []
    for order, options in (("forward", {}), ("forward", {}), ("reverse", {}), ("random", {}),
                           ("forward", {"max_blocks": 2})):
        monkeypatch.setenv("KERNELS_EMU_ORDER", order)
        runs.append(run(BACKWARD, args, kwargs, block=64, **options))
    p, _ = layer.parse_backward(*args, **kwargs)
    assert layer_gemm.param_splits(p, 64)[1] > 1
    compare.assert_close(BACKWARD, runs[0], args, kwargs)
    for r in runs[1:]:
        for name, a, b in zip(("dx", "dw", "db"), runs[0], r, strict=True):
            assert np.array_equal(a, b), f"{name}: bits differ between runs"


# --- the plans and the launch limits ------------------------------------------------------------------

def problem(dtype=np.float32, **sizes):
    return layer.LayerProblem(dtype=np.dtype(dtype), **{"N": 2, "C_in": 4, "C_out": 6, "L": 40, "K": 3, **sizes})


@pytest.mark.parametrize("sizes", [dict(), dict(N=8, C_in=64, C_out=128, L=4096, padding=1), dict(N=1, L=3),
                                   dict(N=7, L=1000, stride=3), dict(N=0)])
def test_param_splits_cover_the_positions_in_fixed_chunks(sizes):
    p = problem(**sizes)
    positions = p.N * p.L_out
    for block in (32, 128, 256):
        chunk, splits, tiles = layer_gemm.param_splits(p, block)
        assert chunk % layer_gemm.BK == 0 and chunk > 0
        assert splits * chunk >= positions and (splits - 1) * chunk < positions or positions == splits == 0
        assert tiles % max(splits, 1) == 0


@pytest.mark.parametrize("sizes", [dict(), dict(stride=3, padding=1), dict(stride=2, L=1, K=1), dict(stride=5)])
def test_input_grad_columns_is_the_widest_class(sizes):
    p = problem(**sizes)
    counts = np.bincount((np.arange(p.L) + p.padding) % p.stride, minlength=p.stride)
    assert layer_gemm.input_grad_columns(p) == counts.max()


def accepted_blocks(bound):
    return [b for b in (32, 64, 128, 256, 512, 1024) if b <= bound]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_every_accepted_block_fits_48_kb(dtype):
    for block in accepted_blocks(layer_gemm.BOUND):
        TM, TN, BM, BN = layer_gemm.tile_shape(dtype, block)
        assert BM % 16 == 0 and BN % 16 == 0 and (BM & (BM - 1)) == 0  # the kernels' vector and mask rules
        assert layer_gemm.shared_bytes(dtype, block) <= 48 << 10


@emulated
def test_blocks_beyond_the_launch_bound_are_refused(rng):
    args, kwargs = make(FORWARD, rng, np.float32, SHAPES["plain"])
    with pytest.raises(ValueError, match="block: the gemm layer kernels take at most 256 threads, got 512"):
        run(FORWARD, args, kwargs, block=512)
    args, kwargs = make(BACKWARD, rng, np.float64, SHAPES["plain"])
    with pytest.raises(ValueError, match="block: .*at most 256 threads, got 1024"):
        run(BACKWARD, args, kwargs, block=1024)


def test_sizes_past_32_bit_positions_are_refused_before_any_work():
    p = problem(L=(1 << 30) - 10, N=1, C_in=1, C_out=1)
    with pytest.raises(ValueError, match=r"x: .*32-bit.*2\*\*30"):
        layer_gemm.forward_gemm(p, None, None, None, np.empty(p.y_shape, np.float32), Launch(block=32))
    p = problem(C_in=1 << 22, K=64)
    with pytest.raises(ValueError, match=r"w: .*C_in/groups \* K \* BM"):
        layer_gemm.backward_gemm(p, None, None, None, None, None, None, Launch(block=32))


def test_the_tunables_reach_the_kernels_from_one_place():
    """layer_gemm.cu has no defaults: BK, TX and PAD come from gpu/cupy/tunables.py, as the launcher's."""
    code = layer_gemm.SOURCE.read_text()
    defines = tunables.defines_for(layer_gemm.SOURCE)
    for name, value in (("LAYER_BK", layer_gemm.BK), ("LAYER_TX", layer_gemm.TX), ("LAYER_PAD", layer_gemm.PAD)):
        assert f"#define {name}" not in code and defines[name] == value


@needs_nvrtc
@pytest.mark.parametrize("arch", [pytest.param(a, marks=[] if a == max(nvrtc.ARCHS) else pytest.mark.exhaustive)
                                  for a in nvrtc.ARCHS])  # make test: sm_90 (the H100 and H200)
def test_nvrtc_no_spills_within_launch_bounds(arch):
    """Every instantiation, compiled with the launcher's -D options: no spills, registers times the launch
    bound (the largest accepted block) within the 64K-register file; static shared memory none, so the
    dynamic request (<= 48 KB, above) is all."""
    code = layer_gemm.SOURCE.read_text()
    log, lowered = nvrtc.compile_log(code, layer_gemm.NAMES, arch, tunables.compile_options(layer_gemm.SOURCE),
                                           "layer_gemm.cu")
    rows = {r.kernel: r for r in nvrtc.parse_ptxas(log, lowered, "layer_gemm.cu")}
    assert set(rows) == set(layer_gemm.NAMES)
    for name, r in rows.items():
        print(r)
        assert r.spill_stores == 0 and r.spill_loads == 0, r
        bound = int(re.search(r"(\d+)>$", name)[1]) if name.count(",") >= 3 else 1024
        assert r.registers * bound <= 65536, r
        assert r.shared == 0, r


# --- the static model (plots/model/layer.py) ------------------------------------------------------------

def _sass_problem():
    from plots.model import resources

    if problem := nvrtc.nvrtc_problem():
        return f"NVRTC: {problem}"
    if not (resources.find_tool("nvdisasm") or resources.find_tool("cuobjdump")):
        return "neither nvdisasm nor cuobjdump found (pip install nvidia-cuda-nvdisasm)"
    return None


@pytest.mark.skipif(_sass_problem() is not None, reason=str(_sass_problem()))
@pytest.mark.exhaustive
def test_model_of_the_target_layer():
    """By the static model (H100 SXM, float32, N=8, C 64 -> 128, L=4096, K=3, block 128): gemm reaches >= 50%
    of the FP32 FMA peak forward and >= 35% backward, several times direct; the chunk loop found in each gemm
    kernel's SASS holds the BK*TM*TN FMAs of one chunk."""
    from plots.model import layer as layer_model
    from plots.model.devices import H100_SXM

    sizes = layer_model.SHAPES["N8 C64->128 L4096 K3"]
    got = {(v, op): layer_model.predict("cupy", v, op, sizes, "float32", H100_SXM, 128)
           for v in ("direct", "gemm") for op in (FORWARD, BACKWARD)}
    for (v, op), r in got.items():
        print(v, op, f"{r['peak_fraction']:.1%}", [(lp["kernel"], lp["bound"]) for lp in r["launches"]])
    assert got["gemm", FORWARD]["peak_fraction"] >= 0.5
    assert got["gemm", BACKWARD]["peak_fraction"] >= 0.35
    for op in (FORWARD, BACKWARD):
        assert got["gemm", op]["peak_fraction"] > 3 * got["direct", op]["peak_fraction"]
    TM, TN = layer_gemm.TILE["float"]
    for r in (got["gemm", FORWARD], got["gemm", BACKWARD]):
        for lp in r["launches"]:
            if "chunk_fma" in lp:
                assert lp["chunk_fma"] == layer_gemm.BK * TM * TN, lp
