"""The static performance model's parts on fixtures with known answers: sectors per warp request of a
coalesced and a strided copy (plots.model.traffic), the FMA count of a loop read from SASS, occupancy, the bounds;
and `python -m plots.model.oned` covering every GPU kernel."""

from __future__ import annotations

import numpy as np
import pytest
from numba import cuda

from gpu.cupy import nvrtc
from kernels import registry
from plots.model import devices, oned, resources, sass

NVRTC = nvrtc.nvrtc_problem()
DISASM = None if resources.find_tool("nvdisasm") or resources.find_tool("cuobjdump") else \
    "neither nvdisasm nor cuobjdump (pip install nvidia-cuda-nvdisasm)"


def simulator_problem():
    from numba import config

    return None if config.ENABLE_CUDASIM else "plots.model.traffic runs under numba's CUDA simulator only"


# --- counted accesses ---------------------------------------------------------------------------------------

@cuda.jit
def copy(src, dst):  # dst[i] = src[i]: 32 consecutive words per warp
    i = cuda.grid(1)
    if i < dst.shape[0]:
        dst[i] = src[i]


@cuda.jit
def strided_copy(src, dst, s):  # dst[i] = src[i*s]: every lane in its own sector for s >= 8 floats
    i = cuda.grid(1)
    if i < dst.shape[0]:
        dst[i] = src[i * s]


@pytest.mark.cudasim
@pytest.mark.parametrize("dtype, coalesced, strided", [(np.float32, 4, 32), (np.float64, 8, 32)])
def test_sectors_per_request_of_a_coalesced_and_a_strided_copy(dtype, coalesced, strided):
    if problem := simulator_problem():
        pytest.skip(problem)
    from plots.model import traffic

    rng = np.random.default_rng()
    src, dst = rng.standard_normal(64 * 32).astype(dtype), np.full(64, np.nan, dtype)
    with traffic.recording() as log:
        copy[2, 32](src, dst)
    got = traffic.count(log)
    assert np.array_equal(dst, src[:64])
    assert got["load"] == {"requests": 2, "sectors": 2 * coalesced, "sectors_per_request": coalesced,
                           "bytes": 64 * src.itemsize, "unique_bytes": 64 * src.itemsize}
    assert got["store"]["sectors_per_request"] == coalesced
    with traffic.recording() as log:
        strided_copy[2, 32](src, dst, 32)
    got = traffic.count(log)
    assert np.array_equal(dst, src[::32])
    assert got["load"]["requests"] == 2 and got["load"]["sectors_per_request"] == strided
    assert got["load"]["unique_bytes"] == 64 * traffic.SECTOR  # 32 bytes moved for each 4 or 8 used
    assert got["store"]["sectors_per_request"] == coalesced


def test_count_groups_lanes_by_warp_and_program_point():
    from plots.model import traffic

    site = ("f.py", 10, 1, "load")
    # warp 0: 32 lanes at one site, 4-byte words 0..31 -> 4 sectors; warp 1: a broadcast -> 1 sector
    log = [((0,), 0, site, 0, "load", 4 * lane, 4, 1) for lane in range(32)]
    log += [((0,), 1, site, 0, "load", 0, 4, 1) for _ in range(32)]
    got = traffic.count(log)["load"]
    assert got["requests"] == 2 and got["sectors"] == 5 and got["unique_bytes"] == 128


# --- SASS ---------------------------------------------------------------------------------------------------

FMA_LOOP = r"""
// 8 dependent FMAs per trip of a loop that is not unrolled: the hot loop holds exactly 8 FFMA.
extern "C" __global__ void fma_loop(const float* x, float* y, int n) {
  float a = x[threadIdx.x], b = x[threadIdx.x + 32], c = x[threadIdx.x + 64];
#pragma unroll 1
  for (int i = 0; i < n; ++i) {
#pragma unroll
    for (int j = 0; j < 8; ++j) a = fmaf(a, b, c);
    b = x[i];
  }
  y[threadIdx.x] = a;
}
"""


