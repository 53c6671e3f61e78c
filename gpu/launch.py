"""Launch options, launch planning and the ladder's layouts: the launch math both GPU backends share.

A call's options (`kernels.get(op, backend, variant, block=32)`) are parsed once into a `Launch` of its
backend: `CupyLaunch` (block, max_blocks) or `NumbaCudaLaunch` (also per_thread). Every kernel strides
over the work beyond its grid, so `max_blocks` caps each grid axis without limiting n.

The split reductions are planned here, for both backends alike:

    weight_grad_splits   the j range of dw[i] = sum_j g[j] x[j+i] split over blocks along grid axis y,
                         so that (tap tiles) x (splits) is about REDUCTION_BLOCKS blocks
    sum_blocks           blocks of the first pass of a total, each thread summing >= ITEMS elements
    param_chunks         chunks of the flat (n, l) positions of the layer's dw and db partials

Each plan depends only on the sizes and the launch, so repeated calls add in the same order, to the
bit; param_chunks does not even depend on max_blocks (a capped grid strides, adding in the same order).

The ladder steps regwin, vec and wg_regwin have one design in both backends (gpu/cupy/ladder.cu and
gpu/numba_cuda/ladder.py); their shared-memory layouts are computed here, once:

    forward (regwin, vec)   R contiguous outputs per thread; the x window of block*R + taps - 1 values in
                            runs of R, each followed by `forward_pad` elements (bank-conflict-free reads at
                            a stride of R), then the filter chunk of `taps` values
    weight grad (wg_regwin) G tap groups of TP contiguous taps (`wg_layout`); per chunk JC = (block/G)*JS
                            values of g and JC + G*TP - 1 of x, padded by one element per run of JS, then
                            block/32 x TP warp partials

A launch's shared memory (static and dynamic) stays within SHARED_LIMIT, the 48 KB a block gets without
opting in to more; every launcher checks it with `check_shared` and its largest block with `check_block`,
ValueError naming the argument before any work.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

#: Block sizes a launch may take: powers of two from a warp to the CUDA limit.
BLOCKS = (32, 64, 128, 256, 512, 1024)
#: Shared memory a block may use without opting in to more (static + dynamic): the one limit every launch checks.
SHARED_LIMIT = 48 << 10
#: Grid size the split 1-D reductions aim at: enough blocks to fill a large GPU several times over.
REDUCTION_BLOCKS = 1024
#: Elements each thread sums at least in the first pass of a split sum.
ITEMS = 32
#: Most blocks along grid axis y.
MAX_GRID_Y = 65535


@dataclass(frozen=True)
class Launch:
    backend: ClassVar[str] = "gpu"  # named in error messages
    block: int = 128  # threads per block: a power of two in [32, 1024]
    max_blocks: int = 1 << 16  # grid cap: kernels stride over the work beyond it

    @classmethod
    def of(cls, options: dict) -> Launch:
        """The launch described by a call's options; TypeError/ValueError names a bad one."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(options) - set(names))
        if unknown:
            raise TypeError(f"{cls.backend} options: unknown {unknown}, expected some of {names}")
        launch = cls(**options)
        if launch.block not in BLOCKS:
            raise ValueError(f"block: expected a power of two in [32, 1024], got {launch.block!r}")
        for name in names[1:]:
            value = getattr(launch, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        return launch

    def blocks(self, items: int, per_block: int) -> int:
        """Grid size for `items` work items, `per_block` per block: ceil division, capped."""
        return max(1, min(-(-items // per_block), self.max_blocks))


@dataclass(frozen=True)
class CupyLaunch(Launch):
    backend: ClassVar[str] = "cupy"


@dataclass(frozen=True)
class NumbaCudaLaunch(Launch):
    backend: ClassVar[str] = "numba_cuda"
    per_thread: int = 4  # outputs per thread in the tiled kernels, accumulated in registers
    #: per_thread values accepted (each is compiled and resource-checked by plots/model/resources.py)
    PER_THREAD: ClassVar[tuple] = (1, 2, 4, 8)

    @classmethod
    def of(cls, options: dict) -> NumbaCudaLaunch:
        launch = super().of(options)
        if launch.per_thread not in cls.PER_THREAD:
            raise ValueError(f"per_thread: expected one of {cls.PER_THREAD}, got {launch.per_thread!r}")
        return launch


def weight_grad_splits(m: int, chunk: int, tiles: int, launch: Launch, target: int = REDUCTION_BLOCKS) -> int:
    """Blocks along grid axis y for a weight gradient over m values of g in chunks of `chunk`, with
    `tiles` tap tiles along x: ceil(m / chunk), at most target / tiles (and the grid caps)."""
    return max(1, min(-(-m // chunk), max(1, target // tiles), launch.max_blocks, MAX_GRID_Y))


def sum_blocks(m: int, launch: Launch) -> int:
    """Blocks of the first pass of sum_j g[j] over m values: each thread sums at least ITEMS, at most
    REDUCTION_BLOCKS blocks (the second pass adds the block sums serially)."""
    return min(launch.blocks(m, launch.block * ITEMS), REDUCTION_BLOCKS)


def param_chunks(positions: int, columns: int, launch: Launch) -> tuple[int, int]:
    """(chunk, splits): the layer's dw and db partials over `positions` = N * L_out flat positions
    and `columns` = dw.size + db.size, one thread per (chunk, column).

    Chunks of at least ITEMS positions, enough of them for the threads to fill REDUCTION_BLOCKS blocks,
    and at most REDUCTION_BLOCKS chunks (the second pass adds them serially).
    """
    target = max(1, min(-(-positions // ITEMS), max(1, REDUCTION_BLOCKS * launch.block // columns), REDUCTION_BLOCKS))
    chunk = max(1, -(-positions // target))
    return chunk, -(-positions // chunk)


def check_block(block: int, bound: int, what: str) -> None:
    """ValueError naming `block` when it exceeds `bound`, the largest block `what` is built for (more threads
    would not fit its registers in the register file without spilling)."""
    if block > bound:
        raise ValueError(f"block: {what} takes at most {bound} threads, got {block} (its registers)")


def check_shared(nbytes: int, what: str, argument: str = "block") -> None:
    """ValueError naming `argument` when `nbytes` of shared memory exceed SHARED_LIMIT."""
    if nbytes > SHARED_LIMIT:
        raise ValueError(f"{argument}: {what} needs {nbytes} bytes of shared memory, more than {SHARED_LIMIT}")


def dtype_name(dtype) -> str:
    """"float32" or "float64", the key of every launch-bound table; TypeError for any other dtype."""
    name = np.dtype(dtype).name
    if name not in ("float32", "float64"):
        raise TypeError(f"dtype: expected float32 or float64, got {dtype}")
    return name


def itemsize(dtype) -> int:
    return 4 if dtype_name(dtype) == "float32" else 8


# --- the ladder's layouts (gpu/cupy/ladder.cu, gpu/numba_cuda/ladder.py) ------------------------------

#: Filter taps per chunk of the forward steps.
TAPS = 256
#: Taps per thread of the weight gradient: TP_SMALL up to k = TP_SMALL_MAX_K, else TP_LARGE; a `wide` layout
#: (wg_stream in float32, both backends, blocks up to their TP_WIDE launch bound) takes TP_WIDE beyond
#: k = TP_LARGE_MAX_K: twice the FMAs per staged value and per chunk.
TP_SMALL, TP_SMALL_MAX_K, TP_LARGE = 4, 16, 16
TP_WIDE, TP_LARGE_MAX_K = 32, 64
TAPS_PER_THREAD = (TP_SMALL, TP_LARGE)
#: wg_stream: 16-byte loads in flight per thread while staging, bytes of j per thread slice (wg_regwin: 128), and
#: the grid it aims at (wg_regwin: REDUCTION_BLOCKS), so that the last wave is a small part of the run.
STAGE_LOADS, STREAM_SLICE_BYTES, STREAM_BLOCKS = 4, 512, 16 * REDUCTION_BLOCKS


def skew(q: int, run: int, pad: int) -> int:
    """Shared-memory slot of element q: `pad` elements of padding after every `run`."""
    return q + pad * (q // run)


def forward_pad(R: int, size: int, vec: bool) -> int:
    """Padding per run of R of the forward window: one element, or in `vec` one 16-byte vector unless R is a
    single odd number of vectors (`size`: bytes per element)."""
    W = 16 // size
    return (0 if (R // W) % 2 else W) if vec else 1


def forward_shared_bytes(block: int, R: int, taps: int, size: int, vec: bool) -> int:
    """Dynamic shared memory of the forward steps: the padded window of block*R + taps - 1 values plus a
    spare slot, 16-byte aligned, then the `taps` values of the filter chunk."""
    W = 16 // size
    return ((skew(block * R + taps - 1, R, forward_pad(R, size, vec)) + W) // W * W + taps) * size


def forward_per_thread(bounds: dict, dtype, block: int, vec: bool = False) -> int:
    """R of a forward step at `block` by default: the largest of its instantiations (`bounds`: R -> launch
    bound) whose bound takes the block and whose full filter chunk fits the shared memory, else the smallest."""
    fits = [R for R in sorted(bounds) if block <= bounds[R]
            and forward_shared_bytes(block, R, TAPS, itemsize(dtype), vec) <= SHARED_LIMIT]
    return fits[-1] if fits else min(bounds)


def forward_plan(bounds: dict, dtype, block: int, k: int, vec: bool = False, per_thread=None) -> tuple[int, int]:
    """(R, dynamic shared bytes) of a forward-step launch at `block` for a k-tap filter, after the checks:
    ValueError naming `per_thread` (not an instantiation of `bounds`: R -> launch bound) or `block` (over the
    launch bound of R, or over the shared-memory limit)."""
    R = forward_per_thread(bounds, dtype, block, vec) if per_thread is None else per_thread
    if R not in bounds:
        raise ValueError(f"per_thread: expected one of {sorted(bounds)}, got {R!r}")
    check_block(block, bounds[R], f"the forward step with {R} {dtype_name(dtype)} outputs per thread")
    shared = forward_shared_bytes(block, R, min(k, TAPS), itemsize(dtype), vec)
    check_shared(shared, f"the forward step at {block} threads with {R} outputs per thread")
    return R, shared


def wg_shared_bytes(block: int, G: int, TP: int, JS: int, size: int) -> int:
    """Dynamic shared memory of the weight-gradient step: gs (JC values), xs (JC + KT: a spare), both padded
    by one element per JS, and red[block / 32][TP]; JC = (block / G) * JS, KT = G * TP."""
    JC, KT = block // G * JS, G * TP
    return (skew(JC - 1, JS, 1) + 1 + skew(JC + KT - 1, JS, 1) + 1 + block // 32 * TP) * size


def wg_layout(k: int, block: int, size: int, slice_len=None, slice_bytes: int = 128,
              wide: bool = False) -> tuple[int, int, int]:
    """(TP, G, JS) of the weight-gradient step: TP taps per thread (TP_WIDE where `wide`, float32 and
    k > TP_LARGE_MAX_K), G tap groups per block (a power of two, at
    most block / 32, G * TP covering k where it can), JS values of j per thread and chunk (a power of two in
    [TP, block]; by default up to `slice_bytes` of elements and at most block, the largest whose shared memory
    fits SHARED_LIMIT)."""
    TP = (TP_SMALL if k <= TP_SMALL_MAX_K else TP_WIDE if wide and size == 4 and k > TP_LARGE_MAX_K
          else TP_LARGE)
    G = 1
    while G * TP < k and G * 2 <= block // 32:
        G *= 2
    if slice_len is not None:
        if (isinstance(slice_len, bool) or not isinstance(slice_len, int) or not TP <= slice_len <= block
                or slice_len & (slice_len - 1)):
            raise ValueError(f"slice_len: expected a power of two in [{TP}, {block}] ({TP} taps per thread at "
                             f"k = {k}), got {slice_len!r}")
        return TP, G, slice_len
    JS = min(slice_bytes // size, block)  # JS <= block: slot(q + block) = slot(q) + block + block / JS
    while JS > TP and wg_shared_bytes(block, G, TP, JS, size) > SHARED_LIMIT:
        JS //= 2
    return TP, G, JS


def wg_plan(m: int, k: int, dtype, launch: Launch, bound_of, slice_len=None, splits=None, stream=False,
            wide=False) -> tuple:
    """(TP, G, JS, shared bytes, tap tiles, splits) of a weight-gradient step launch, after the checks:
    ValueError naming `block` (over the launch bound of TP, `bound_of(TP)`), `slice_len` (shared memory over
    SHARED_LIMIT) or `splits` (not a positive integer). `stream`: wg_stream's slices and grid; `wide`: TP_WIDE."""
    size, block = itemsize(dtype), launch.block
    TP, G, JS = wg_layout(k, block, size, slice_len, STREAM_SLICE_BYTES if stream else 128, wide)
    check_block(block, bound_of(TP), f"wg_regwin with {TP} {dtype_name(dtype)} taps per thread (k = {k})")
    shared = wg_shared_bytes(block, G, TP, JS, size)
    check_shared(shared, f"wg_regwin with slices of {JS}", "slice_len")
    tiles = launch.blocks(k, G * TP)
    if splits is None:
        splits = weight_grad_splits(m, block // G * JS, tiles, launch, STREAM_BLOCKS if stream else REDUCTION_BLOCKS)
    elif isinstance(splits, bool) or not isinstance(splits, int) or splits < 1:
        raise ValueError(f"splits: expected a positive integer, got {splits!r}")
    return TP, G, JS, shared, tiles, splits


#: k values that reach every (TP, G) layout of the weight-gradient step at every block.
WG_LAYOUT_KS = (1, 2, 3, 4, 5, 8, 9, 16, 17, 32, 33, 64, 65, 128, 129, 256, 257, 512, 513, 1024, 1025, 10**6)


def wg_most_shared(block: int, TP: int, size: int, stream=False, wide=False) -> int:
    """The most dynamic shared memory a weight-gradient launch at `block` with TP taps per thread asks for."""
    slice_bytes = STREAM_SLICE_BYTES if stream else 128
    return max((wg_shared_bytes(block, G, tp, JS, size) for tp, G, JS in
                {wg_layout(k, block, size, None, slice_bytes, wide) for k in WG_LAYOUT_KS} if tp == TP), default=0)


def forward_shape(n: int, k: int, R: int, launch: Launch) -> dict:
    """Blocks, executed FMAs and the longest dependent-FMA chain per thread of a forward-step launch with R
    contiguous outputs per thread: every output k FMAs, a tile of block*R outputs, R independent chains. Its
    chunks (a tile and a filter chunk of up to TAPS taps): how many, the values a block stages per chunk (the
    window, block*R + taps - 1, and the taps) and each thread's FMAs per chunk (R*taps)."""
    m, tile = n - k + 1, launch.block * R
    tiles = -(-m // tile)
    blocks = launch.blocks(m, tile)
    taps = min(k, TAPS)
    return {"blocks": blocks, "fmas": tiles * tile * k, "chain": k * -(-tiles // blocks),
            "chunks": tiles * -(-k // TAPS), "staged": tile + 2 * taps - 1, "chunk_fmas": R * taps}


def wg_shape(n: int, k: int, dtype, launch: Launch, stream=False, wide=False) -> dict:
    """The same of a weight-gradient step launch: (tap tiles x splits) blocks of KT = G*TP taps (taps past k
    computed too), each thread's TP chains JS long per chunk over ceil(chunks / splits) chunks; a chunk stages
    JC values of g and JC + KT of x, and each thread does JS*TP FMAs in it."""
    m = n - k + 1
    TP, G, JS = wg_layout(k, launch.block, itemsize(dtype), None, STREAM_SLICE_BYTES if stream else 128, wide)
    KT, JC = G * TP, launch.block // G * JS
    tiles, grid_x, chunks = -(-k // KT), launch.blocks(k, KT), -(-m // JC)
    splits = weight_grad_splits(m, JC, grid_x, launch, STREAM_BLOCKS if stream else REDUCTION_BLOCKS)
    return {"blocks": grid_x * splits, "fmas": tiles * KT * m, "chain": JS * -(-chunks // splits) * -(-tiles // grid_x),
            "chunks": tiles * chunks, "staged": 2 * JC + KT, "chunk_fmas": JS * TP}
