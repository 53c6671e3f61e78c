"""Launches of gpu/cupy/ladder.cu, and its steps regwin, vec and wg_regwin (designs in the .cu file; shared-memory
layouts in gpu/launch.py, the same for the numba.cuda twins of gpu/numba_cuda/ladder.py):

    regwin     tiled, but R contiguous outputs per thread with a register sliding window over x, and a halo of
               exactly k-1: each x value loaded from shared memory serves R outputs
    vec        regwin with 16-byte loads and stores (float4 / double2) where aligned: fewer load instructions
    vec16      vec with R = 16 outputs per thread (up to 512 threads in float32, 256 in float64; vec's R at larger
               blocks): each x and filter value read from shared memory serves 16 FMAs, halving the shared loads
               and window shifts per FMA; auto's forward beyond gpu.auto.STREAM_MAX_K taps
    wg_regwin  the weight gradient with tap tiles sized to k, contiguous taps and j per thread with a register
               window; warp shuffles, then fixed-order block and partial sums (deterministic)
    wg_stream  wg_regwin with 16-byte staging loads, STAGE_LOADS in flight per thread, slices of up to 512 bytes
               of j, 32 taps per thread in float32 beyond k = 64 (gpu.launch.TP_WIDE) and ~16x the blocks
               (gpu.launch.STREAM_BLOCKS): latency covered, the per-chunk code a small share, a short last wave

Engine signatures (gpu.steps.Engines): `correlate_regwin`, `correlate_vec` (forward, every op of
gpu.steps.FORWARD_OPS) and `weight_grad_regwin`; the bias sum is tiled's. The launch bounds of each
instantiation are the largest block its launcher accepts (FORWARD_BOUNDS, WG_BOUNDS; registers without spills,
checked by plots/model/resources.py) and the last template argument of its name expression (NAMES).
"""

from __future__ import annotations

import functools

import numpy as np

from gpu import launch as plan
from gpu.cupy import correlate, loader, tunables
from gpu.cupy.arrays import empty
from gpu.launch import BLOCKS, TAPS, TAPS_PER_THREAD, dtype_name
from gpu.launch import CupyLaunch as Launch
from gpu.steps import FORWARD_OPS, NOTES, Engines, Kernel, Step, correlation_impls

SOURCE = tunables.FOLDER / "ladder.cu"
#: (step, dtype, outputs per thread R) -> __launch_bounds__ of the forward steps = the largest block accepted
#: (registers; vec float64 R = 4 by shared memory: its padding of one vector per two makes 1024 threads need
#: 48 KB + 2 KB). vec16 takes vec's instantiations (the same kernels) at the blocks R = 16 does not: it accepts
#: every launch vec does, as auto's forward must.
VEC_BOUNDS = {("float32", 4): 1024, ("float32", 8): 1024, ("float64", 4): 512, ("float64", 8): 512}
FORWARD_BOUNDS = {("regwin", "float32", 4): 1024, ("regwin", "float32", 8): 1024, ("regwin", "float64", 4): 1024,
                  ("regwin", "float64", 8): 512, **{("vec", *key): bound for key, bound in VEC_BOUNDS.items()},
                  ("vec16", "float32", 16): 512, ("vec16", "float64", 16): 256,
                  **{("vec16", *key): bound for key, bound in VEC_BOUNDS.items()}}
#: (dtype, taps per thread TP) -> __launch_bounds__ of weight_grad_regwin = the largest block accepted; TP_WIDE:
#: weight_grad_stream only (151 registers at sm_90).
WG_BOUNDS = {("float32", 4): 1024, ("float32", 16): 512, ("float32", 32): 256, ("float64", 4): 512,
             ("float64", 16): 256}
CTYPE = {"float32": "float", "float64": "double"}

#: Forward step -> (its kernel in ladder.cu, whether it loads 16-byte vectors: its window pads by a vector).
FORWARD = {"regwin": ("correlate_regwin", False), "vec": ("correlate_vec", True), "vec16": ("correlate_vec", True)}


def _wide(dtype: str, block: int, stream: bool) -> bool:
    """Whether wg_stream takes plan.TP_WIDE taps per thread at `block` (float32 beyond TP_LARGE_MAX_K, up to its
    launch bound; larger blocks keep TP_LARGE)."""
    return stream and block <= WG_BOUNDS.get((dtype, plan.TP_WIDE), 0)


def forward_name(step: str, dtype, R: int) -> str:
    d = dtype_name(dtype)
    return f"{FORWARD[step][0]}<{CTYPE[d]}, {R}, {FORWARD_BOUNDS[(step, d, R)]}>"


def wg_name(dtype, TP: int, stream=False) -> str:
    d = dtype_name(dtype)
    return f"weight_grad_{'stream' if stream else 'regwin'}<{CTYPE[d]}, {TP}, {WG_BOUNDS[(d, TP)]}>"


NAMES = (*dict.fromkeys(forward_name(step, d, R) for step, d, R in FORWARD_BOUNDS),
         *(wg_name(d, TP, stream) for d, TP in WG_BOUNDS for stream in (False, True) if stream or TP != plan.TP_WIDE),
         "wg_sum_partials<float>", "wg_sum_partials<double>")


