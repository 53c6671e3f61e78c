"""`python -m kernels new OP --lang LANG`: starter files that pass `python -m kernels check` as written.

Each starter is the naive kernel of its op (one output element per loop iteration or per thread), its
implementation `impl(p, *inputs, *outs)` and the declaration that registers it, with notes on where to
start optimising. CUDA C starters are two files: the declaration (FILE.py) and the kernel (FILE.cu).
"""

from __future__ import annotations

from pathlib import Path

LANGS = ("numba", "numba-cuda", "cuda-c")
BACKEND = {"numba": "numba_cpu", "numba-cuda": "numba_cuda", "cuda-c": "cupy"}

# Per op: the formula, the implementation's arguments, the output count, the settings the loop takes
# from p (`params`, as `p.<name>`), the inner loop (one output index `j` of `count` outputs) in Python and
# in C, and the C kernel's arguments and how the declaration passes them.
_CONV_PARAMS = ("flip",)
_LAYER_PARAMS = ("stride", "padding", "dilation", "groups", "has_bias")
STARTER_OPS = {
    "conv1d": dict(
        formula="y[j] = sum_i x[j+i] w[i]  (flip=True: w reversed)",
        args="x, w, y", count="y.shape[0]", params=_CONV_PARAMS,
        c_args="const T* x, const T* w, T* y, long long m, long long k, int flip", c_count="m",
        c_call="x, w, y, np.int64(p.m), np.int64(p.k), np.int32(p.flip)",
        py_loop="""acc = zero
        k = w.shape[0]
        for i in range(k):
            acc += x[j + i] * w[k - 1 - i if flip else i]
        y[j] = acc""",
        c_loop="""T acc = 0;
        for (long long i = 0; i < k; ++i) acc += x[j + i] * w[flip ? k - 1 - i : i];
        y[j] = acc;""",
        hints="""several outputs per iteration (a register window over x), so each x[j+i] loaded serves them all;
  the filter in registers or shared memory; a tile of x plus its k-1 halo staged in shared memory (GPU)"""),
    "conv1d_weight_grad": dict(
        formula="dw[i] = sum_j grad_y[j] x[j+i]  (flip=True: dw reversed)",
        args="x, g, dw", count="dw.shape[0]", params=_CONV_PARAMS,
        c_args="const T* x, const T* g, T* dw, long long m, long long k, int flip", c_count="k",
        c_call="x, g, dw, np.int64(p.m), np.int64(p.k), np.int32(p.flip)",
        py_loop="""acc = zero
        for t in range(g.shape[0]):
            acc += g[t] * x[t + j]
        dw[dw.shape[0] - 1 - j if flip else j] = acc""",
        c_loop="""T acc = 0;
        for (long long t = 0; t < m; ++t) acc += g[t] * x[t + j];
        dw[flip ? k - 1 - j : j] = acc;""",
        hints="""only k outputs: split the sum over j across threads or blocks, partial sums in a workspace, then
  add the partials in a fixed order (deterministic); several taps per thread from one window of x"""),
    "conv1d_input_grad": dict(
        formula="dx[t] = sum_i grad_y[t-i] w[i] over 0 <= t-i < m  (flip=True: w reversed)",
        args="w, g, dx", count="dx.shape[0]", params=_CONV_PARAMS,
        c_args="const T* w, const T* g, T* dx, long long m, long long k, int flip", c_count="m + k - 1",
        c_call="w, g, dx, np.int64(p.m), np.int64(p.k), np.int32(p.flip)",
        py_loop="""acc = zero
        k, m = w.shape[0], g.shape[0]
        for i in range(max(0, j - m + 1), min(k, j + 1)):
            acc += g[j - i] * w[k - 1 - i if flip else i]
        dx[j] = acc""",
        c_loop="""T acc = 0;
        long long lo = j - m + 1 > 0 ? j - m + 1 : 0, hi = j + 1 < k ? j + 1 : k;
        for (long long i = lo; i < hi; ++i) acc += g[j - i] * w[flip ? k - 1 - i : i];
        dx[j] = acc;""",
        hints="""it is a correlation of g, zero-padded by k-1 on both sides, with w reversed: reuse a fast forward
  kernel; avoid the bounds test per tap by splitting the edges from the interior"""),
    "circular_correlate": dict(
        formula="z[s] = sum_i x[i] y[(i+s) mod n]",
        args="x, y, z", count="z.shape[0]", params=(),
        c_args="const T* x, const T* y, T* z, long long n", c_count="n", c_call="x, y, z, np.int64(p.n)",
        py_loop="""acc = zero
        n = x.shape[0]
        for i in range(n):
            acc += x[i] * y[(i + j) % n]
        z[j] = acc""",
        c_loop="""T acc = 0;
        for (long long i = 0; i < n; ++i) acc += x[i] * y[(i + j) % n];
        z[j] = acc;""",
        hints="""split the sum at the wrap (i + s < n, then the rest) so that no modulo is left in the loop;
  for large n an FFT: z = irfft(conj(rfft(x)) * rfft(y)), O(n log n) instead of O(n^2)"""),
    "conv1d_layer": dict(
        formula="y[n,co,l] = b[co] + sum_{c,t} w[co,c,t] x[n, G*C_in/groups + c, l*stride + t*dilation - padding]",
        args="x, w, b, y", count="y.size", params=_LAYER_PARAMS,
        c_args="const T* x, const T* w, const T* b, T* y, long long N, long long C_in, long long C_out, "
               "long long L, long long K, long long L_out, long long stride, long long padding, "
               "long long dilation, long long groups, int has_bias",
        c_count="N * C_out * L_out",
        c_call="x, w, b, y, *(np.int64(v) for v in (p.N, p.C_in, p.C_out, p.L, p.K, p.L_out, p.stride, "
               "p.padding, p.dilation, p.groups)), np.int32(p.has_bias)",
        py_loop="""N, C_out, L_out = y.shape
        C_g, K, L = w.shape[1], w.shape[2], x.shape[2]
        n, co, l = j // (C_out * L_out), j // L_out % C_out, j % L_out
        acc = b[co] if has_bias else zero
        for c in range(C_g):
            ci = co // (C_out // groups) * C_g + c  # channel c of the group of co
            for t in range(K):
                i = l * stride + t * dilation - padding  # outside [0, L): the zero padding
                if 0 <= i < L:
                    acc += w[co, c, t] * x[n, ci, i]
        y[n, co, l] = acc""",
        c_loop="""long long n = j / (C_out * L_out), co = j / L_out % C_out, l = j % L_out;
        long long C_g = C_in / groups, ci0 = co / (C_out / groups) * C_g;
        T acc = has_bias ? b[co] : T(0);
        for (long long c = 0; c < C_g; ++c)
            for (long long t = 0; t < K; ++t) {
                long long i = l * stride + t * dilation - padding;  // outside [0, L): the zero padding
                if (i >= 0 && i < L) acc += w[(co * C_g + c) * K + t] * x[(n * C_in + ci0 + c) * L + i];
            }
        y[j] = acc;""",
        hints="""treat it as a matrix product per tap: y[n, :, l] += W_t @ x[n, :, l*stride + t*dilation] (BLAS
  on the CPU, cpu/layer_gemm.py; an implicit GEMM with register tiles on a GPU, gpu/cupy/layer_gemm.cu);
  keep the interior (no padding test) apart from the edges"""),
}

