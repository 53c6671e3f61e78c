"""The static model of the conv1d layer kernels (plots/model/layer.py): its numba_cuda rows.

The launch shapes the model gives the numba_cuda gemm kernels are checked against the launch code itself
(gpu/numba_cuda/layer_gemm.py `correlate`, `input_grad`, `param_grads`, run under the CUDA simulator with the
kernels replaced by recorders: no kernel runs), for every shape of the model's table and both dtypes; and, from
the real sm_90 SASS (plots.model.resources, cached), the predictions for the target layer (N=8, C 64 -> 128,
L=4096, K=3, H100 SXM) are finite and positive, gemm beats direct, and the chunk loop found in each gemm
kernel holds the FMAs the launch shape gives one chunk.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import kernels
from plots.model import resources

FORWARD, BACKWARD = "conv1d_layer", "conv1d_layer_backward"
TARGET = "N8 C64->128 L4096 K3"
STATUS = kernels.status("numba_cuda")


def _sass_problem():
    if problem := resources.toolchain_problem():
        return f"real compile: {problem}"
    if not (resources.find_tool("nvdisasm") or resources.find_tool("cuobjdump")):
        return "neither nvdisasm nor cuobjdump found (pip install nvidia-cuda-nvdisasm)"
    return None


needs_sass = pytest.mark.skipif(_sass_problem() is not None, reason=str(_sass_problem()))


def test_numba_rows_exist():
    from plots.model import layer as layer_model

    for variant in ("direct", "gemm"):
        for op in (FORWARD, BACKWARD):
            rows = layer_model.LAYER_KERNELS[("numba_cuda", variant, op)]
            assert rows and all(shape in layer_model.SHAPES_OF for _, _, shape in rows)


class _Recorder:
    """Stands in for a compiled kernel: `kernel[grid, block](*args)` records the launch, runs nothing."""

    def __init__(self, log, name):
        self.log, self.name = log, name

    def __getitem__(self, config):
        grid, block = config
        grid = grid if isinstance(grid, tuple) else (grid,)
        return lambda *args: self.log.append((self.name, grid, block, args))


def _launches(monkeypatch, p, block):
    """[(kernel name as plots.model.resources names it, grid, block, args)] of the gemm forward and backward."""
    from numba import cuda

    from gpu.launch import NumbaCudaLaunch
    from gpu.numba_cuda import layer_gemm as ng

    log = []
    monkeypatch.setattr(ng, "conv_kernel", lambda dtype, B, rm, window, masked, s1: _Recorder(
        log, f"layer_gemm.conv_kernel[B={B},RM={rm},window={window},masked={int(masked)},stride1={int(s1)}]"))
    monkeypatch.setattr(ng, "weight_grad_kernel", lambda dtype, B, rm: _Recorder(
        log, f"layer_gemm.weight_grad_kernel[B={B},RM={rm}]"))
    monkeypatch.setattr(ng, "transposed_filter_kernel", _Recorder(log, "layer.transposed_filter_kernel"))
    monkeypatch.setattr(ng.red, "sum_columns", lambda partial, out, launch: log.append(
        ("reduce.sum_columns", partial.shape, out.shape)))
    launch = NumbaCudaLaunch(block=block)
    x, y = np.empty(p.x_shape, p.dtype), np.empty(p.y_shape, p.dtype)
    w, b = np.ones(p.w_shape, p.dtype), np.empty(p.C_out, p.dtype)
    ng.correlate(x, w, b, y, launch, stride=p.stride, padding=p.padding, dilation=p.dilation, groups=p.groups)
    forward = list(log)
    log.clear()
    ng.input_grad(p, cuda.to_device(w), y, x, launch)
    ng.param_grads(p, x, y, w, b, launch)
    return forward, list(log)


def _check(model_launch, recorded, name_of):
    name, grid, _, args = recorded
    assert model_launch["kernel"] == f"{name}:{name_of}"
    assert model_launch["tiles"] == math.prod(grid)  # no grid cap at these sizes: one block per tile
    return args


@pytest.mark.skipif(not STATUS.usable, reason=f"numba_cuda: {STATUS.reason}")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_numba_gemm_shapes_follow_the_launch_code(dtype, monkeypatch):
    """Per shape of the table: the instantiation, the block tiles (= the grid), the channel chunks and tap
    trips of each `conv_kernel` launch (one per residue class for dx), and the splits and chunks of
    `weight_grad_kernel`, as the launch code makes them."""
    from gpu.numba_cuda import layer_gemm as ng
    from plots.model import layer as layer_model

    for label, sizes in layer_model.SHAPES.items():
        p = layer_model._problem(sizes, dtype)
        forward, backward = _launches(monkeypatch, p, 128)
        model = layer_model.numba_gemm_forward(p, 128)["launches"]
        assert len(forward) == len(model) == 1, label
        args = _check(model[0], forward[0], dtype)
        C_xg, Kc, kt_max = args[8], args[17], args[21]
        assert model[0]["chunks"] == -(-C_xg // ng.CC) and model[0]["trips"] == [Kc / -(-Kc // kt_max),
                                                                                -(-Kc // kt_max)], label
        convs = [r for r in backward if r[0].startswith("layer_gemm.conv_kernel")]
        model = layer_model.numba_gemm_input_grad(p, 128)["launches"]
        assert len(convs) == len(model) >= 1, label
        for m, r in zip(model, convs):
            args = _check(m, r, dtype)
            C_xg, Kc, kt_max = args[8], args[17], args[21]
            assert m["chunks"] == -(-C_xg // ng.CC) and m["trips"] == [Kc / -(-Kc // kt_max), -(-Kc // kt_max)]
        (wg,) = [r for r in backward if r[0].startswith("layer_gemm.weight_grad_kernel")]
        (m,) = layer_model.numba_gemm_weight_grad(p, 128)["launches"]
        args = _check(m, wg, dtype)
        assert m["chunks"] == args[15], label  # per_split
        splits, E = args[13], args[14]
        sums = [r for r in backward if r[0] == "reduce.sum_columns"]
        assert sum(r[1][0] * r[1][1] for r in sums) == splits * E  # the workspace the sums read
        assert layer_model.numba_gemm_param_sum(p, 128)["bytes"] == p.dtype.itemsize * (splits + 1) * E, label


@needs_sass
@pytest.mark.exhaustive
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_numba_model_of_the_target_layer(dtype):
    """By the static model (H100 SXM, block 128): every numba_cuda launch time finite and positive, gemm several
    times direct, within 1.5x of the cupy (CUDA C) gemm; the chunk loop of each gemm kernel's SASS holds the
    FMAs the launch shape gives one chunk (C chunk: CC channels x Kc taps x RM x RN; dw: BL positions)."""
    from plots.model import layer as layer_model
    from plots.model.devices import ARCH, H100_SXM

    sizes = layer_model.SHAPES[TARGET]
    got = {(b, v, op): layer_model.predict(b, v, op, sizes, dtype, H100_SXM, 128)
           for b, v in (("numba_cuda", "direct"), ("numba_cuda", "gemm"), ("cupy", "gemm"))
           for op in (FORWARD, BACKWARD)}
    for key, r in got.items():
        print(key, f"{r['time_s'] * 1e6:.1f} us {r['peak_fraction']:.1%}",
              [(lp["kernel"], lp["bound"], f"{lp['time_s'] * 1e6:.1f}") for lp in r["launches"]])
        assert np.isfinite(r["time_s"]) and r["time_s"] > 0 and 0 < r["peak_fraction"] < 1, key
        assert all(np.isfinite(lp["time_s"]) and lp["time_s"] > 0 for lp in r["launches"]), key
    for op in (FORWARD, BACKWARD):
        assert got["numba_cuda", "gemm", op]["peak_fraction"] > 3 * got["numba_cuda", "direct", op]["peak_fraction"]
        assert got["numba_cuda", "gemm", op]["time_s"] <= 1.5 * got["cupy", "gemm", op]["time_s"], op
    p = layer_model._problem(sizes, dtype)
    for shape in (layer_model.numba_gemm_forward, layer_model.numba_gemm_input_grad,
                  layer_model.numba_gemm_weight_grad):
        for launch in shape(p, 128)["launches"]:
            k = layer_model.numba_sass(launch["kernel"], ARCH[H100_SXM.slug])
            assert k["spills"] == 0, launch["kernel"]
            chunk = layer_model.nested_profile(k["instrs"], launch["trips"], launch["hot_fma"],
                                               k["conditional"])["chunk"]
            assert chunk["fma"] * 128 == launch["chunk_fmas"], launch["kernel"]
