"""The kernel ladder of the 1-D correlation engine and weight gradient in numba.cuda: the steps of
gpu/cupy/ladder.cu (CUDA C) beyond gpu/numba_cuda/correlate.py's `naive` and `tiled`, with the same designs,
names and shared-memory layouts (gpu/launch.py computes them for both).

    out[o] = epilogue(sum_{i<L} f'[i] s[o+i] + bias)        for o < M,  f'[i] = f[L-1-i] if flip else f[i]
    s[t]   = sig[t + offset] (0 outside sig, such terms skipped)  or  sig[(t + offset) mod N] (periodic)
    dw[i]  = sum_{j<m} g[j] x[j+i]  for i < k (stored at k-1-i when flip), n = m + k - 1

Steps (registered by gpu/numba_cuda/backend.py under these names, never renumbered):

    regwin     (forward, every op of gpu/steps.py) tiled, but R contiguous outputs per thread
               (16 up to 512 threads in float32, as the CUDA C vec16; else 8, or 4 where
               registers or shared memory demand it: each x and filter value read from shared memory serves R
               FMAs, so R = 16 halves the shared loads, window shifts and per-tile code per FMA of R = 8; auto's
               forward beyond gpu.auto.STREAM_MAX_K taps) with a register sliding window over the
               staged x: each x loaded from shared memory serves R outputs (tiled: 1); the halo is k-1
               (filter chunks of TAPS = 256 taps; tiled stages chunks of a whole tile of taps and the
               matching halo whatever k); one padding word per run of R in shared memory, so that the
               lanes' reads at a stride of R words hit distinct banks. Against numba tiled, also:
               unsigned shared-memory indices (numba wraps a signed index, `i < 0 ? i + n : i`, on every
               access, and widens every int32 expression to 64 bits): running offsets are uint32
               (`uint32(...)` around each expression lets LLVM narrow the arithmetic back to 32 bits), and
               an unrolled access at a constant distance u is `sm[uint64(p + u)]`, which folds into the
               load's immediate offset; and launch bounds (numba-cuda's `launch_bounds`)
    wg_regwin  (weight gradient) tap tiles sized to k (G groups of TP contiguous taps, G*TP >= k, TP = 4
               for k <= 16 else 16; tiled: tiles of 32*per_thread taps, mostly wasted at k = 3), each
               thread a contiguous slice of JS values of j with a register window over x; per-thread
               partials, a `cuda.shfl_down_sync` tree, the warps added in order into per-block partials,
               then `sum_partials_kernel` adds each column in a fixed order: the same bits on every run
    wg_stream  wg_regwin with 64 bytes of staging loads in flight per thread (16 floats or 8 doubles loaded into
               registers before any shared store: `stage_hoisted`; wg_regwin: one), slices of up to 512 bytes
               of j and ~16x the blocks (gpu.launch STREAM_SLICE_BYTES, STREAM_BLOCKS), as the CUDA C step;
               TP = TP_WIDE = 32 taps per thread in float32 beyond k = 64 at blocks up to 256 (`wide`): twice
               the FMAs per staged value and per chunk, the window's code written out (`window_source`)
    vec        not here: numba has no float4 / double2 loads (a numba array access is one scalar access),
               so the CUDA C `vec` step has no numba twin

Where they differ from the CUDA C: numba does not unroll loops itself, so regwin's R x R block of FMAs is
`range` loops over local arrays that LLVM unrolls and keeps in registers (the compile check would show a
stack frame otherwise); the weight gradient's TP x TP block is generated source, every index a constant
(`window_source`: LLVM leaves a 32 x 32 block of `range` loops rolled, on local memory); the kernels are
built per (dtype, block, R or TP) by cached
factories, numba's way of making sizes compile-time constants; shared memory is dynamic (sized per
call to k, as the CUDA C), one array with the regions at offsets.

Why the code is written as it is (each choice read off the sm_90 SASS by plots/model/oned.py):
- staging by `while` loops over a uint32 counter (`stage_run`): `range` loops would take 17-27 instructions
  per staged element (a 64-bit trip count and selects), against ~12;
- an unrolled shared access at a constant distance u is `sm[uint64(p + u)]`: the offset folds into the
  load's immediate, where `uint32(p + u)` (a zero-extended 32-bit sum) needs its own add and address per
  access, about 1.4x the instructions of the hot loop;
- launch bounds (block, MAXB // block), the register budget of the CUDA C's __launch_bounds__(MAXB, 1)
  (MAXB: FORWARD_BOUNDS, WG_BOUNDS): with (block,) alone ptxas takes up to 144 registers at block 128 and
  spills at some blocks;
- wg_regwin's tile and chunk counts are shifts, not 64-bit divisions, since KT and JC are powers of two;
- the window's tail (a slice's last values of j, fewer than TP) is nested ifs with each x value loaded in the
  branch that first needs it: one branch skips it; flat ifs (the `range` loops' form) left ~200 branch
  instructions per chunk and, at TP = 32, 172 registers instead of 128 (two blocks of 128 an SM, not four);
- the epilogue takes one tap per thread (KT <= B), not a `range` loop over taps: ~800 fewer instructions.
Each step's predicted share of HBM or of the FMA peak against its CUDA C twin is in the targets table the
static model writes (python -m plots.model; plots/<device>-model/targets.md).

Every global index is an int64 (n may exceed 2**31); shared-memory indices are uint32. Kernels stride
over tiles beyond their grid.
"""

