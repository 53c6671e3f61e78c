"""The numpy reference checked by independent methods: the oracle must itself be right."""

import numpy as np
import pytest
import scipy.linalg

import kernels
from kernels import compare

SIZES = [(1, 1), (5, 5), (13, 4), (129, 17), (300, 1)]


def ref(op, *args, **kwargs):
    return kernels.get(op, "numpy")(*args, **kwargs)


def signal(rng, n):
    return rng.standard_normal(n)


@pytest.mark.parametrize("n,k", SIZES)
def test_forward_matches_numpy_correlate_and_convolve(n, k, rng):
    x, w = signal(rng, n), signal(rng, k)
    np.testing.assert_allclose(ref("conv1d", x, w), np.correlate(x, w, "valid"), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ref("conv1d", x, w, flip=True), np.convolve(x, w, "valid"),
                               rtol=1e-12, atol=1e-12)


def hankel_of_x(x, k):
    """H[j, i] = x[j+i]: y = H @ w, and H is dy/dw (Hankel: constant along anti-diagonals)."""
    m = x.shape[0] - k + 1
    return scipy.linalg.hankel(x[:m], x[m - 1:])


def toeplitz_of_w(w, n):
    """T[j, t] = w[t-j] for 0 <= t-j < k: y = T @ x, and dx = T.T @ g."""
    k = w.shape[0]
    m = n - k + 1
    first_row = np.concatenate([w, np.zeros(n - k)])
    return scipy.linalg.toeplitz(np.r_[w[0], np.zeros(m - 1)], first_row)


@pytest.mark.parametrize("n,k", SIZES)
def test_matrix_form_and_its_transposes(n, k, rng):
    """Convolution as a matrix: y = H w = T x, dw = H^T g, dx = T^T g (textbook derivation)."""
    x, w, g = signal(rng, n), signal(rng, k), signal(rng, n - k + 1)
    H, T = hankel_of_x(x, k), toeplitz_of_w(w, n)
    np.testing.assert_allclose(H @ w, T @ x, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ref("conv1d", x, w), H @ w, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ref("conv1d_weight_grad", x, g, k), H.T @ g, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ref("conv1d_input_grad", w, g), T.T @ g, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ref("conv1d_bias_grad", g), [g.sum()], rtol=1e-12)


def numeric_grad(f, a, eps=1e-6):
    """Central differences of scalar f with respect to each element of a."""
    grad = np.empty_like(a)
    for i in range(a.shape[0]):
        up, down = a.copy(), a.copy()
        up[i] += eps
        down[i] -= eps
        grad[i] = (f(up) - f(down)) / (2 * eps)
    return grad


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("n,k", [(9, 3), (16, 16), (20, 1)])
def test_gradients_match_finite_differences(n, k, flip, rng):
    x, w, g = signal(rng, n), signal(rng, k), signal(rng, n - k + 1)
    b = 0.3
    loss = lambda x, w, b=0.0: g @ ref("conv1d", x, w, flip=flip)
    np.testing.assert_allclose(ref("conv1d_weight_grad", x, g, k, flip=flip),
                               numeric_grad(lambda w: loss(x, w), w), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(ref("conv1d_input_grad", w, g, flip=flip),
                               numeric_grad(lambda x: loss(x, w), x), rtol=1e-6, atol=1e-7)
    relu_loss = lambda x, w, b: g @ ref("conv1d_relu", x, w, b, flip=flip)
    dx, dw, db = ref("conv1d_relu_backward", x, w, b, g, flip=flip)
    np.testing.assert_allclose(dx, numeric_grad(lambda x: relu_loss(x, w, b), x), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(dw, numeric_grad(lambda w: relu_loss(x, w, b), w), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(db, numeric_grad(lambda b: relu_loss(x, w, b[0]), np.array([b])),
                               rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(ref("conv1d_bias_grad", g), numeric_grad(
        lambda b: g @ (ref("conv1d", x, w, flip=flip) + b[0]), np.array([0.0])), rtol=1e-6)


@pytest.mark.parametrize("n", [1, 2, 7, 64, 129])
def test_circular_matches_fft_identity_and_finite_differences(n, rng):
    x, y, g = signal(rng, n), signal(rng, n), signal(rng, n)
    z = ref("circular_correlate", x, y)
    fft_z = np.fft.ifft(np.conj(np.fft.fft(x)) * np.fft.fft(y)).real
    np.testing.assert_allclose(z, fft_z, rtol=1e-10, atol=1e-10)
    dx, dy = ref("circular_correlate_backward", x, y, g)
    loss = lambda x, y: g @ ref("circular_correlate", x, y)
    np.testing.assert_allclose(dx, numeric_grad(lambda x: loss(x, y), x), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(dy, numeric_grad(lambda y: loss(x, y), y), rtol=1e-6, atol=1e-7)


def test_float32_inputs_are_accumulated_in_float64(rng):
    """Large cancelling sums: the reference's float32 result is the float64 one rounded once."""
    x = (rng.standard_normal(100_000) * 1e4).astype(np.float32)
    w = np.ones(1000, np.float32)
    exact = np.correlate(x.astype(np.float64), w.astype(np.float64), "valid")
    np.testing.assert_array_equal(ref("conv1d", x, w), exact.astype(np.float32))
    assert compare.compare("conv1d", ref("conv1d", x, w), (x, w))[0].ok
