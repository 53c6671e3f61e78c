"""Baselines: what the playground's kernels are measured against, in the same run.

Each baseline is a small callable taking the op's own positional arguments, flip=False:

    conv1d:              (x, w)    -> y[j]  = sum_i x[j+i] w[i]   (cross-correlation, "valid")
    conv1d_weight_grad:  (x, g, k) -> dw[i] = sum_j g[j] x[j+i]   (the correlation of x with g)

so both 1-D ops are one library call, correlate(x, second, "valid"), with second = w or g: the table
`CORRELATIONS` lists those calls once and `TORCH` the torch calls, and `BASELINES` is generated from
them. Each runs on the array kind named by `arrays` ("numpy", "torch" CPU tensors, "cupy",
"torch_cuda"); the runner converts the inputs once, outside the timed region. Baselines allocate their
outputs (none of these libraries takes an output buffer for these calls), unlike the playground's
kernels, which are timed with preallocated outputs. Optional libraries are guarded (HAS_TORCH,
HAS_CUPY, a real GPU): a baseline whose library or device is missing is left out with its reason.

torch on CUDA runs cuDNN convolutions in TF32 by default, which is not float32 arithmetic: the
`torch.conv1d[cuda]` baselines switch TF32 off (cuDNN and cuBLAS) before each call, and
`torch.conv1d[cuda,tf32]` (float32 only) switches it on; the checker judges both like everything else.

torch and CuPy are imported only when a baseline needs them. The torch CPU baselines are `isolated`:
the runner times them in a child process (`plots.bench.isolated`), because torch's OpenMP pool
(its own libgomp) and numba's spin-wait on the same cores when both live in one process, which made
calls of either ~8 ms slower on a 2-core machine.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from kernels import _env

HAS_TORCH = importlib.util.find_spec("torch") is not None  # the optional `torch` extra
HAS_CUPY = importlib.util.find_spec("cupy") is not None  # imported only when a device is there


torch = F = None  # set by _torch() on first use


def _torch():
    global torch, F
    if torch is None:
        import torch as _t  # optional: the `torch` extra, only for the torch baselines
        import torch.nn.functional as _f  # optional: the `torch` extra

        torch, F = _t, _f
    return torch


def _cupy():
    import cupy  # optional: only on a GPU

    return cupy


@dataclass(frozen=True)
class Baseline:
    name: str  # label in results and plots, the same for every op ("scipy.correlate[fft]")
    op: str
    fn: Callable
    method: str  # "direct", "fft" or "auto": which side of the direct-vs-FFT comparison it is on
    family: str  # library: direct and fft members of one family give a crossover k*
    device: str  # "cpu" or "gpu"
    arrays: str  # kind of arrays `fn` takes and returns
    doc: str
    dtypes: tuple[str, ...] | None = None  # the dtypes it applies to (None: all)

    @property
    def isolated(self) -> bool:
        """Timed in a child process (torch on the CPU: its OpenMP pool would fight numba's)."""
        return self.arrays == "torch"

    def available(self) -> tuple[bool, str]:
        """(usable here, reason if not)."""
        return ARRAY_KINDS[self.arrays].available()


# --- array kinds: convert inputs in, results out ---------------------------------------------------

@dataclass(frozen=True)
class ArrayKind:
    to_kind: Callable  # numpy array -> array of this kind (outside the timed region)
    to_host: Callable  # result -> numpy array
    available: Callable  # () -> (bool, reason)


@functools.cache
def gpu_present() -> bool:
    """A real CUDA device (not numba's simulator)."""
    return _env.cuda_driver_present()


def _torch_ok():
    return (True, "") if HAS_TORCH else (False, "torch is not installed (pip install torch)")


def _torch_cuda_ok():
    if not HAS_TORCH:
        return _torch_ok()
    if not gpu_present() or not _torch().cuda.is_available():
        return False, "no CUDA device for torch"
    return True, ""


def _cupy_ok():
    if not HAS_CUPY:
        return False, "cupy is not installed"
    return (True, "") if gpu_present() else (False, "no CUDA device for cupy")


def _each(result, fn):
    """fn(result), or a tuple of fn(part) for multi-output ops (the layer's backward)."""
    return tuple(fn(r) for r in result) if isinstance(result, (tuple, list)) else fn(result)


ARRAY_KINDS = {
    "numpy": ArrayKind(lambda a: a, np.asarray, lambda: (True, "")),
    "torch": ArrayKind(lambda a: _torch().from_numpy(a), lambda t: _each(t, lambda u: u.numpy()), _torch_ok),
    "cupy": ArrayKind(lambda a: _cupy().asarray(a), lambda a: _cupy().asnumpy(a), _cupy_ok),
    "torch_cuda": ArrayKind(lambda a: _torch().as_tensor(a, device="cuda"),
                            lambda t: _each(t, lambda u: u.cpu().numpy()),
                            _torch_cuda_ok),
}

# --- the 1-D ops: y = correlate(x, w, "valid"), dw = correlate(x, g, "valid") -----------------------

#: One row per library call, each a baseline of conv1d and of conv1d_weight_grad:
#: (name, module, function, its method= argument, filter reversed (a convolution), method, family, device).
CORRELATIONS = (
    ("numpy.correlate", "numpy", "correlate", None, False, "direct", "numpy", "cpu"),
    ("scipy.correlate[direct]", "scipy.signal", "correlate", "direct", False, "direct", "scipy", "cpu"),
    ("scipy.correlate[fft]", "scipy.signal", "correlate", "fft", False, "fft", "scipy", "cpu"),
    ("scipy.oaconvolve", "scipy.signal", "oaconvolve", None, True, "fft", "scipy", "cpu"),
    ("cupyx.correlate[direct]", "cupyx.scipy.signal", "correlate", "direct", False, "direct", "cupyx", "gpu"),
    ("cupyx.correlate[fft]", "cupyx.scipy.signal", "correlate", "fft", False, "fft", "cupyx", "gpu"),
    ("cupyx.fftconvolve", "cupyx.scipy.signal", "fftconvolve", None, True, "fft", "cupyx", "gpu"),
)
#: The second operand of the correlation, by op.
SECOND = {"conv1d": "w", "conv1d_weight_grad": "g"}


def _correlation(module: str, function: str, method: str | None, flip: bool) -> Callable:
    """call(x, s, *k) = module.function(x, s (reversed if flip), 'valid'[, method=method]); the library
    is imported on the first call (the untimed warm-up), and k (the weight gradient's) is implied."""
    kw = {"method": method} if method else {}
    fn = None

    def call(x, s, *_k):
        nonlocal fn
        if fn is None:
            fn = getattr(importlib.import_module(module), function)
        return fn(x, s[::-1] if flip else s, "valid", **kw)
    return call


def _correlation_doc(module, function, method, flip, second) -> str:
    arg = f"{second}[::-1]" if flip else second
    return f"{module}.{function}(x, {arg}, 'valid'{f', method={method!r}' if method else ''})"


# --- torch: conv1d and its gradients, on CPU tensors and on CUDA ---------------------------------------

def _torch_forward(x, w):
    """torch.nn.functional.conv1d (cross-correlation), batch 1, one channel"""
    return F.conv1d(x.view(1, 1, -1), w.view(1, 1, -1)).view(-1)


def _torch_weight_grad(x, g, k):
    """torch.nn.grad.conv1d_weight: the weight gradient autograd computes for conv1d"""
    return torch.nn.grad.conv1d_weight(x.view(1, 1, -1), (1, 1, k), g.view(1, 1, -1)).view(-1)


def _torch_layer(x, w, b, stride, padding, dilation, groups):
    """torch.nn.functional.conv1d"""
    return F.conv1d(x, w, b if b.numel() else None, stride=stride, padding=padding, dilation=dilation,
                    groups=groups)


def _torch_layer_backward(x, w, g, stride, padding, dilation, groups, has_bias):
    """aten.convolution_backward: the one call autograd makes for conv1d's (dx, dw, db)"""
    dx, dw, db = torch.ops.aten.convolution_backward(
        g, x, w, [w.shape[0]] if has_bias else None, [stride], [padding], [dilation], False, [0], groups,
        [True, True, has_bias])
    return dx, dw, db if has_bias else g.new_zeros(0)


#: (op, call, method). The layer's settings follow the arrays positionally (the runner appends make_args'
#: keyword values in their order).
TORCH = (
    ("conv1d", _torch_forward, "direct"),
    ("conv1d_weight_grad", _torch_weight_grad, "direct"),
    ("conv1d_layer", _torch_layer, "auto"),
    ("conv1d_layer_backward", _torch_layer_backward, "auto"),
)
#: (name, device, arrays, TF32 setting: None on the CPU, else on or off, dtypes it applies to).
TORCH_DEVICES = (
    ("torch.conv1d", "cpu", "torch", None, None),
    ("torch.conv1d[cuda]", "gpu", "torch_cuda", False, None),
    ("torch.conv1d[cuda,tf32]", "gpu", "torch_cuda", True, ("float32",)),
)


def _tf32(fn: Callable, allow: bool) -> Callable:
    """fn with torch's TF32 switches (cuDNN convolutions, cuBLAS matmuls) set to `allow` before each call;
    they are global, so every call sets them (a cheap check once they are right)."""
    def call(*args):
        backends = torch.backends
        if backends.cudnn.allow_tf32 is not allow or backends.cuda.matmul.allow_tf32 is not allow:
            backends.cudnn.allow_tf32 = allow
            backends.cuda.matmul.allow_tf32 = allow
        return fn(*args)
    return call


def _table() -> list[Baseline]:
    out = []
    for name, module, function, method_arg, flip, method, family, device in CORRELATIONS:
        for op, second in SECOND.items():
            out.append(Baseline(name, op, _correlation(module, function, method_arg, flip), method, family,
                                device, "numpy" if device == "cpu" else "cupy",
                                _correlation_doc(module, function, method_arg, flip, second)))
    for name, device, arrays, tf32, dtypes in TORCH_DEVICES:
        for op, fn, method in TORCH:
            doc = fn.__doc__.strip().splitlines()[0]
            if tf32 is not None:
                fn, doc = _tf32(fn, tf32), f"{doc} (TF32 {'on' if tf32 else 'off'})"
            out.append(Baseline(name, op, fn, method, "torch", device, arrays, doc, dtypes))
    return out


BASELINES: list[Baseline] = _table()


def for_op(op: str, device: str | None = None, dtype: str | None = None) -> list[Baseline]:
    """The baselines of `op` (on `device` and for `dtype` if given), available or not."""
    return [b for b in BASELINES if b.op == op and (device is None or b.device == device)
            and (dtype is None or b.dtypes is None or dtype in b.dtypes)]