MODULE = loader.Source(SOURCE, NAMES)


def _bounds(step: str, dtype) -> dict:
    """R -> launch bound of the forward `step`'s instantiations for `dtype`."""
    d = dtype_name(dtype)
    return {R: bound for (s, dt, R), bound in FORWARD_BOUNDS.items() if s == step and dt == d}


def forward_per_thread(step: str, dtype, block: int) -> int:
    """Outputs per thread R the forward `step` takes at `block` by default (gpu.launch.forward_per_thread)."""
    return plan.forward_per_thread(_bounds(step, dtype), dtype, block, FORWARD[step][1])


def _correlate(step, sig, f, out, launch, flip, offset, periodic, bias, epilogue, gate, per_thread):
    R, shared = plan.forward_plan(_bounds(step, out.dtype), out.dtype, launch.block, f.shape[0], FORWARD[step][1],
                                  per_thread)
    M = out.shape[0]
    if M == 0:
        return
    T = out.dtype.type
    args = (sig, np.int64(sig.shape[0]), np.int64(offset), np.int32(periodic), f, np.int64(f.shape[0]), np.int32(flip),
            out, np.int64(M), T(0 if bias is None else bias), np.int32(epilogue), out if gate is None else gate)
    MODULE.get(forward_name(step, out.dtype, R))((launch.blocks(M, launch.block * R),), (launch.block,),
                                                             args, shared_mem=shared)


def correlate_regwin(sig, f, out, launch, *, flip=False, offset=0, periodic=False, bias=None, epilogue=0,
                     gate=None, per_thread=None):
    """Step regwin: out[o] = epilogue(sum_i f'[i] s[o+i] + bias), R = per_thread (4 or 8, default
    gpu.launch.forward_per_thread) contiguous outputs per thread with a register sliding window."""
    _correlate("regwin", sig, f, out, launch, flip, offset, periodic, bias, epilogue, gate, per_thread)


def correlate_vec(sig, f, out, launch, *, flip=False, offset=0, periodic=False, bias=None, epilogue=0,
                  gate=None, per_thread=None):
    """Step vec: regwin with 16-byte loads and stores where aligned (scalar otherwise)."""
    _correlate("vec", sig, f, out, launch, flip, offset, periodic, bias, epilogue, gate, per_thread)


def correlate_vec16(sig, f, out, launch, *, flip=False, offset=0, periodic=False, bias=None, epilogue=0,
                    gate=None, per_thread=None):
    """Step vec16: vec with R = 16 contiguous outputs per thread (at blocks up to its launch bound; vec's R beyond)."""
    _correlate("vec16", sig, f, out, launch, flip, offset, periodic, bias, epilogue, gate, per_thread)


def weight_grad_regwin(x, g, dw, launch, *, flip=False, slice_len=None, splits=None, stream=False):
    """Step wg_regwin: dw[i] = sum_{j<m} g[j] x[j+i] (stored at k-1-i when flip), deterministic.

    Per-block partials partial[split * k + i] over the j chunks of each split, then wg_sum_partials adds the
    splits in a fixed order (skipped with one split: the block writes dw). `slice_len` (JS) and `splits`
    override the layout (tests use them to reach several chunks per split). `stream`: step wg_stream (16-byte
    staging, longer slices, more splits)."""
    d = dtype_name(dw.dtype)
    n, m, k = x.shape[0], g.shape[0], dw.shape[0]
    TP, G, JS, shared, tiles, splits = plan.wg_plan(m, k, dw.dtype, launch, lambda TP: WG_BOUNDS[(d, TP)],
                                                    slice_len, splits, stream, _wide(d, launch.block, stream))
    partial = dw if splits == 1 else empty((splits * k,), dw.dtype)
    args = (x, g, partial, np.int64(n), np.int64(m), np.int64(k), np.int32(flip), np.int32(G), np.int32(JS))
    MODULE.get(wg_name(d, TP, stream))((tiles, splits), (launch.block,), args, shared_mem=shared)
    if splits > 1:
        MODULE.get(f"wg_sum_partials<{CTYPE[d]}>")((launch.blocks(k, 1),), (launch.block,),
                                                                (partial, np.int64(splits), np.int64(k), dw))


def weight_grad_stream(x, g, dw, launch, *, flip=False, slice_len=None, splits=None):
    """Step wg_stream: wg_regwin with 16-byte staging loads in flight, longer slices and more splits."""
    weight_grad_regwin(x, g, dw, launch, flip=flip, slice_len=slice_len, splits=splits, stream=True)


def engines(correlate_step, weight_grad=weight_grad_regwin) -> Engines:
    """A ladder step's engines: its forward, a weight-gradient step and tiled's bias sum."""
    return Engines(correlate_step, weight_grad, functools.partial(correlate.total, tiled=True),
                   empty=empty, launch_of=Launch.of)


# --- what the steps compile, and their default launch -----------------------------------------------------------