@pytest.mark.skipif(NVRTC is not None or DISASM is not None, reason=str(NVRTC or DISASM))
@pytest.mark.parametrize("arch", resources.ARCHS)
def test_hot_loop_fma_count_is_read_from_sass(arch):
    _, cubin, _ = nvrtc.compile_log(FMA_LOOP, [], arch, cubin=True)
    funcs = sass.sass_functions(resources.sass(cubin))
    loop = sass.hot_loop(funcs["fma_loop"])
    print(loop)
    assert loop["fma"] == 8 and loop["ldg"] == 1 and loop["lds"] == 0
    assert 8 / loop["instructions"] == pytest.approx(loop["fma_per_instruction"])
    assert loop["fma_per_instruction"] < 1  # the branch, the counter and the load issue too


def test_hot_loop_picks_the_innermost_loop_with_the_most_fmas():
    text = """
.text.k:
        /*0000*/                   MOV R1, c[0x0][0x28] ;
.L_x_0:
        /*0010*/                   LDG.E R2, desc[UR4][R4.64] ;
.L_x_1:
        /*0020*/                   FFMA R3, R2, R2, R3 ;
        /*0030*/                   LDS R5, [R6] ;
        /*0040*/                   FFMA R3, R5, R2, R3 ;
        /*0050*/               @P0 BRA `(.L_x_1) ;
        /*0060*/               @P1 BRA `(.L_x_0) ;
        /*0070*/                   EXIT ;
"""
    loop = sass.hot_loop(sass.sass_functions(text)["k"])
    assert loop["loop"] == [0x20, 0x50]
    assert (loop["instructions"], loop["fma"], loop["lds"], loop["ldg"]) == (4, 2, 1, 0)
    assert loop["lds_per_fma"] == 0.5 and loop["fma_per_instruction"] == 0.5


# --- occupancy and bounds -----------------------------------------------------------------------------------

@pytest.mark.parametrize("registers, block, shared, blocks, limiter", [
    (32, 128, 0, 16, "threads"),        # 2048 threads per SM
    (128, 128, 0, 4, "registers"),      # 128 x 32 x 4 warps = 16384 registers per block
    (33, 1024, 0, 1, "registers"),      # 33 -> 40 per thread (units of 256 per warp): 40960 per block
    (32, 64, 100 << 10, 2, "shared"),   # 228 KB / (100 KB + 1 KB reserved)
    (16, 32, 0, 32, "blocks"),
])
def test_occupancy(registers, block, shared, blocks, limiter):
    got = devices.occupancy(devices.H100_SXM, registers, block, shared)
    assert got["blocks_per_sm"] == blocks and got["limiter"] == limiter
    assert got["occupancy"] == pytest.approx(blocks * block / 32 / 64)


def test_device_peaks_match_their_datasheets():
    assert devices.H100_SXM.fp32_gflops == pytest.approx(66900, rel=0.01)
    assert devices.H100_SXM.fp64_gflops == pytest.approx(33450, rel=0.01)
    assert devices.A100.fp32_gflops == pytest.approx(19500, rel=0.01)
    assert devices.H200.hbm_gbs / devices.H100_SXM.hbm_gbs == pytest.approx(4.8 / 3.35)


#: (backend, variant) -> the step declared for it.
STEP = {(b, s.variant): s for b in ("cupy", "numba_cuda") for s in registry.steps(b)}


def _row(fma_per_instruction, lds_per_fma):
    return {"registers": 32, "shared": 0, "dynamic_shared": 0,
            "hot_loop": {"fma_per_instruction": fma_per_instruction, "lds_per_fma": lds_per_fma}}


def test_a_streaming_kernel_is_bound_by_hbm_and_a_dense_one_by_its_instruction_mix():
    fit = {"sectors": (0.0, 0.0), "unique_bytes": (0.0, 0.0)}
    d, n = devices.H100_SXM, 10**8
    p = oned.predict(_row(1.0, 0.0), fit, d, "cupy", STEP["cupy", "tiled"], "conv1d", n, 3, "float32")
    assert p["bound"] == "dram" and p["hbm_fraction"] == pytest.approx(1.0)
    assert p["gbs"] == pytest.approx(d.copy_gbs)  # the measured copy ceiling, not the datasheet
    # k = 511: 1022 FLOP per output; half the issue slots are FFMA -> half of the FP32 peak
    p = oned.predict(_row(0.5, 0.0), fit, d, "cupy", STEP["cupy", "tiled"], "conv1d", n, 511, "float32")
    # (the optimistic bound: the latency-aware one adds the last wave's tail, tests/test_gpu_model_latency.py)
    assert p["optimistic"]["bound"] == "issue" and p["optimistic"]["peak_fraction"] == pytest.approx(0.5, rel=1e-3)
    assert p["peak_fraction"] == pytest.approx(0.5 / p["tail"], rel=1e-3)
    # one shared load per FMA: the shared pipe (1 per clock) against 4 FFMA per clock -> a quarter
    p = oned.predict(_row(1.0, 1.0), fit, d, "cupy", STEP["cupy", "tiled"], "conv1d", n, 511, "float32")
    assert p["optimistic"]["bound"] == "shared" and p["optimistic"]["peak_fraction"] == pytest.approx(0.25, rel=1e-3)


