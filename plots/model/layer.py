"""A static model of the conv1d layer kernels (kernels/layer.py) on the GPU, from their sm_90 SASS: no GPU.

    python -m plots.model.layer [--json] [--device h100-sxm h200] [--dtype float32 float64] [--block 128]

Work: a forward pass is 2*N*C_out*(C_in/groups)*K*L_out FLOPs (kernels.layer_counts, padded taps
counted), the backward twice that (dx and dw; db's additions are not counted). The share of the FP32
(FP64) FMA peak is that count over the predicted time.

The table `LAYER_KERNELS` maps (backend, variant, op) to the kernels one call launches, each with its
source (how its SASS is obtained: `SASS_SOURCES`) and the function that gives its launch shape (`SHAPES_OF`),
so another backend's layer kernels are one row (and, for a new kind of source, one compile function):
rows for cupy (direct, gemm) and numba_cuda (direct, gemm).

Per launch, on a device of plots.model.devices with S SMs at clock f, the time bound is the largest of

    T_issue   warp instructions on the busiest SM / (4 schedulers x f)
    T_fma     FMA lanes' work on the busiest SM / (FMA lanes per SM x f)
    T_shared  shared-memory wavefronts on the busiest SM / f            (one 128-byte wavefront per clock)
    T_l1      global load and store wavefronts on the busiest SM / f     (128 bytes of L1 per clock)
    T_dram    bytes that must move (inputs once, outputs once, workspaces) / the measured copy bandwidth

`direct` (gpu/cupy/layer.cu): one thread per output; its innermost loop's mix (FMA per instruction,
global loads per FMA) from the SASS scales with the FMAs. `gemm` (gpu/cupy/layer_gemm.cu): per reduction
chunk of BK steps a warp issues the chunk loop of the SASS once, its staging loops as often as the block
size makes them trip (gpu/cupy/layer_gemm.py tile_shape); dx runs its unpredicated interior path (edge
tiles, which skip absent terms with predicates, cost ~1.6x more in their chunk loop and are a few per row:
not counted). The busiest SM takes ceil(tiles / S) block tiles (wave quantisation included). These are the
optimistic bounds (latency hidden); a gemm launch's time is the larger of them and its latency-aware bound

    T_life    the busiest block slot's tiles (ceil(tiles / (resident blocks x S)): waves and the last one's
              tail) x chunks per tile x the longest of, per chunk, its staging round trips x the mean load
              latency (DRAM for the bytes that must move, L2 for the reloads) + the block's own issue, the SM's
              issue for its resident blocks, and their FMAs (plots.model.bounds.chunk_round)

which is the prediction (`time_s`, `bound`), the optimistic one kept beside it (`optimistic`) as the band's
other end. A chunk's loads are staged before a barrier and the products after it (single-buffered), so its
round trip does not overlap its products.

numba_cuda (gpu/numba_cuda/layer.py, gpu/numba_cuda/layer_gemm.py; SASS of plots.model.resources.compile_one,
cached; the kernel named as plots.model.resources.configurations() names it): `direct` as above, its tap loop
the one reading both operands (`direct_loop`; for K < 4 the unrolled loop's remainder runs instead, taken
to cost the same per FMA). `gemm`: the launches and instantiations `correlate`, `input_grad` (one per
residue class of stride) and `param_grads` make (`numba_gemm_*`); per block tile, chunks of the reduction
loop (forward, dx: ceil(C/CC) channel chunks, each Kc hot-loop trips over its staged tap chunks; dw:
per_split position chunks of BL/4 trips), each costing its straight-line code (of an if/else the shorter
arm: the interior staging path) plus its hot loop's trips (`nested_profile`); each staged tap chunk is one
round trip of the life bound. The model hides latency only as far as T_life says (a direct launch: fully),
ignores launch overhead and per-tile prologues and epilogues, and counts the split-K workspace (written by the
partials, read by the split sum) as HBM traffic, though it may stay in L2.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
from pathlib import Path

import numpy as np

from gpu.cupy import layer_gemm, nvrtc, tunables
from gpu.launch import Launch, NumbaCudaLaunch, param_chunks
from kernels.layer import LayerProblem
from plots.model import bounds, resources
from plots.model.devices import ARCH, DEVICES, occupancy
from plots.model.sass import _INSTR, chunk_profile, direct_loop, nested_profile, sass_functions

CTYPE = {"float32": "float", "float64": "double"}
FORWARD, BACKWARD = "conv1d_layer", "conv1d_layer_backward"

#: Layer shapes of the table: the target (N=8, C 64 -> 128, L=4096, K=3) and a few others.
SHAPES = {
    "N8 C64->128 L4096 K3": dict(N=8, C_in=64, C_out=128, L=4096, K=3, padding=1),
    "N8 C256->256 L4096 K3": dict(N=8, C_in=256, C_out=256, L=4096, K=3, padding=1),
    "N8 C64->128 L4096 K3 s2": dict(N=8, C_in=64, C_out=128, L=4096, K=3, padding=1, stride=2),
    "N32 C128->128 L1024 K7": dict(N=32, C_in=128, C_out=128, L=1024, K=7, padding=3),
    "N8 C256 L4096 K3 depthwise": dict(N=8, C_in=256, C_out=256, L=4096, K=3, padding=1, groups=256),
}

#: (backend, variant, op) -> the launches of one call: (source, kernel name with {T} for the C type, shape).
LAYER_KERNELS = {
    ("cupy", "direct", FORWARD): [("layer.cu", "layer_forward<{T}>", "direct_forward")],
    ("cupy", "direct", BACKWARD): [("layer.cu", "layer_input_grad<{T}>", "direct_input_grad"),
                                   ("layer.cu", "layer_param_partials<{T}>", "direct_param_partials"),
                                   ("correlate.cu", "sum_columns<{T}>", "direct_param_sum")],
    ("cupy", "gemm", FORWARD): [("layer_gemm.cu", "layer_gemm_forward<{G}>", "gemm_forward")],
    ("cupy", "gemm", BACKWARD): [("layer_gemm.cu", "layer_gemm_input_grad<{G}>", "gemm_input_grad"),
                                 ("layer_gemm.cu", "layer_gemm_param_partials<{GO}>", "gemm_param_partials"),
                                 ("layer_gemm.cu", "layer_gemm_sum_splits<{T}>", "gemm_param_sum")],
    # numba.cuda kernels: named as plots.model.resources.configurations() names them, ":dtype" added; the gemm
    # shapes name the instantiation the launch code picks (micro-tile height, x window, stride 1 or not)
    ("numba_cuda", "direct", FORWARD): [("numba_cuda_layer.py", "layer.forward_kernel:{D}", "direct_forward")],
    ("numba_cuda", "direct", BACKWARD): [
        ("numba_cuda_layer.py", "layer.input_grad_kernel:{D}", "direct_input_grad"),
        ("numba_cuda_layer.py", "layer.param_grad_partial_kernel:{D}", "direct_param_partials"),
        ("numba_cuda_reduce.py", "reduce.sum_columns_kernel[A]:{D}", "direct_param_sum")],
    ("numba_cuda", "gemm", FORWARD): [("numba_cuda_layer_gemm.py", "layer_gemm.conv_kernel", "numba_gemm_forward")],
    ("numba_cuda", "gemm", BACKWARD): [
        ("numba_cuda_layer.py", "layer.transposed_filter_kernel:{D}", "numba_gemm_transpose"),
        ("numba_cuda_layer_gemm.py", "layer_gemm.conv_kernel", "numba_gemm_input_grad"),
        ("numba_cuda_layer_gemm.py", "layer_gemm.weight_grad_kernel", "numba_gemm_weight_grad"),
        ("numba_cuda_reduce.py", "reduce.sum_columns_kernel[A]:{D}", "numba_gemm_param_sum")],
}


def kernel_name(template: str, dtype: str, p=None, block=128) -> str:
    """The name expression of a LAYER_KERNELS entry for `dtype` ({G}: the gemm template arguments; {GO}: those
    of the weight gradient's partials, with the orientation gpu/cupy/layer_gemm.py picks for p at block)."""
    t = CTYPE[dtype]
    TM, TN = layer_gemm.TILE[t]
    orientation = layer_gemm.param_orientation(p, block) if p is not None and "{GO}" in template else 0
    return template.format(T=t, D=dtype, G=f"{t}, {TM}, {TN}, {layer_gemm.BOUND}",
                           GO=f"{t}, {TM}, {TN}, {orientation}, {layer_gemm.BOUND}")


# --- SASS ---------------------------------------------------------------------------------------------------

def _cuda_c_source(file: str):
    path = tunables.FOLDER / file
    code = path.read_text()
    return code, nvrtc.names_of(path, code), list(tunables.compile_options(path))


@functools.cache
def cuda_c_sass(file: str, arch: int) -> dict:
    """{name expression: {"instrs": SASS instructions, "registers": ..., "shared": ...}} of a .cu of gpu/cupy/."""
    code, names, options = _cuda_c_source(file)
    log, cubin, lowered = nvrtc.compile_log(code, names, arch, options, file, cubin=True)
    usage = {u.kernel: u for u in nvrtc.parse_ptxas(log, lowered, file)}
    funcs = sass_functions(resources.sass(cubin))
    return {name: {"instrs": funcs.get(mangled, []), "registers": usage[name].registers,
                   "shared": usage[name].shared, "spills": usage[name].spill_stores + usage[name].spill_loads}
            for mangled, name in lowered.items()}


@functools.cache
def numba_sass(key: str, arch: int) -> dict:
    """{"instrs", "registers", "shared", "spills"} of the numba.cuda kernel `key` ("module.kernel[sizes]:dtype",
    as plots.model.resources.configurations() names it), compiled for real by plots.model.resources.compile_one."""
    row = resources.run_named(key, arch)
    funcs = sass_functions(row["sass"])
    conditional = {int(m[1], 16) for line in row["sass"].splitlines()
                   if (m := _INSTR.search(line)) and m[2] and m[3].startswith("BRA")}
    return {"instrs": max(funcs.values(), key=len) if funcs else [], "registers": row["registers"],
            "shared": row["shared"], "spills": row["spill_stores"] + row["spill_loads"],
            "conditional": frozenset(conditional)}


#: How a LAYER_KERNELS source becomes SASS, by its suffix: a .cu file of gpu/ through NVRTC, a numba.cuda
#: module of gpu/ through plots.model.resources (the kernel named as its configurations() name it, with ":dtype").
SASS_SOURCES = {".cu": lambda source, name, arch: cuda_c_sass(source, arch)[name],
                ".py": lambda source, name, arch: numba_sass(name, arch)}


def kernel_sass(source: str, name: str, arch: int) -> dict:
    return SASS_SOURCES[Path(source).suffix](source, name, arch)


# --- launch shapes ------------------------------------------------------------------------------------------

def _problem(sizes: dict, dtype: str):
    return LayerProblem(dtype=np.dtype(dtype), **{"has_bias": True, **sizes})


def _fmas(p) -> int:
    """Multiply-adds of one forward pass (padded taps included): N*C_out*C_in_g*K*L_out."""
    return p.N * p.C_out * p.C_in_g * p.K * p.L_out


def direct_forward(p, block):
    return {"kind": "direct", "fmas": _fmas(p), "bytes": p.dtype.itemsize * (math.prod(p.x_shape) + math.prod(
        p.w_shape) + math.prod(p.y_shape)), "threads": math.prod(p.y_shape)}


def direct_input_grad(p, block):
    return {"kind": "direct", "fmas": _fmas(p), "bytes": p.dtype.itemsize * (2 * math.prod(p.x_shape) + math.prod(
        p.w_shape)), "threads": math.prod(p.x_shape)}


def direct_param_partials(p, block):
    columns = math.prod(p.w_shape) + p.C_out
    _, splits = param_chunks(p.N * p.L_out, columns, Launch(block=block))
    return {"kind": "direct", "fmas": _fmas(p), "threads": splits * columns,
            "bytes": p.dtype.itemsize * (math.prod(p.x_shape) + math.prod(p.y_shape) + splits * columns)}


def direct_param_sum(p, block):
    columns = math.prod(p.w_shape) + p.C_out
    _, splits = param_chunks(p.N * p.L_out, columns, Launch(block=block))
    return {"kind": "stream", "bytes": p.dtype.itemsize * (splits + 1) * columns}


def _gemm(p, block, tiles, chunks, m_rows, n_cols, bytes_):
    TM, TN, BM, BN = layer_gemm.tile_shape(p.dtype, block)
    return {"kind": "gemm", "tiles": tiles, "chunks": chunks, "BM": BM, "BN": BN, "TM": TM, "TN": TN,
            "executed_fmas": tiles * chunks * layer_gemm.BK * BM * BN, "bytes": bytes_,
            "fill": m_rows * n_cols / (-(-m_rows // BM) * BM * -(-n_cols // BN) * BN)}


def gemm_forward(p, block):
    R = p.C_in_g * p.K
    tiles = layer_gemm.forward_tiles(p, block)
    return _gemm(p, block, tiles, -(-R // layer_gemm.BK), p.C_out_g, p.L_out, direct_forward(p, block)["bytes"])


def gemm_input_grad(p, block):
    col_tiles, tiles = layer_gemm.input_grad_tiles(p, block)
    taps = -(-p.K // (p.stride // math.gcd(p.stride, p.dilation)))  # taps of the fullest class
    return _gemm(p, block, tiles, -(-p.C_out_g * taps // layer_gemm.BK), p.C_in_g, col_tiles * layer_gemm.tile_shape(
        p.dtype, block)[3], direct_input_grad(p, block)["bytes"])


def gemm_param_partials(p, block):
    chunk, splits, tiles = layer_gemm.param_splits(p, block)
    cols = (p.C_in_g * p.K + 1) * p.C_out
    rows_cols = (p.C_out_g, p.C_in_g * p.K) if layer_gemm.param_orientation(p, block) else (p.C_in_g * p.K, p.C_out_g)
    shape = _gemm(p, block, tiles, chunk // layer_gemm.BK, *rows_cols,
                  p.dtype.itemsize * (math.prod(p.x_shape) + math.prod(p.y_shape) + splits * cols))
    shape["orientation"] = layer_gemm.param_orientation(p, block)
    return shape


def gemm_param_sum(p, block):
    _, splits, _ = layer_gemm.param_splits(p, block)
    return {"kind": "stream", "bytes": p.dtype.itemsize * (splits + 1) * (p.C_in_g * p.K + 1) * p.C_out}


def _numba_launch(block):
    return NumbaCudaLaunch(block=block)


def _numba_conv(p, block, *, C_x, C_xg, C_yg, rows, Kc, Lc, stride, dilation, masked=False) -> dict:
    """One `conv_kernel` launch as gpu/numba_cuda/layer_gemm.py `correlate` makes it: RM (micro_rows), the x
    window and kt_max, the block tiles (position tiles x (n, group, channel tile)) and the reduction: per tile
    ceil(C_xg/CC) channel chunks, each ceil(Kc/kt_max) staged tap chunks holding Kc hot-loop trips in all."""
    from gpu.numba_cuda import layer_gemm as ng  # heavy: numba.cuda, only for the numba_cuda gemm rows

    rm, window, kt_max = ng.conv_plan(_numba_launch(block), p.dtype, C_yg, Kc, stride, dilation, masked)
    BM, BN = block // ng.TX * rm, ng.TX * ng.RN
    tiles = -(-Lc // BN) * rows * -(-C_yg // BM)
    c_chunks, k_chunks = -(-C_xg // ng.CC), -(-Kc // kt_max)
    return {"kernel": f"layer_gemm.conv_kernel[B={block},RM={rm},window={window},masked={int(masked)},"
                      f"stride1={int(stride == 1)}]:{p.dtype.name}",
            "tiles": tiles, "chunks": c_chunks, "trips": [Kc / k_chunks, k_chunks], "BM": BM, "BN": BN,
            "hot_fma": ng.CC * rm * ng.RN, "chunk_fmas": ng.CC * Kc * BM * BN,
            "executed_fmas": tiles * c_chunks * ng.CC * Kc * BM * BN,
            "fill": C_yg * Lc * C_x / (-(-C_yg // BM) * BM * -(-Lc // BN) * BN * c_chunks * ng.CC)}


def numba_gemm_forward(p, block):
    """`correlate` of the layer forward: one launch."""
    conv = _numba_conv(p, block, C_x=p.C_in_g, C_xg=p.C_in_g, C_yg=p.C_out_g, rows=p.N * p.groups, Kc=p.K,
                       Lc=p.L_out, stride=p.stride, dilation=p.dilation)
    return {"kind": "numba_gemm", "launches": [conv], "bytes": direct_forward(p, block)["bytes"]}


def numba_gemm_transpose(p, block):
    """`transposed_filter_kernel`: w read, its transpose written."""
    return {"kind": "stream", "bytes": 2 * p.dtype.itemsize * math.prod(p.w_shape)}


def numba_gemm_input_grad(p, block):
    """`input_grad`: one `correlate` of g with the transposed, flipped filter per residue class of j mod stride
    (`residue_classes`; a class without taps launches nothing here), each a stride-1 correlation of Kc taps."""
    from gpu.numba_cuda import layer_gemm as ng  # heavy: numba.cuda, only for the numba_cuda gemm rows

    d = p.dilation // math.gcd(p.stride, p.dilation)
    launches = [_numba_conv(p, block, C_x=p.C_out_g, C_xg=p.C_out_g, C_yg=p.C_in_g, rows=p.N * p.groups, Kc=Kc,
                            Lc=Lc, stride=1, dilation=d)
                for _, Kc, _, _, Lc in ng.residue_classes(p) if Kc]
    return {"kind": "numba_gemm", "launches": launches, "bytes": direct_input_grad(p, block)["bytes"]}


def _numba_wg_plan(p, block):
    from gpu.numba_cuda import layer_gemm as ng  # heavy: numba.cuda, only for the numba_cuda gemm rows

    rm, per_split, splits = ng.weight_grad_plan(p, _numba_launch(block))
    BM, BC = block // ng.TXW * rm, ng.TXW * ng.RN
    return rm, per_split, splits, BM, BC, p.groups * -(-p.C_out_g // BM) * -(-(p.C_in_g * p.K) // BC)


def numba_gemm_weight_grad(p, block):
    """`param_grads`' `weight_grad_kernel` (weight_grad_plan): tiles x splits blocks, each summing per_split
    position chunks of BL (the last split fewer), BL/4 hot-loop trips of 4 positions per chunk; the workspace
    of splits x (dw.size + C_out) partials written."""
    from gpu.numba_cuda import layer_gemm as ng  # heavy: numba.cuda, only for the numba_cuda gemm rows

    rm, per_split, splits, BM, BC, tiles = _numba_wg_plan(p, block)
    total = p.N * -(-p.L_out // ng.BL)
    launch = {"kernel": f"layer_gemm.weight_grad_kernel[B={block},RM={rm}]:{p.dtype.name}",
              "tiles": tiles * splits, "chunks": per_split, "trips": [ng.BL // 4], "BM": BM, "BN": BC,
              "hot_fma": 4 * rm * ng.RN, "chunk_fmas": ng.BL * BM * BC,
              "executed_fmas": tiles * total * ng.BL * BM * BC,
              "fill": p.C_out * p.C_in_g * p.K * p.N * p.L_out / (tiles * BM * BC * total * ng.BL)}
    cols = math.prod(p.w_shape) + p.C_out
    return {"kind": "numba_gemm", "launches": [launch],
            "bytes": p.dtype.itemsize * (math.prod(p.x_shape) + math.prod(p.y_shape) + splits * cols)}


def numba_gemm_param_sum(p, block):
    """`red.sum_columns` of dw's and db's columns of the workspace (two launches, the bytes of both)."""
    _, _, splits, _, _, _ = _numba_wg_plan(p, block)
    return {"kind": "stream", "bytes": p.dtype.itemsize * (splits + 1) * (math.prod(p.w_shape) + p.C_out)}


SHAPES_OF = {f.__name__: f for f in (direct_forward, direct_input_grad, direct_param_partials, direct_param_sum,
                                     gemm_forward, gemm_input_grad, gemm_param_partials, gemm_param_sum,
                                     numba_gemm_forward, numba_gemm_transpose, numba_gemm_input_grad,
                                     numba_gemm_weight_grad, numba_gemm_param_sum)}


# --- the model ----------------------------------------------------------------------------------------------

def staging_trips(loops, shape, block) -> list[float]:
    """Trips per chunk of each staging loop of a gpu/cupy/layer_gemm.cu chunk loop at `block`: the loops store
    the N operand, BK*BN/block elements per thread. A loop of BK stores per trip is the whole-column path
    (block <= BN: BN/block trips), a loop of one store the every-other-step path (block > BN); a loop of
    several (dw's, unrolled) takes them all, its remainder loop none."""
    BN, elements = shape["BN"], layer_gemm.BK * shape["BN"] / block
    trips, taken = [], False
    for lp in loops:
        if lp["sts"] == layer_gemm.BK:
            trips.append(BN / block if block <= BN else 0.0)
        elif lp["sts"] == 1 and len(loops) > 1 and any(other["sts"] == layer_gemm.BK for other in loops):
            trips.append(elements if block > BN else 0.0)
        elif lp["sts"] and not taken:
            trips.append(elements / lp["sts"])
            taken = True
        else:
            trips.append(0.0)
    return trips


def gemm_life(device, tiles: int, resident: int, warps: int, chunks: float, instructions: float, round_trips: float,
              chunk_fmas: float, lanes: int, first_touch: float) -> dict:
    """The latency-aware bound of a gemm launch (module docstring): the busiest block slot's tiles (ceil(tiles /
    (resident x SMs)): its waves and the last one's tail), each `chunks` chunks of `round_trips` dependent
    staging round trips (a barrier before the products) at the mean load latency (DRAM's for the
    `first_touch` share of the bytes loaded, L2's for the rest) plus the block's own issue, or the SM's
    issue or FMA pipe for its `resident` blocks (plots.model.bounds.chunk_round): {"life": seconds, ...}."""
    hz = device.clock_ghz * 1e9
    slot_tiles = -(-tiles // max(1, resident * device.sms))
    latency = first_touch * device.dram_latency_cycles + (1 - first_touch) * device.l2_latency_cycles
    cycles = bounds.chunk_round(min(resident, -(-tiles // device.sms)), warps, instructions, round_trips, latency,
                                chunk_fmas, device, lanes)
    return {"life": slot_tiles * chunks * max(cycles.values()) / hz, "life_parts": {
        "tiles_per_slot": slot_tiles, "chunks": chunks, "round_trips": round_trips, "latency_cycles": latency,
        "chunk_cycles": cycles}}


def _first_touch(bytes_: float, loaded: float) -> float:
    """The share of loaded bytes that come from DRAM: the bytes that must move over those loaded, in [0, 1]."""
    return min(1.0, bytes_ / loaded) if loaded > 0 else 1.0


def _numba_gemm_time(device, k, launch, lanes, itemsize) -> dict:
    """Time bounds of one numba gemm launch (per block tile `chunks` trips of the chunk loop of
    nested_profile); LDS one wavefront each (a warp reads 2 (dx, forward) or 4 (dw) broadcast rows of the
    filter or g and 16 or 8 consecutive words of x), STS 1.5 x itemsize/4 (consecutive words, dw's tiles
    2-way conflicted), LDG itemsize/4 (coalesced)."""
    hz, sms = device.clock_ghz * 1e9, device.sms
    prof = nested_profile(k["instrs"], launch["trips"], launch["hot_fma"], k["conditional"])
    chunk = prof["chunk"]
    busiest = -(-launch["tiles"] // sms)
    warp_chunks = busiest * launch["chunks"] * launch["warps"]
    times = {"issue": warp_chunks * chunk["instructions"] / (device.issue_per_clk_sm * hz),
             "fma": busiest * launch["chunks"] * launch["chunk_fmas"] / (lanes * hz),
             "shared": warp_chunks * (chunk["lds"] + 1.5 * chunk["sts"] * itemsize / 4) / hz,
             "l1": warp_chunks * chunk["ldg"] * itemsize / 4 / hz}
    # a chunk stages each of its tap chunks (trips[1]) in one round trip of loads, then a barrier
    loaded = launch["tiles"] * launch["chunks"] * launch["warps"] * chunk["ldg"] * 32 * itemsize
    life = gemm_life(device, launch["tiles"], launch["resident"], launch["warps"], launch["chunks"],
                     chunk["instructions"],
                     launch["trips"][1] if len(launch["trips"]) > 1 else 1, launch["chunk_fmas"], lanes,
                     _first_touch(launch["bytes"], loaded))
    return times, life, chunk, prof["hot"]


def launch_time(device, source, name, shape_name, p, block) -> dict:
    """The time bound of one launch of the layer kernel `name` on `device`."""
    shape = SHAPES_OF[shape_name](p, block)
    itemsize = p.dtype.itemsize
    hz, sms = device.clock_ghz * 1e9, device.sms
    lanes = device.fp32_fma_per_clk_sm if itemsize == 4 else device.fp64_fma_per_clk_sm
    t = {"dram": shape["bytes"] / (device.copy_gbs * 1e9)}
    row = {"kernel": name, "shape": shape_name}
    if shape["kind"] == "direct":
        k = kernel_sass(source, name, ARCH[device.slug])
        loop = direct_loop(k["instrs"])
        warp_fmas = shape["fmas"] / 32
        active = min(sms, -(-shape["threads"] // block))
        t["issue"] = warp_fmas / loop["fma_per_instruction"] / (device.issue_per_clk_sm * active * hz)
        t["fma"] = shape["fmas"] / (lanes * active * hz)
        t["l1"] = warp_fmas * loop["ldg_per_fma"] * itemsize / 4 / (active * hz)
        row.update(registers=k["registers"], fma_per_instruction=loop["fma_per_instruction"])
    elif shape["kind"] == "gemm":
        k = kernel_sass(source, name, ARCH[device.slug])
        prof = chunk_profile(k["instrs"], layer_gemm.BK * shape["TM"] * shape["TN"])
        trips = staging_trips(prof["loops"], shape, block)
        per_chunk = {key: prof["straight"][key] + sum(lp[key] * n for lp, n in zip(prof["loops"], trips))
                     for key in prof["straight"]}
        busiest = -(-shape["tiles"] // sms)
        warp_chunks = busiest * (block // 32) * shape["chunks"]
        t["issue"] = warp_chunks * per_chunk["instructions"] / (device.issue_per_clk_sm * hz)
        t["fma"] = busiest * shape["chunks"] * layer_gemm.BK * shape["BM"] * shape["BN"] / (lanes * hz)
        # 16-byte shared reads: ~1.5 wavefronts (As broadcast: 1, Bs: 2); staging stores ~1.5 (2-way on As)
        t["shared"] = warp_chunks * 1.5 * (per_chunk["lds"] + per_chunk["sts"]) / hz
        t["l1"] = warp_chunks * per_chunk["ldg"] * itemsize / 4 / hz
        occ = occupancy(device, k["registers"], block, layer_gemm.shared_bytes(p.dtype, block))
        # one round trip for the straight-line staging, one per trip of a staging loop that loads
        round_trips = (1 if prof["straight"]["ldg"] else 0) + sum(n for lp, n in zip(prof["loops"], trips) if lp["ldg"])
        loaded = shape["tiles"] * shape["chunks"] * (block // 32) * per_chunk["ldg"] * 32 * itemsize
        life = gemm_life(device, shape["tiles"], occ["blocks_per_sm"], block // 32, shape["chunks"],
                         per_chunk["instructions"], max(1, round_trips), layer_gemm.BK * shape["BM"] * shape["BN"],
                         lanes, _first_touch(shape["bytes"], loaded))
        row.update(registers=k["registers"], chunk_instructions=per_chunk["instructions"],
                   chunk_fma=per_chunk["fma"], fma_per_instruction=per_chunk["fma"] / per_chunk["instructions"],
                   tiles=shape["tiles"], fill=shape["fill"], blocks_per_sm=occ["blocks_per_sm"],
                   edge_chunk_instructions=(prof["edge"]["instructions"] - prof["straight"]["instructions"]
                                            + per_chunk["instructions"]) if prof["edge"] else None)
        return _with_life(row, t, life)
    elif shape["kind"] == "numba_gemm":  # one or more launches of one kernel (dx: one per residue class)
        parts, t_sum = [], {}
        per_launch_bytes = shape["bytes"] / len(shape["launches"])
        for launch in shape["launches"]:
            k = kernel_sass(source, launch["kernel"], ARCH[device.slug])
            occ = occupancy(device, k["registers"], block, k["shared"])
            times, life, chunk, hot = _numba_gemm_time(
                device, k, {**launch, "warps": block // 32, "resident": occ["blocks_per_sm"],
                            "bytes": per_launch_bytes}, lanes, itemsize)
            part_bound = max(times, key=times.get)
            honest = max(times[part_bound], life["life"])
            parts.append({"kernel": launch["kernel"], "tiles": launch["tiles"],
                          "bound": "life" if life["life"] > times[part_bound] else part_bound,
                          "time_s": honest, "optimistic": {"time_s": times[part_bound], "bound": part_bound},
                          "life_parts": life["life_parts"], "chunk_instructions": chunk["instructions"],
                          "fma_per_instruction": chunk["fma"] / chunk["instructions"]})
            for key, v in (*times.items(), ("life", life["life"])):
                t_sum[key] = t_sum.get(key, 0.0) + v
            row.update(registers=k["registers"], spills=k["spills"], blocks_per_sm=occ["blocks_per_sm"],
                       hot_fma_per_instruction=hot["fma"] / hot["instructions"])
        fmas = sum(part["fma_per_instruction"] * part["chunk_instructions"] for part in parts)
        row.update(kernel=shape["launches"][0]["kernel"], parts=parts,
                   fma_per_instruction=fmas / sum(part["chunk_instructions"] for part in parts),
                   fill=shape["launches"][0]["fill"])
        # the launches run one after the other: each its own bound
        t = {"dram": t["dram"], **{key: 0.0 for key in t_sum}}
        optimistic = {"time_s": sum(part["optimistic"]["time_s"] for part in parts),
                      "bound": max(parts, key=lambda part: part["optimistic"]["time_s"])["optimistic"]["bound"]}
        if t["dram"] > optimistic["time_s"]:
            optimistic = {"time_s": t["dram"], "bound": "dram"}
        total = sum(part["time_s"] for part in parts)
        bound = max(parts, key=lambda part: part["time_s"])["bound"]
        if t["dram"] > total:
            bound, total = "dram", t["dram"]
        t.update(t_sum)
        return {**row, "time_s": total, "bound": bound, "times": t, "optimistic": optimistic}
    bound = max(t, key=t.get)
    return {**row, "time_s": t[bound], "bound": bound, "times": t, "optimistic": {"time_s": t[bound], "bound": bound}}


def _with_life(row: dict, t: dict, life: dict) -> dict:
    """A launch row whose time is the larger of its optimistic bounds `t` and the latency-aware `life`."""
    opt = max(t, key=t.get)
    times = {**t, "life": life["life"]}
    bound = max(times, key=times.get)
    return {**row, "time_s": times[bound], "bound": bound, "times": times, "life_parts": life["life_parts"],
            "optimistic": {"time_s": t[opt], "bound": opt}}


def predict(backend, variant, op, sizes, dtype, device, block) -> dict:
    p = _problem(sizes, dtype)
    launches = [launch_time(device, src, kernel_name(name, dtype, p, block), shape, p, block)
                for src, name, shape in LAYER_KERNELS[(backend, variant, op)]]
    flops = 2 * _fmas(p) * (2 if op == BACKWARD else 1)
    peak = device.peak_gflops(np.dtype(dtype).itemsize)

    def rates(time, bound):
        gflops = flops / time / 1e9
        return {"time_s": time, "bound": bound, "gflops": gflops, "peak_fraction": gflops / peak}

    slowest = max(launches, key=lambda launch: launch["time_s"])
    opt_slowest = max(launches, key=lambda launch: launch["optimistic"]["time_s"])
    return {"backend": backend, "variant": variant, "op": op, "dtype": dtype, "device": device.slug,
            "block": block, **rates(sum(launch["time_s"] for launch in launches), slowest["bound"]),
            "optimistic": rates(sum(launch["optimistic"]["time_s"] for launch in launches),
                                opt_slowest["optimistic"]["bound"]),
            "launches": launches}


def model(shapes=SHAPES, dtypes=("float32",), devices=("h100-sxm",), block=128) -> list[dict]:
    out = []
    for slug in devices:
        for (backend, variant, op) in LAYER_KERNELS:
            for label, sizes in shapes.items():
                for dtype in dtypes:
                    out.append({"shape": label, **predict(backend, variant, op, sizes, dtype, DEVICES[slug], block)})
    return out


def table(preds) -> str:
    header = ("device", "shape", "variant", "op", "dtype", "time", "GFLOP/s", "FP %", "bounds per launch")
    lines = [header]
    for r in preds:
        bounds = ", ".join(f"{lp['kernel'].split('<')[0].split('[')[0].split(':')[0]}: {lp['bound']} "
                           f"{lp['time_s'] * 1e6:.0f} us" +
                           (f" ({lp['fma_per_instruction']:.0%} FMA)" if "fma_per_instruction" in lp else "")
                           for lp in r["launches"])
        lines.append((r["device"], r["shape"], f"{r['backend']}:{r['variant']}", r["op"].removeprefix("conv1d_"),
                      r["dtype"], f"{r['time_s'] * 1e6:.0f} us", f"{r['gflops']:.0f}",
                      f"{100 * r['peak_fraction']:.1f}", bounds))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m plots.model.layer", description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print the predictions as JSON")
    ap.add_argument("--device", nargs="+", default=["h100-sxm"], choices=sorted(DEVICES))
    ap.add_argument("--dtype", nargs="+", default=["float32", "float64"], choices=sorted(CTYPE))
    ap.add_argument("--block", type=int, default=128, choices=[32, 64, 128, 256])
    args = ap.parse_args(argv)
    for problem in (nvrtc.nvrtc_problem(), resources.find_tool("nvdisasm") is None
                    and resources.find_tool("cuobjdump") is None and "nvdisasm not found"):
        if problem:
            print(f"plots.model.layer: {problem}", file=sys.stderr)
            return 2
    preds = model(dtypes=tuple(args.dtype), devices=tuple(args.device), block=args.block)
    if args.json:
        json.dump(preds, sys.stdout, indent=1, default=str)
        print()
    else:
        print(table(preds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