NUMBA = '''"""My {op} kernel on the numba_cpu backend: {formula}.

    python -m kernels check {name}      # every edge size, both dtypes, NaN-poisoned outputs
    python -m kernels bench {name}      # timed beside the built-in variants and baselines

Where to start optimising: prange over chunks of outputs (numba.prange, parallel=True) to use every
core; then {hints}. The playground's cpu/blocked.py and cpu/PERFORMANCE.md show the path to the
machine's limit.
"""

from numba import njit

import kernels


@njit
def loop({args}, {params}zero):
    """{formula}, one output at a time; `zero` is a 0 of the arrays' dtype, so sums keep it."""
    for j in range({count}):
        {py_loop}


@kernels.kernel("{op}", backend="numba_cpu", name="{variant}")
def {variant}(p, {args}):
    """naive: one output element per loop iteration (a starter)"""
    loop({args}, {p_params}p.dtype.type(0))
'''

NUMBA_CUDA = '''"""My {op} kernel on the numba_cuda backend (a GPU, or numba's CUDA simulator): {formula}.

    python -m kernels check {name}      # every edge size, both dtypes, NaN-poisoned outputs
    python -m kernels bench {name}      # timed beside the built-in variants (on a GPU)

Without a GPU the kernel runs under numba's CUDA simulator: correct but slow, so `check` uses small
sizes and 32-thread blocks. Where to start optimising: {hints}. The playground's
gpu/numba_cuda/correlate.py shows the tiled version.
"""

from numba import cuda, int64

import kernels


@cuda.jit
def loop({args}, {params}zero):
    """{formula}: one thread per output, grid-stride, 64-bit index."""
    j = int64(cuda.grid(1))
    while j < {count}:
        {py_loop_cuda}
        j += cuda.gridsize(1)


@kernels.kernel("{op}", backend="numba_cuda", name="{variant}")
def {variant}(p, {args}, *, block=128):
    """naive: one thread per output element, operands from global memory (a starter)"""
    blocks = min(65535, ({count} + block - 1) // block)  # capped: the kernel strides over the rest
    loop[blocks, block]({args}, {p_params}p.dtype.type(0))
'''

