"""Launch functions for the kernel ladder of gpu/cupy/ladder.cu (steps regwin, vec, wg_regwin), on a real GPU
through CuPy or on the CPU emulator, as gpu.cupy.module.load decides.

They have the engine signatures of gpu/steps.py, so that a backend can bundle them:

    correlate_regwin(sig, f, out, launch, *, flip, offset, periodic, bias, epilogue, gate)
    correlate_vec(sig, f, out, launch, *, flip, offset, periodic, bias, epilogue, gate)
        out[o] = epilogue(sum_i f'[i] s[o+i] + bias), f' = f reversed when flip,
        s[t] = sig[t + offset] (zero outside, terms skipped) or, periodic, sig[(t + offset) mod n]
    weight_grad_regwin(x, g, dw, launch, *, flip)        dw[i] = sum_j g[j] x[j+i] (reversed when flip)

`launch` is a gpu.launch.Launch (block, max_blocks). Arrays are cupy.ndarray on a GPU and NumPy arrays
in emulation; the weight gradient's workspace is allocated like `dw`. Nothing is compiled at import:
the module is built on first use.

The compile-time constants live here and reach the kernels as -D options or as template arguments of
the name expressions (NAMES; gpu/cupy/ladder.cu lists the same ones for standalone compiles, and a test
checks that they agree): TAPS, the forward's filter chunk, and the launch bounds per instantiation,
which are also the largest accepted block (FORWARD_BOUNDS, WG_BOUNDS).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from gpu.cupy.module import ctype
from gpu.launch import weight_grad_splits

SOURCE = Path(__file__).with_name("ladder.cu")
#: Filter taps per chunk of the forward steps (-DLADDER_TAPS).
TAPS = 256
OPTIONS = (f"-DLADDER_TAPS={TAPS}",)
#: Dynamic shared memory a launch may ask for without opting in.
SHARED_LIMIT = 48 << 10
#: (step, dtype, outputs per thread R) -> __launch_bounds__ of the forward steps = largest block accepted
#: (registers; vec double R = 4 by shared memory: its padding of one vector per two makes 1024 threads
#: need 48 KB + 2 KB).
FORWARD_BOUNDS = {("regwin", "float", 4): 1024, ("regwin", "float", 8): 1024, ("regwin", "double", 4): 1024,
                  ("regwin", "double", 8): 512, ("vec", "float", 4): 1024, ("vec", "float", 8): 1024,
                  ("vec", "double", 4): 512, ("vec", "double", 8): 512}
#: (dtype, taps per thread TP) -> __launch_bounds__ of weight_grad_regwin = largest block accepted.
WG_BOUNDS = {("float", 4): 1024, ("float", 16): 512, ("double", 4): 512, ("double", 16): 256}
#: Taps per thread of the weight gradient: TP_SMALL up to k = TP_SMALL_MAX_K, else TP_LARGE.
TP_SMALL, TP_SMALL_MAX_K, TP_LARGE = 4, 16, 16

NAMES = (*(f"correlate_{step}<{t}, {r}, {b}>" for (step, t, r), b in FORWARD_BOUNDS.items()),
         *(f"weight_grad_regwin<{t}, {tp}, {b}>" for (t, tp), b in WG_BOUNDS.items()),
         "wg_sum_partials<float>", "wg_sum_partials<double>")


@functools.cache
def module():
    """The loaded ladder.cu (cupy.RawModule or gpu.emu.Module), built once."""
    from gpu.cupy import module as cuda_module

    return cuda_module.load(SOURCE, name_expressions=NAMES, options=OPTIONS)


def skew(q: int, run: int, pad: int) -> int:
    """Shared-memory slot of element q (gpu/cupy/ladder.cu skew): `pad` elements of padding after every `run`."""
    return q + pad * (q // run)


def forward_pad(R: int, itemsize: int, vec: bool) -> int:
    """Padding per run of R of the forward window (gpu/cupy/ladder.cu WindowLayout): one element, or in `vec`
    one 16-byte vector unless R is a single odd number of vectors."""
    W = 16 // itemsize
    return (0 if (R // W) % 2 else W) if vec else 1


def forward_shared_bytes(block: int, R: int, taps: int, itemsize: int, vec: bool) -> int:
    """Dynamic shared memory of correlate_regwin/vec: the padded window ss of block*R + taps - 1 values
    plus a spare slot, 16-byte aligned, then the taps of the filter chunk fs."""
    W = 16 // itemsize
    return ((skew(block * R + taps - 1, R, forward_pad(R, itemsize, vec)) + W) // W * W + taps) * itemsize


def wg_shared_bytes(block: int, G: int, TP: int, JS: int, itemsize: int) -> int:
    """Dynamic shared memory of weight_grad_regwin: gs (JC values), xs (JC + KT: a spare), both padded by
    one element per JS, and red[block / 32][TP]; JC = (block / G) * JS, KT = G * TP."""
    JC, KT = block // G * JS, G * TP
    return (skew(JC - 1, JS, 1) + 1 + skew(JC + KT - 1, JS, 1) + 1
            + block // 32 * TP) * itemsize


def forward_per_thread(step: str, dtype, block: int) -> int:
    """Outputs per thread R that `step` uses at `block`: 8 where the launch bounds and the shared memory
    allow it, else 4."""
    t, itemsize = ctype(dtype), np.dtype(dtype).itemsize
    fits = forward_shared_bytes(block, 8, TAPS, itemsize, step == "vec") <= SHARED_LIMIT
    return 8 if block <= FORWARD_BOUNDS[(step, t, 8)] and fits else 4


def _correlate(step, sig, f, out, launch, flip, offset, periodic, bias, epilogue, gate, per_thread):
    t = ctype(out.dtype)
    block = launch.block
    R = forward_per_thread(step, out.dtype, block) if per_thread is None else per_thread
    if (step, t, R) not in FORWARD_BOUNDS:
        raise ValueError(f"per_thread: expected one of 4, 8, got {R!r}")
    bound = FORWARD_BOUNDS[(step, t, R)]
    if block > bound:
        raise ValueError(f"block: correlate_{step} with {R} {t} outputs per thread takes at most {bound} threads, "
                         f"got {block}")
    M, L = out.shape[0], f.shape[0]
    if M == 0:
        return
    shared = forward_shared_bytes(block, R, min(L, TAPS), out.dtype.itemsize, step == "vec")
    if shared > SHARED_LIMIT:
        raise ValueError(f"block: correlate_{step} at {block} threads with {R} outputs per thread needs {shared} "
                         f"bytes of shared memory, more than {SHARED_LIMIT}")
    T = out.dtype.type
    args = (sig, np.int64(sig.shape[0]), np.int64(offset), np.int32(periodic), f, np.int64(L), np.int32(flip),
            out, np.int64(M), T(0 if bias is None else bias), np.int32(epilogue), out if gate is None else gate)
    module().get_function(f"correlate_{step}<{t}, {R}, {bound}>")(
        (launch.blocks(M, block * R),), (block,), args, shared_mem=shared)


def correlate_regwin(sig, f, out, launch, *, flip=False, offset=0, periodic=False, bias=None, epilogue=0,
                     gate=None, per_thread=None):
    """Step regwin: out[o] = epilogue(sum_i f'[i] s[o+i] + bias), R = per_thread (4 or 8, default
    forward_per_thread) contiguous outputs per thread with a register sliding window."""
    _correlate("regwin", sig, f, out, launch, flip, offset, periodic, bias, epilogue, gate, per_thread)


def correlate_vec(sig, f, out, launch, *, flip=False, offset=0, periodic=False, bias=None, epilogue=0,
                  gate=None, per_thread=None):
    """Step vec: regwin with 16-byte loads and stores where aligned (scalar otherwise)."""
    _correlate("vec", sig, f, out, launch, flip, offset, periodic, bias, epilogue, gate, per_thread)


def wg_layout(k: int, block: int, itemsize: int, slice_len=None) -> tuple[int, int, int]:
    """(TP, G, JS) of weight_grad_regwin: TP taps per thread, G tap groups per block (a power of two, at
    most block / 32, G * TP covering k where it can), JS values of j per thread and chunk (a power of
    two in [TP, block], as the kernel needs; by default up to 128 bytes of elements, the largest whose
    shared memory fits SHARED_LIMIT)."""
    TP = TP_SMALL if k <= TP_SMALL_MAX_K else TP_LARGE
    G = 1
    while G * TP < k and G * 2 <= block // 32:
        G *= 2
    if slice_len is not None:
        if (isinstance(slice_len, bool) or not isinstance(slice_len, int) or not TP <= slice_len <= block
                or slice_len & (slice_len - 1)):
            raise ValueError(f"slice_len: expected a power of two in [{TP}, {block}] ({TP} taps per thread at "
                             f"k = {k}), got {slice_len!r}")
        return TP, G, slice_len
    JS = 128 // itemsize
    while JS > TP and wg_shared_bytes(block, G, TP, JS, itemsize) > SHARED_LIMIT:
        JS //= 2
    return TP, G, JS


def _empty_like(a, size):
    if isinstance(a, np.ndarray):
        return np.empty(size, a.dtype)
    import cupy

    return cupy.empty(size, a.dtype)


def wg_plan(m: int, k: int, dtype, launch, bound_of, slice_len=None, splits=None) -> tuple:
    """(TP, G, JS, shared bytes, tap tiles, splits) of a weight_grad_regwin launch (both backends), after
    the checks: ValueError naming `block` (over the instantiation's launch bound, bound_of(TP)),
    `slice_len` (shared memory over SHARED_LIMIT) or `splits` (not a positive integer)."""
    itemsize, block = np.dtype(dtype).itemsize, launch.block
    TP, G, JS = wg_layout(k, block, itemsize, slice_len)
    if block > bound_of(TP):
        raise ValueError(f"block: wg_regwin with {TP} {np.dtype(dtype).name} taps per thread (k = {k}) takes at "
                         f"most {bound_of(TP)} threads, got {block} (its registers)")
    shared = wg_shared_bytes(block, G, TP, JS, itemsize)
    if shared > SHARED_LIMIT:
        raise ValueError(f"slice_len: {JS} needs {shared} bytes of shared memory, more than {SHARED_LIMIT}")
    tiles = launch.blocks(k, G * TP)
    if splits is None:
        splits = weight_grad_splits(m, block // G * JS, tiles, launch)
    elif isinstance(splits, bool) or not isinstance(splits, int) or splits < 1:
        raise ValueError(f"splits: expected a positive integer, got {splits!r}")
    return TP, G, JS, shared, tiles, splits


def weight_grad_regwin(x, g, dw, launch, *, flip=False, slice_len=None, splits=None):
    """Step wg_regwin: dw[i] = sum_{j<m} g[j] x[j+i] (stored at k-1-i when flip), deterministic.

    Per-block partials partial[split * k + i] over the j chunks of each split, then wg_sum_partials adds
    the splits in a fixed order (skipped with one split: the block writes dw). `slice_len` (JS) and
    `splits` override the layout (tests use them to reach several chunks per split)."""
    t = ctype(dw.dtype)
    n, m, k = x.shape[0], g.shape[0], dw.shape[0]
    block = launch.block
    TP, G, JS, shared, tiles, splits = wg_plan(m, k, dw.dtype, launch, lambda TP: WG_BOUNDS[(t, TP)], slice_len,
                                               splits)
    bound = WG_BOUNDS[(t, TP)]
    partial = dw if splits == 1 else _empty_like(dw, splits * k)
    args = (x, g, partial, np.int64(n), np.int64(m), np.int64(k), np.int32(flip), np.int32(G), np.int32(JS))
    module().get_function(f"weight_grad_regwin<{t}, {TP}, {bound}>")((tiles, splits), (block,), args,
                                                                       shared_mem=shared)
    if splits > 1:
        module().get_function(f"wg_sum_partials<{t}>")((launch.blocks(k, 1),), (block,),
                                                        (partial, np.int64(splits), np.int64(k), dw))