from __future__ import annotations

import functools

import numpy as np

from gpu import launch as plan
from gpu.launch import BLOCKS, TAPS, TAPS_PER_THREAD
from gpu.launch import NumbaCudaLaunch as Launch
from gpu.numba_cuda import common, reduce
from gpu.numba_cuda.common import DEFAULT_LAUNCH, scalar_type
from gpu.numba_cuda.correlate import finish
from gpu.numba_cuda.jit import boolean, config, cuda, int64, types, uint32, uint64
from gpu.steps import FORWARD_OPS, NOTES, Engines, Kernel, Step, correlation_impls

#: (dtype, outputs per thread R) -> largest block regwin accepts (registers without spills: plots/model/resources.py).
#: R = 16 in float32 only: in float64 its registers leave 4 blocks an SM, and the model puts regwin R = 16 behind
#: R = 8 at k = 127 (the chunk's round trips to memory are no longer hidden).
FORWARD_BOUNDS = {("float32", 4): 1024, ("float32", 8): 1024, ("float32", 16): 512, ("float64", 4): 1024,
                  ("float64", 8): 512}
#: (dtype, taps per thread TP) -> largest block wg_regwin accepts; TP_WIDE: wg_stream only.
WG_BOUNDS = {("float32", 4): 1024, ("float32", 16): 512, ("float32", plan.TP_WIDE): 256, ("float64", 4): 512,
             ("float64", 16): 256}
#: Largest block of sum_partials_kernel.
SUM_BOUND = 1024
#: Under numba's simulator nothing is compiled: `launch_bounds` is not an option there, and warp
#: shuffles are done through shared memory in the same order (see `warp_sum_factory`).
SIMULATED = bool(config.ENABLE_CUDASIM)
FULL_MASK = 0xFFFFFFFF


