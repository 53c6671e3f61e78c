"""The edge-size matrix every implementation is checked on: by the tests and by `python -m kernels check`.

Sizes (n, k) cover k = 1, k = n, n = 1, primes, 129 (one past a block of 128), 1000 and n not a multiple
of any block size. A backend running under numba's CUDA simulator gets smaller problems (it is ~1000x
slower than a GPU), and both simulated and emulated GPU backends get 32-thread blocks, so that small
inputs still span several blocks and reach the bounds guards.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np

from kernels.spec import OPS

DTYPES = (np.float32, np.float64)

SIZES = ((1, 1), (2, 1), (2, 2), (7, 7), (13, 1), (13, 5), (129, 3), (129, 129), (131, 17),
         (1000, 31), (1000, 1000), (1031, 100), (4099, 257))
SIZES_SIMULATED = ((1, 1), (2, 2), (13, 1), (13, 5), (129, 3), (129, 129), (131, 17), (523, 33))
CIRCULAR_N = (1, 2, 13, 129, 523)
CIRCULAR_N_SIMULATED = (1, 2, 13, 67)
LAYER_SIZES_SIMULATED = ((1, 1), (13, 5), (67, 7))  # (L, K) with N=2, C_in=3, C_out=4

#: Launch options per backend state: small blocks where a GPU backend runs on the CPU.
SMALL_BLOCKS = {"simulated": {"block": 32}, "emulated": {"block": 32}}


def sizes_for(op_name: str, state: str) -> tuple:
    """The (n, k) sizes `op_name` is checked at on a backend in `state` ("available", "simulated", ...)."""
    if OPS[op_name].family == "circular":
        return tuple((n, 1) for n in (CIRCULAR_N_SIMULATED if state == "simulated" else CIRCULAR_N))
    if OPS[op_name].family == "layer" and state == "simulated":
        return LAYER_SIZES_SIMULATED
    return SIZES_SIMULATED if state == "simulated" else SIZES


def keywords(op_name: str) -> list[str]:
    """The keyword-only arguments of `op_name` (e.g. ["flip"])."""
    return [p.name for p in inspect.signature(OPS[op_name].parse).parameters.values()
            if p.kind == p.KEYWORD_ONLY]


def flips(op_name: str) -> tuple:
    return (False, True) if "flip" in keywords(op_name) else (False,)


@dataclass(frozen=True)
class Case:
    """One call of the matrix: op at (n, k), dtype, flip."""

    op: str
    n: int
    k: int
    dtype: type
    flip: bool = False

    def args(self, rng: np.random.Generator):
        """Fresh random (args, kwargs) for this case."""
        args, kwargs = OPS[self.op].make_args(rng, self.dtype, n=self.n, k=self.k)
        return args, ({**kwargs, "flip": True} if self.flip else kwargs)

    def __str__(self):
        return f"{self.op} n={self.n} k={self.k} {np.dtype(self.dtype).name}{' flip' if self.flip else ''}"


def cases(op_name: str, state: str = "available") -> list[Case]:
    """Every case of the matrix for `op_name` on a backend in `state`."""
    return [Case(op_name, n, k, dtype, flip) for n, k in sizes_for(op_name, state)
            for flip in flips(op_name) for dtype in DTYPES]
