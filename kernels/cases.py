"""The edge-size matrix every implementation is checked on: by the tests and by `python -m kernels check`.

Sizes (n, k) cover k = 1, k = n, n = 1, primes, 129 (one past a block of 128), 1000 and n not a multiple
of any block size. A backend running under numba's CUDA simulator gets smaller problems (it is ~1000x
slower than a GPU), and both simulated and emulated GPU backends get 32-thread blocks, so that small
inputs still span several blocks and reach the bounds guards.

The layer is checked at the (n, k) sizes as (L, K) with the default settings, and at `LAYER_SETTINGS`:
stride, padding, dilation and groups away from their defaults, with and without a bias (torch's
semantics; tests/test_torch_oracle.py holds the reference to torch on every one of them).

A GPU kernel (numba.cuda or CUDA C) also gets a capped case (`Case.blocks`): its grid is cut to
`CAPPED_BLOCKS` blocks, fewer threads than outputs, so a kernel that relies on one thread per output
where its launch rule caps the grid (the default rule of gpu.cupy.playground caps at 65535 blocks) leaves
outputs unwritten. A launch rule that gives one thread per output at every size keeps that promise
instead: `kernels.playground` checks it at a size past the 65535-block cap (`PROMISE_BLOCKS`) and then
runs the case uncapped.

A case's label (`str(case)`) names every parameter of the call, in the form `Case.parse` reads back:
`python -m kernels check FILE --case LABEL --seed S` reruns it on the same inputs (`Case.rng`).
"""

from __future__ import annotations

import inspect
import zlib
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

#: Layer settings away from the defaults, each at every L of LAYER_SETTING_L where its dilated filter fits:
#: (N, C_in, C_out, K, stride, padding, dilation, groups, bias).
LAYER_SETTINGS = (
    (1, 1, 1, 1, 1, 0, 1, 1, True),
    (2, 3, 4, 3, 1, 1, 1, 1, True),
    (1, 2, 3, 3, 2, 1, 1, 1, False),
    (1, 1, 1, 2, 3, 2, 5, 1, False),  # taps that reach no real input, stride 3
    (1, 3, 3, 5, 3, 2, 2, 3, True),  # depthwise, strided, dilated
    (2, 4, 2, 4, 2, 3, 1, 2, True),  # padding > K - 1
    (1, 2, 2, 8, 1, 0, 1, 1, True),
    (2, 2, 4, 9, 4, 4, 1, 2, False),
)
LAYER_SETTING_NAMES = ("N", "C_in", "C_out", "K", "stride", "padding", "dilation", "groups", "bias")
LAYER_SETTING_L = (9, 33, 130)
LAYER_SETTING_L_SIMULATED = (9, 33)

#: Launch options per backend state: small blocks where a GPU backend runs on the CPU.
SMALL_BLOCKS = {"simulated": {"block": 32}, "emulated": {"block": 32}}
#: GPU backends: the states whose kernels get a capped case.
GPU_STATES = ("simulated", "emulated", "real GPU")
#: The capped case: (n, k) and the blocks its grid is cut to (n - k + 1 = 294 outputs, 64 threads at block 32).
CAPPED_SIZE = (300, 7)
CAPPED_BLOCKS = 2
#: A grid that a launch rule caps stops at this many blocks (CUDA's limit on grid.y and grid.z, and the
#: default rule's cap on grid.x); the launch promise is checked one block past it.
PROMISE_BLOCKS = 65535

#: Parameters that are not sizes: how the label writes them.
_FLAGS = ("flip",)


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


def layer_settings(L_values) -> list[dict]:
    """make_args keywords of every LAYER_SETTINGS row at every L of `L_values` where its filter fits."""
    out = []
    for row in LAYER_SETTINGS:
        s = dict(zip(LAYER_SETTING_NAMES, row))
        for L in L_values:
            if s["dilation"] * (s["K"] - 1) + 1 <= L + 2 * s["padding"]:
                out.append({"N": s["N"], "C_in": s["C_in"], "C_out": s["C_out"], "L": L, **s})
    return out


