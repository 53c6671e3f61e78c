"""When an FFT may replace a direct sum: the crossover table and the accuracy rule, shared by every
backend's `auto` variant (cpu/auto.py, gpu/auto.py).

Every op with an FFT path is a valid correlation y[j] = sum_{i<k} s[j+i] f[i] (j < m = n - k + 1) of a
signal s with a filter f (the weight gradient: s = x, f = g, k = m_g terms).

The crossover table (JSON, written by a tuning tool or from a model) holds, per op and dtype, the signal
lengths n of its rows and, for each, the smallest k from which the FFT was faster (null: direct won up
to the largest k tried, k_max). Between rows the crossover is interpolated on log-log axes; outside them
the nearest row applies. A missing or invalid file means direct everywhere, with one warning.

    {"schema": 1, "machine": {...}, "command": "...",
     "ops": {"conv1d": {"float32": {"n": [10000, ...], "k_fft": [256, ...], "k_max": [...]}}}}

The accuracy rule. A direct sum meets the checker's per-output tolerance TOLERANCE_C * eps * sqrt(k) *
mag[j], mag = |s| * |f| (`kernels.compare`). An FFT's error is about c * eps * sqrt(log2 N) * (R(s)
||f||_2 + R(y)), N = n + k, R the largest root-mean-square over blocks of k samples, c < 2 measured
(cpu/fft.py). So the FFT result is kept only when

    FFT_ERROR_C * sqrt(log2 N) * (R(s) ||f||_2 + R(y)) <= TOLERANCE_C * sqrt(k) * lb,

lb <= min_j mag[j] (the correlation of |s| with the LB_TAPS contiguous taps of largest |f|). `slack`
is the right side less the known part of the left; `within` checks R(y) after the transform.
"""

from __future__ import annotations

import functools
import json
import math
import warnings
from pathlib import Path

from kernels import jsonfile

SCHEMA = 1
#: ops with a row in the table; the input gradient (the same sums, full instead of valid) uses conv1d's.
FFT_OPS = ("conv1d", "conv1d_weight_grad")
TABLE_OF = {"conv1d": "conv1d", "conv1d_weight_grad": "conv1d_weight_grad", "conv1d_input_grad": "conv1d"}

#: Safety factor of the FFT error estimate (measured constant below 2: four times over).
FFT_ERROR_C = 8.0
#: The checker's factor of the per-output tolerance C * eps * sqrt(k) * mag (kernels.compare.C).
TOLERANCE_C = 4.0
#: Filter taps behind the lower bound of every output's magnitude (a contiguous run of the largest).
LB_TAPS = 128
#: Shortest sum (k for the forward pass, m for the weight gradient) done by FFT: direct is more accurate
#: per output there, and faster.
MIN_SUM = 32


@functools.cache
def read_table(path: Path, tool: str) -> dict:
    """The crossover table at `path`; {} (direct everywhere) when the file is missing or invalid, with one
    warning naming the file and `tool`, the command that rewrites it."""
    try:
        table = json.loads(Path(path).read_text())
        validate(table)
        return table
    except FileNotFoundError:
        reason = "missing"
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
        reason = f"invalid ({type(e).__name__}: {e})"
    warnings.warn(f"crossover table {path} is {reason}: auto uses the direct kernels everywhere "
                  f"(rewrite it with {tool})", RuntimeWarning, stacklevel=4)
    return {}


def write_table(table: dict, path) -> Path:
    """The one writer of a crossover table (measured by plots.bench.tune, or modelled by
    plots.model.crossover): validated, then written atomically (kernels.jsonfile)."""
    validate(table)
    written = jsonfile.write(table, path)
    read_table.cache_clear()
    return written


def validate(table: dict) -> None:
    """Raise ValueError unless `table` follows the schema above."""
    if not isinstance(table, dict) or table.get("schema") != SCHEMA:
        raise ValueError(f"crossover: schema {table.get('schema') if isinstance(table, dict) else table!r}, "
                         f"expected {SCHEMA}")
    threads = table.get("machine", {}).get("threads")
    if threads is not None and not (isinstance(threads, int) and threads > 0):
        raise ValueError(f"crossover: machine threads {threads!r}, expected a positive integer")
    for op in FFT_OPS:
        for dtype in ("float32", "float64"):
            row = table["ops"][op][dtype]
            ns, ks, kmax = row["n"], row["k_fft"], row["k_max"]
            if not (len(ns) == len(ks) == len(kmax) >= 1) or sorted(ns) != ns:
                raise ValueError(f"crossover {op} {dtype}: n, k_fft and k_max must align, n ascending")
            for n, k, top in zip(ns, ks, kmax, strict=True):
                if not (isinstance(n, int) and n > 0 and isinstance(top, int) and 0 < top <= n):
                    raise ValueError(f"crossover {op} {dtype}: bad n={n!r} or k_max={top!r}")
                if k is not None and not (isinstance(k, int) and 0 < k <= top):
                    raise ValueError(f"crossover {op} {dtype}: bad k_fft={k!r} at n={n}")


def crossover(op: str, n: int, dtype, table: dict) -> float:
    """The smallest k from which FFT is used for `op` at length n (inf: never)."""
    try:
        row = table["ops"][TABLE_OF[op]][str(dtype)]
    except KeyError:
        return math.inf
    # never-FFT points count as just past the largest k tried there
    points = [(math.log(nn), math.log(k if k is not None else 2 * top))
              for nn, k, top in zip(row["n"], row["k_fft"], row["k_max"], strict=True)]
    never = [k is None for k in row["k_fft"]]
    ln = math.log(max(n, 1))
    if ln <= points[0][0]:
        return math.inf if never[0] else math.exp(points[0][1])
    if ln >= points[-1][0]:
        return math.inf if never[-1] else math.exp(points[-1][1])
    for (a, fa), (b, fb), na, nb in zip(points, points[1:], never, never[1:], strict=False):
        if a <= ln <= b:
            if na and nb:
                return math.inf
            return math.exp(fa + (fb - fa) * (ln - a) / (b - a))
    return math.inf


def slack(n: int, k: int, lb: float, r_s: float, norm_f: float) -> float:
    """TOLERANCE_C sqrt(k) lb - FFT_ERROR_C sqrt(log2(n + k)) R(s) ||f||_2: what the FFT's error may still
    spend on R(y) (all in one scale); <= 0 means the FFT would not be accurate enough."""
    return TOLERANCE_C * math.sqrt(k) * lb - FFT_ERROR_C * math.sqrt(math.log2(n + k)) * r_s * norm_f


def within(n: int, k: int, r_y: float, slack_left: float) -> bool:
    """The rule's a-posteriori half: FFT_ERROR_C sqrt(log2(n + k)) R(y) <= slack."""
    return FFT_ERROR_C * math.sqrt(math.log2(n + k)) * r_y <= slack_left


def exponent(m: float) -> int:
    """e with 2**(e-1) <= m < 2**e (frexp's), 0 for m == 0."""
    return math.frexp(m)[1] if m > 0 else 0
