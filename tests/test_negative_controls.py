"""The checker rejects wrong kernels: proof that the conformance tests can fail."""

import numpy as np
import pytest

import kernels.backend
from kernels import compare
from kernels.backend import Backend
from kernels.conv1d import correlate

wrong = Backend("wrong", "deliberately broken kernels")


@wrong.impl("conv1d", "no_op")
def no_op(p, x, w, y):
    """Writes nothing: the NaN poison must show."""


@wrong.impl("conv1d", "off_by_one")
def off_by_one(p, x, w, y):
    """Drops the last tap: y[j] = sum_{i<k-1} x[j+i] w[i]."""
    y[:] = correlate(x, w[:-1])[: p.m] if p.k > 1 else 0


@wrong.impl("conv1d", "last_element_unwritten")
def last_unwritten(p, x, w, y):
    """Bounds guard off by one: the final output is never written."""
    y[:-1] = correlate(x, w)[:-1]


@wrong.impl("conv1d", "shifted")
def shifted(p, x, w, y):
    """Reads x one element late (a missing halo): y[j] = sum_i x[j+i+1] w[i], wrapping at the end."""
    y[:] = correlate(np.roll(x, -1), w)


@wrong.impl("conv1d", "half_precision")
def half_precision(p, x, w, y):
    """Accumulates in float16: far outside a float32 tolerance."""
    acc = np.zeros(p.m, np.float16)
    for i in range(p.k):
        acc += (w[i] * x[i:i + p.m]).astype(np.float16)
    y[:] = acc


@pytest.fixture(autouse=True)
def poison(monkeypatch):
    monkeypatch.setattr(kernels.backend, "POISON", True)


@pytest.mark.parametrize("variant", list(wrong.impls["conv1d"]))
def test_checker_rejects_broken_kernel(variant, rng):
    x, w = rng.standard_normal(1000).astype(np.float32), rng.standard_normal(31).astype(np.float32)
    got = wrong.function("conv1d", variant)(x, w)
    report = compare.compare("conv1d", got, (x, w))
    assert not report[0].ok, f"{variant} passed the check: {report[0]}"
    with pytest.raises(AssertionError, match="differs from the reference"):
        compare.assert_close("conv1d", got, (x, w))


def test_checker_counts_unwritten_elements_separately(rng):
    x, w = rng.standard_normal(100), rng.standard_normal(5)
    report = compare.compare("conv1d", wrong.function("conv1d", "last_element_unwritten")(x, w), (x, w))
    assert report[0].bad_nonfinite == 1 and report[0].max_ratio < 1


def test_tolerance_is_tight_enough_to_see_one_ulp_of_float16_but_loose_for_float32_rounding(rng):
    x, w = rng.standard_normal(4096), rng.standard_normal(255)
    exact = correlate(x, w)
    rounded = exact.astype(np.float32)
    assert compare.compare("conv1d", rounded, (x.astype(np.float32), w.astype(np.float32)))[0].ok
    perturbed = rounded * np.float32(1 + 2**-10)
    assert not compare.compare("conv1d", perturbed, (x.astype(np.float32), w.astype(np.float32)))[0].ok
