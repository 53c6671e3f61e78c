"""The numba_cuda layer's `gemm` variant (gpu/numba_cuda/layer_gemm.py) beyond the registry-wide matrix of
tests/test_layer.py, tests/test_gpu_backends.py and tests/test_torch_oracle.py: a shape matrix against the
float64 reference (stride 1-3, padding, dilation 1-2, groups 1/2/depthwise, no bias, sizes that are not
multiples of the tile, N = 1, L_out = 1, several tiles and a capped grid), strided device inputs (the
kernels read dense copies flat), the residue classes of dx, a
backward that repeats to the bit, an Inf in w through the masked dx, launches refused with a clear
error, and the real compile of every gemm kernel (no spills, registers and shared memory within limits).

Under the simulator the layers are tiny; block=32 keeps several channel tiles and thread rows busy.
"""

# ruff: noqa: E741  (l is the output position, as in the formulas)
import re

import numpy as np
import pytest
from conftest import STATE_MARKS

import kernels
from gpu import launch as plan
from kernels import compare
from kernels.layer import LayerProblem
from kernels.spec import OPS
from plots.model import resources

STATUS = kernels.status("numba_cuda")
pytestmark = [pytest.mark.skipif(not STATUS.usable, reason=f"numba_cuda: {STATUS.reason}"),
              *([STATE_MARKS[STATUS.state]] if STATUS.state in STATE_MARKS else [])]

FORWARD, BACKWARD = "conv1d_layer", "conv1d_layer_backward"

#: (sizes, launch options): each a corner of the index math, all with C or L off the tile sizes.
CASES = {
    "s1-pad1-bias": (dict(N=2, C_in=3, C_out=5, L=37, K=3, padding=1), {"block": 32}),
    "s2-dil2-groups2": (dict(N=1, C_in=4, C_out=6, L=29, K=3, stride=2, padding=2, dilation=2, groups=2),
                        {"block": 32}),
    "s3-depthwise-nobias": (dict(N=2, C_in=4, C_out=4, L=23, K=2, stride=3, padding=1, groups=4, bias=False),
                            {"block": 32, "per_thread": 1}),
    "s3-dil2-K4": (dict(N=1, C_in=2, C_out=3, L=31, K=4, stride=3, padding=3, dilation=2), {"block": 64}),
    "N1-Lout1": (dict(N=1, C_in=3, C_out=2, L=6, K=5, stride=2, padding=0, bias=False), {"block": 32}),
    # 3 position tiles of 128, 2 channel tiles of 16 (per_thread 4: 8 channels per thread), grid capped at 2
    "tiles-capped-grid": (dict(N=1, C_in=2, C_out=20, L=300, K=3, padding=1),
                          {"block": 32, "per_thread": 4, "max_blocks": 2}),
}


def get(op_name, **options):
    return kernels.get(op_name, "numba_cuda", "gemm", **options)


def make_args(op_name, rng, dtype, sizes):
    sizes = dict(sizes)
    bias = sizes.pop("bias", True)
    args, kwargs = OPS[op_name].make_args(rng, dtype, **sizes)
    if not bias:
        if op_name == FORWARD:
            args = args[:2]
        else:
            kwargs = {**kwargs, "has_bias": False}
    return args, kwargs


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op_name", [FORWARD, BACKWARD])
@pytest.mark.parametrize("case", list(CASES))
def test_matches_the_float64_reference(case, op_name, dtype, rng):
    sizes, options = CASES[case]
    args, kwargs = make_args(op_name, rng, dtype, sizes)
    if case == "N1-Lout1":
        assert OPS[op_name].parse(*args, **kwargs)[0].L_out == 1
    print(*compare.assert_close(op_name, get(op_name, **options)(*args, **kwargs), args, kwargs), sep="\n")


@pytest.mark.parametrize("op_name", [FORWARD, BACKWARD])
def test_strided_device_inputs_give_device_outputs(op_name, rng):
    """Inputs that are device views of every other element (not contiguous) are made dense before the
    kernels read them flat; the results stay on the device."""
    from numba import cuda
    from numba.cuda.cudadrv import devicearray

    args, kwargs = OPS[op_name].make_args(rng, np.float32, N=2, C_in=4, C_out=6, L=21, K=3, stride=2, padding=1,
                                          groups=2)
    views = []
    for a in args:
        big = np.full(tuple(2 * s for s in a.shape), np.nan, a.dtype)
        big[tuple(slice(None, None, 2) for _ in a.shape)] = a
        views.append(cuda.to_device(big)[tuple(slice(None, None, 2) for _ in a.shape)])
    got = get(op_name, block=32)(*views, **kwargs)
    outs = (got,) if OPS[op_name].single else tuple(got)
    assert all(devicearray.is_cuda_ndarray(o) for o in outs)
    compare.assert_close(op_name, got, args, kwargs)


@pytest.mark.parametrize("sizes", [dict(L=29, K=3, stride=2, padding=2, dilation=2),
                                   dict(L=31, K=4, stride=3, padding=3, dilation=2),
                                   dict(L=30, K=5, stride=4, padding=1, dilation=6),
                                   dict(L=3, K=2, stride=5, padding=4, dilation=1)])
