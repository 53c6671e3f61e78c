"""Compile-time constants of the CUDA C kernels, defined once here and passed as ``-D NAME=value``.

The same values reach NVRTC (CuPy on a GPU, and `gpu.cupy.nvrtc`) and g++ (the emulator `gpu.emu`),
and the cupy backend sizes its dynamic shared memory from them, so nothing is mirrored by hand. A `.cu`
file only checks that they are defined (``#error`` otherwise).

    correlate.cu   correlate_tiled: CORR_PER_THREAD outputs per thread (register accumulators) and
                CORR_TAPS filter taps staged per chunk; a block tile is blockDim.x * CORR_PER_THREAD
                outputs, its shared memory CORR_TAPS + tile + CORR_TAPS - 1 elements.
                weight_grad_tiled: WG_TJ values of g per chunk, WG_WI threads along the taps (one
                warp), WG_PER_THREAD taps per thread, WG_TI = WG_WI * WG_PER_THREAD taps per tile;
                shared memory WG_TJ + (WG_TJ + WG_TI - 1) + (blockDim.x / WG_WI) * WG_TI elements.
                EPI_*: the epilogue numbers of gpu.steps.
"""

from __future__ import annotations

import os
from pathlib import Path

from gpu.steps import GATE, NONE, RELU

CORR_PER_THREAD, CORR_TAPS = 4, 256
WG_TJ, WG_WI, WG_PER_THREAD = 512, 32, 4
WG_TI = WG_WI * WG_PER_THREAD

#: -D definitions per .cu file of gpu/ (by file name).
DEFINES: dict[str, dict[str, int]] = {
    "correlate.cu": {"CORR_PER_THREAD": CORR_PER_THREAD, "CORR_TAPS": CORR_TAPS, "WG_TJ": WG_TJ, "WG_WI": WG_WI,
                  "WG_PER_THREAD": WG_PER_THREAD, "WG_TI": WG_TI,
                  "EPI_NONE": NONE, "EPI_RELU": RELU, "EPI_GATE": GATE},
    "layer.cu": {},
}


def defines_for(path: str | os.PathLike) -> dict[str, int]:
    """The definitions a .cu file of gpu/ is compiled with ({} for any other file)."""
    return DEFINES.get(Path(path).name, {})


def options(defines: dict[str, int]) -> tuple[str, ...]:
    """``-DNAME=value`` compiler options, as NVRTC and g++ both read them."""
    return tuple(f"-D{name}={value}" for name, value in defines.items())


def dynamic_shared(kernel_name: str, block: int, itemsize: int) -> int:
    """Bytes of dynamic shared memory a launch of `kernel_name` (gpu/cupy/correlate.cu) asks for at `block` threads."""
    if kernel_name == "correlate_tiled":  # the filter chunk and the x tile with its halo
        return (2 * CORR_TAPS + block * CORR_PER_THREAD - 1) * itemsize
    if kernel_name == "weight_grad_tiled":  # g and x chunks, and the per-warp tap partials
        return (2 * WG_TJ + WG_TI - 1 + (block // WG_WI) * WG_TI) * itemsize
    if kernel_name == "block_sums":
        return block * itemsize
    return 0