def test_the_naive_weight_gradient_is_bound_by_its_serial_chain():
    fit = {"sectors": (0.0, 0.0), "unique_bytes": (0.0, 0.0)}
    p = oned.predict(_row(0.2, 0.0), fit, devices.H100_SXM, "cupy", STEP["cupy", "naive"], "conv1d_weight_grad",
                     10**8, 3,
                        "float32")
    assert p["bound"] == "chain" and p["blocks"] == 1
    assert p["time_s"] == pytest.approx((10**8 - 2) * 4 / 1.98e9)


# --- the whole model ----------------------------------------------------------------------------------------

@pytest.mark.skipif((resources.toolchain_problem() or NVRTC or DISASM) is not None,
                    reason=str(resources.toolchain_problem() or NVRTC or DISASM))
@pytest.mark.exhaustive
def test_inspect_covers_every_gpu_kernel_and_variant():
    rows = oned.kernel_table()
    names = {(r["backend"], r["kernel"].split("[")[0], r["dtype"], r["arch"]) for r in rows}
    for backend, name in [("cupy", "correlate_tiled<{t}>"), ("cupy", "layer_forward<{t}>"),
                          ("cupy", "weight_grad_tiled<{t}>"),
                          ("numba_cuda", "correlate.tiled_kernel"), ("numba_cuda", "layer.tiled_kernel"),
                          ("numba_cuda", "reduce.block_sums_kernel")]:
        for dtype in ("float32", "float64"):
            for arch in resources.ARCHS:
                assert (backend, name.format(t="float" if dtype == "float32" else "double"), dtype, arch) in names
    assert all(0 < r["occupancy_sm90"] <= 1 for r in rows if r["arch"] == 90)
    preds = oned.model([10**8], [3, 511])
    assert {(p["backend"], p["variant"], p["op"]) for p in preds} == {
        (b, s.variant, op) for b in oned.GPU_BACKENDS for s in oned.modelled_steps(b) for op in s.hot}
    for p in preds:
        assert 0 < p["hbm_fraction"] <= 1.0 + 1e-9 and 0 < p["peak_fraction"] <= 1.0 + 1e-9, p
    print(oned.prediction_table([p for p in preds if p["device"] == "h100-sxm"]))
    time = {(p["variant"], p["op"], p["k"]): p["time_s"] for p in preds
            if p["device"] == "h100-sxm" and p["backend"] == "cupy" and p["dtype"] == "float32"}
    # the ladder: regwin's register window cuts tiled's shared loads per FMA at large k; wg_regwin's tap
    # tiles sized to k stop tiled's 128-tap tiles wasting most FMAs at small k
    assert time["regwin", "conv1d", 511] < time["tiled", "conv1d", 511]
    assert time["wg_regwin", "conv1d_weight_grad", 3] < time["tiled", "conv1d_weight_grad", 3]