@dataclass(frozen=True)
class Case:
    """One call of the matrix: op at `sizes` (make_args keywords, as (name, value) pairs), dtype, flip, and
    for a capped case the blocks its grid is cut to."""

    op: str
    sizes: tuple
    dtype: type
    flip: bool = False
    blocks: int | None = None

    @classmethod
    def of(cls, op: str, dtype, flip: bool = False, blocks: int | None = None, **sizes) -> Case:
        return cls(op, tuple(sizes.items()), np.dtype(dtype).type, flip, blocks)

    @property
    def params(self) -> dict:
        return dict(self.sizes)

    def args(self, rng: np.random.Generator):
        """Fresh random (args, kwargs) for this case."""
        args, kwargs = OPS[self.op].make_args(rng, self.dtype, **self.params)
        return args, ({**kwargs, "flip": True} if self.flip else kwargs)

    def rng(self, seed: int) -> np.random.Generator:
        """The generator of this case's inputs under `seed`: the same label and seed, the same inputs."""
        return np.random.default_rng([seed, zlib.crc32(str(self).encode())])

    def size_key(self) -> tuple:
        """Sorts cases by op, then size (numerically), dtype, flip."""
        p = self.params
        main = tuple(p[k] for k in ("n", "k", "L", "K") if k in p)
        return (list(OPS).index(self.op), self.blocks is not None, main, tuple(self.sizes),
                np.dtype(self.dtype).itemsize, self.flip)

    def __str__(self):
        words = [self.op, *(_word(k, v) for k, v in self.sizes), np.dtype(self.dtype).name]
        words += ["flip"] if self.flip else []
        words += [f"blocks={self.blocks}"] if self.blocks else []
        return " ".join(words)

    @classmethod
    def parse(cls, label: str) -> Case:
        """The case `str(case)` wrote (ValueError naming what is wrong)."""
        words = label.split()
        if not words or words[0] not in OPS:
            raise ValueError(f"--case: expected a case label such as 'conv1d n=129 k=3 float32 flip', got {label!r}")
        op, sizes, dtype, flip, blocks = words[0], {}, None, False, None
        for w in words[1:]:
            name, eq, value = w.partition("=")
            if w in ("float32", "float64"):
                dtype = np.dtype(w).type
            elif w in _FLAGS:
                flip = True
            elif w in ("bias", "nobias"):
                sizes["bias"] = w == "bias"
            elif eq and name == "blocks" and value.isdigit():
                blocks = int(value)
            elif eq and value.isdigit():
                sizes[name] = int(value)
            else:
                raise ValueError(f"--case: cannot read {w!r} in {label!r}")
        if dtype is None:
            raise ValueError(f"--case: {label!r} names no dtype (float32 or float64)")
        return cls.of(op, dtype, flip, blocks, **sizes)


def _word(name, value) -> str:
    if name == "bias":
        return "bias" if value else "nobias"
    return f"{name}={value}"


def _layer_sizes(op_name: str, state: str) -> list[dict]:
    plain = [dict(L=L, K=K) for L, K in sizes_for(op_name, state)]
    return plain + layer_settings(LAYER_SETTING_L_SIMULATED if state == "simulated" else LAYER_SETTING_L)


def cases(op_name: str, state: str = "available") -> list[Case]:
    """Every case of the matrix for `op_name` on a backend in `state`, sorted by size; GPU backends also get
    the capped case (float32)."""
    if OPS[op_name].family == "layer":
        every = [Case.of(op_name, dtype, **s) for s in _layer_sizes(op_name, state) for dtype in DTYPES]
    else:
        every = [Case.of(op_name, dtype, flip, n=n, k=k) for n, k in sizes_for(op_name, state)
                 for flip in flips(op_name) for dtype in DTYPES]
    if state in GPU_STATES and capped_sizes(op_name):
        every.append(Case.of(op_name, np.float32, blocks=CAPPED_BLOCKS, **capped_sizes(op_name)))
    return sorted(every, key=Case.size_key)


def capped_sizes(op_name: str) -> dict | None:
    """make_args keywords of the capped case of `op_name`: more outputs than CAPPED_BLOCKS blocks of 32
    threads; None for an op with one output element (the bias gradient)."""
    n, k = CAPPED_SIZE
    family = OPS[op_name].family
    if family == "layer":
        return dict(N=1, C_in=2, C_out=2, L=n, K=k)
    if op_name == "conv1d_bias_grad":
        return None
    if op_name == "conv1d_weight_grad":
        return dict(n=n, k=n // 4)
    return dict(n=n, k=k)


def promise_sizes(op_name: str, block: int) -> dict:
    """make_args keywords of a problem whose first output has more elements than PROMISE_BLOCKS blocks of
    `block` threads: where a capped launch rule no longer gives one thread per output."""
    count = PROMISE_BLOCKS * block + 33
    family = OPS[op_name].family
    if family == "layer":
        return dict(N=1, C_in=1, C_out=1, L=count, K=1)
    if family == "circular":
        return dict(n=count)
    if op_name == "conv1d_weight_grad":
        return dict(n=count, k=count)
    return dict(n=count + 2, k=3)
