"""The layer's `auto` variant on the GPU backends: the implicit GEMM (gemm) where each group's GEMM is wide
enough (gpu.auto.layer_uses_gemm), one thread per output (direct) elsewhere, and direct where the gemm
kernels refuse the launch; it is the default, and its results are the chosen variant's, to the bit."""

import numpy as np
import pytest
from test_gpu_backends import marks_for

import kernels
from gpu import auto
from kernels import compare, registry

FORWARD, BACKWARD = "conv1d_layer", "conv1d_layer_backward"
WIDE = dict(N=1, C_in=16, C_out=16, L=20, K=3, padding=1)  # reduction 48, 16 rows: gemm
DEPTHWISE = dict(N=1, C_in=16, C_out=16, L=20, K=3, padding=1, groups=16)  # reduction 3, 1 row: direct
BACKENDS = [pytest.param(b, marks=marks_for(b)) for b in ("cupy", "numba_cuda")]


def _args(shape, op, rng, dtype=np.float64):
    from kernels.spec import OPS

    return OPS[op].make_args(rng, dtype, **shape)


@pytest.mark.parametrize("backend", BACKENDS)
def test_auto_is_the_layer_default(backend):
    for op in (FORWARD, BACKWARD):
        assert registry.backend(backend).defaults[op] == "auto"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", [FORWARD, BACKWARD])
@pytest.mark.parametrize("shape, chosen", [(WIDE, "gemm"), (DEPTHWISE, "direct")])
def test_auto_gives_the_chosen_variants_bits(backend, op, shape, chosen):
    rng = np.random.default_rng()
    args, kwargs = _args(shape, op, rng)
    got = kernels.get(op, backend, "auto", block=32)(*args, **kwargs)
    want = kernels.get(op, backend, chosen, block=32)(*args, **kwargs)
    for a, b in zip((got,) if op == FORWARD else got, (want,) if op == FORWARD else want, strict=True):
        np.testing.assert_array_equal(compare.to_host(a), compare.to_host(b))
    assert compare.check(op, got, args, kwargs).ok


def test_the_rule_follows_the_groups_width():
    class P:  # the fields layer_uses_gemm reads
        def __init__(self, C_in, C_out, K, groups):
            self.C_in, self.C_out, self.K, self.groups = C_in, C_out, K, groups

    assert auto.layer_uses_gemm(P(64, 128, 3, 1)) and auto.layer_uses_gemm(P(64, 128, 3, 8))
    assert not auto.layer_uses_gemm(P(64, 128, 3, 16))  # 4 -> 8 per group
    assert not auto.layer_uses_gemm(P(8, 8, 3, 1)) and not auto.layer_uses_gemm(P(256, 256, 3, 256))
