"""Behaviour both GPU backends (numba_cuda, cupy) share beyond the common matrix, written once and run
for each: variants, block sizes, grid-stride loops, launch options, deterministic and atomic reductions,
the zero padding of the 1-D input gradient and of the layer; large n on a real GPU (`pytest -m gpu`),
where cupy's results are also compared with the emulator's for the same gpu/cupy/correlate.cu.

Under numba's simulator and the emulator the sizes are small, but with small blocks every input spans
several blocks. Backend-specific tests stay in tests/test_numba_cuda*.py and tests/test_cupy.py.
"""

import numpy as np
import pytest
from conftest import STATE_MARKS, _keywords, call_args

import kernels
from kernels import compare, registry
from kernels.backend import HostArrays
from kernels.spec import OPS

BACKENDS = ("numba_cuda", "cupy")
SMALL = {"numba_cuda": {"block": 32, "per_thread": 1}, "cupy": {"block": 32}}
ONE_D = [op for op in OPS if OPS[op].family in ("conv1d", "circular")]
REDUCTIONS = ["conv1d_weight_grad", "conv1d_bias_grad"]


def status(name):
    return kernels.status(name)


def marks_for(name):
    st = status(name)
    return [pytest.mark.skipif(not st.usable, reason=f"{name}: {st.reason}"),
            *([STATE_MARKS[st.state]] if st.state in STATE_MARKS else [])]


def backend_params():
    return [pytest.param(name, marks=marks_for(name), id=name) for name in BACKENDS]


def per_backend(table):
    """pytest params (backend, *case) from {backend: [case, ...]}, each marked for its backend."""
    return [pytest.param(name, *case, marks=marks_for(name), id="-".join(map(str, (name, *case))))
            for name, cases in table.items() for case in cases]


def get(backend, op, variant="tiled", **options):
    return kernels.get(op, backend, variant, **options)


def outputs(op_name, got):
    return (got,) if OPS[op_name].single else tuple(got)


@pytest.mark.parametrize("backend, states", per_backend({"numba_cuda": [("real GPU|simulated",)],
                                                          "cupy": [("real GPU|emulated",)]}))
def test_status_says_where_the_kernels_run(backend, states):
    st = status(backend)
    assert st.state in states.split("|") and st.reason, st


@pytest.mark.parametrize("backend", backend_params())
def test_every_1d_op_has_naive_tiled_and_auto_and_reductions_an_atomic_variant(backend):
    """The base rungs exist for every 1-D op; every declared step registers each op it implements, a forward
    step (a correlation engine) all of them; auto is the default and the only method besides direct."""
    from gpu.steps import FORWARD_OPS

    steps = [s for s in registry.steps(backend) if set(s.impls) & set(ONE_D)]
    for op in ONE_D:
        must = {"naive", "tiled", "auto"} | ({"atomic"} if op in REDUCTIONS else set())
        have = set(kernels.variants(op, backend))
        assert must <= have, op
        assert have == {s.variant for s in steps if op in s.impls}, op
        assert registry.backend(backend).defaults[op] == "auto"
        assert all(registry.backend(backend).method(op, v) == ("auto" if v == "auto" else "direct") for v in have)
    for s in steps:
        if "conv1d" in s.impls:
            assert set(FORWARD_OPS) <= set(s.impls), s.variant
    assert "NOT deterministic" in kernels.variants("conv1d_weight_grad", backend)["atomic"]


# (op, n, k) per block size: correlation tiles (cupy: k > 256, several filter chunks), weight-gradient
# splits over several warps, bias sums over several blocks
BLOCK_CASES = {
    "numba_cuda": [(block, op, n, k) for block in (32, 64, 128) for op, n, k in
                   [("conv1d", 300, 5), ("conv1d_input_grad", 300, 40), ("conv1d_weight_grad", 700, 20),
                    ("conv1d_bias_grad", 4500, 1)]],
    "cupy": [(block, op, n, k) for block in (32, 64, 256, 1024) for op, n, k in
             [("conv1d", 300, 5), ("conv1d_input_grad", 700, 300), ("conv1d_weight_grad", 1300, 150),
              ("conv1d_bias_grad", 4500, 1), ("circular_correlate_backward", 100, 1)]],
}
#: Extra options of the block-size test: one output per thread, so that blocks hold fewer outputs.
BLOCK_OPTIONS = {"numba_cuda": {"per_thread": 1}, "cupy": {}}


