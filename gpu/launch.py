"""Launch options and launch planning shared by the GPU backends (numba_cuda and cupy).

A call's options (`kernels.get(op, backend, variant, block=32)`) are parsed once into a `Launch` of its
backend: `CupyLaunch` (block, max_blocks) or `NumbaCudaLaunch` (also per_thread). Every kernel strides
over the work beyond its grid, so `max_blocks` caps each grid axis without limiting n.

The split reductions are planned here, for both backends alike:

    weight_grad_splits   the j range of dw[i] = sum_j g[j] x[j+i] split over blocks along grid axis y,
                         so that (tap tiles) x (splits) is about TARGET_BLOCKS blocks
    sum_blocks           blocks of the first pass of a total, each thread summing >= ITEMS elements
    param_chunks         chunks of the flat (n, l) positions of the layer's dw and db partials

Each plan depends only on the sizes and the launch, so repeated calls add in the same order, to the
bit; param_chunks does not even depend on max_blocks (a capped grid strides, adding in the same order).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

#: Grid size the split reductions aim at: enough blocks to fill a large GPU several times over.
TARGET_BLOCKS = 1024
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
        if launch.block not in (32, 64, 128, 256, 512, 1024):
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
    #: per_thread values accepted: those plots/model/compile.py compiles and resource-checks
    PER_THREAD: ClassVar[tuple] = (1, 2, 4, 8)

    @classmethod
    def of(cls, options: dict) -> NumbaCudaLaunch:
        launch = super().of(options)
        if launch.per_thread not in cls.PER_THREAD:
            raise ValueError(f"per_thread: expected one of {cls.PER_THREAD}, got {launch.per_thread!r}")
        return launch


def weight_grad_splits(m: int, chunk: int, tiles: int, launch: Launch) -> int:
    """Blocks along grid axis y for a weight gradient over m values of g in chunks of `chunk`, with
    `tiles` tap tiles along x: ceil(m / chunk), at most TARGET_BLOCKS / tiles (and the grid caps)."""
    return max(1, min(-(-m // chunk), max(1, TARGET_BLOCKS // tiles), launch.max_blocks, MAX_GRID_Y))


def sum_blocks(m: int, launch: Launch) -> int:
    """Blocks of the first pass of sum_j g[j] over m values: each thread sums at least ITEMS, at most
    TARGET_BLOCKS blocks (the second pass adds the block sums serially)."""
    return min(launch.blocks(m, launch.block * ITEMS), TARGET_BLOCKS)


def param_chunks(positions: int, columns: int, launch: Launch) -> tuple[int, int]:
    """(chunk, splits): the layer's dw and db partials over `positions` = N * L_out flat positions
    and `columns` = dw.size + db.size, one thread per (chunk, column).

    Chunks of at least ITEMS positions, enough of them for the threads to fill TARGET_BLOCKS blocks,
    and at most TARGET_BLOCKS chunks (the second pass adds them serially).
    """
    target = max(1, min(-(-positions // ITEMS), max(1, TARGET_BLOCKS * launch.block // columns), TARGET_BLOCKS))
    chunk = max(1, -(-positions // target))
    return chunk, -(-positions // chunk)
