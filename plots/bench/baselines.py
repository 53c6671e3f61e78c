"""Baselines: what the playground's kernels are measured against, in the same run.

Each baseline is a small callable taking the op's own positional arguments, flip=False:

    conv1d:              (x, w)    -> y[j]  = sum_i x[j+i] w[i]   (cross-correlation, "valid")
    conv1d_weight_grad:  (x, g, k) -> dw[i] = sum_j g[j] x[j+i]   (the correlation of x with g)

in the array kind named by `arrays` ("numpy", "torch" CPU tensors, "cupy", "torch_cuda"); the runner
converts the inputs once, outside the timed region. Baselines allocate their outputs (none of these
libraries takes an output buffer for these calls), unlike the playground's kernels, which are timed
with preallocated outputs. Optional libraries are guarded (HAS_TORCH, HAS_CUPY, GPU): a baseline
whose library or device is missing is left out with its reason.

torch and CuPy are imported only when a baseline needs them. The torch CPU baselines are `isolated`:
the runner times them in a child process (`plots.bench.isolated`), because torch's OpenMP pool
(its own libgomp) and numba's spin-wait on the same cores when both live in one process, which made
calls of either ~8 ms slower on a 2-core machine.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.signal

from kernels import _env

HAS_TORCH = importlib.util.find_spec("torch") is not None  # the optional `torch` extra
HAS_CUPY = importlib.util.find_spec("cupy") is not None  # imported only when a device is there


torch = F = None  # set by _torch() on first use


def _torch():
    global torch, F
    if torch is None:
        import torch as _t
        import torch.nn.functional as _f

        torch, F = _t, _f
    return torch


def _cupy():
    import cupy

    return cupy


def _cupy_signal():
    import cupyx.scipy.signal

    return cupyx.scipy.signal


@dataclass(frozen=True)
class Baseline:
    name: str  # label in results and plots, the same for every op ("scipy.correlate[fft]")
    op: str
    fn: Callable
    method: str  # "direct" or "fft": which side of the direct-vs-FFT comparison it is on
    family: str  # library: direct and fft members of one family give a crossover k*
    device: str  # "cpu" or "gpu"
    arrays: str  # kind of arrays `fn` takes and returns
    doc: str

    @property
    def isolated(self) -> bool:
        """Timed in a child process (torch on the CPU: its OpenMP pool would fight numba's)."""
        return self.arrays == "torch"

    def available(self) -> tuple[bool, str]:
        """(usable here, reason if not)."""
        return ARRAY_KINDS[self.arrays].available()


BASELINES: list[Baseline] = []


def baseline(op, name, *, method, family, device="cpu", arrays="numpy"):
    """Register `fn(*args)` as a baseline for `op`; its docstring's first line is its note."""
    def register(fn):
        doc = (fn.__doc__ or "").strip().splitlines()[0]
        BASELINES.append(Baseline(name, op, fn, method, family, device, arrays, doc))
        return fn
    return register


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


# --- conv1d: y = correlate(x, w, "valid") ---------------------------------------------------------

@baseline("conv1d", "numpy.correlate", method="direct", family="numpy")
def np_correlate(x, w):
    """np.correlate(x, w, 'valid'): a dot product of length k per output"""
    return np.correlate(x, w, "valid")


@baseline("conv1d", "scipy.correlate[direct]", method="direct", family="scipy")
def scipy_direct(x, w):
    """scipy.signal.correlate(method='direct')"""
    return scipy.signal.correlate(x, w, "valid", method="direct")


@baseline("conv1d", "scipy.correlate[fft]", method="fft", family="scipy")
def scipy_fft(x, w):
    """scipy.signal.correlate(method='fft'): one FFT of length n + k - 1"""
    return scipy.signal.correlate(x, w, "valid", method="fft")


@baseline("conv1d", "scipy.oaconvolve", method="fft", family="scipy")
def scipy_oa(x, w):
    """scipy.signal.oaconvolve with the filter reversed: overlap-add FFTs"""
    return scipy.signal.oaconvolve(x, w[::-1], "valid")


def _torch_forward(x, w):
    """torch.nn.functional.conv1d (cross-correlation), batch 1, one channel"""
    return F.conv1d(x.view(1, 1, -1), w.view(1, 1, -1)).view(-1)


baseline("conv1d", "torch.conv1d", method="direct", family="torch", arrays="torch")(_torch_forward)

# --- conv1d_weight_grad: dw = correlate(x, g, "valid") --------------------------------------------


@baseline("conv1d_weight_grad", "numpy.correlate", method="direct", family="numpy")
def np_correlate_wg(x, g, k):
    """np.correlate(x, g, 'valid'): k dot products of length m"""
    return np.correlate(x, g, "valid")


@baseline("conv1d_weight_grad", "scipy.correlate[direct]", method="direct", family="scipy")
def scipy_direct_wg(x, g, k):
    """scipy.signal.correlate(x, g, method='direct')"""
    return scipy.signal.correlate(x, g, "valid", method="direct")


@baseline("conv1d_weight_grad", "scipy.correlate[fft]", method="fft", family="scipy")
def scipy_fft_wg(x, g, k):
    """scipy.signal.correlate(x, g, method='fft')"""
    return scipy.signal.correlate(x, g, "valid", method="fft")


@baseline("conv1d_weight_grad", "scipy.oaconvolve", method="fft", family="scipy")
def scipy_oa_wg(x, g, k):
    """scipy.signal.oaconvolve(x, g reversed): overlap-add FFTs"""
    return scipy.signal.oaconvolve(x, g[::-1], "valid")


def _torch_weight_grad(x, g, k):
    """torch.nn.grad.conv1d_weight: the weight gradient autograd computes for conv1d"""
    return torch.nn.grad.conv1d_weight(x.view(1, 1, -1), (1, 1, k), g.view(1, 1, -1)).view(-1)


baseline("conv1d_weight_grad", "torch.conv1d", method="direct", family="torch",
         arrays="torch")(_torch_weight_grad)

# --- GPU -------------------------------------------------------------------------------------------

for _op, _fwd in (("conv1d", _torch_forward), ("conv1d_weight_grad", _torch_weight_grad)):
    baseline(_op, "torch.conv1d[cuda]", method="direct", family="torch", device="gpu",
             arrays="torch_cuda")(_fwd)


@baseline("conv1d", "cupyx.correlate[direct]", method="direct", family="cupyx", device="gpu", arrays="cupy")
def cupy_direct(x, w):
    """cupyx.scipy.signal.correlate(method='direct')"""
    return _cupy_signal().correlate(x, w, "valid", method="direct")


@baseline("conv1d", "cupyx.correlate[fft]", method="fft", family="cupyx", device="gpu", arrays="cupy")
def cupy_fft(x, w):
    """cupyx.scipy.signal.correlate(method='fft')"""
    return _cupy_signal().correlate(x, w, "valid", method="fft")


@baseline("conv1d", "cupyx.fftconvolve", method="fft", family="cupyx", device="gpu", arrays="cupy")
def cupy_fftconvolve(x, w):
    """cupyx.scipy.signal.fftconvolve with the filter reversed"""
    return _cupy_signal().fftconvolve(x, w[::-1], "valid")


@baseline("conv1d_weight_grad", "cupyx.correlate[direct]", method="direct", family="cupyx", device="gpu",
          arrays="cupy")
def cupy_direct_wg(x, g, k):
    """cupyx.scipy.signal.correlate(x, g, method='direct')"""
    return _cupy_signal().correlate(x, g, "valid", method="direct")


@baseline("conv1d_weight_grad", "cupyx.correlate[fft]", method="fft", family="cupyx", device="gpu",
          arrays="cupy")
def cupy_fft_wg(x, g, k):
    """cupyx.scipy.signal.correlate(x, g, method='fft')"""
    return _cupy_signal().correlate(x, g, "valid", method="fft")


@baseline("conv1d_weight_grad", "cupyx.fftconvolve", method="fft", family="cupyx", device="gpu",
          arrays="cupy")
def cupy_fftconvolve_wg(x, g, k):
    """cupyx.scipy.signal.fftconvolve(x, g reversed)"""
    return _cupy_signal().fftconvolve(x, g[::-1], "valid")


# --- conv1d_layer: the settings follow the arrays, positionally (the runner appends make_args' kwargs) --

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


for _dev, _arrays, _suffix in (("cpu", "torch", ""), ("gpu", "torch_cuda", "[cuda]")):
    baseline("conv1d_layer", "torch.conv1d" + _suffix, method="auto", family="torch", device=_dev,
             arrays=_arrays)(_torch_layer)
    baseline("conv1d_layer_backward", "torch.conv1d" + _suffix, method="auto", family="torch", device=_dev,
             arrays=_arrays)(_torch_layer_backward)


def for_op(op: str, device: str | None = None) -> list[Baseline]:
    """The baselines of `op` (on `device` if given), available or not."""
    return [b for b in BASELINES if b.op == op and (device is None or b.device == device)]
