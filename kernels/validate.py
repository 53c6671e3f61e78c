"""Input validation shared by every op and every backend.

Each check raises TypeError (wrong kind of value) or ValueError (wrong size or shape) with a
message that names the argument and says what was expected. Arrays are checked through their
``ndim``/``shape``/``dtype``/``size`` attributes only, so NumPy arrays, CuPy arrays and numba device
arrays (whose dtype is a NumPy dtype) pass through the same code without a copy. Anything else
(lists, torch CPU tensors through ``__array__``) is turned into a NumPy array first.

Integer arguments are at most `INDEX_MAX` = 2**60, so that every index a kernel forms from them and
the array sizes (l*stride + t*dilation, L + 2*padding, sums of a few such terms) fits in int64.

Non-finite values (NaN, Inf) are accepted: they propagate through every op like in IEEE arithmetic.
"""

from __future__ import annotations

import numbers

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
#: Largest integer argument (sizes, strides, padding, dilation): see the module docstring.
INDEX_MAX = 2**60


def as_array(name: str, a):
    """Return `a` as an array-like with ndim/shape/dtype (NumPy, CuPy, numba device arrays pass)."""
    if isinstance(a, np.ndarray):  # the common case, checked first: validation runs on every call
        return a
    if isinstance(getattr(a, "dtype", None), np.dtype) and all(hasattr(a, at) for at in ("ndim", "shape", "size")):
        return a  # CuPy and numba device arrays
    if a is None:
        raise TypeError(f"{name}: expected an array, got None")
    try:
        return np.asarray(a)
    except Exception as e:  # ragged lists, tensors on a GPU or with autograd, and the like
        raise TypeError(f"{name}: cannot be converted to a NumPy array ({type(a).__name__}: {e})") from None


def float_array(name: str, a, ndim: int):
    """Check that `a` is a non-empty float32/float64 array with `ndim` dimensions."""
    a = as_array(name, a)
    dtype = np.dtype(a.dtype)
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name}: expected dtype float32 or float64, got {dtype}")
    if a.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array, got ndim={a.ndim} (shape {tuple(a.shape)})")
    if a.size == 0:
        raise ValueError(f"{name}: expected a non-empty array, got shape {tuple(a.shape)}")
    return a


def same_dtype(**arrays):
    """Check that all named arrays share one dtype; return it."""
    dtypes = {name: a.dtype for name, a in arrays.items()}
    first, *rest = dtypes.values()
    if any(dt != first for dt in rest):
        listing = ", ".join(f"{name}={dt}" for name, dt in dtypes.items())
        raise TypeError(f"mixed dtypes: expected one dtype for all arrays, got {listing}")
    return np.dtype(first)


def length(name: str, a, expected: int, why: str):
    """Check that 1-D array `a` has `expected` elements."""
    if a.shape[0] != expected:
        raise ValueError(f"{name}: expected length {expected} ({why}), got {a.shape[0]}")


def integer(name: str, value, *, low: int, high: int = INDEX_MAX) -> int:
    """Check that `value` is an integer (not bool) in [low, high]; return it as int."""
    if type(value) is not int and (isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral)):
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__}")
    value = int(value)
    if value < low or value > high:
        top = "2**60 (int64 index arithmetic)" if high == INDEX_MAX else str(high)
        bound = f">= {low}" if value < low else f"in [{low}, {top}]"
        raise ValueError(f"{name}: expected an integer {bound}, got {value}")
    return value


def filter_length(k, n: int, *, name: str = "k") -> int:
    """Check 1 <= k <= n (a valid correlation needs the filter to fit in the signal)."""
    k = integer(name, k, low=1)
    if k > n:
        raise ValueError(f"{name}: filter length must be <= signal length n={n}, got {k}")
    return k


def real_scalar(name: str, value, dtype) -> np.generic:
    """Check that `value` is a real number (or a one-element float array); return it in `dtype`."""
    if hasattr(value, "dtype") and not isinstance(value.dtype, np.dtype):  # a tensor of another library
        value = as_array(name, value)
    if hasattr(value, "size") and isinstance(getattr(value, "dtype", None), np.dtype):
        if value.size != 1:
            raise ValueError(f"{name}: expected a scalar or one-element array, got shape {tuple(value.shape)}")
        if np.dtype(value.dtype).kind not in "fiu":
            raise TypeError(f"{name}: expected a real number, got dtype {value.dtype}")
        value = value.reshape(-1)[0].item() if hasattr(value, "item") else value[0]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    try:
        return np.dtype(dtype).type(value)
    except OverflowError:  # an int beyond float64
        raise ValueError(f"{name}: expected a real number representable in {np.dtype(dtype)}, got {value}") from None


def flag(name: str, value) -> bool:
    """Check that `value` is a bool."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {value!r}")
    return bool(value)


# --- multi-dimensional arrays (the conv1d layer) -----------------------------------------------

def float_tensor(name: str, a, layout: str):
    """Check that `a` is a non-empty float32/float64 array laid out as `layout`, e.g. "(N, C_in, L)".

    The number of comma-separated names in `layout` is the expected ndim; the message names them.
    """
    ndim = len([d for d in layout.strip("()").split(",") if d.strip()])
    a = as_array(name, a)
    dtype = np.dtype(a.dtype)
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name}: expected dtype float32 or float64, got {dtype}")
    if a.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array {layout}, got ndim={a.ndim} "
                         f"(shape {tuple(a.shape)})")
    if a.size == 0:
        raise ValueError(f"{name}: expected a non-empty array {layout}, got shape {tuple(a.shape)}")
    return a


def axis_size(name: str, a, axis: int, expected: int, why: str):
    """Check that `a.shape[axis] == expected`, e.g. the channels of w against those of x."""
    if a.shape[axis] != expected:
        raise ValueError(f"{name}: expected size {expected} along axis {axis} ({why}), got "
                         f"{a.shape[axis]} (shape {tuple(a.shape)})")


def shape(name: str, a, expected: tuple, why: str):
    """Check that `a` has exactly the shape `expected`."""
    if tuple(a.shape) != tuple(expected):
        raise ValueError(f"{name}: expected shape {tuple(expected)} ({why}), got {tuple(a.shape)}")


def divides(name: str, value: int, **totals: int):
    """Check that `value` (e.g. groups) divides every named total (e.g. C_in, C_out)."""
    for total_name, total in totals.items():
        if total % value:
            raise ValueError(f"{name}: must divide {total_name}={total}, got {value}")


def dilated_filter_fits(k: int, dilation: int, length: int, padding: int):
    """Check that the dilated filter, dilation*(K-1)+1 taps wide, fits in the padded input."""
    span = dilation * (k - 1) + 1
    if span > length + 2 * padding:
        raise ValueError(f"w: dilated filter length dilation*(K-1)+1 = {span} (K={k}, dilation={dilation}) "
                         f"must be <= L + 2*padding = {length + 2 * padding} (L={length}, "
                         f"padding={padding}); no output position would fit")