CUDA_C_PY = '''"""My {op} kernel in CUDA C ({cu}), on the cupy backend: {formula}.

    python -m kernels check {name}      # every edge size, both dtypes, forward and reverse thread order
    python -m kernels bench {name}      # timed beside the built-in variants (on a GPU)

On a GPU, CuPy compiles {cu} with NVRTC; without one the playground's emulator builds the same file
with g++ and runs one fiber per CUDA thread (strict barrier checks; `check --asan` adds
AddressSanitizer). `check` also prints the registers, shared memory and spills NVRTC reports.
"""

import numpy as np

from gpu.cupy.playground import cuda_c

cuda_c("{op}", name="{variant}", source="{cu}", entry="{variant}<{{T}}>",
       args=lambda p, {args}: ({c_call}))
'''

CUDA_C_CU = '''// My {op} kernel: {formula}.
// One thread per output element, grid-stride, 64-bit indices. Where to start optimising: {hints_c}.
// name_expressions: {variant}<float>, {variant}<double>

template <typename T>
__global__ void {variant}({c_args}) {{
    long long count = {c_count};
    for (long long j = blockIdx.x * (long long)blockDim.x + threadIdx.x; j < count;
         j += (long long)gridDim.x * blockDim.x) {{
        {c_loop}
    }}
}}
'''

def render(op: str, lang: str, path: Path) -> dict[Path, str]:
    """{file: text} of the starter for `op` in `lang` written at `path`."""
    if op not in STARTER_OPS:
        raise KeyError(f"OP: starters exist for {sorted(STARTER_OPS)}, got {op!r}")
    if lang not in LANGS:
        raise ValueError(f"--lang: expected one of {LANGS}, got {lang!r}")
    spec = STARTER_OPS[op]
    variant = f"my_{op}".replace("conv1d_", "").replace("circular_", "")
    fields = dict(spec, op=op, name=path.name, variant=variant, params="".join(f"{q}, " for q in spec["params"]),
                  p_params="".join(f"p.{q}, " for q in spec["params"]))
    if lang == "numba":
        return {path: _tidy(NUMBA.format(**fields))}
    if lang == "numba-cuda":
        return {path: _tidy(NUMBA_CUDA.format(**fields, py_loop_cuda=spec["py_loop"]))}
    cu = path.with_suffix(".cu")
    fields.update(cu=cu.name, hints_c=" ".join(spec["hints"].split()))
    return {path: _tidy(CUDA_C_PY.format(**fields)), cu: CUDA_C_CU.format(**fields)}


def _tidy(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.splitlines()).replace("\n\n\n\n", "\n\n\n") + "\n"


def write(op: str, lang: str, output=None, *, force: bool = False) -> Path:
    """Write the starter files; return the path of the Python file."""
    path = Path(output or f"my_{op}_{lang.replace('-', '_')}.py")
    if path.suffix != ".py":
        raise ValueError(f"-o: expected a .py file name, got {path.name}")
    files = render(op, lang, path)
    for f in files:
        if f.exists() and not force:
            raise FileExistsError(f"-o: {f} exists; pass --force to overwrite it")
    for f, text in files.items():
        f.write_text(text)
    return path