def forward_kernels(step: str):
    """dtype -> a Kernel per instantiation R of the forward `step`, at the blocks its launcher accepts, with the
    dynamic shared memory of a full filter chunk (the most a launch asks for)."""
    def kernels(dtype: str):
        size, out = plan.itemsize(dtype), []
        default_R = forward_per_thread(step, dtype, Launch().block)
        for R, bound in sorted(_bounds(step, dtype).items()):
            shared = {b: plan.forward_shared_bytes(b, R, TAPS, size, FORWARD[step][1]) for b in BLOCKS if b <= bound}
            blocks = tuple(b for b, s in shared.items() if plan.forward_shared_bytes(b, R, 1, size, FORWARD[step][1])
                           <= plan.SHARED_LIMIT)
            out.append(Kernel(forward_name(step, dtype, R), dtype, blocks,
                              {b: min(shared[b], plan.SHARED_LIMIT) for b in blocks}, R == default_R,
                              SOURCE.name))
        return out
    return kernels


def wg_kernels(stream=False):
    """dtype -> a Kernel per instantiation TP of weight_grad_regwin (or _stream), with the most shared memory of
    its layouts; the second pass; and tiled's bias sum."""
    def kernels(dtype: str):
        size, t = plan.itemsize(dtype), CTYPE[dtype]
        default_TP = plan.wg_layout(3, Launch().block, size)[0]
        out = [Kernel(wg_name(dtype, TP, stream), dtype, tuple(b for b in BLOCKS if b <= WG_BOUNDS[(dtype, TP)]),
                      {b: plan.wg_most_shared(b, TP, size, stream, _wide(dtype, b, stream))
                       for b in BLOCKS if b <= WG_BOUNDS[(dtype, TP)]},
                      TP == default_TP, SOURCE.name)
               for TP in (*TAPS_PER_THREAD, *[plan.TP_WIDE] * _wide(dtype, BLOCKS[0], stream))]
        return [*out, Kernel(f"wg_sum_partials<{t}>", dtype, BLOCKS, default=True, source=SOURCE.name)]
    return kernels


def _forward_shape(step):
    def of(op, n, k, dtype):
        launch = Launch()
        return plan.forward_shape(n, k, forward_per_thread(step, dtype, launch.block), launch)
    return of


def _forward_hot(step):
    return lambda dtype, k: forward_name(step, dtype, forward_per_thread(step, dtype, Launch().block))


def _wg_hot(stream):
    block = Launch().block
    return lambda dtype, k: wg_name(dtype, plan.wg_layout(k, block, plan.itemsize(dtype),
                                                          wide=_wide(dtype, block, stream))[0], stream)


REGWIN = Step("regwin", correlation_impls(engines(correlate_regwin), FORWARD_OPS), NOTES["regwin"],
              kernels=forward_kernels("regwin"), hot={"conv1d": _forward_hot("regwin")},
              shape=_forward_shape("regwin"), traced_as="tiled", engines=engines(correlate_regwin))
VEC = Step("vec", correlation_impls(engines(correlate_vec), FORWARD_OPS),
           {"": "regwin with 16-byte loads and stores (float4 / double2) where aligned: fewer load instructions"},
           kernels=forward_kernels("vec"), hot={"conv1d": _forward_hot("vec")}, shape=_forward_shape("vec"),
           traced_as="tiled", engines=engines(correlate_vec))
WG_REGWIN = Step("wg_regwin", correlation_impls(engines(correlate_regwin), ("conv1d_weight_grad",)), NOTES["wg_regwin"],
                 kernels=wg_kernels(), hot={"conv1d_weight_grad": _wg_hot(False)},
                 shape=lambda op, n, k, dtype: plan.wg_shape(n, k, dtype, Launch()), traced_as="tiled",
                 engines=engines(correlate_regwin))
VEC16 = Step("vec16", correlation_impls(engines(correlate_vec16), FORWARD_OPS),
             {"": "vec with 16 outputs per thread: each x and filter value read from shared memory serves 16 FMAs, "
                  "halving the shared loads per FMA"},
             kernels=forward_kernels("vec16"), hot={"conv1d": _forward_hot("vec16")}, shape=_forward_shape("vec16"),
             traced_as="tiled", engines=engines(correlate_vec16))
WG_STREAM = Step("wg_stream", correlation_impls(engines(correlate_regwin, weight_grad_stream), ("conv1d_weight_grad",)),
                 {"": "wg_regwin with 16-byte staging loads, 4 in flight per thread before the shared stores, slices "
                      "of up to 512 bytes of j, 32 taps per thread in float32 beyond k = 64 and 16x the blocks: DRAM "
                      "latency covered, the per-chunk code a small share, a short last wave"},
                 kernels=wg_kernels(stream=True), hot={"conv1d_weight_grad": _wg_hot(True)},
                 shape=lambda op, n, k, dtype: plan.wg_shape(n, k, dtype, Launch(), stream=True,
                                                             wide=_wide(dtype, Launch().block, True)),
                 traced_as="tiled",
                 engines=engines(correlate_regwin, weight_grad_stream))
STEPS = (REGWIN, VEC, VEC16, WG_REGWIN, WG_STREAM)