def test_ladder_launch_shape_follows_the_launcher():
    from gpu import launch as plan
    from gpu.cupy import ladder

    n, k = 10**8, 3
    TP, G, JS = plan.wg_layout(k, oned.BLOCK, 4)
    shape = ladder.WG_REGWIN.shape("conv1d_weight_grad", n, k, "float32")
    assert shape["fmas"] == G * TP * (n - k + 1)  # one tap tile of G*TP >= k taps: the taps past k computed
    assert shape["blocks"] == plan.REDUCTION_BLOCKS  # one tile, splits aimed at the target grid
    R = ladder.forward_per_thread("regwin", "float32", oned.BLOCK)
    shape = ladder.REGWIN.shape("conv1d", n, 511, "float32")
    assert shape["fmas"] >= 511 * (n - 510) and shape["blocks"] == min(-(-(n - 510) // (oned.BLOCK * R)), 1 << 16)
    assert ladder.WG_REGWIN.hot["conv1d_weight_grad"]("float64", 511) == \
        f"weight_grad_regwin<double, {plan.TP_LARGE}, {ladder.WG_BOUNDS['float64', plan.TP_LARGE]}>"


def _pred(backend, variant, op, dtype, k, time_s, hbm, peak, n=10**8, device="h100-sxm"):
    return {"backend": backend, "variant": variant, "op": op, "dtype": dtype, "n": n, "k": k, "device": device,
            "time_s": time_s, "bound": "issue", "hbm_fraction": hbm, "peak_fraction": peak, "gbs": 1.0,
            "gflops": 1.0}


def test_targets_judge_the_default_step_and_compare_numba_with_cuda_c():
    from plots.model import predict as model
    from plots.model.crossover import wrapped_at

    numba_step, cupy_step = wrapped_at("numba_cuda", "conv1d", 511), wrapped_at("cupy", "conv1d", 511)
    preds = [_pred("cupy", "tiled", "conv1d", "float32", 511, 4.0, 0.1, 0.2),
             _pred("cupy", cupy_step, "conv1d", "float32", 511, 1.0, 0.3, 0.75),
             _pred("cupy", "naive", "conv1d", "float32", 511, 0.5, 0.3, 0.8),  # faster, not the default
             _pred("numba_cuda", numba_step, "conv1d", "float32", 511, 2.0, 0.2, 0.375),
             _pred("cupy", wrapped_at("cupy", "conv1d_weight_grad", 3), "conv1d_weight_grad", "float64", 3, 1.0, 0.5,
                   0.01)]
    rows = {(r["backend"], r["op"].split()[0], r["k"]): r for r in model.targets(preds, "h100-sxm")}
    vec = rows["cupy", "conv1d", 511]
    assert vec["default"] == f"auto: {cupy_step}" and vec["met"] == "yes" and vec["share"].startswith("75.0%")
    assert vec["fastest"] == "naive (80.0%)"
    numba = rows["numba_cuda", "conv1d", 511]
    assert numba["met"] == "no (0.62x)" and "2.00x the time (beyond 1.5x)" == numba["vs CUDA C"]
    assert rows["cupy", "conv1d_weight_grad", 3]["met"] == "no (0.83x)"  # HBM target 60% at small k


def test_auto_takes_the_side_its_table_picks(monkeypatch):
    from gpu import auto
    from plots.model import crossover
    from plots.model import predict as model

    row = {"n": [10**4, 10**8], "k_fft": [None, 1024], "k_max": [8192, 65536]}
    table = {"schema": 1, "ops": {op: {d: dict(row) for d in ("float32", "float64")}
                                  for op in ("conv1d", "conv1d_weight_grad")}}
    monkeypatch.setattr(auto, "load", lambda backend: table)
    step = crossover.wrapped_at("cupy", "conv1d", 511)
    direct = [_pred("cupy", step, "conv1d", "float32", k, 1e-3, 0.5, 0.5) for k in (511, 2048)]
    other = _pred("cupy", "tiled", "conv1d", "float32", 9, 1, 1, 1)  # not a step auto wraps: no row
    got = {p["k"]: p for p in model.auto_predictions(direct + [other])}
    assert set(got) == {511, 2048} and all(p["variant"] == "auto" for p in got.values())
    assert got[511]["time_s"] == 1e-3 and got[511]["bound"] == "issue"
    t = crossover.fft_time(10**8, 2048, 4, devices.DEVICES["h100-sxm"])
    assert got[2048]["bound"] == "fft" and got[2048]["time_s"] == pytest.approx(t)


@pytest.mark.parametrize("gpu, slug, same", [
    ({"name": "NVIDIA H100 80GB HBM3", "slug": "nvidia-h100-80gb-hbm3"}, "h100-sxm", True),
    ({"name": "NVIDIA H200", "slug": "nvidia-h200"}, "h200", True),
    ({"name": "NVIDIA H200", "slug": "nvidia-h200"}, "h100-sxm", False),
    ({}, "h100-sxm", False),
])
def test_measured_rows_are_matched_to_the_model_by_the_device_family(gpu, slug, same):
    """A real GPU's name ("NVIDIA H100 80GB HBM3") names its family anywhere, not at its start."""
    from plots.draw import model as model_figures

    assert model_figures.measured_on(gpu, slug) is same