@pytest.mark.parametrize("backend, block, op_name, n, k", per_backend(BLOCK_CASES))
@pytest.mark.parametrize("variant", ["naive", "tiled"])
def test_block_sizes(backend, variant, op_name, n, k, block, rng):
    """Every block size gives the reference on inputs spanning several blocks (and warps)."""
    args, kwargs = call_args(op_name, rng, np.float64, (n, k), flip="flip" in _keywords(op_name))
    got = get(backend, op_name, variant, block=block, **BLOCK_OPTIONS[backend])(*args, **kwargs)
    print(*compare.assert_close(op_name, got, args, kwargs))


# (op, n, k): several times more tiles, blocks, tap tiles and j chunks than the 2 blocks allowed
STRIDE_CASES = [("conv1d", 600, 45), ("conv1d_weight_grad", 1200, 300), ("conv1d_bias_grad", 1200, 1),
                ("circular_correlate", 90, 1)]


@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize("op_name, n, k", STRIDE_CASES)
@pytest.mark.parametrize("variant", ["naive", "tiled"])
def test_grid_stride_loops(backend, variant, op_name, n, k, rng):
    """With the grid capped at 2 blocks, each block strides over the rest of the work."""
    args, kwargs = call_args(op_name, rng, np.float32, (n, k))
    got = get(backend, op_name, variant, max_blocks=2, **SMALL[backend])(*args, **kwargs)
    compare.assert_close(op_name, got, args, kwargs)


#: n of the reduction tests (k = 17): several j splits and block sums at block=64.
REDUCTION_N = {"numba_cuda": 1100, "cupy": 2100}