def test_residue_classes_cover_every_product_of_dx_once(sizes):
    """Each (j, t, l) with l*stride + t*dilation - padding = j, 0 <= j < L, 0 <= l < L_out, is exactly one
    term of one residue class: j = r + stride*m, tap t = K-1-(tap0 + k*t_step), l = m + k*d' - padding'."""
    from gpu.numba_cuda.layer_gemm import residue_classes

    p = LayerProblem(N=1, C_in=1, C_out=1, dtype=np.dtype(np.float64), **sizes)
    want = {(l * p.stride + t * p.dilation - p.padding, t, l) for l in range(p.L_out) for t in range(p.K)
            if 0 <= l * p.stride + t * p.dilation - p.padding < p.L}
    step = p.stride // np.gcd(p.stride, p.dilation)
    d = p.dilation // np.gcd(p.stride, p.dilation)
    got = []
    for r, Kc, tap0, padding, Lc in residue_classes(p):
        for m in range(Lc):
            for k in range(Kc):
                l = m + k * d - padding
                if 0 <= l < p.L_out:
                    got.append((r + p.stride * m, p.K - 1 - (tap0 + k * step), l))
    assert len(got) == len(set(got)) and set(got) == want


def test_backward_repeats_to_the_bit(rng):
    """dx, dw and db are the same bits on every run and with the grid capped at 2 blocks: the split-K
    chunks depend on the sizes and the launch shape only, and each is added in a fixed order."""
    args, kwargs = OPS[BACKWARD].make_args(rng, np.float32, N=3, C_in=4, C_out=6, L=70, K=3, stride=2, padding=1,
                                           groups=2)
    runs = [get(BACKWARD, **options)(*args, **kwargs)
            for options in ({"block": 32}, {"block": 32}, {"block": 32, "max_blocks": 2})]
    for run in runs[1:]:
        for name, a, b in zip(("dx", "dw", "db"), runs[0], run, strict=True):
            np.testing.assert_array_equal(a, b, err_msg=name)
    compare.assert_close(BACKWARD, runs[0], args, kwargs)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # 0 * Inf in the reference
def test_an_inf_in_w_reaches_dx_through_the_masked_kernel(rng):
    """A non-finite w takes the masked dx, which skips g's padding instead of multiplying it: dx keeps the
    reference's Inf (w * 0 would be NaN) on the edges, for a stride whose classes have several taps."""
    args, kwargs = OPS[BACKWARD].make_args(rng, np.float64, N=1, C_in=2, C_out=3, L=19, K=3, stride=2, padding=2)
    w = args[1].copy()
    w[1, 0, 0] = np.inf
    args = (args[0], w, *args[2:])
    ref = compare.reference(BACKWARD, args, kwargs)[2][0]
    assert np.isinf(ref).any()
    report = compare.compare(BACKWARD, get(BACKWARD, block=32)(*args, **kwargs), args, kwargs)
    assert all(m.ok for m in report), [str(m) for m in report]


@pytest.mark.parametrize("op_name", [FORWARD, BACKWARD])
def test_a_block_over_the_gemm_limit_is_refused(op_name, rng):
    from gpu.numba_cuda.layer_gemm import GEMM_MAX_BLOCK

    args, kwargs = OPS[op_name].make_args(rng, np.float32, N=1, C_in=2, C_out=2, L=10, K=3)
    with pytest.raises(ValueError, match=f"block: .* at most {GEMM_MAX_BLOCK}"):
        get(op_name, block=2 * GEMM_MAX_BLOCK)(*args, **kwargs)


def test_a_stride_too_wide_for_shared_memory_is_refused():
    """float64, stride 64: even one tap's x window (127*64 + 1 values per channel) overflows shared memory."""
    with pytest.raises(ValueError, match=r"shared memory") as info:
        get(FORWARD, block=32)(np.ones((1, 1, 9000)), np.ones((1, 1, 3)), stride=64)
    assert "stride=64" in str(info.value) and "block=32" in str(info.value)


@pytest.mark.skipif(resources.toolchain_problem() is not None,
                    reason=f"real compile: {resources.toolchain_problem()}")
@pytest.mark.exhaustive  # every accepted launch: minutes with a cold cache (make test-all); the default launch of
# every kernel is compiled by make test (tests/test_gpu_compile.py)
def test_every_gemm_kernel_compiles_for_real_without_spills_within_limits():
    """Every gemm kernel at every block and micro-tile it may be launched with, for sm_80 and sm_90 and both
    dtypes (plots.model.resources, cached): no spill, registers x threads within the register file, static
    shared memory within 48 KB; and the defaults (block 128) are among them."""
    from gpu.numba_cuda.layer_gemm import GEMM_MAX_BLOCK, RM_MAX

    rows = [r for r in resources.run() if r["kernel"].startswith("layer_gemm.")]
    bad = resources.failures(rows)
    assert not bad, "\n".join(bad)
    blocks = {b for b in plan.BLOCKS if b <= GEMM_MAX_BLOCK}
    for name in ("conv_kernel", "weight_grad_kernel"):
        for dtype, itemsize in (("float32", 4), ("float64", 8)):
            for rm in (RM_MAX[itemsize] // 2, RM_MAX[itemsize]):
                got = {b for r in rows if r["kernel"].startswith(f"layer_gemm.{name}[") and r["dtype"] == dtype
                       and re.search(r"RM=(\d+)", r["kernel"])[1] == str(rm) for b in r["blocks"]}
                assert got == blocks, (name, dtype, rm)
    assert {r["kernel"].split("[")[0] for r in rows if r["default"]} == {"layer_gemm.conv_kernel",
                                                                         "layer_gemm.weight_grad_kernel"}
