"""The direct/FFT crossover of the GPU `auto` variants (gpu/auto.py), from the static model: a MODEL,
not a measurement, until a GPU measures one.

    python -m plots.model.crossover [--device h100-sxm] [--dry-run]     writes gpu/crossover_<backend>.json

For each backend, op with an FFT path (conv1d, conv1d_weight_grad), dtype and n in N, the direct time
is plots.model.oned's bound for the direct step `auto` runs at that k (its declaration's `wraps`) plus one launch,
and
the FFT time is

    T_fft = bytes / HBM bandwidth + FFT_OVERHEAD_S
    bytes = itemsize * (3 transforms x passes(P) x 2 P  +  3 P (spectrum product)  +  ~8 n (rule: max |s|,
            the scaled copies, the lower-bound correlation)  +  2 n (float64 squares of R(s), R(y)))

with P >= n the transform length and passes(P) = ceil(log(P) / log(PASS_POINTS)) (cuFFT keeps up to
~PASS_POINTS points of a transform in shared memory per pass); FFT_OVERHEAD_S stands for its ~20
launches and the 6 host reads of the rule. The crossover k at each n is the smallest k of K from which
the FFT's time is below the direct one for every larger k of K (null when there is none).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import sys

from gpu.auto import direct_variant, path
from kernels import fft_choice, registry
from plots.model import oned
from plots.model.devices import DEVICES

N = (10_000, 100_000, 1_000_000, 10_000_000, 100_000_000)
K = tuple(2 ** e for e in range(5, 17))
BACKENDS = ("cupy", "numba_cuda")
PASS_POINTS = 4096
LAUNCH_S = 5e-6
FFT_OVERHEAD_S = 100e-6


def wrapped(backend: str) -> dict[str, tuple]:
    """op -> the direct steps `backend`'s 1-D `auto` runs, ((max_k, variant), ..., (None, variant)) (the `wraps`
    of its declaration, gpu.auto.direct_variant)."""
    return dict(next(s.wraps for s in registry.steps(backend) if s.variant == "auto" and s.wraps))


def wrapped_at(backend: str, op: str, k: int) -> str | None:
    """The variant of the direct step `backend`'s 1-D `auto` runs for `op` at k taps; None for an op it does not
    wrap."""
    return direct_variant(wrapped(backend), op, k)


def fft_time(n: int, k: int, itemsize: int, device) -> float:
    """MODEL: seconds of the FFT path of a valid correlation of n samples with k taps (module docstring)."""
    P = n  # the fast length is within a few per cent of n
    passes = max(1, math.ceil(math.log(P) / math.log(PASS_POINTS)))
    moved = itemsize * (3 * passes * 2 * P + 3 * P + 8 * n) + 8 * 2 * n
    return moved / (device.copy_gbs * 1e9) + FFT_OVERHEAD_S


def table(backend: str, slug: str = "h100-sxm") -> dict:
    """The crossover table of `backend` (schema kernels.fft_choice) from the model on device `slug`."""
    device = DEVICES[slug]
    ops = {}
    for op in wrapped(backend):
        ops[op] = {}
        for dtype in ("float32", "float64"):
            preds = {(p["n"], p["k"]): p["time_s"] for p in oned.model(N, K, (dtype,), devices=(slug,),
                                                                            ops=(op,))
                     if p["backend"] == backend and p["variant"] == wrapped_at(backend, op, p["k"])}
            row = {"n": [], "k_fft": [], "k_max": []}
            for n in N:
                ks = [k for k in K if k <= n]
                wins = [fft_time(n, k, 4 if dtype == "float32" else 8, device) < preds[(n, k)] + LAUNCH_S
                        for k in ks]
                first = next((i for i in range(len(ks)) if all(wins[i:])), None)
                row["n"].append(n)
                row["k_fft"].append(ks[first] if first is not None else None)
                row["k_max"].append(ks[-1])
            ops[op][dtype] = row
    return {"schema": 1, "command": "python -m plots.model.crossover",
            "source": f"MODEL, not measured: plots.model.oned's bound for the direct steps {wrapped(backend)} against "
                      f"plots.model.crossover.fft_time, on {device.name}",
            "written": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": {"name": device.name, "slug": slug}, "ops": ops}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m plots.model.crossover", description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="h100-sxm", choices=sorted(DEVICES))
    ap.add_argument("--dry-run", action="store_true", help="print the tables, write nothing")
    args = ap.parse_args(argv)
    for backend in BACKENDS:
        t = table(backend, args.device)
        if args.dry_run:
            fft_choice.validate(t)
            print(json.dumps(t, indent=1))
        else:
            print(f"wrote {fft_choice.write_table(t, path(backend))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