@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize("op_name", [*REDUCTIONS, "conv1d_relu_backward"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tiled_reductions_are_deterministic(backend, op_name, dtype, rng):
    """Two-pass sums with a fixed grid: repeated runs agree to the bit."""
    args, kwargs = call_args(op_name, rng, dtype, (REDUCTION_N[backend], 17))
    runs = [outputs(op_name, get(backend, op_name, block=64)(*args, **kwargs)) for _ in range(3)]
    for run in runs[1:]:
        for name, a, b in zip(OPS[op_name].outputs, runs[0], run, strict=True):
            assert np.array_equal(a, b), f"{op_name} ({name}): repeated runs differ"


@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize("op_name", REDUCTIONS)
def test_atomic_variant_repeats_within_tolerance(backend, op_name, rng):
    """atomic is not deterministic: every repeat must still match the reference, and each other."""
    args, kwargs = call_args(op_name, rng, np.float32, (REDUCTION_N[backend], 17))
    runs = [get(backend, op_name, "atomic", block=64)(*args, **kwargs) for _ in range(3)]
    for r in runs:
        compare.assert_close(op_name, r, args, kwargs)
    spread = max(float(np.max(np.abs(r - runs[0]))) for r in runs)
    print(f"{op_name}[atomic]: max difference between repeats {spread:.3g}")


BAD_OPTIONS = {
    "numba_cuda": [({"block": 48}, ValueError, ["block", "power of two", "48"]),
                   ({"per_thread": 0}, ValueError, ["per_thread", "positive"]),
                   ({"blocks": 2}, TypeError, ["unknown", "blocks"]),
                   ({"block": 1024, "per_thread": 8}, ValueError, ["shared memory", "block=1024"])],
    "cupy": [({"block": 48}, ValueError, ["block", "power of two", "48"]),
             ({"max_blocks": 0}, ValueError, ["max_blocks", "positive"]),
             ({"per_thread": 2}, TypeError, ["unknown", "per_thread"])],
}


@pytest.mark.parametrize("backend, options, error, words", per_backend(BAD_OPTIONS))
def test_bad_launch_options_are_rejected(backend, options, error, words):
    with pytest.raises(error) as info:
        get(backend, "conv1d", **options)(np.ones(10), np.ones(3))
    assert all(w in str(info.value) for w in words), str(info.value)


@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize("variant", ["naive", "tiled"])
def test_inf_in_the_filter_does_not_touch_the_padding(backend, variant, rng):
    """The 1-D input gradient skips the zero padding: an Inf tap gives Inf where the reference has Inf
    and finite values elsewhere (Inf * 0 would put NaN at the edges)."""
    w, g = rng.standard_normal(40), rng.standard_normal(200)
    w[3] = np.inf
    got = get(backend, "conv1d_input_grad", variant, **SMALL[backend])(w, g)
    report = compare.compare("conv1d_input_grad", got, (w, g))
    assert all(m.ok for m in report), report
    assert np.isfinite(got).sum() == 39 and not np.isnan(got).any()


# --- the conv1d layer ------------------------------------------------------------------------------

FORWARD, BACKWARD = "conv1d_layer", "conv1d_layer_backward"
#: Several blocks of y, dx and (chunk, column) pairs at block=32; stride, padding, dilation and groups.
LAYER = dict(N=2, C_in=4, C_out=6, L=40, K=3, stride=2, padding=2, dilation=2, groups=2)


def layer_params(op_name):
    return [pytest.param(name, variant, marks=marks_for(name), id=f"{name}-{variant}")
            for name in BACKENDS for variant in (kernels.variants(op_name, name) or ["unavailable"])]


def determinism_params():
    """layer_params(BACKWARD); numba_cuda's gemm under the simulator (~20 s) in make test-all only: make test
    has its repeat and capped grid in tests/test_numba_layer_gemm.py (test_backward_repeats_to_the_bit)."""
    slow = {"numba_cuda-gemm"} if status("numba_cuda").state == "simulated" else set()
    return [pytest.param(*p.values, id=p.id, marks=[*p.marks, *[pytest.mark.exhaustive] * (p.id in slow)])
            for p in layer_params(BACKWARD)]


@pytest.mark.parametrize("backend, variant", determinism_params())
def test_layer_dw_and_db_are_deterministic(backend, variant, rng):
    """dw and db repeat to the bit, and a grid capped at 2 blocks adds in the same order: the chunks of
    (n, l) depend on the sizes and the block size, not on the grid."""
    args, kwargs = OPS[BACKWARD].make_args(rng, np.float32, **{**LAYER, "N": 3, "L": 100, "stride": 1})
    runs = [get(backend, BACKWARD, variant, **options)(*args, **kwargs)[1:]
            for options in ({"block": 32}, {"block": 32}, {"block": 32, "max_blocks": 2})]
    for run in runs[1:]:
        for name, a, b in zip(("dw", "db"), runs[0], run, strict=True):
            np.testing.assert_array_equal(a, b, err_msg=name)
    compare.assert_close(BACKWARD, get(backend, BACKWARD, variant, block=32)(*args, **kwargs), args, kwargs)


# (op, where, value): a non-finite value in w (forward and backward) or in grad_out (backward)
IEEE_CASES = [(op, "w", v) for op in (FORWARD, BACKWARD) for v in (np.inf, -np.inf, np.nan)] + \
    [(BACKWARD, "grad_out", np.inf)]
IEEE_LAYERS = [dict(N=1, C_in=2, C_out=2, L=11, K=3, padding=2),
               dict(N=2, C_in=2, C_out=4, L=13, K=3, stride=2, padding=3, dilation=2, groups=2),
               dict(N=1, C_in=2, C_out=2, L=4, K=2, padding=5)]  # every tap of the first outputs on the padding


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # 0 * Inf, on purpose
@pytest.mark.parametrize("sizes", IEEE_LAYERS, ids=["padding2", "strided-dilated-grouped", "padding5-K2"])
@pytest.mark.parametrize("op_name, where, value", IEEE_CASES, ids=lambda v: str(v))
@pytest.mark.parametrize("backend", backend_params())
def test_layer_zero_padding_multiplies_like_zeros(backend, op_name, where, value, sizes, rng):
    """With padding > 0 a padded position is a zero that is multiplied, as in torch and the reference:
    an Inf or NaN in tap 0 of w gives NaN (0 * Inf) in y where it meets the padding (output l = 0), and
    an Inf in grad_out at l = 0 gives NaN in dw[:, :, 0], whose tap reads the padding there. dx has no
    padded terms: there the Inf must stay an Inf (the tiled dx must not multiply the zeros it inserts).
    Every variant, every output, NaN and Inf where the reference has them."""
    args, kwargs = OPS[op_name].make_args(rng, np.float64, **sizes)
    args = list(args)
    i = 1 if where == "w" else 2  # w (C_out, C_in/groups, K) or grad_out (N, C_out, L_out)
    a = args[i].copy()
    a[int(rng.integers(a.shape[0])), int(rng.integers(a.shape[1])), 0] = value
    args[i] = a
    ref = outputs(op_name, compare.reference(op_name, args, kwargs)[2])
    if op_name == BACKWARD and where == "w":
        assert not np.isfinite(ref[0]).all(), "the non-finite tap must reach dx"
    else:
        assert any(np.isnan(r).any() for r in ref), "the case must put a NaN from the padding in the reference"
    for variant in kernels.variants(op_name, backend):
        got = get(backend, op_name, variant, **SMALL[backend])(*args, **kwargs)
        report = compare.compare(op_name, got, args, kwargs)
        assert all(m.ok for m in report), f"{backend}:{variant}: {[str(m) for m in report]}"


# --- real GPU only (pytest -m gpu) ---------------------------------------------------------------

def gpu_only(backend):
    st = status(backend)
    return pytest.mark.skipif(st.state != "real GPU",
                              reason=f"no CUDA device: {backend} is {st.state} ({st.reason})")


def gpu_params(table):
    """per_backend(table), each also skipped where its backend has no real GPU, and marked gpu."""
    return [pytest.param(*p.values, marks=[*p.marks, gpu_only(p.values[0]), pytest.mark.gpu], id=p.id)
            for p in per_backend(table)]


def to_device(backend, args):
    if backend == "cupy":
        import cupy

        return tuple(cupy.asarray(a) if isinstance(a, np.ndarray) else a for a in args)
    from numba import cuda

    return tuple(cuda.to_device(a) if isinstance(a, np.ndarray) else a for a in args)


#: n of the large tests: > 1e7 for numba_cuda; cupy repeats each case on the emulator, so smaller.
LARGE = {"numba_cuda": 10_000_019, "cupy": 1_000_003}
LARGE_CIRCULAR = {"numba_cuda": 32_771, "cupy": 8_191}


def large_cases():
    """(op, variant, k, dtype): every variant at k=31 in both dtypes, and tiled at k=257."""
    cases = [(v, 31, d) for v in ("naive", "tiled", "atomic") for d in ("float32", "float64")]
    cases += [("tiled", 257, "float32")]
    return {name: [(op, v, k, d) for op in ONE_D if OPS[op].family == "conv1d" for v, k, d in cases
                   if v != "atomic" or op in REDUCTIONS]
            for name in BACKENDS}


def on_emulator(monkeypatch, op_name, variant, args, kwargs):
    """The same cupy op and variant run by gpu.emu on the same gpu/cupy/correlate.cu, with NumPy arrays."""
    from gpu import emu
    from gpu.cupy import backend as cupy_backend
    from gpu.cupy import tunables
    from gpu.cupy.loader import declared_names

    problem = emu.toolchain_problem()
    if problem:
        pytest.skip(f"no emulator to compare with: {problem}")
    code = cupy_backend.SOURCE.read_text()
    options = tunables.options(tunables.defines_for(cupy_backend.SOURCE))
    mod = emu.Module(code, declared_names(code), options, filename=cupy_backend.SOURCE.name)
    with monkeypatch.context() as m:
        m.setattr(cupy_backend, "module", lambda: mod)
        m.setattr(cupy_backend.backend, "arrays", HostArrays())
        return get("cupy", op_name, variant)(*args, **kwargs)


def assert_same_as_emulator(op_name, got, emulated, args, kwargs):
    """GPU and emulator outputs agree within twice the op's tolerance (nvcc fuses a*b+c, g++ does not)."""
    p, _, _, mag = compare.reference(op_name, args, kwargs)
    rtol, atol = compare.tolerance(op_name, p, p.dtype)
    for name, g, e, mg in zip(OPS[op_name].outputs, outputs(op_name, got), outputs(op_name, emulated), mag,
                              strict=True):
        g, e = compare.to_host(g).astype(np.float64), e.astype(np.float64)
        finite = np.isfinite(e)
        assert np.array_equal(np.isfinite(g), finite), f"{name}: non-finite elements differ"
        err = np.abs(g - e)[finite]
        assert (err <= 2 * (atol + rtol * mg[finite])).all(), f"{name}: GPU vs emulator, max diff {err.max()}"


@pytest.mark.parametrize("backend, op_name, variant, k, dtype", gpu_params(large_cases()))
def test_large_n_on_gpu(backend, op_name, variant, k, dtype, rng, monkeypatch):
    args, kwargs = call_args(op_name, rng, np.dtype(dtype), (LARGE[backend], k),
                             flip="flip" in _keywords(op_name))
    got = get(backend, op_name, variant)(*to_device(backend, args), **kwargs)
    print(*compare.assert_close(op_name, got, args, kwargs))
    if backend == "cupy":
        emulated = on_emulator(monkeypatch, op_name, variant, args, kwargs)
        assert_same_as_emulator(op_name, got, emulated, args, kwargs)


@pytest.mark.parametrize("backend, op_name, variant", gpu_params(
    {name: [(op, v) for op in ("circular_correlate", "circular_correlate_backward") for v in ("naive", "tiled")]
     for name in BACKENDS}))
def test_large_circular_on_gpu(backend, op_name, variant, rng, monkeypatch):
    args, kwargs = call_args(op_name, rng, np.float32, (LARGE_CIRCULAR[backend], 1))
    got = get(backend, op_name, variant)(*to_device(backend, args))
    print(*compare.assert_close(op_name, got, args, kwargs))
    if backend == "cupy":
        emulated = on_emulator(monkeypatch, op_name, variant, args, kwargs)
        assert_same_as_emulator(op_name, got, emulated, args, kwargs)
