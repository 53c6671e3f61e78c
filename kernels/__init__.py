"""Convolution kernel playground: the contract every backend implements.

    import kernels
    y = kernels.get("conv1d", "numba_cpu")(x, w)       # y[j] = sum_i x[j+i] w[i]
    kernels.backends()                                  # {name: Status(state, reason)}
    kernels.check("conv1d", y, (x, w))                  # Verdict(ok, criterion, max_ratio, ...)

    @kernels.kernel("conv1d", backend="numba_cpu", name="mine")   # your own kernel (kernels.playground)
    def mine(p, x, w, y): ...

Op families (math in each module's docstring): `kernels.conv1d`, `kernels.circular`, `kernels.layer`.
"""

from kernels import _env  # noqa: F401  (must run before numba is imported)
from kernels import conv1d  # noqa: F401, I001  (defines the ops, in this order)
from kernels import circular  # noqa: F401, I001
from kernels import layer  # noqa: F401, I001
from kernels.compare import Reference, Verdict, assert_close, check
from kernels.playground import kernel
from kernels.registry import backends, get, ops, status, variants
from kernels.spec import OPS

__all__ = ["OPS", "Reference", "Verdict", "assert_close", "backends", "check", "get", "kernel", "ops", "status",
           "variants"]
