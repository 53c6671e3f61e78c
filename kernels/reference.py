"""The `numpy` backend: every op's float64 reference, the oracle the other backends are checked against.

Inputs are promoted to float64, the op family's reference computes, and the result is rounded once
into the caller's dtype.
"""

import numpy as np

from kernels.backend import Backend
from kernels.spec import OPS

backend = Backend("numpy", "NumPy reference, accumulating in float64")


def _reference_impl(op):
    def impl(p, *args):
        inputs, outs = args[:-len(op.outputs)], args[-len(op.outputs):]
        for o, r in zip(outs, op.reference(p, *(np.asarray(a, np.float64) for a in inputs))):
            o[...] = r
    impl.__doc__ = "float64 reference: " + op.doc
    return impl


for _name, _op in OPS.items():  # every op: kernels/__init__.py defines them all before a backend loads
    backend.impl(_name, "reference")(_reference_impl(_op))