def _kernel_options(block: int, bound: int) -> dict:
    """launch_bounds = (block, bound // block): the block the kernel is built for, and as many blocks per SM as
    give the register budget of `bound` threads (65536 / bound registers a thread), as the CUDA C's
    __launch_bounds__(MAXB, 1) does."""
    if block > bound:
        raise ValueError(f"block: at most {bound} threads, got {block}")
    return {} if SIMULATED else {"launch_bounds": (block, bound // block)}


def _log2(v: int) -> int:
    return v.bit_length() - 1


def wide(dtype, block: int, stream: bool) -> bool:
    """Whether wg_stream takes plan.TP_WIDE taps per thread at `block` (float32 beyond plan.TP_LARGE_MAX_K, up to
    its launch bound; larger blocks keep TP_LARGE), as the CUDA C step does."""
    return stream and block <= WG_BOUNDS.get((plan.dtype_name(np.dtype(dtype)), plan.TP_WIDE), 0)


@cuda.jit(device=True)
def stage_run(dst, first, step, src, start, count, t, B):
    """dst[first + j*step] = src[start + t + j*B] for t + j*B < count (t < B: this thread's share of a run
    copied by B threads, every src index in bounds). A while loop over a uint32 counter and an int64 source
    index: numba's `range` would add a 64-bit trip count and selects to every element."""
    q = uint32(t)
    slot = uint32(first)
    gi = int64(start) + t
    while q < count:
        dst[uint64(slot)] = src[uint64(gi)]
        q = uint32(q + B)
        slot = uint32(slot + step)
        gi += B


@functools.cache
def stage_hoisted_factory(loads: int):
    """stage_hoisted(dst, first, step, src, start, count, t, B, buf): `stage_run` with `loads` values per thread
    loaded into the local array buf (registers) before any is stored, so that all of them are in flight at
    once; the rest (fewer than loads * B) one at a time."""
    @cuda.jit(device=True)
    def stage_hoisted(dst, first, step, src, start, count, t, B, buf):
        q = uint32(t)
        slot = uint32(first)
        gi = int64(start) + t
        while q + (loads - 1) * B < count:
            for u in range(loads):
                buf[u] = src[uint64(gi + u * B)]
            for u in range(loads):
                dst[uint64(slot + u * step)] = buf[u]
            q = uint32(q + loads * B)
            slot = uint32(slot + loads * step)
            gi += loads * B
        while q < count:
            dst[uint64(slot)] = src[uint64(gi)]
            q = uint32(q + B)
            slot = uint32(slot + step)
            gi += B

    return stage_hoisted


@functools.cache
def warp_sum_factory(dtype: np.dtype, block: int, count: int):
    """warp_sum(v): v[u] (u < count, a local array) becomes, in lane 0, the sum of v[u] over its warp, by
    the tree v[u] += shfl_down(v[u], d), d = 16 .. 1 (lanes past the warp's end read their own value, as
    with __shfl_down_sync). Every thread of the block calls it. Under the simulator, which has no
    shuffles, the same tree runs through a shared array, two barriers a step."""
    if not SIMULATED:
        @cuda.jit(device=True)
        def warp_sum(v):
            for u in range(count):
                a = v[u]
                a += cuda.shfl_down_sync(FULL_MASK, a, 16)
                a += cuda.shfl_down_sync(FULL_MASK, a, 8)
                a += cuda.shfl_down_sync(FULL_MASK, a, 4)
                a += cuda.shfl_down_sync(FULL_MASK, a, 2)
                a += cuda.shfl_down_sync(FULL_MASK, a, 1)
                v[u] = a

        return warp_sum
    T = scalar_type(dtype)

    @cuda.jit(device=True)
    def warp_sum_simulated(v):
        lanes = cuda.shared.array((count, block), T)
        t = cuda.threadIdx.x
        for d in (16, 8, 4, 2, 1):
            cuda.syncthreads()
            for u in range(count):
                lanes[u, t] = v[u]
            cuda.syncthreads()
            for u in range(count):
                v[u] += lanes[u, t + d] if t % 32 + d < 32 else v[u]

    return warp_sum_simulated


# --- the weight gradient's register window, written out -------------------------------------------------

def window_source(taps: int) -> str:
    """The source of `row0` .. `row{TP-1}`, `trip` and `tail` for TP = `taps` taps per thread: the weight
    gradient's TP x TP block of FMAs written out statement by statement, every local-array index a constant.

        row<v>(sm, pg, acc, xa)          gj = sm[pg + v]; then for u < TP: acc[u] += gj * xa[u + v]
        trip(sm, px, pg, acc, xa)        xa[TP + u] = sm[px + u] (u < TP); then row<v> for v < TP; then
                                         xa[u] = xa[u + TP]
        tail(sm, px, pg, rem, acc, xa)   row<v> for the rem < TP values of j a slice has left, as nested ifs
                                         (value v + 1 only where value v is taken), each x value loaded in
                                         the branch of the first v that needs it: one branch skips the whole
                                         tail, FMAs and loads, where a slice has no remainder (every slice but
                                         the one that reaches m)

    The FMAs come in the order of the `range` loops they replace (v outer, u inner: the same bits). LLVM unrolls
    such loops itself up to TP = 16, but leaves a 32 x 32 block rolled (about 1100 instructions, over its
    unrolling threshold), and a rolled loop indexes acc and xa by a variable: both then live in local memory.
    Written out, both stay in registers at any TP. One function per row keeps each numba IR block short: numba
    lowers a block in time quadratic in its statements (minutes for a 32 x 32 block in one function)."""
    TP = taps
    rows = [[f"def row{v}(sm, pg, acc, xa):", f"    gj = sm[uint64(pg + {v})]",
             *(f"    acc[{u}] += gj * xa[{u + v}]" for u in range(TP))] for v in range(TP)]
    trip = ["def trip(sm, px, pg, acc, xa):"]
    trip += [f"    xa[{TP + u}] = sm[uint64(px + {u})]" for u in range(TP)]  # xa[2TP-1] only slides down
    trip += [f"    row{v}(sm, pg, acc, xa)" for v in range(TP)]
    trip += [f"    xa[{u}] = xa[{u + TP}]" for u in range(TP)]
    tail = ["def tail(sm, px, pg, rem, acc, xa):"]
    for v in range(TP - 1):  # value v of j needs xa up to xa[TP - 1 + v]: loaded with its FMAs
        pad = "    " * (v + 2)
        tail += [f"{pad[4:]}if rem > {v}:", *([f"{pad}xa[{TP + v - 1}] = sm[uint64(px + {v - 1})]"] if v else []),
                 f"{pad}row{v}(sm, pg, acc, xa)"]
    return "\n\n\n".join("\n".join(f) for f in (*rows, trip, tail)) + "\n"


@functools.cache
def window_factory(taps: int):
    """(trip, tail): the device functions of `window_source(taps)`, inlined into the kernel by numba (inline=
    "always"), so that acc and xa are the kernel's own local arrays; the rows inlined by LLVM (forceinline),
    where SROA keeps acc and xa, indexed by constants, in registers."""
    names = {"uint64": uint64}
    exec(compile(window_source(taps), f"<gpu.numba_cuda.ladder.window_source({taps})>", "exec"), names)
    if not config.ENABLE_CUDASIM:  # the simulator calls the rows as the Python functions they are
        for v in range(taps):  # trip and tail find the rows in `names`, their globals, when numba types them
            names[f"row{v}"] = cuda.jit(device=True, forceinline=True)(names[f"row{v}"])
    return tuple(cuda.jit(device=True, inline="always")(names[f]) for f in ("trip", "tail"))


# --- regwin: the forward step ---------------------------------------------------------------------------

def forward_per_thread(dtype, block: int) -> int:
    """Outputs per thread R that regwin uses at `block`: the largest of its instantiations whose bound and shared
    memory allow."""
    return plan.forward_per_thread(_bounds(dtype), dtype, block)


def _bounds(dtype) -> dict:
    """R -> launch bound of regwin's instantiations for `dtype`."""
    name = plan.dtype_name(np.dtype(dtype))
    return {R: bound for (d, R), bound in FORWARD_BOUNDS.items() if d == name}


@functools.cache
def regwin_kernel(dtype: np.dtype, block: int, per_thread: int):
    """The regwin engine for one dtype, block and R (compile-time constants)."""
    B, R = block, per_thread
    TILE, SHIFT, R2 = B * R, _log2(R), 2 * R
    STEP = B + B // R  # slot(q + B) - slot(q): B is a multiple of the padding run R
    W = 16 // np.dtype(dtype).itemsize  # elements per 16 bytes: fs starts 16-byte aligned, as in the CUDA C
    T = scalar_type(dtype)
    options = _kernel_options(B, FORWARD_BOUNDS[(plan.dtype_name(np.dtype(dtype)), R)])

    @cuda.jit(device=True)
    def slot(q):
        """Shared slot of window element q: one padding word after every run of R (gpu/cupy/ladder.cu skew)."""
        return uint32(q + (q >> SHIFT))

    @cuda.jit(**options)
    def kernel(sig, offset, periodic, f, flip, out, zero, bias, epilogue, gate):
        """Block tile of TILE = B*R outputs, thread t owns o0 + tR + r (r < R). Per filter chunk c0
        (count = min(L - c0, TAPS) taps), in one dynamic shared array:

            fs[c] = f'[c0 + c]                  (c < count, at FS: 16-byte aligned past the window)
            ss[slot(q)] = s[o0 + c0 + q]        (q < TILE + count - 1: the tile and a halo of count-1)
            acc[r] += fs[c] * ss[slot(tR + r + c)]

        taken R taps at a time with the window xa[0 .. 2R-1] = ss[slot(tR + c ..)] in registers: R*R
        FMAs per R x values and R filter values loaded, then xa slides by R. A chunk whose terms touch
        the zero padding (non-periodic ends) adds the real terms only, one output at a time.
        """
        sm = cuda.shared.array(0, T)
        acc = cuda.local.array(R, T)
        xa = cuda.local.array(R2, T)
        fr = cuda.local.array(R, T)
        t = uint32(cuda.threadIdx.x)
        N, L, M = sig.shape[0], f.shape[0], out.shape[0]
        taps = min(L, TAPS)
        FS = uint32((slot(TILE + taps - 1) + W) // W * W)
        xb = uint32(t * (R + 1))  # slot(tR)
        lo, hi = -offset, N - offset  # non-periodic: s[q] is sig data for lo <= q < hi
        for tile in range(cuda.blockIdx.x, (M + TILE - 1) // TILE, cuda.gridDim.x):
            o0 = int64(tile) * TILE
            for r in range(R):
                acc[r] = zero
            for c0 in range(0, L, TAPS):
                count = min(TAPS, L - c0)
                cuda.syncthreads()  # everyone is done reading the previous chunk
                for c in range(t, count, B):
                    i = c0 + c
                    sm[uint32(FS + c)] = f[L - 1 - i] if flip else f[i]
                # stage ss[slot(q)] = s[o0 + c0 + q], q < span, and a zero in the spare slot(span)
                span = TILE + count - 1
                g0 = o0 + c0 + offset
                start = g0 % N if periodic else g0  # Python's %: in [0, N)
                if start >= 0 and start + span <= N:  # inside sig, not wrapping: no bounds checks
                    stage_run(sm, slot(t), STEP, sig, start, span, t, B)
                else:
                    for q in range(t, span, B):
                        pos = start + q
                        if periodic:
                            pos = pos if pos < N else (pos - N if pos - N < N else pos % N)
                            sm[slot(q)] = sig[pos]
                        else:
                            sm[slot(q)] = sig[pos] if 0 <= pos < N else zero
                if t == 0:
                    sm[slot(span)] = zero
                cuda.syncthreads()
                last = min(o0 + TILE, M) - 1 + c0 + count - 1  # furthest signal position used
                if periodic or (o0 + c0 >= lo and last < hi):  # interior chunk: every term is a real one
                    n_taps = uint32(count)
                    for r in range(R):
                        xa[r] = sm[uint64(xb + r)]
                    p = uint32(xb + R + 1)  # slot(tR + c + R): a run of R slots
                    fc = FS  # fs index of tap c
                    c = uint32(0)
                    while c + R <= n_taps:
                        for u in range(R):
                            xa[R + u] = sm[uint64(p + u)]  # xa[2R-1] is never multiplied
                        for u in range(R):
                            fr[u] = sm[uint64(fc + u)]
                        for u in range(R):
                            for r in range(R):
                                acc[r] += fr[u] * xa[r + u]
                        for r in range(R):
                            xa[r] = xa[r + R]
                        c = uint32(c + R)
                        p = uint32(p + R + 1)
                        fc = uint32(fc + R)
                    rem = n_taps - c  # < R taps left: xa[R .. R + rem - 2] completes their window
                    for u in range(R - 1):
                        if u + 1 < rem:
                            xa[R + u] = sm[uint64(p + u)]
                    for u in range(R - 1):
                        if u < rem:
                            w = sm[uint64(fc + u)]
                            for r in range(R):
                                acc[r] += w * xa[r + u]
                else:
                    for r in range(R):  # chunk touching the padding: real taps only
                        o = o0 + t * R + r
                        cend = max(0, min(count, hi - o - c0))
                        for c in range(max(0, min(count, lo - o - c0)), cend):
                            acc[r] += sm[uint32(FS + c)] * sm[slot(t * R + r + c)]
            for r in range(R):
                o = o0 + t * R + r
                if o < M:
                    out[o] = finish(acc[r] + bias, o, zero, epilogue, gate)

    return kernel


def correlate_regwin(sig, f, out, launch: Launch, *, flip=False, offset=0, periodic=False, bias=None,
                     epilogue=0, gate=None, per_thread=None):
    """Step regwin: out[o] = epilogue(sum_i f'[i] s[o+i] + bias) (gpu/steps.py's engine), with
    R = per_thread (4, 8 or 16; default `forward_per_thread`) contiguous outputs per thread. The launch's own
    per_thread is the tiled kernels' option: regwin picks R as the CUDA C step does."""
    block, M = launch.block, out.shape[0]
    R, shared = plan.forward_plan(_bounds(out.dtype), out.dtype, block, f.shape[0], per_thread=per_thread)
    if M == 0:
        return
    T = np.dtype(out.dtype).type
    kernel = regwin_kernel(np.dtype(out.dtype), block, R)
    kernel[launch.blocks(M, block * R), block, 0, shared](
        sig, int(offset), bool(periodic), f, bool(flip), out, T(0), T(0 if bias is None else bias), epilogue,
        out if gate is None else gate)


# --- wg_regwin: the weight-gradient step -----------------------------------------------------------------

@functools.cache
def wg_regwin_kernel(dtype: np.dtype, block: int, taps_per_thread: int, stream: bool = False):
    """The wg_regwin weight gradient for one dtype, block and TP (compile-time constants); the tap groups
    G and the slice length JS are arguments (powers of two, as `gpu.launch.wg_layout` picks them). `stream`:
    step wg_stream, staging by `stage_hoisted` with plan.STAGE_LOADS 16-byte vectors' worth of values."""
    B, TP = block, taps_per_thread
    TP2, LOG_B, LOG_TP = 2 * TP, _log2(block), _log2(taps_per_thread)
    T = scalar_type(dtype)
    warp_sum = warp_sum_factory(np.dtype(dtype), B, TP)
    options = _kernel_options(B, WG_BOUNDS[(plan.dtype_name(np.dtype(dtype)), TP)])
    LOADS = plan.STAGE_LOADS * 16 // np.dtype(dtype).itemsize if stream else 1
    stage = stage_hoisted_factory(LOADS)
    trip, tail = window_factory(TP)

    @cuda.jit(**options)
    def kernel(x, g, partial, k, zero, flip, log_s, log_js):
        """Block (tile, split) of a grid (tiles, splits); its B threads are G tap groups of S = B/G =
        2**log_s threads (S >= 32: a warp holds one group). Tap tile i0 = tile*KT, KT = G*TP; thread t
        is group tg = t/S, slice js = t%S and owns taps i0 + tg*TP + u (u < TP). Over the chunks split,
        split + splits, ... of JC = S*JS values of j (JS = 2**log_js, a multiple of TP):

            gs[slot(q)] = g[j0 + q] (q < JC),   xs[slot(q)] = x[j0 + i0 + q] (q <= JC + KT - 1)
            slot(q) = q + q/JS: lanes read at a stride of JS + 1 slots, distinct banks
            acc[u] += gs[jb + jj] * xs[jb + jj + tg*TP + u]   for jj < JS, jb = js*JS, j0 + jb + jj < m

        taken TP values of j at a time with a window xa[0 .. 2TP-1] in registers. Then each tap's S
        partial sums are added in a fixed order: warp_sum within the warp, the S/32 warps in order
        through red[warp][TP], stored at partial[split*k + i] (i reversed when flip).
        """
        sm = cuda.shared.array(0, T)
        acc = cuda.local.array(TP, T)
        xa = cuda.local.array(TP2, T)
        buf = cuda.local.array(LOADS, T)
        t = uint32(cuda.threadIdx.x)
        ls, lj = uint32(log_s), uint32(log_js)
        S, JS = uint32(1 << ls), uint32(1 << lj)
        G = uint32(B >> ls)
        tg, js, lane, w = uint32(t >> ls), uint32(t & (S - 1)), uint32(t & 31), uint32(t >> 5)
        KT, JC = uint32(G * TP), uint32(S << lj)
        XW = uint32(JC + KT - 1)
        XS = uint32(JC - 1 + ((JC - 1) >> lj) + 1)  # xs after gs
        RED = uint32(XS + XW + (XW >> lj) + 1)  # red after xs
        STEP = uint32(B + (B >> lj))  # slot(q + B) - slot(q): B is a multiple of JS
        n, m = x.shape[0], g.shape[0]
        split, splits = cuda.blockIdx.y, cuda.gridDim.y
        jb = uint32(js << lj)
        ib = uint32(jb + tg * TP)
        xb = uint32(ib + (ib >> lj))  # slot(ib): a run of TP slots
        gb = uint32(jb + (jb >> lj))  # slot(jb)
        log_kt = uint32(LOG_B - ls + LOG_TP)  # KT and JC are powers of two: shifts, no 64-bit divisions
        for tile in range(cuda.blockIdx.x, (k + KT - 1) >> log_kt, cuda.gridDim.x):
            i0 = int64(tile) * KT
            for u in range(TP):
                acc[u] = zero
            for chunk in range(split, (m + JC - 1) >> uint32(ls + lj), splits):
                j0 = int64(chunk) * JC
                cuda.syncthreads()  # everyone is done reading the previous chunk
                s = uint32(t + (t >> lj))
                if j0 + JC <= m:  # no bounds checks
                    stage(sm, s, STEP, g, j0, JC, t, B, buf)
                else:
                    for q in range(t, JC, B):
                        sm[s] = g[j0 + q] if j0 + q < m else zero
                        s = uint32(s + STEP)
                s = uint32(XS + t + (t >> lj))
                if j0 + i0 + XW < n:
                    stage(sm, s, STEP, x, j0 + i0, XW + 1, t, B, buf)
                else:
                    for q in range(t, XW + 1, B):
                        sm[s] = x[j0 + i0 + q] if j0 + i0 + q < n else zero
                        s = uint32(s + STEP)
                cuda.syncthreads()
                jn = uint32(max(0, min(int64(JS), m - j0 - jb)))  # this slice's j (none past m)
                if jn > 0:
                    for u in range(TP):
                        xa[u] = sm[uint64(XS + xb + u)]
                    q = uint32(ib + TP)
                    px = uint32(XS + q + (q >> lj))  # slot(ib + jj + TP): a run of TP slots (TP divides JS)
                    pg = gb  # slot(jb + jj)
                    jj = uint32(0)
                    while jj + TP <= jn:
                        trip(sm, px, pg, acc, xa)
                        jj = uint32(jj + TP)
                        q = uint32(ib + jj + TP)
                        px = uint32(XS + q + (q >> lj))
                        q = uint32(jb + jj)
                        pg = uint32(q + (q >> lj))
                    tail(sm, px, pg, jn - jj, acc, xa)  # < TP values of j left
            warp_sum(acc)
            cuda.syncthreads()  # red may be read by the previous tile's sums
            if lane == 0:
                for u in range(TP):
                    sm[uint32(RED + w * TP + u)] = acc[u]
            cuda.syncthreads()
            per_group = uint32(S >> 5)  # warps per tap group
            i = i0 + t
            if t < KT and i < k:  # KT = G*TP <= G*S = B: one tap a thread at most
                first = uint32(RED + (t >> LOG_TP) * per_group * TP + (t & (TP - 1)))
                v = sm[uint64(first)]
                ww = uint32(1)
                while ww < per_group:
                    v += sm[uint64(first + ww * TP)]
                    ww = uint32(ww + 1)
                partial[split * k + (k - 1 - i if flip else i)] = v

    return kernel


@functools.cache
def sum_partials_kernel(dtype: np.dtype, block: int):
    """The fixed-order second pass of wg_regwin (gpu/cupy/ladder.cu wg_sum_partials) for one dtype and block."""
    B = block
    T = scalar_type(dtype)
    warp_sum = warp_sum_factory(np.dtype(dtype), B, 1)
    options = _kernel_options(B, SUM_BOUND)

    @cuda.jit(**options)
    def kernel(partial, rows, out, zero):
        """out[c] = sum_{b < rows} partial[b*cols + c], one block per column (grid-stride over columns):
        thread t adds rows t, t+B, ... in order, then warp_sum and the warps in order. The order depends
        only on B: the same bits on every run with the same block."""
        sums = cuda.shared.array(32, T)
        v = cuda.local.array(1, T)
        t = cuda.threadIdx.x
        cols = out.shape[0]
        for c in range(cuda.blockIdx.x, cols, cuda.gridDim.x):
            v[0] = zero
            for b in range(t, rows, B):
                v[0] += partial[b * cols + c]
            warp_sum(v)
            cuda.syncthreads()  # the previous column's sum has been read
            if t % 32 == 0:
                sums[t // 32] = v[0]
            cuda.syncthreads()
            if t == 0:
                s = sums[0]
                for ww in range(1, B // 32):
                    s += sums[ww]
                out[c] = s

    return kernel


def weight_grad_regwin(x, g, dw, launch: Launch, *, flip=False, slice_len=None, splits=None, stream=False):
    """Step wg_regwin: dw[i] = sum_{j<m} g[j] x[j+i] (stored at k-1-i when flip), deterministic.

    Per-block partials partial[split*k + i] over the j chunks of each split (splits: gpu.launch's
    weight_grad_splits), then `sum_partials_kernel` adds the splits in a fixed order (skipped with one
    split: the block writes dw). `slice_len` (JS) and `splits` override the layout (tests use them to
    reach several chunks per split). `stream`: step wg_stream."""
    name, block = plan.dtype_name(np.dtype(dw.dtype)), launch.block
    m, k = g.shape[0], dw.shape[0]
    TP, G, JS, shared, tiles, splits = plan.wg_plan(m, k, dw.dtype, launch, lambda TP: WG_BOUNDS[(name, TP)],
                                                    slice_len, splits, stream, wide(dw.dtype, block, stream))
    T = np.dtype(dw.dtype).type
    partial = dw if splits == 1 else cuda.device_array(splits * k, dw.dtype)
    kernel = wg_regwin_kernel(np.dtype(dw.dtype), block, TP, stream)
    kernel[(tiles, splits), block, 0, shared](x, g, partial, k, T(0), bool(flip), _log2(block // G), _log2(JS))
    if splits > 1:
        sum_partials_kernel(np.dtype(dw.dtype), block)[launch.blocks(k, 1), block](partial, splits, dw, T(0))



# --- the steps regwin and wg_regwin ------------------------------------------------------------------------

def _corr_types(dtype: str) -> tuple:
    T = getattr(types, dtype)
    a1 = types.Array(T, 1, "C")
    return (a1, int64, boolean, a1, boolean, a1, T, T, int64, a1)


def regwin_kernels(dtype: str) -> list[Kernel]:
    """regwin for each R of FORWARD_BOUNDS at each block up to its bound whose shared memory fits, with the most
    dynamic shared memory a launch asks for (a full filter chunk)."""
    size, out = plan.itemsize(dtype), []
    for b in BLOCKS:
        for R, bound in sorted(_bounds(dtype).items()):
            shared = plan.forward_shared_bytes(b, R, TAPS, size, False)
            if b <= bound and shared <= plan.SHARED_LIMIT:
                out.append(Kernel(f"ladder.regwin_kernel[B={b},R={R}]", dtype, (b,), {b: shared},
                                  b == DEFAULT_LAUNCH.block and R == forward_per_thread(dtype, b),
                                  build=functools.partial(lambda b, R: (regwin_kernel(np.dtype(dtype), b, R),
                                                                        _corr_types(dtype)), b, R)))
    return [*out, *reduce.tiled_kernels(atomic=False)(dtype), *common.kernels(dtype)]


def wg_kernels(dtype: str, stream: bool = False) -> list[Kernel]:
    """wg_regwin (or wg_stream: also TP_WIDE where `wide`) for each TP up to its bound, with the most shared
    memory of its layouts, and the second pass."""
    T, size, out = getattr(types, dtype), plan.itemsize(dtype), []
    a1 = types.Array(T, 1, "C")
    name = "wg_stream_kernel" if stream else "wg_regwin_kernel"
    for b in BLOCKS:
        for TP in (*TAPS_PER_THREAD, *[plan.TP_WIDE] * wide(dtype, b, stream)):
            if b <= WG_BOUNDS[(dtype, TP)]:
                out.append(Kernel(f"ladder.{name}[B={b},TP={TP}]", dtype, (b,),
                                  {b: plan.wg_most_shared(b, TP, size, stream, wide(dtype, b, stream))},
                                  b == DEFAULT_LAUNCH.block,
                                  build=functools.partial(lambda b, TP: (wg_regwin_kernel(np.dtype(dtype), b, TP,
                                                                                          stream),
                                                                         (a1, a1, a1, int64, T, boolean, int64, int64)),
                                                          b, TP)))
        out.append(Kernel(f"ladder.sum_partials_kernel[B={b}]", dtype, (b,), default=b == DEFAULT_LAUNCH.block,
                          build=functools.partial(lambda b: (sum_partials_kernel(np.dtype(dtype), b),
                                                             (a1, int64, a1, T)), b)))
    return [*out, *common.kernels(dtype)]


ENGINES = Engines(correlate_regwin, weight_grad_regwin, reduce.total_tiled, empty=cuda.device_array,
                  launch_of=Launch.of)
B0 = DEFAULT_LAUNCH.block
REGWIN = Step("regwin", correlation_impls(ENGINES, FORWARD_OPS),
              {"": "tiled, but R = 16 contiguous outputs per thread in float32, 8 in float64 (4 where registers "
                   "or shared memory demand it) with a register sliding window over x, and a halo of exactly k-1: "
                   "each x value loaded serves R outputs"}, kernels=regwin_kernels,
              hot={"conv1d": lambda d, k: f"ladder.regwin_kernel[B={B0},R={forward_per_thread(d, B0)}]"},
              shape=lambda op, n, k, d: plan.forward_shape(n, k, forward_per_thread(d, B0), DEFAULT_LAUNCH),
              engines=ENGINES)
WG_REGWIN = Step("wg_regwin", correlation_impls(ENGINES, ("conv1d_weight_grad",)), NOTES["wg_regwin"],
                 kernels=wg_kernels,
                 hot={"conv1d_weight_grad": lambda d, k: f"ladder.wg_regwin_kernel[B={B0},"
                                                         f"TP={plan.wg_layout(k, B0, plan.itemsize(d))[0]}]"},
                 shape=lambda op, n, k, d: plan.wg_shape(n, k, d, DEFAULT_LAUNCH), engines=ENGINES)


def _stream_tp(dtype: str, k: int) -> int:
    """TP of wg_stream at the default launch for k taps."""
    return plan.wg_layout(k, B0, plan.itemsize(dtype), wide=wide(dtype, B0, True))[0]


STREAM_ENGINES = Engines(correlate_regwin, functools.partial(weight_grad_regwin, stream=True), reduce.total_tiled,
                         empty=cuda.device_array, launch_of=Launch.of)
WG_STREAM = Step("wg_stream", correlation_impls(STREAM_ENGINES, ("conv1d_weight_grad",)),
                 {"": "wg_regwin with 64 bytes of staging loads in flight per thread (loaded into registers before "
                      "the shared stores), slices of up to 512 bytes of j, 32 taps per thread in float32 beyond "
                      "k = 64 and 16x the blocks: DRAM latency covered, the per-chunk code a small share, a short "
                      "last wave"},
                 kernels=functools.partial(wg_kernels, stream=True),
                 hot={"conv1d_weight_grad": lambda d, k: f"ladder.wg_stream_kernel[B={B0},TP={_stream_tp(d, k)}]"},
                 shape=lambda op, n, k, d: plan.wg_shape(n, k, d, DEFAULT_LAUNCH, stream=True, wide=wide(d, B0, True)),
                 engines=STREAM_ENGINES)
STEPS = (REGWIN, WG_REGWIN, WG_STREAM)
