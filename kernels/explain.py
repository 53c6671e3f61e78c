"""`python -m kernels explain OP`: an op written out as the matrix it multiplies by, checked numerically.

For x of length n and w of length k (m = n - k + 1):

    y = conv1d(x, w) = T(w) x,   T(w)[j, t] = w[t - j] for 0 <= t - j < k      (m x n, Toeplitz)
    y = X(x) w,                  X(x)[j, i] = x[j + i]                          (m x k, Hankel)

so the Jacobians are dy/dx = T(w) and dy/dw = X(x), and for an upstream gradient v:

    conv1d_input_grad(w, v)     = T(w)^T v    (the full convolution of v with w)
    conv1d_weight_grad(x, v, k) = X(x)^T v    (the correlation of x with v)

Small integers are used so that every printed number is exact.
"""

from __future__ import annotations

import numpy as np

from kernels import conv1d as c1
from kernels import layer_counts

EXPLAINED_OPS = ("conv1d", "conv1d_weight_grad", "conv1d_input_grad", "conv1d_relu", "circular_correlate",
                 "conv1d_layer")


def toeplitz(w: np.ndarray, n: int) -> np.ndarray:
    """T(w), m x n: row j holds w at columns j .. j+k-1, so T(w) @ x = conv1d(x, w)."""
    k = w.shape[0]
    T = np.zeros((n - k + 1, n))
    for j in range(n - k + 1):
        T[j, j:j + k] = w
    return T


def hankel(x: np.ndarray, k: int) -> np.ndarray:
    """X(x), m x k: X[j, i] = x[j + i], so X(x) @ w = conv1d(x, w)."""
    m = x.shape[0] - k + 1
    return np.array([[x[j + i] for i in range(k)] for j in range(m)])


def circulant(y: np.ndarray) -> np.ndarray:
    """C(y), n x n: C[s, i] = y[(i + s) mod n], so C(y) @ x = circular_correlate(x, y)."""
    n = y.shape[0]
    return np.array([[y[(i + s) % n] for i in range(n)] for s in range(n)])


def _fmt(name: str, a: np.ndarray) -> str:
    body = np.array2string(np.asarray(a), precision=3, suppress_small=True, max_line_width=110)
    return f"{name} =\n{body}" if np.ndim(a) > 1 else f"{name} = {body}"


def _check(label: str, got, want) -> str:
    err = float(np.max(np.abs(np.asarray(got) - np.asarray(want)), initial=0.0))
    return f"check: {label}: max |difference| = {err:.3g} {'(equal)' if err == 0 else ''}".rstrip()


def explain(op: str, n: int = 6, k: int = 3, seed: int = 0) -> str:
    """The text `python -m kernels explain OP --n N --k K` prints."""
    if op not in EXPLAINED_OPS:
        raise ValueError(f"op: expected one of {EXPLAINED_OPS}, got {op!r}")
    if op == "conv1d_layer":
        return _layer(n, k)
    if not 1 <= k <= n:
        raise ValueError(f"--k: expected 1 <= k <= n = {n}, got {k}")
    if n > 64:
        raise ValueError(f"--n: at most 64 (the matrices are printed), got {n}")
    rng = np.random.default_rng(seed)
    x = rng.integers(-3, 4, n).astype(float)
    w = rng.integers(-2, 3, k).astype(float)
    m = n - k + 1
    v = rng.integers(-2, 3, m).astype(float)
    lines = [f"{op} with n = {n}, k = {k}, m = n - k + 1 = {m}", _fmt("x", x), _fmt("w", w)]
    if op == "circular_correlate":
        y = rng.integers(-2, 3, n).astype(float)
        C = circulant(y)
        z = np.array([np.dot(x, np.roll(y, -s)) for s in range(n)])
        lines += [_fmt("y", y), "z[s] = sum_i x[i] y[(i+s) mod n]  =  C(y) @ x,  C(y)[s, i] = y[(i+s) mod n]",
                  _fmt("C(y)", C), _fmt("z", C @ x), _check("C(y) @ x vs the loop", C @ x, z),
                  "shift property: rolling x by r rolls z by -r (z[s] pairs x[i] with y[i+s])",
                  _check("C(y) @ roll(x, 1) vs roll(z, -1)", C @ np.roll(x, 1), np.roll(z, -1))]
        return "\n".join(lines)
    T, X = toeplitz(w, n), hankel(x, k)
    y = c1.correlate(x, w, False)
    lines += ["y[j] = sum_i x[j+i] w[i]  =  T(w) @ x  =  X(x) @ w",
              _fmt("T(w)  (m x n, Toeplitz: dy/dx)", T), _fmt("X(x)  (m x k, Hankel: dy/dw)", X),
              _fmt("y", y), _check("T(w) @ x vs conv1d", T @ x, y), _check("X(x) @ w vs conv1d", X @ w, y)]
    if op in ("conv1d", "conv1d_input_grad"):
        lines += [_fmt("v (upstream gradient)", v),
                  "conv1d_input_grad(w, v) = T(w)^T v: dx[t] = sum_i v[t-i] w[i]",
                  _fmt("T(w)^T v", T.T @ v),
                  _check("T(w)^T v vs conv1d_input_grad", T.T @ v, c1.input_grad(w, v, False))]
    if op in ("conv1d", "conv1d_weight_grad"):
        lines += [_fmt("v (upstream gradient)", v),
                  "conv1d_weight_grad(x, v, k) = X(x)^T v: dw[i] = sum_j v[j] x[j+i]",
                  _fmt("X(x)^T v", X.T @ v),
                  _check("X(x)^T v vs conv1d_weight_grad", X.T @ v, c1.weight_grad(x, v, k, False))]
    if op == "conv1d":
        shifted = c1.correlate(np.roll(x, 1), w, False)
        lines += ["shift property: shifting x by one shifts y by one (away from the ends):",
                  _check("conv1d(roll(x, 1))[1:] vs conv1d(x)[:-1]", shifted[1:], y[:-1])]
    if op == "conv1d_relu":
        b = -float(np.abs(X).sum(axis=1).max() * np.abs(w).max()) - 1.0
        gate = (y + b > 0).astype(float)
        lines += [f"conv1d_relu(x, w, b) = max(0, T(w) x + b); with b = {b:g} every unit is dead:",
                  _fmt("T(w) x + b", y + b), _fmt("gate = (T(w) x + b > 0)", gate),
                  "the gradients are T(w)^T (gate * v), X(x)^T (gate * v), sum(gate * v): all zero",
                  _check("T(w)^T (gate * v) vs 0", T.T @ (gate * v), np.zeros(n))]
    return "\n".join(lines)


def _layer(L: int, K: int) -> str:
    count = layer_counts.conv1d(1, 2, 3, L, K)
    return ("conv1d_layer: y[n, co, l] = b[co] + sum_{c, t} w[co, c, t] x[n, c, l + t] (N=1, C_in=2, C_out=3)\n"
            "each output channel is a sum of C_in 1-D correlations; dw and dx are sums of the 1-D gradients\n"
            + layer_counts.describe(count))
