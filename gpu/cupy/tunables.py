"""Compile-time constants of the CUDA C kernels, defined once here and passed as ``-D NAME=value``.

The same values reach NVRTC (CuPy on a GPU, the NVRTC report of gpu/cupy/nvrtc.py) and g++ (the emulator
gpu.emu), and the launchers size their grids and dynamic shared memory from them, so nothing is mirrored
by hand. A `.cu` file has no defaults: it stops with ``#error`` when one is missing.

    every file       EPI_NONE, EPI_RELU, EPI_GATE: the epilogues of the correlation engine (gpu.steps)
    correlate.cu     correlate_tiled: CORR_PER_THREAD outputs per thread (register accumulators), CORR_TAPS
                     filter taps per chunk; a block tile is blockDim.x * CORR_PER_THREAD outputs.
                     weight_grad_tiled: WG_TJ values of g per chunk, WG_WI threads along the taps (one warp),
                     WG_PER_THREAD taps per thread, WG_TI = WG_WI * WG_PER_THREAD taps per tile
    ladder.cu        LADDER_TAPS filter taps per chunk of the forward steps (gpu.launch.TAPS), STAGE_LOADS
                     16-byte loads in flight per thread in wg_stream's staging (gpu.launch.STAGE_LOADS)
    layer_gemm.cu    LAYER_BK reduction steps per staged chunk, LAYER_TX threads along the positions,
                     LAYER_PAD elements of padding per shared row

Template arguments (outputs per thread, launch bounds) are not here: they are part of each kernel's name
expression, which its launcher lists.
"""

from __future__ import annotations

from pathlib import Path

from gpu.launch import STAGE_LOADS, TAPS
from gpu.steps import GATE, NONE, RELU

CORR_PER_THREAD, CORR_TAPS = 4, 256
WG_TJ, WG_WI, WG_PER_THREAD = 512, 32, 4
WG_TI = WG_WI * WG_PER_THREAD
LAYER_BK, LAYER_TX, LAYER_PAD = 16, 16, 4

#: The folder of the .cu files and of common.cuh, which they include.
FOLDER = Path(__file__).parent
EPILOGUES = {"EPI_NONE": NONE, "EPI_RELU": RELU, "EPI_GATE": GATE}

#: -D definitions per .cu file of gpu/cupy/ (by file name), past the epilogues every file gets.
DEFINES: dict[str, dict[str, int]] = {
    "correlate.cu": {"CORR_PER_THREAD": CORR_PER_THREAD, "CORR_TAPS": CORR_TAPS, "WG_TJ": WG_TJ, "WG_WI": WG_WI,
                     "WG_PER_THREAD": WG_PER_THREAD, "WG_TI": WG_TI},
    "ladder.cu": {"LADDER_TAPS": TAPS, "STAGE_LOADS": STAGE_LOADS},
    "layer.cu": {},
    "layer_gemm.cu": {"LAYER_BK": LAYER_BK, "LAYER_TX": LAYER_TX, "LAYER_PAD": LAYER_PAD},
}


def defines_for(path) -> dict[str, int]:
    """The definitions a .cu file of gpu/cupy/ is compiled with ({} for any other file)."""
    name = Path(path).name
    return {**EPILOGUES, **DEFINES[name]} if name in DEFINES and Path(path).resolve().parent == FOLDER.resolve() else {}


def options(defines: dict[str, int]) -> tuple[str, ...]:
    """``-DNAME=value`` compiler options, as NVRTC and g++ both read them."""
    return tuple(f"-D{name}={value}" for name, value in defines.items())


def compile_options(path) -> tuple[str, ...]:
    """Every option a .cu file of gpu/cupy/ is compiled with, on every path: -I for common.cuh and its -D."""
    return (f"-I{FOLDER}", *options(defines_for(path)))
